//! One test, run through the run's own path in-process: the test's rows registered in
//! place of the input files and upstream snapshots, the output fitted to the table as a
//! run fits it (`engine::output`), bad rows found and judged by the job's policy, the
//! checks run on the new rows (no baseline: a test has no history). Nothing is written.

use super::error::{FixtureError, JobTestError};
use super::fixture::{self, Source};
use super::{TestCase, TestFile};
use crate::engine::output::{OutputError, OutputFailure};
use crate::engine::{
    self, BadRow, BadRowLog, Engine, FileFixture, PartitionQuery, UpstreamData, UpstreamInput,
};
use crate::job::{BadRowVerdict, InputSource, Job};
use crate::project::Project;
use crate::quality::CheckResult;
use crate::run::RunError;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::datasource::MemTable;
use std::collections::HashMap;
use std::sync::Arc;

/// What the run of a test did.
#[derive(Debug)]
pub struct Actual {
    /// The output as the table would hold it; `None` when the run failed first.
    pub output: Option<RecordBatch>,
    /// Whether the SQL orders its rows.
    pub ordered: bool,
    pub dead_letters: Vec<BadRow>,
    pub checks: Vec<CheckResult>,
    /// The error the run failed with, as a run reports it.
    pub error: Option<String>,
    /// The check of severity error that stopped the run, if one did.
    pub blocked_by: Option<String>,
}

impl Actual {
    fn failed(error: String, dead_letters: Vec<BadRow>) -> Actual {
        Actual {
            output: None,
            ordered: false,
            dead_letters,
            checks: Vec::new(),
            error: Some(error),
            blocked_by: None,
        }
    }
}

/// Runs `test` of `file`. `Err`: the test's rows could not be made into tables.
pub async fn run(
    engine: &Engine,
    project: &Project,
    file: &TestFile,
    test: &TestCase,
) -> Result<Actual, JobTestError> {
    let job = project
        .jobs
        .get(&file.job)
        .ok_or_else(|| JobTestError::JobNotLoaded(file.job.to_string()))?;
    let table = project
        .declared
        .get(&job.table)
        .ok_or_else(|| JobTestError::NoTable {
            table: job.table.to_string(),
            job: job.name.to_string(),
        })?;
    let mut query = PartitionQuery::new(job, test.partition, upstream(project, job, test)?);
    query.file_fixtures = file_fixtures(project, job, test)?;
    let ((batches, target, ordered, rejected), mut dead_letters) =
        match output_under_bad_row_policy(engine, project, table, test, &mut query).await? {
            Ok(done) => done,
            Err(failed) => return Ok(failed),
        };
    if !rejected.is_empty() {
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        dead_letters.extend(rejected)?;
        let total = rows + dead_letters.len();
        if let BadRowVerdict::TooMany { limit, read } =
            job.bad_row_verdict(dead_letters.len(), || total)
        {
            let m = engine::bad_rows::too_many(
                job,
                &test.partition,
                &dead_letters,
                read,
                limit,
                "row(s)",
            );
            return Ok(Actual::failed(m, dead_letters.to_vec()?));
        }
    }
    let end_us = test
        .partition
        .instant_bounds(job.partition_time_zone)
        .map(|(_, e)| e.timestamp_micros());
    let new = crate::quality::audit::NewRows::in_memory(target.clone(), batches.clone())
        .map_err(JobTestError::Audit)?;
    let quality = crate::quality::audit::audit(&engine.session(), new, &job.checks, &[], end_us)
        .await
        .map_err(JobTestError::Audit)?;
    let output = deltalake::arrow::compute::concat_batches(&target, &batches)?;
    // A merging job's test compares the table after the merge, not the changes.
    let output = match merged(engine, job, table, test, output).await? {
        Ok(table) => table,
        Err(e) => return Ok(Actual::failed(e, dead_letters.to_vec()?)),
    };
    let blocked_by = quality.blocking().map(|c| c.name.clone());
    let error = quality
        .blocking()
        .map(|c| RunError::CheckFailed(c.to_string()).to_string());
    Ok(Actual {
        output: Some(output),
        ordered,
        dead_letters: dead_letters.to_vec()?,
        checks: quality.checks,
        error,
        blocked_by,
    })
}

/// The partition's output, run again without the bad input rows when the job's policy
/// skips them (as a run does); `Ok(Err(..))` when the policy fails the run instead.
async fn output_under_bad_row_policy(
    engine: &Engine,
    project: &Project,
    table: &crate::schema::TableSchema,
    test: &TestCase,
    query: &mut PartitionQuery<'_>,
) -> Result<Result<(Output, BadRowLog), Actual>, JobTestError> {
    let job = query.job;
    loop {
        match fitted_output(engine, query, table).await {
            // The bad rows left out (if any) are the dead letters.
            Ok(done) => {
                return Ok(Ok((
                    done,
                    query.without_bad_rows.take().unwrap_or_default(),
                )));
            }
            Err((e, text_files)) => {
                let scan = matches!(
                    e,
                    OutputError::Engine(engine::EngineError::Execution { .. })
                ) && !text_files.is_empty()
                    && query.without_bad_rows.is_none();
                let bad = if scan {
                    Engine::find_bad_rows(&text_files, &project.settings.root)?
                } else {
                    BadRowLog::default()
                };
                if bad.is_empty() {
                    let dead_letters = match &query.without_bad_rows {
                        Some(b) => b.to_vec()?,
                        None => Vec::new(),
                    };
                    return Ok(Err(Actual::failed(
                        RunError::from(e).to_string(),
                        dead_letters,
                    )));
                }
                match job.bad_row_verdict(bad.len(), || Engine::count_records(&text_files)) {
                    BadRowVerdict::Fail => {
                        let e = engine::EngineError::BadRows {
                            total: bad.len(),
                            rows: bad.shown().to_vec(),
                        };
                        return Ok(Err(Actual::failed(e.to_string(), bad.to_vec()?)));
                    }
                    BadRowVerdict::TooMany { limit, read } => {
                        let m = engine::bad_rows::too_many(
                            job,
                            &test.partition,
                            &bad,
                            read,
                            limit,
                            "input row(s)",
                        );
                        return Ok(Err(Actual::failed(m, bad.to_vec()?)));
                    }
                    BadRowVerdict::Skip => {}
                }
                query.without_bad_rows = Some(bad);
            }
        }
    }
}

