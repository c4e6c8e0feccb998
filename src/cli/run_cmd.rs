//! `sluice run JOB --partition P`: one partition, now.

use super::{EXIT_FAILED, EXIT_HELD, EXIT_OK, EXIT_UNUSABLE, Globals, Outcome, output};
use crate::catalog::Catalog;
use crate::clock::SystemClock;
use crate::engine::Engine;
use crate::project::Project;
use crate::runner::{RunState, Runner, Trigger, holder_id};
use std::sync::Arc;

pub async fn runner(g: &Globals) -> anyhow::Result<Runner> {
    let project = Project::load(&g.overrides)?;
    crate::warehouse::check_atomic_commits(&project.settings).await?;
    let catalog = Catalog::connect(&project.settings.catalog_url).await?;
    let engine = Engine::new(&project.settings.engine, &project.settings.root)?;
    Ok(Runner::new(
        Arc::new(project),
        catalog,
        engine,
        Arc::new(SystemClock),
        holder_id(),
    ))
}

pub async fn run(g: &Globals, job_name: &str, partition: &str) -> Outcome {
    let runner = runner(g).await?;
    let project = runner.project();
    let job = match project.job(job_name) {
        Ok(j) => j.clone(),
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            return Ok(EXIT_UNUSABLE);
        }
    };
    let key = match job.granularity.parse_key(partition) {
        Ok(k) => k,
        Err(e) => {
            eprintln!(
                "error: --partition: {e} (job `{}` is partitioned {})",
                job.name, job.granularity
            );
            return Ok(EXIT_UNUSABLE);
        }
    };
    let report = runner.run_partition(&job, key, Trigger::Run).await;
    runner.catalog.close().await;
    if g.output == output::Format::Json {
        println!("{}", output::json(&report));
    } else {
        match report.state {
            RunState::Succeeded => println!(
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
            RunState::DoneElsewhere => println!(
                "{} {}: completed by another worker; nothing done",
                report.job, report.partition
            ),
            RunState::Held => println!(
                "{} {}: held by {}; nothing done",
                report.job,
                report.partition,
                output::opt(&report.held_by)
            ),
            RunState::Failed => eprintln!(
                "error: {} {} failed (run {}): {}",
                report.job,
                report.partition,
                output::opt(&report.run_id),
                report.error.as_deref().unwrap_or("unknown error")
            ),
        }
        if !report.bad_rows_skipped.is_empty() {
            println!(
                "skipped {} bad input row(s):",
                report.bad_rows_skipped.len()
            );
            for b in &report.bad_rows_skipped {
                println!("  {b}");
            }
        }
    }
    Ok(match report.state {
        RunState::Succeeded => EXIT_OK,
        RunState::Held | RunState::DoneElsewhere => EXIT_HELD,
        RunState::Failed => EXIT_FAILED,
    })
}
