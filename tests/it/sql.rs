//! SQL behaviour as data: each `tests/sql/*.slt` file (sqllogictest format) builds a small
//! project and runs a job's SQL for one partition through the engine, in-process, without
//! the binary and without a catalog: parameters bound, inputs registered, the output given
//! its record ids and fitted to its table exactly as a run does, before the write.
//!
//! Statements set the project up, one directive each, its text on the lines below:
//! - `migration NNNN_name`: a migration file (the tables' DDL);
//! - `job NAME`: a job spec (TOML); the last job declared is the one queries run;
//! - `file PATH`: an input file;
//! - `rows TABLE PARTITION`: CSV rows (with a header) written as that partition of the
//!   table's physical version 1, the way its job would commit them;
//! - `partition KEY`: the partition the next queries run for.
//!
//! A query is the job's SQL; its rows are the fitted output (NULL for null). `query error`
//! matches what a run would report. To add a case, write the records and the expected rows.

use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::prelude::{CsvReadOptions, SessionContext};
use futures::StreamExt as _;
use sluice::config::{Overrides, Settings};
use sluice::delta::{self, CommitInfo, PartitionCommit, PartitionWriter};
use sluice::engine::fit::Fitter;
use sluice::engine::{self, Engine, PartitionQuery, UpstreamInput};
use sluice::job::Job;
use sluice::partition::{Granularity, PartitionKey};
use sluice::project::Project;
use sqllogictest::{DBOutput, DefaultColumnType};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CaseError(String);

fn err(e: impl std::fmt::Display) -> CaseError {
    CaseError(e.to_string())
}

/// One `.slt` file's project, in a temp folder.
struct Case {
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    /// The job queries run: the last one declared.
    job: Option<String>,
    key: Option<String>,
}

impl Case {
    fn new() -> Result<Case, CaseError> {
        let dir = tempfile::tempdir().map_err(err)?;
        for d in ["jobs", "migrations"] {
            std::fs::create_dir_all(dir.path().join(d)).map_err(err)?;
        }
        std::fs::write(
            dir.path().join("sluice.toml"),
            "[catalog]\nurl = \"sqlite://.sluice/catalog.db\"\n[warehouse]\nurl = \"./warehouse\"\n[engine]\nmemory_limit_mb = 256\ntarget_partitions = 1\n",
        )
        .map_err(err)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(err)?;
        Ok(Case {
            dir,
            runtime,
            job: None,
            key: None,
        })
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, text: &str) -> Result<(), CaseError> {
        let path = self.root().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        std::fs::write(path, format!("{text}\n")).map_err(err)
    }

    fn project(&self) -> Result<Project, CaseError> {
        let settings = Settings::load(&Overrides {
            project: Some(PathBuf::from(self.root())),
            catalog: None,
            warehouse: None,
            env: None,
        })
        .map_err(err)?;
        Ok(Project::load_with(settings))
    }

    fn directive(&mut self, head: &str, body: &str) -> Result<(), CaseError> {
        let words: Vec<&str> = head.split_whitespace().collect();
        match words.as_slice() {
            ["migration", name] => self.write(&format!("migrations/{name}.sql"), body),
            ["job", name] => {
                self.write(&format!("jobs/{name}.toml"), body)?;
                // Until a query gives it SQL: enough for the spec to load.
                let sql = format!("jobs/{name}.sql");
                if !self.root().join(&sql).exists() {
                    self.write(&sql, "SELECT 1 AS placeholder")?;
                }
                self.job = Some(name.to_string());
                Ok(())
            }
            ["file", path] => self.write(path, body),
            ["rows", table, partition] => {
                let (table, partition) = (table.to_string(), partition.to_string());
                let body = body.to_string();
                self.runtime
                    .block_on(async { self.commit_rows(&table, &partition, &body).await })
            }
            ["partition", key] => {
                self.key = Some(key.to_string());
                Ok(())
            }
            _ => Err(CaseError(format!(
                "unknown directive `{head}`: use migration, job, file, rows or partition"
            ))),
        }
    }

    /// The job that writes `table` and partition `partition` of it, parsed.
    fn writer_and_key(
        project: &Project,
        table: &str,
        partition: &str,
    ) -> Result<(Job, PartitionKey), CaseError> {
        let job = project
            .writer_of(table)
            .ok_or_else(|| CaseError(format!("no job writes `{table}`: declare it first")))?
            .clone();
        let key = job.parse_partition(partition).map_err(err)?;
        Ok((job, key))
    }