type Output = (Vec<RecordBatch>, SchemaRef, bool, Vec<BadRow>);

/// The partition's fitted output, whole (a test's is small), and the output rows left out.
async fn fitted_output(
    engine: &Engine,
    query: &PartitionQuery<'_>,
    table: &crate::schema::TableSchema,
) -> Result<Output, OutputFailure> {
    let mut output = engine
        .output(query, table, |_| {
            "remove it from the SELECT, or add the column to the table with a migration".into()
        })
        .await?;
    let mut batches = Vec::new();
    let mut rejected = Vec::new();
    while let Some(fitted) = output.next().await {
        let fitted = fitted?;
        rejected.extend(fitted.rejected);
        batches.push(fitted.batch);
    }
    Ok((batches, output.target_schema(), output.ordered, rejected))
}

/// The test's rows as each upstream table, with the partition filter a run applies.
fn upstream(
    project: &Project,
    job: &Job,
    test: &TestCase,
) -> Result<Vec<UpstreamInput>, JobTestError> {
    let mut out = Vec::new();
    for read in project.upstream_reads(job, &test.partition) {
        let schema =
            project
                .declared
                .get(read.table)
                .ok_or_else(|| JobTestError::NoInputTable {
                    input: read.input.to_string(),
                    table: read.table.to_string(),
                })?;
        let rows =
            rows_table(test.inputs.get(read.input), &schema.to_arrow()).map_err(|source| {
                JobTestError::Input {
                    input: read.input.to_string(),
                    source,
                }
            })?;
        out.push(UpstreamInput {
            name: read.input.clone(),
            data: UpstreamData::Rows(rows),
            filter: engine::upstream_filter(&read, schema),
        });
    }
    Ok(out)
}

/// The test's rows for each file input: a fixture file read as the input's files are, or
/// rows typed by its schema.
fn file_fixtures(
    project: &Project,
    job: &Job,
    test: &TestCase,
) -> Result<HashMap<crate::names::Name, FileFixture>, JobTestError> {
    let mut out = HashMap::new();
    for input in &job.inputs {
        // A command input's rows are given too: a job test never runs its program.
        if !matches!(
            input.source,
            InputSource::Files { .. } | InputSource::Command(_) | InputSource::Database(_)
        ) {
            continue;
        }
        let given = test.inputs.get(&input.name);
        let fixture = match (given, super::input_schema(project, input)) {
            (Some(Source::File(p)), _) => FileFixture::File(p.clone()),
            (given, Some(schema)) => {
                FileFixture::Rows(rows_table(given, &schema).map_err(|source| {
                    JobTestError::Input {
                        input: input.name.to_string(),
                        source,
                    }
                })?)
            }
            (_, None) => {
                return Err(JobTestError::NoInputSchema {
                    input: input.name.to_string(),
                });
            }
        };
        out.insert(input.name.clone(), fixture);
    }
    Ok(out)
}

/// Rows (none when not given) as a table of `schema`, every column nullable.
fn rows_table(given: Option<&Source>, schema: &SchemaRef) -> Result<Arc<MemTable>, FixtureError> {
    let nullable = fixture::nullable(schema);
    let batch = match given {
        Some(source) => fixture::typed(source, schema)?,
        None => RecordBatch::new_empty(nullable.clone()),
    };
    MemTable::try_new(nullable, vec![vec![batch]])
        .map(Arc::new)
        .map_err(FixtureError::Table)
}

/// `output` merged into the test's `table` rows (none: an empty table), for a job that
/// merges; `output` itself for one that replaces. `Ok(Err)`: the merge refused the changes,
/// as a run would (said as a run says it).
async fn merged(
    engine: &Engine,
    job: &Job,
    table: &crate::schema::TableSchema,
    test: &TestCase,
    output: RecordBatch,
) -> Result<Result<RecordBatch, String>, JobTestError> {
    let schema = table.to_arrow();
    let before = match &test.table {
        Some(source) => fixture::typed(source, &schema).map_err(JobTestError::Table)?,
        None => RecordBatch::new_empty(schema),
    };
    let merged = crate::merge::merged_in_memory(
        &engine.session(),
        table,
        &job.write,
        before,
        output.clone(),
    )
    .await;
    Ok(match merged {
        Ok(Some(table)) => Ok(table),
        Ok(None) => Ok(output),
        Err(source) => Err(RunError::Merge {
            table: job.table.to_string(),
            source,
        }
        .to_string()),
    })
}
