//! `sluice run JOB --partition P`: one partition, now.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_HELD, EXIT_OK, EXIT_UNUSABLE, Globals, Outcome, output};
use crate::job::Job;
use crate::partition::PartitionKey;
use crate::project::Project;
use crate::run::{RunOutcome, Trigger};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job (its spec is jobs/JOB.toml).
    job: String,
    /// The partition: YYYY-MM-DD (daily), YYYY-MM (monthly), YYYY-MM-DDTHH (hourly), all.
    #[arg(long, short)]
    partition: String,
    /// Then rerun the downstream partitions this run made stale (those that read this
    /// partition), and what those make stale, in dependency order.
    #[arg(long)]
    downstream: bool,
}

pub async fn run(g: &Globals, args: Args) -> Outcome {
    let (job_name, partition) = (args.job.as_str(), args.partition.as_str());
    let cx = Context::open_for_writing(&g.overrides).await?;
    let runner = cx.runner()?;
    let project = cx.project.clone();
    let (job, key) = match job_and_partition(&project, job_name, partition) {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let report = runner
        .run(crate::run::RunRequest::new(&job, key, Trigger::Run))
        .await;
    let written = vec![(job.name.clone(), key)];
    let (stale, downstream) = match report.state {
        RunOutcome::Succeeded if args.downstream => (
            Vec::new(),
            crate::app::downstream::rerun_downstream(&runner, &cx.catalog, written).await?,
        ),
        RunOutcome::Succeeded => (
            crate::app::downstream::made_stale_by(&project, &cx.catalog, &written).await?,
            Vec::new(),
        ),
        _ => (Vec::new(), Vec::new()),
    };
    cx.deliver_now().await;
    cx.close().await;
    let stale_shown: Vec<String> = stale
        .iter()
        .map(|s| format!("{} {}", s.job.name, s.key))
        .collect();
    if g.output == output::Format::Json {
        let mut v = serde_json::to_value(&report)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("made_stale".into(), serde_json::json!(stale_shown));
            o.insert("downstream".into(), serde_json::to_value(&downstream)?);
        }
        println!("{}", output::json(&v));
    } else {
        say(&report);
        if !stale_shown.is_empty() {
            println!(
                "made stale downstream ({}): {}; rerun them with `--downstream`, or `sluice backfill --stale`; a daemon reruns them",
                stale_shown.len(),
                crate::text::shorten(&stale_shown, 10)
            );
        }
        for d in &downstream {
            say(d);
        }
    }
    let state = downstream
        .iter()
        .find(|d| d.state == RunOutcome::Failed)
        .map_or(report.state, |d| d.state);
    Ok(match state {
        RunOutcome::Succeeded => EXIT_OK,
        RunOutcome::Held | RunOutcome::DoneElsewhere => EXIT_HELD,
        RunOutcome::Failed => EXIT_FAILED,
    })
}

/// One run's outcome, as a line (and its bad rows).
fn say(report: &crate::run::RunReport) {
    {
        match report.state {
            RunOutcome::Succeeded => println!(
                "{} {}: {} rows written to {} v{}, Delta version {}, run {} ({})",
                report.job,
                report.partition,
                output::opt(&report.rows),
                report.table,
                report.table_version,
                output::opt(&report.delta_version),
                output::opt(&report.run_id),
                output::duration(Some(0), Some(report.duration_ms as i64)),
            ),
            RunOutcome::DoneElsewhere => println!(
                "{} {}: completed by another worker; nothing done",
                report.job, report.partition
            ),
            RunOutcome::Held => println!(
                "{} {}: held by {}; nothing done",
                report.job,
                report.partition,
                output::opt(&report.held_by)
            ),
            RunOutcome::Failed => eprintln!(
                "error: {} {} failed (run {}): {}",
                report.job,
                report.partition,
                output::opt(&report.run_id),
                report.error.as_deref().unwrap_or("unknown error")
            ),
        }
        if report.bad_rows_skipped_total > 0 {
            println!(
                "skipped {} bad input row(s):",
                report.bad_rows_skipped_total
            );
            for b in &report.bad_rows_skipped {
                println!("  {b}");
            }
            let more = report.bad_rows_skipped_total - report.bad_rows_skipped.len() as u64;
            if more > 0 {
                println!(
                    "  and {more} more: `sluice dlq list {} --partition {}`",
                    report.job, report.partition
                );
            }
        }
    }
}

/// The job named on the command line and its partition parsed per its granularity; on a
/// problem, says what is wrong on stderr and gives the exit code.
pub(super) fn job_and_partition(
    project: &Project,
    job_name: &str,
    partition: &str,
) -> Result<(Job, PartitionKey), u8> {
    use crate::app::partition::{self, PartitionError};
    match partition::declared(project, job_name, partition) {
        Ok(found) => Ok(found),
        Err(PartitionError::Job(problems)) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            Err(EXIT_UNUSABLE)
        }
        Err(e @ PartitionError::Unparsable { .. }) => {
            eprintln!("error: --partition: {e}");
            Err(EXIT_UNUSABLE)
        }
        Err(e @ PartitionError::Undeclared { .. }) => {
            eprintln!("error: --partition {e}");
            Err(EXIT_UNUSABLE)
        }
    }
}

/// The job named on the command line; on a problem, says what is wrong on stderr and gives
/// the exit code.
pub(super) fn job_named(project: &Project, job_name: &str) -> Result<Job, u8> {
    match project.job(job_name) {
        Ok(j) => Ok(j.clone()),
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            Err(EXIT_UNUSABLE)
        }
    }
}
