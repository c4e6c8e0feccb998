//! Shadow runs: the live version keeps getting new partitions while a new version is built.

use crate::catalog::{Catalog, PartitionState};
use crate::job::Job;
use crate::partition::PartitionKey;
use crate::run::{RunReport, Runner, Trigger};
use tracing::warn;

/// Shadow runs: while the spec's version is not the live one (a new version being built
/// beside it, not promoted yet), the live version keeps getting new partitions, written by
/// the code that last wrote it, so consumers reading the alias miss nothing. Runs before
/// the new version's partition; does nothing when the live partition is already complete.
pub(super) async fn shadow_live_version(
    runner: &Runner,
    catalog: &Catalog,
    job: &Job,
    key: PartitionKey,
    queued_ms: i64,
) -> Option<RunReport> {
    let live = catalog.alias(job.table.as_str()).await.ok().flatten()?;
    let live = u32::try_from(live).ok()?;
    if live == job.version {
        return None;
    }
    let done = catalog
        .partition_status(job.table.as_str(), i64::from(live), &key.to_string())
        .await
        .ok()
        .flatten()
        .is_some_and(|p| p.state == PartitionState::Complete);
    if done {
        return None;
    }
    match runner.job_at_version(job, live).await {
        Ok(Some(live_job)) => Some(
            runner
                .run(
                    crate::run::RunRequest::new(&live_job, key, Trigger::Daemon)
                        .unless_done_since(Some(queued_ms)),
                )
                .await,
        ),
        Ok(None) => {
            warn!(job = %job.name, partition = %key, live_version = live, "no recorded code for the live version; only the new version is written");
            None
        }
        Err(e) => {
            warn!(job = %job.name, partition = %key, live_version = live, error = %e, "cannot run the live version beside the new one");
            None
        }
    }
}