    /// Writes CSV rows as one partition of `table` v1, through the same writer and commit as
    /// a run.
    async fn commit_rows(&self, table: &str, partition: &str, csv: &str) -> Result<(), CaseError> {
        let project = self.project()?;
        let (job, key) = Self::writer_and_key(&project, table, partition)?;
        let schema = project
            .declared
            .get(table)
            .ok_or_else(|| CaseError(format!("no migration creates `{table}`")))?
            .clone();
        let file = self.root().join(format!("rows-{table}-{partition}.csv"));
        std::fs::write(&file, csv).map_err(err)?;
        let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').collect();
        let columns: Vec<_> = header
            .iter()
            .map(|h| {
                schema
                    .column(h.trim())
                    .cloned()
                    .ok_or_else(|| CaseError(format!("`{h}` is not a column of `{table}`")))
            })
            .collect::<Result<_, _>>()?;
        let csv_schema = engine::columns_schema(&columns);
        let ctx = SessionContext::new();
        let path = file.to_string_lossy().to_string();
        let batches = ctx
            .read_csv(&path, CsvReadOptions::new().schema(&csv_schema))
            .await
            .map_err(err)?
            .collect()
            .await
            .map_err(err)?;
        let url = sluice::warehouse::version_url(&project.settings.warehouse, &job.table, 1);
        let mut t = delta::ensure_table(&url, &schema).await.map_err(err)?;
        let mut fitter =
            Fitter::new(&job, &schema, &key, &csv_schema, |c| c.to_string()).map_err(err)?;
        let mut writer = PartitionWriter::new(&url, &t).map_err(err)?;
        for b in &batches {
            writer
                .write(fitter.fit(b).map_err(err)?.batch)
                .await
                .map_err(err)?;
        }
        let adds = writer.finish().await.map_err(err)?;
        let item = PartitionCommit {
            scope: sluice::run::partition_scope(&schema, &job, &key),
            adds,
            written_under: String::new(),
            info: CommitInfo {
                partition: key.to_string(),
                token: 1,
                run_id: "slt".into(),
                fingerprint: "slt".into(),
                job: job.name.to_string(),
            },
        };
        let results =
            delta::commit_partitions(&mut t, &[item], |_| async { delta::LeaseCheck::Held }).await;
        results.into_iter().next().unwrap_or(Ok(0)).map_err(err)?;
        Ok(())
    }

    /// Runs `sql` as the job's SQL for the current partition: the rows a run would write.
    async fn query(&self, sql: &str) -> Result<Vec<Vec<String>>, CaseError> {
        let name = self
            .job
            .clone()
            .ok_or_else(|| CaseError("no job declared before the query".into()))?;
        self.write(&format!("jobs/{name}.sql"), sql)?;
        let project = self.project()?;
        let job = project
            .job(&name)
            .map_err(|p| {
                CaseError(
                    p.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?
            .clone();
        let key = match (&self.key, job.granularity) {
            (_, Granularity::None) | (None, _) => PartitionKey::ALL,
            (Some(k), _) => job.parse_partition(k).map_err(err)?,
        };
        let mut upstream = Vec::new();
        for read in project.upstream_reads(&job, &key) {
            let up_schema = project
                .declared
                .get(read.table)
                .ok_or_else(|| CaseError(format!("no migration creates `{}`", read.table)))?;
            let url = sluice::warehouse::version_url(&project.settings.warehouse, read.table, 1);
            upstream.push(UpstreamInput {
                name: read.input.clone(),
                data: engine::UpstreamData::Delta(delta::open(&url).await.map_err(err)?),
                filter: engine::upstream_filter(&read, up_schema),
            });
        }
        let table = project
            .declared
            .get(&job.table)
            .ok_or_else(|| CaseError(format!("no migration creates `{}`", job.table)))?;
        let engine = Engine::new(&project.settings.engine, &project.settings.root).map_err(err)?;
        let query = PartitionQuery::new(&job, key, upstream);
        let prepared = engine.prepare(&query).await.map_err(err)?;
        let mut stream = engine::execute(prepared.df).await.map_err(err)?;
        let mut fitter = Fitter::new(&job, table, &key, &stream.schema(), |_| {
            "remove it from the SELECT, or add the column to the table with a migration".into()
        })
        .map_err(err)?;
        let mut rows = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| err(engine::execution_error(e)))?;
            let fitted = fitter.fit(&batch).map_err(err)?;
            rows.extend(cells(&fitted.batch)?);
            for r in fitted.rejected {
                rows.push(vec![format!("rejected line {}: {}", r.line, r.error)]);
            }
        }
        Ok(rows)
    }
}

fn cells(batch: &RecordBatch) -> Result<Vec<Vec<String>>, CaseError> {
    let fmt = FormatOptions::default().with_null("NULL");
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &fmt))
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok((0..batch.num_rows())
        .map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect())
        .collect())
}

impl sqllogictest::DB for Case {
    type Error = CaseError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, CaseError> {
        let (head, body) = sql.split_once('\n').unwrap_or((sql, ""));
        let directives = ["migration", "job", "file", "rows", "partition"];
        if directives.contains(&head.split_whitespace().next().unwrap_or_default()) {
            self.directive(head.trim(), body)?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let rows = self.runtime.block_on(self.query(sql))?;
        let width = rows.first().map_or(0, Vec::len);
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; width],
            rows,
        })
    }
}

/// Runs `tests/sql/<name>.slt`; a failure names the record and shows both results.
fn check(name: &str) {
    let path = Path::new(crate::util::REPO)
        .join("tests/sql")
        .join(format!("{name}.slt"));
    let mut tester = sqllogictest::Runner::new(|| async { Case::new() });
    if let Err(e) = tester.run_file(&path) {
        panic!("{}", e.display(false));
    }
}

#[test]
fn parameters_are_bound_per_partition() {
    check("parameters");
}

#[test]
fn output_is_conformed_and_widened_to_the_table() {
    check("conform");
}

#[test]
fn the_partition_column_is_filled_and_checked() {
    check("partition_column");
}

#[test]
fn record_ids_hash_the_key() {
    check("record_ids");
}

#[test]
fn upstream_tables_are_read_through_their_partition_filter() {
    check("upstream");
}
