//! The suite `sluice test` runs: every test of the project (or of some jobs), each judged,
//! with what `--update` writes back; and `--create`, a new test sampled from the live
//! tables. Front doors print the reports; the rules are here.

use super::error::JobTestError;
use super::junit::{CaseReport, Verdict};
use super::write_back::{self, Update};
use super::{TestFile, execute};
use crate::engine::{Engine, PartitionQuery};
use crate::names::Name;
use crate::partition::PartitionKey;
use crate::project::Project;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use std::time::Instant;

/// The reports of a suite's run, and what `--update` needs of each test.
pub struct SuiteRun {
    pub reports: Vec<CaseReport>,
    runs: Vec<Ran>,
}

impl SuiteRun {
    pub fn all_passed(&self) -> bool {
        self.reports
            .iter()
            .all(|r| matches!(r.verdict, Verdict::Passed))
    }
}

/// One test's run, kept for `--update`.
struct Ran {
    file: TestFile,
    index: usize,
    output: Option<RecordBatch>,
    failed: bool,
}

/// Runs the tests of the jobs named in `only` (every job's when empty), in file order; a
/// file or test that cannot be read is a report of its own.
pub async fn run(
    project: &Project,
    engine: &Engine,
    only: &[String],
) -> Result<SuiteRun, JobTestError> {
    let (files, problems) = super::load(project);
    let in_file = |file: &str, name: &str| file.ends_with(&format!("/{name}.toml"));
    for name in only {
        let known = files.iter().any(|f| f.job.as_str() == name)
            || problems.iter().any(|p| in_file(&p.file, name));
        if !known {
            return Err(JobTestError::NoTests(name.clone()));
        }
    }
    let mut reports: Vec<CaseReport> = problems
        .iter()
        .filter(|p| only.is_empty() || only.iter().any(|n| in_file(&p.file, n)))
        .map(|p| CaseReport {
            job: String::new(),
            name: "(test file)".into(),
            file: p.file.clone(),
            seconds: 0.0,
            verdict: Verdict::Broken(p.message.clone()),
        })
        .collect();
    let mut runs = Vec::new();
    for file in files {
        if !only.is_empty() && !only.iter().any(|n| n == file.job.as_str()) {
            continue;
        }
        for test in &file.tests {
            let started = Instant::now();
            let ran = execute::run(engine, project, &file, test).await;
            let job = &project.jobs[&file.job];
            let (verdict, output) = match ran {
                Ok(actual) => match super::compare::judge(test, job, &actual) {
                    Ok(lines) if lines.is_empty() => (Verdict::Passed, actual.output),
                    Ok(lines) => (Verdict::Failed(lines), actual.output),
                    Err(e) => (Verdict::Broken(e.to_string()), None),
                },
                Err(e) => (Verdict::Broken(e.to_string()), None),
            };
            runs.push(Ran {
                file: file.clone(),
                index: test.index,
                output,
                failed: !matches!(verdict, Verdict::Passed),
            });
            reports.push(CaseReport {
                job: file.job.to_string(),
                name: test.name.clone(),
                file: file.shown.clone(),
                seconds: started.elapsed().as_secs_f64(),
                verdict,
            });
        }
    }
    Ok(SuiteRun { reports, runs })
}

/// Writes each failed test's actual rows as its expected rows, one edit per file; returns
/// how many tests were updated. A test that expects an error has no rows to update.
pub fn update(run: &SuiteRun) -> Result<usize, JobTestError> {
    let mut count = 0;
    let mut files: Vec<&TestFile> = Vec::new();
    for r in &run.runs {
        if !files.iter().any(|f| f.path == r.file.path) {
            files.push(&r.file);
        }
    }
    for file in files {
        let updates: Vec<Update<'_>> = run
            .runs
            .iter()
            .filter(|r| r.file.path == file.path && r.failed)
            .filter_map(|r| {
                let test = file.tests.iter().find(|t| t.index == r.index)?;
                if test.expect.error.is_some() {
                    return None;
                }
                Some(Update {
                    test,
                    output: Some(r.output.as_ref()?),
                    dead_letters: Vec::new(),
                    failing_checks: Vec::new(),
                    error: None,
                })
            })
            .collect();
        if updates.is_empty() {
            continue;
        }
        write_back::update(file, &updates)?;
        count += updates.len();
    }
    Ok(count)
}

