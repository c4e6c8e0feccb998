//! What the pages and the actions read from: the project as it is now, the catalog, the
//! clock, the engine (for diffs), the access rule, the daemon's counters, and what the
//! forms act through when actions are allowed.

use super::access::Access;
use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::daemon::metrics::Metrics;
use crate::project::Project;
use crate::run::Runner;
use std::sync::Arc;

/// What an action needs beyond reading: a runner leasing as this process.
pub struct Actions {
    pub runner: Arc<Runner>,
}

/// What the pages read from. `project` gives the project as it is now: the daemon's
/// reloaded one, or the one `sluice ui` loaded.
pub struct UiState {
    pub project: Box<dyn Fn() -> Arc<Project> + Send + Sync>,
    pub catalog: Catalog,
    pub clock: SharedClock,
    /// For the comparison of two versions.
    pub engine: crate::engine::Engine,
    pub access: Access,
    /// Served by a daemon: its counters (`/metrics`, `/health`) and its queue.
    pub daemon: Option<Arc<Metrics>>,
    /// With `--allow-actions`: what the forms act through.
    pub actions: Option<Actions>,
}

impl UiState {
    pub fn project(&self) -> Arc<Project> {
        (self.project)()
    }

    /// The CSRF token the pages put in their forms; none when actions are off.
    pub fn csrf(&self) -> Option<String> {
        self.actions.as_ref().map(|_| self.access.csrf_token())
    }

    /// What the daemon serving the pages has queued; nothing without one.
    pub fn queue(&self) -> super::grid::Queue {
        self.daemon.as_ref().map(|m| m.queue()).unwrap_or_default()
    }
}
