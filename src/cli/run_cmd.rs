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
    cx.close().await;
    if g.output == output::Format::Json {
        println!("{}", output::json(&report));
    } else {
        match report.state {
            RunOutcome::Succeeded => println!(
                "{} {} v{} {}: {} rows, Delta version {}, run {} ({})",
                report.job,
                report.table,
                report.table_version,
                report.partition,
                output::opt(&report.rows),
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
    Ok(match report.state {
        RunOutcome::Succeeded => EXIT_OK,
        RunOutcome::Held | RunOutcome::DoneElsewhere => EXIT_HELD,
        RunOutcome::Failed => EXIT_FAILED,
    })
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
