//! `sluice test`: runs the jobs' tests (`job_tests`) in-process and prints a diff per
//! failure; `--junit` writes the report CI reads, `--update` writes actual rows as
//! expected, `--create` writes a new test from the live tables.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};
use crate::engine::{Engine, PartitionQuery};
use crate::job_tests::junit::{self, CaseReport, Verdict};
use crate::job_tests::write_back::{self, Update};
use crate::job_tests::{self, TestFile, execute};
use crate::project::Project;
use anyhow::{Context as _, anyhow};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use std::path::PathBuf;
use std::time::Instant;

pub struct Args {
    pub jobs: Vec<String>,
    pub junit: Option<PathBuf>,
    pub update: bool,
}

pub async fn run(g: &Globals, args: Args) -> Outcome {
    let project = Context::load_project(&g.overrides)?;
    let engine = Context::engine_of(&project)?;
    let (mut reports, runs) = run_all(&project, &engine, &args.jobs).await?;
    if args.update {
        let updated = write_updates(&runs)?;
        if updated > 0 {
            eprintln!(
                "updated the expected rows of {updated} test(s); review the change before committing it"
            );
            // What the files say now, run again: what is left failing is not about rows.
            let project = Context::load_project(&g.overrides)?;
            reports = run_all(&project, &engine, &args.jobs).await?.0;
        }
    }
    if let Some(path) = &args.junit {
        junit::write(path, &reports)
            .with_context(|| format!("cannot write the JUnit report to {}", path.display()))?;
    }
    print(g, &reports);
    let all_passed = reports.iter().all(|r| matches!(r.verdict, Verdict::Passed));
    Ok(if all_passed { EXIT_OK } else { EXIT_FAILED })
}

/// One test's run, kept for `--update`.
struct Ran {
    file: TestFile,
    index: usize,
    output: Option<RecordBatch>,
    failed: bool,
}

async fn run_all(
    project: &Project,
    engine: &Engine,
    only: &[String],
) -> anyhow::Result<(Vec<CaseReport>, Vec<Ran>)> {
    let (files, problems) = job_tests::load(project);
    for name in only {
        let known = files.iter().any(|f| f.job.as_str() == name)
            || problems
                .iter()
                .any(|p| p.file.ends_with(&format!("/{name}.toml")));
        if !known {
            return Err(anyhow!(
                "no tests of job `{name}`: write them in jobs/tests/{name}.toml, or create one with `sluice test --create {name} --partition P`"
            ));
        }
    }
    let mut reports: Vec<CaseReport> = problems
        .iter()
        .filter(|p| only.is_empty() || only.iter().any(|n| p.file.ends_with(&format!("/{n}.toml"))))
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
                Ok(actual) => match job_tests::compare::judge(test, job, &actual) {
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
    Ok((reports, runs))
}

/// Writes each failed test's actual rows as its expected rows; returns how many.
fn write_updates(runs: &[Ran]) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut files: Vec<&TestFile> = Vec::new();
    for r in runs {
        if !files.iter().any(|f| f.path == r.file.path) {
            files.push(&r.file);
        }
    }
    for file in files {
        let updates: Vec<Update<'_>> = runs
            .iter()
            .filter(|r| r.file.path == file.path && r.failed)
            .filter_map(|r| {
                let test = file.tests.iter().find(|t| t.index == r.index)?;
                // A test that expects an error has no rows to update.
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
        write_back::update(file, &updates).map_err(|m| anyhow!(m))?;
        count += updates.len();
    }
    Ok(count)
}

fn print(g: &Globals, reports: &[CaseReport]) {
    let passed = reports
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Passed))
        .count();
    let seconds: f64 = reports.iter().map(|r| r.seconds).sum();
    if g.output == output::Format::Json {
        let tests: Vec<_> = reports
            .iter()
            .map(|r| {
                let (state, lines) = match &r.verdict {
                    Verdict::Passed => ("passed", Vec::new()),
                    Verdict::Failed(l) => ("failed", l.clone()),
                    Verdict::Broken(m) => ("error", vec![m.clone()]),
                };
                serde_json::json!({
                    "job": r.job, "test": r.name, "file": r.file, "state": state,
                    "seconds": r.seconds, "failures": lines,
                })
            })
            .collect();
        println!(
            "{}",
            output::json(&serde_json::json!({
                "passed": passed,
                "failed": reports.len() - passed,
                "tests": tests,
            }))
        );
        return;
    }
    for r in reports {
        let what = if r.job.is_empty() {
            r.file.clone()
        } else {
            format!("{} / {}", r.job, r.name)
        };
        let ms = (r.seconds * 1000.0).round();
        match &r.verdict {
            Verdict::Passed => println!("ok    {what} ({ms} ms)"),
            Verdict::Failed(lines) => {
                println!("FAIL  {what} ({})", r.file);
                for l in lines {
                    println!("      {l}");
                }
            }
            Verdict::Broken(m) if r.job.is_empty() => println!("ERROR {what}: {m}"),
            Verdict::Broken(m) => println!("ERROR {what} ({}): {m}", r.file),
        }
    }
    println!(
        "{passed} passed, {} failed, in {:.2} s",
        reports.len() - passed,
        seconds
    );
}

