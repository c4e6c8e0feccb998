//! `sluice test`: runs the jobs' tests (`job_tests`) in-process and prints a diff per
//! failure; `--junit` writes the report CI reads, `--update` writes actual rows as
//! expected, `--create` writes a new test from the live tables.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};
use crate::engine::PartitionQuery;
use crate::job_tests::junit::{self, CaseReport, Verdict};
use crate::job_tests::suite;
use anyhow::{Context as _, anyhow};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these jobs' tests.
    jobs: Vec<String>,
    /// Also write a JUnit XML report to PATH.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Write each failing test's actual output as its expected rows (then review it).
    #[arg(long)]
    update: bool,
    /// Write a new test of JOB from the live tables: a sample of the partition's input
    /// rows and the output the current code makes of them.
    #[arg(long, value_name = "JOB", requires = "partition", conflicts_with_all = ["jobs", "update"])]
    create: Option<String>,
    /// The partition --create samples.
    #[arg(long, short, requires = "create")]
    partition: Option<String>,
    /// Input rows --create samples per input.
    #[arg(long, default_value_t = 20, requires = "create")]
    rows: usize,
    /// The created test's name [default: sampled_PARTITION].
    #[arg(long, requires = "create")]
    name: Option<String>,
}

pub async fn run(g: &Globals, args: Args) -> Outcome {
    match (&args.create, &args.partition) {
        (Some(job), Some(partition)) => {
            create(g, job, partition, args.rows, args.name.clone()).await
        }
        _ => run_tests(g, args).await,
    }
}

async fn run_tests(g: &Globals, args: Args) -> Outcome {
    let project = Context::load_project(&g.overrides)?;
    for j in &args.jobs {
        project.knows_job(j).map_err(|unknown| anyhow!(unknown))?;
    }
    let engine = Context::engine_of(&project)?;
    let mut ran = suite::run(&project, &engine, &args.jobs).await?;
    if args.update {
        let updated = suite::update(&ran)?;
        if updated > 0 {
            eprintln!(
                "updated the expected rows of {updated} test(s); review the change before committing it"
            );
            // What the files say now, run again: what is left failing is not about rows.
            let project = Context::load_project(&g.overrides)?;
            ran = suite::run(&project, &engine, &args.jobs).await?;
        }
    }
    if let Some(path) = &args.junit {
        junit::write(path, &ran.reports)
            .with_context(|| format!("cannot write the JUnit report to {}", path.display()))?;
    }
    print(g, &ran.reports);
    Ok(if ran.all_passed() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
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

/// `sluice test --create JOB --partition P`: a new test from the live tables (see
/// [`suite::create`]).
async fn create(
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
    let upstream = ctx.runner()?.resolve_upstream(job, &key).await?;
    let engine = ctx.engine()?;
    ctx.close().await;
    let query = PartitionQuery::new(job, key, upstream);
    let created = suite::create(&engine, &project, query, rows, name).await?;
    println!(
        "wrote test `{}` to {}: {} input row(s) sampled, {} output row(s) expected",
        created.name, created.file, created.sampled_rows, created.expected_rows
    );
    Ok(EXIT_OK)
}