/// What `create` wrote.
pub struct Created {
    pub name: String,
    /// The test file, relative to the project.
    pub file: String,
    pub sampled_rows: usize,
    pub expected_rows: usize,
}

/// A new test of `job` for `key`: the first `rows` rows of each input (read through
/// `upstream`, as a run would), and the output the job's current code makes of them as
/// what the test expects. Named `name`, or `sampled_<key>` (with a number when taken).
pub async fn create(
    engine: &Engine,
    project: &Project,
    query: PartitionQuery<'_>,
    rows: usize,
    name: Option<String>,
) -> Result<Created, JobTestError> {
    let (job, key) = (query.job, query.key);
    let samples = sample(engine, query, rows, &project.settings.root).await?;
    let path = super::tests_dir(project).join(format!("{}.toml", job.name));
    let name = free_name(project, &path, name, &key)?;
    let inputs: Vec<(String, RecordBatch)> = samples
        .into_iter()
        .map(|(n, schema, batches)| {
            deltalake::arrow::compute::concat_batches(&schema, &batches).map(|b| (n.to_string(), b))
        })
        .collect::<Result<_, _>>()?;
    write_back::append(&path, &name, &key, &inputs)?;
    // Run it as `sluice test` will, and write what it produced as what it expects.
    let (files, problems) = super::load(project);
    let file = files
        .iter()
        .find(|f| f.path == path)
        .ok_or_else(|| JobTestError::DoesNotLoad(crate::text::shorten(&problems, 3)))?;
    let test = file
        .tests
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| JobTestError::Gone {
            test: name.clone(),
            file: file.shown.clone(),
        })?;
    let actual = execute::run(engine, project, file, test).await?;
    let update = Update {
        test,
        output: actual.output.as_ref(),
        dead_letters: actual
            .dead_letters
            .iter()
            .map(|d| (d.input.clone(), d.line))
            .collect(),
        failing_checks: actual
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.clone())
            .collect(),
        error: match (&actual.error, &actual.blocked_by) {
            (Some(e), None) => Some(e.clone()),
            _ => None,
        },
    };
    write_back::update(file, &[update])?;
    Ok(Created {
        name,
        file: file.shown.clone(),
        sampled_rows: inputs.iter().map(|(_, b)| b.num_rows()).sum(),
        expected_rows: actual.output.as_ref().map_or(0, |o| o.num_rows()),
    })
}

/// `name`, refused when the file already has a test of that name; else the first free
/// `sampled_<key>`, `sampled_<key>_2`, ...
fn free_name(
    project: &Project,
    path: &std::path::Path,
    name: Option<String>,
    key: &PartitionKey,
) -> Result<String, JobTestError> {
    let (existing, _) = super::load(project);
    let taken = |n: &str| {
        existing
            .iter()
            .any(|f| f.path == path && f.tests.iter().any(|t| t.name == n))
    };
    let name = name.unwrap_or_else(|| {
        let base = format!("sampled_{key}");
        let mut n = base.clone();
        let mut i = 2;
        while taken(&n) {
            n = format!("{base}_{i}");
            i += 1;
        }
        n
    });
    if taken(&name) {
        return Err(JobTestError::NameTaken {
            path: path.to_path_buf(),
            name,
        });
    }
    Ok(name)
}

/// The first `rows` rows of each of the partition's inputs; unusable rows are left out of
/// the sample, as `bad_rows = "skip"` would.
async fn sample(
    engine: &Engine,
    mut query: PartitionQuery<'_>,
    rows: usize,
    root: &std::path::Path,
) -> Result<Vec<(Name, SchemaRef, Vec<RecordBatch>)>, JobTestError> {
    match engine.sample_inputs(&query, rows).await {
        Ok(s) => Ok(s),
        Err((e, text_files)) => {
            let bad = Engine::find_bad_rows(&text_files, root)?;
            if bad.is_empty() {
                return Err(e.into());
            }
            query.without_bad_rows = Some(bad);
            engine
                .sample_inputs(&query, rows)
                .await
                .map_err(|(e, _)| e.into())
        }
    }
}
