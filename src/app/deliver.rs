//! Sending what the outbox holds: the deliveries folded into messages as each target's
//! window allows (`catalog::messages`), the messages due claimed, each sent to its target
//! (`notify::send`) and how it went recorded. A failure worth a retry is retried with
//! growing waits for an hour from when the message was formed, then given up (counted in
//! `/metrics`); a process that dies mid-delivery leaves its claim to lapse, and another
//! sends the message again with the same id. Any process may make a pass: the daemon's
//! delivery task, and a `run` or `backfill` at its end (so that its own news leaves at
//! once, daemon or not; what fails is retried by a daemon).

use crate::catalog::{Catalog, Claimed, Settled, Window};
use crate::clock::Clock;
use crate::notify::{self, NotifyTarget, PAYLOAD_VERSION, Payload};
use crate::project::Project;
use tracing::{info, warn};

/// How long a claim holds: longer than one delivery may take.
const CLAIM_MS: i64 = 60_000;
/// Tries to record one message's outcome, about 6 s of waits between the first and last.
const SETTLE_TRIES: u32 = 5;
/// At most this many messages per pass.
const PER_PASS: i64 = 32;
/// How long a message is retried, from when it was formed.
pub const RETRY_WINDOW_MS: i64 = 3_600_000;
/// The wait before try `attempt + 1`: `first`, doubling, at most 64 times `first` and at
/// most 5 minutes.
fn backoff_ms(first_ms: i64, attempt: i64) -> i64 {
    let doublings = attempt.clamp(1, 7) - 1;
    (first_ms << doublings).min(300_000)
}

/// The wait before a failed message's first retry: 5 s, or `SLUICE_NOTIFY_RETRY_MS` (for
/// tests of an outage that must not take an hour to be over).
fn first_backoff_ms() -> i64 {
    std::env::var("SLUICE_NOTIFY_RETRY_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|&ms| ms > 0)
        .unwrap_or(5_000)
}

/// The payload of a claimed message, as `project` says it now (its name, its pages'
/// address): its one event, or a digest of its events.
fn payload_of(project: &Project, c: &Claimed) -> Payload {
    let base = project.settings.ui.public_url.as_ref();
    let page = |path: String| {
        base.map(|b| {
            b.join(&path)
                .map(|u| u.to_string())
                .unwrap_or_else(|_| b.to_string())
        })
    };
    let mut each: Vec<Payload> = c
        .events
        .iter()
        .map(|e| Payload {
            version: PAYLOAD_VERSION,
            id: e.id.clone(),
            event: e.kind.as_str().to_string(),
            job: e.job.clone(),
            partition: e.partition_key.clone(),
            run_id: e.run_id.clone(),
            error: e.error.clone(),
            at: crate::clock::rfc3339(e.created_at),
            link: match (&e.job, &e.partition_key) {
                (Some(j), Some(p)) => page(format!("jobs/{j}/partitions/{p}")),
                // A backfill's summary of one job: its page.
                (Some(j), None) => page(format!("jobs/{j}")),
                _ => page(String::new()),
            },
            project: project.settings.project_name(),
            events: Vec::new(),
            summary: None,
        })
        .collect();
    match (&c.job, each.len()) {
        (Some(job), n) if n > 1 => {
            let at = each[n - 1].at.clone();
            let mut digest = Payload::digest(c.message_id.clone(), job, each, at);
            digest.link = page(format!("jobs/{job}"));
            digest
        }
        _ => each.pop().unwrap_or_else(|| Payload {
            // A message whose events are gone (a catalog pruned by hand): said as such.
            error: Some("the events of this message are no longer in the catalog".into()),
            ..Payload::test(&project.settings.project_name(), 0, None)
        }),
    }
}

/// Sends one claimed message as `payload`; how it went.
async fn deliver(
    client: &reqwest::Client,
    targets: &[NotifyTarget],
    c: &Claimed,
    payload: &Payload,
    now_ms: i64,
) -> Settled {
    let Some(target) = targets.iter().find(|t| t.name == c.target) else {
        return Settled::GiveUp(format!(
            "sluice.toml has no [[notify]] target `{}` any more",
            c.target
        ));
    };
    let sent = notify::send(client, target, payload).await;
    crate::failpoint::pause_if_set("notify_after_send").await;
    match sent {
        Ok(()) => Settled::Delivered,
        Err(e) if e.transient && now_ms - c.formed_at < RETRY_WINDOW_MS => Settled::RetryAt(
            now_ms + backoff_ms(first_backoff_ms(), c.attempt),
            e.message,
        ),
        Err(e) => Settled::GiveUp(e.message),
    }
}

/// Forms the messages the windows allow, claims those due, sends them (at once), records
/// each outcome. The time is read at each step from `clock`: a claim runs from when it is
/// made, not from the pass's start (forming may wait on the catalog's lock), so that it
/// outlasts the sends it covers.
pub async fn deliver_due(
    catalog: &Catalog,
    client: &reqwest::Client,
    project: &Project,
    holder: &str,
    clock: &dyn Clock,
) -> Result<(), crate::catalog::CatalogError> {
    let targets = &project.settings.notify;
    if !catalog.has_undelivered().await? {
        return Ok(());
    }
    let windows: Vec<Window> = targets
        .iter()
        .map(|t| Window {
            target: t.name.clone(),
            every_ms: t.at_most_every.as_millis() as i64,
        })
        .collect();
    catalog.form_messages(&windows, clock.now_ms()).await?;
    let now_ms = clock.now_ms();
    let claimed = catalog
        .claim_messages(holder, now_ms, now_ms + CLAIM_MS, PER_PASS)
        .await?;
    let payloads: Vec<Payload> = claimed.iter().map(|c| payload_of(project, c)).collect();
    let outcomes = futures::future::join_all(
        claimed
            .iter()
            .zip(&payloads)
            .map(|(c, payload)| deliver(client, targets, c, payload, now_ms)),
    )
    .await;
    for ((c, how), payload) in claimed.iter().zip(outcomes).zip(&payloads) {
        let (id, events, target) = (&c.message_id, c.events.len(), &c.target);
        // `delivery` is what the receiver sees (X-Sluice-Delivery), to match its logs.
        let delivery = &payload.id;
        match &how {
            Settled::Delivered => {
                info!(%id, %delivery, events, %target, "notification delivered")
            }
            Settled::RetryAt(_, why) => {
                warn!(%id, %delivery, events, %target, attempt = c.attempt, error = %why, "notification not delivered; retrying")
            }
            Settled::GiveUp(why) => {
                warn!(%id, %delivery, events, %target, attempt = c.attempt, error = %why, "notification given up")
            }
        }
        settle(catalog, c, holder, clock, &how).await?;
    }
    Ok(())
}

/// Records how a message went, tried again while the catalog is busy: an outcome not
/// recorded leaves the claim to lapse and the message to be sent again, so a delivered
/// one would be told twice.
async fn settle(
    catalog: &Catalog,
    c: &Claimed,
    holder: &str,
    clock: &dyn Clock,
    how: &Settled,
) -> Result<(), crate::catalog::CatalogError> {
    let mut wait = std::time::Duration::from_millis(200);
    for _ in 1..SETTLE_TRIES {
        match catalog.settle_message(c, holder, clock.now_ms(), how).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                warn!(id = %c.message_id, error = %e, "could not record how a notification went; trying again");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
    catalog.settle_message(c, holder, clock.now_ms(), how).await
}
