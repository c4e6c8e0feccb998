//! The daemon's share of telling people: at each poll it claims the notifications due (the
//! outbox, `catalog::outbox`), sends each to its target (`notify::send`) and records how it
//! went. A failure worth a retry is retried with growing waits for an hour from the event,
//! then given up (counted in `/metrics`); a daemon that dies mid-delivery leaves its claim to
//! lapse, and another sends the event again with the same id.

use crate::catalog::{Catalog, Claimed, Settled};
use crate::notify::{self, NotifyTarget, PAYLOAD_VERSION, Payload};
use crate::project::Project;
use tracing::{info, warn};

/// How long a claim holds: longer than one delivery may take.
const CLAIM_MS: i64 = 60_000;
/// At most this many deliveries per poll.
const PER_POLL: i64 = 32;
/// How long a delivery is retried, from its event.
pub const RETRY_WINDOW_MS: i64 = 3_600_000;

/// The wait before try `attempt + 1`: 5 s, doubling, at most 5 minutes.
fn backoff_ms(attempt: i64) -> i64 {
    let doublings = attempt.clamp(1, 7) - 1;
    (5_000i64 << doublings).min(300_000)
}

/// The payload of a claimed event, as `project` says it now (its name, its pages' address).
fn payload_of(project: &Project, c: &Claimed) -> Payload {
    let e = &c.event;
    let link = project.settings.ui.public_url.as_ref().map(|base| {
        match (&e.job, &e.partition_key) {
            (Some(j), Some(p)) => base.join(&format!("jobs/{j}/partitions/{p}")),
            _ => Ok(base.clone()),
        }
        .map(|u| u.to_string())
        .unwrap_or_else(|_| base.to_string())
    });
    Payload {
        version: PAYLOAD_VERSION,
        id: e.id.clone(),
        event: e.kind.as_str().to_string(),
        job: e.job.clone(),
        partition: e.partition_key.clone(),
        run_id: e.run_id.clone(),
        error: e.error.clone(),
        at: crate::clock::rfc3339(e.created_at),
        link,
        project: project.settings.project_name(),
    }
}

/// Sends one claimed delivery; how it went.
async fn deliver(
    client: &reqwest::Client,
    targets: &[NotifyTarget],
    project: &Project,
    c: &Claimed,
    now_ms: i64,
) -> Settled {
    let Some(target) = targets.iter().find(|t| t.name == c.target) else {
        return Settled::GiveUp(format!(
            "sluice.toml has no [[notify]] target `{}` any more",
            c.target
        ));
    };
    match notify::send(client, target, &payload_of(project, c)).await {
        Ok(()) => Settled::Delivered,
        Err(e) if e.transient && now_ms - c.event.created_at < RETRY_WINDOW_MS => {
            Settled::RetryAt(now_ms + backoff_ms(c.attempt), e.message)
        }
        Err(e) => Settled::GiveUp(e.message),
    }
}

/// Claims the deliveries due now, sends them (at once), records each outcome.
pub(super) async fn deliver_due(
    catalog: &Catalog,
    client: &reqwest::Client,
    project: &Project,
    holder: &str,
    now_ms: i64,
) -> Result<(), crate::catalog::CatalogError> {
    let claimed = catalog
        .claim_deliveries(holder, now_ms, now_ms + CLAIM_MS, PER_POLL)
        .await?;
    let targets = &project.settings.notify;
    let outcomes = futures::future::join_all(
        claimed
            .iter()
            .map(|c| deliver(client, targets, project, c, now_ms)),
    )
    .await;
    for (c, how) in claimed.iter().zip(outcomes) {
        let e = &c.event;
        match &how {
            Settled::Delivered => {
                info!(event = %e.kind, id = %e.id, target = %c.target, "notification delivered")
            }
            Settled::RetryAt(_, why) => {
                warn!(event = %e.kind, id = %e.id, target = %c.target, attempt = c.attempt, error = %why, "notification not delivered; retrying")
            }
            Settled::GiveUp(why) => {
                warn!(event = %e.kind, id = %e.id, target = %c.target, attempt = c.attempt, error = %why, "notification given up")
            }
        }
        catalog.settle_delivery(c, holder, now_ms, &how).await?;
    }
    Ok(())
}