/// The first `rows` rows of each of the partition's inputs; unusable rows are left out of
/// the sample, as `bad_rows = "skip"` would.
async fn sample(
    engine: &Engine,
    mut query: PartitionQuery<'_>,
    rows: usize,
    root: &std::path::Path,
) -> anyhow::Result<Vec<(crate::names::Name, SchemaRef, Vec<RecordBatch>)>> {
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
                .map_err(|(e, _)| anyhow::Error::from(e))
        }
    }
}

/// `sluice test --create JOB --partition P`: a new test from the live tables: the first
/// `rows` rows of each input for the partition, and the output the job's current code
/// makes of them.
pub async fn create(
    g: &Globals,
    job_name: &str,
    partition: &str,
    rows: usize,
    name: Option<String>,
) -> Outcome {
    let ctx = Context::open(&g.overrides).await?;
    let project = ctx.project.clone();
    let job = project
        .job(job_name)
        .map_err(|errs| anyhow!(crate::text::shorten(&errs, 3)))?;
    let key = job.parse_partition(partition)?;
    let runner = ctx.runner()?;
    let upstream = runner.resolve_upstream(job, &key).await?;
    let engine = ctx.engine()?;
    let query = PartitionQuery::new(job, key, upstream);
    let samples = sample(&engine, query, rows, &project.settings.root).await?;
    ctx.close().await;
    let path = job_tests::tests_dir(&project).join(format!("{}.toml", job.name));
    let (existing, _) = job_tests::load(&project);
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
        return Err(anyhow!("{} already has a test `{name}`", path.display()));
    }
    let inputs: Vec<(String, _)> = samples
        .into_iter()
        .map(|(n, schema, batches)| {
            deltalake::arrow::compute::concat_batches(&schema, &batches).map(|b| (n.to_string(), b))
        })
        .collect::<Result<_, _>>()?;
    write_back::append(&path, &name, &key, &inputs).map_err(|m| anyhow!(m))?;
    // Run it as `sluice test` will, and write what it produced as what it expects.
    let (files, problems) = job_tests::load(&project);
    let file = files.iter().find(|f| f.path == path).ok_or_else(|| {
        anyhow!(
            "the new test does not load: {}",
            crate::text::shorten(&problems, 3)
        )
    })?;
    let test = file
        .tests
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| anyhow!("the new test `{name}` is not in {}", file.shown))?;
    let actual = execute::run(&engine, &project, file, test)
        .await
        .map_err(|m| anyhow!(m))?;
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
    write_back::update(file, &[update]).map_err(|m| anyhow!(m))?;
    let produced = actual.output.as_ref().map_or(0, |o| o.num_rows());
    println!(
        "wrote test `{name}` to {}: {} input row(s) sampled, {produced} output row(s) expected",
        file.shown,
        inputs.iter().map(|(_, b)| b.num_rows()).sum::<usize>()
    );
    Ok(EXIT_OK)
}
