//! The daemon's share of retention (`[catalog] retention`): a prune at most once an hour
//! of the daemon's clock (a replay prunes as its simulated months pass), spread over polls
//! a few batches at a time (`app::retention`), so a poll is never held up for long.

use super::Daemon;
use crate::app::retention::Prune;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

/// How often a prune starts.
const EVERY_MS: i64 = 3_600_000;
/// Batches per poll: a few thousand runs looked at.
const BATCHES_PER_POLL: u64 = 8;

/// Where the daemon's pruning stands.
#[derive(Debug, Default)]
pub(super) struct Pruning {
    under_way: Option<Prune>,
    /// When the last prune ended (ms of the daemon's clock).
    last_done: Option<i64>,
}

impl Daemon {
    /// A few batches of the prune under way, or a new prune when one is due.
    pub(super) async fn prune_history(&mut self, now: DateTime<Utc>) {
        let Some(age) = self.runner.project().settings.retention else {
            return;
        };
        let now_ms = now.timestamp_millis();
        let p = &mut self.pruning;
        if p.under_way.is_none() && p.last_done.is_none_or(|t| now_ms - t >= EVERY_MS) {
            p.under_way = Some(Prune::of_project(
                &self.runner.project(),
                now_ms - age.as_millis() as i64,
                false,
            ));
        }
        let Some(prune) = p.under_way.as_mut() else {
            return;
        };
        match prune.step(&self.catalog, Some(BATCHES_PER_POLL)).await {
            Ok(false) => {}
            Ok(true) => {
                let r = &prune.report;
                info!(
                    cutoff = %r.cutoff,
                    runs_removed = r.runs_removed,
                    runs_kept = r.runs_kept,
                    events_removed = r.events_removed,
                    messages_removed = r.messages_removed,
                    dead_letters_removed = r.dead_letters_removed,
                    longest_lock_ms = r.longest_lock_ms,
                    "run history pruned"
                );
                p.under_way = None;
                p.last_done = Some(now_ms);
            }
            Err(e) => {
                // Started again at the next hour; nothing is half removed (each batch is
                // one transaction).
                warn!(error = %e, "could not prune the run history; trying again in an hour");
                p.under_way = None;
                p.last_done = Some(now_ms);
            }
        }
    }
}
