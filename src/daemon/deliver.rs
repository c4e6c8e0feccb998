//! The daemon's share of telling people (`app::deliver` makes each pass).
//!
//! A running daemon delivers in a task of its own (`Deliverer::run`), so a slow receiver
//! never holds up scheduling; a replay, or a test's poll, delivers inside the poll, on the
//! poll's clock.

use crate::app::deliver::deliver_due;
use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::run::Runner;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

use super::metrics::Metrics;

/// How often a running daemon's delivery task looks at the outbox.
const EVERY: Duration = Duration::from_secs(1);

/// What a delivery pass needs; cheap to clone into a task.
#[derive(Clone)]
pub(super) struct Deliverer {
    pub catalog: Catalog,
    pub runner: Arc<Runner>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub http: reqwest::Client,
}

impl Deliverer {
    /// Delivers until `stop` is notified (at the daemon's stop, which then makes one last
    /// pass itself); a pass under way is finished first.
    pub async fn run(self, stop: Arc<tokio::sync::Notify>) {
        loop {
            self.pass().await;
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = stop.notified() => return,
            }
        }
    }

    /// One pass: forms, claims, sends and settles what is due now (when the project has
    /// targets: without any, the outbox has nothing for it).
    pub async fn pass(&self) {
        let project = self.runner.project();
        if project.settings.notify.is_empty() {
            return;
        }
        let holder = self.runner.holder();
        match deliver_due(&self.catalog, &self.http, &project, holder, &*self.clock).await {
            Ok(()) => {
                if let Ok(n) = self.catalog.undelivered_count().await {
                    self.metrics.notifications_undelivered(n);
                }
            }
            Err(e) => {
                warn!(error = %e, "could not read the catalog to send notifications; trying again")
            }
        }
    }
}
