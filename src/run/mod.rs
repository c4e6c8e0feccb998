//! Running one partition of one job: the lease, the run record, the engine, the write and
//! the commit, in that order, with the run id on every log line.
//!
//! The order is what keeps the promises: the lease comes before any write (one writer per
//! partition), files are uploaded before the commit makes them visible (no partial
//! partition), the commit carries the lease's fencing token (a stale writer is refused by
//! the table), and the catalog is told last; if the process dies before that, the next run
//! reads the Delta log to learn whether the commit landed (Delta is the truth for data).
//!
//! The `Runner` keeps the retry loop (here) and the order of an attempt (`attempt`); each
//! step is a type of its own holding only what it uses: `lease::Leases` (claim, heartbeat,
//! the check before a commit, reconcile a dead run from the Delta log, settle at
//! shutdown), `inputs::Inputs` (upstream aliases resolved to snapshots, and what a
//! partition waits for), `handles::Tables` (one open Delta table per physical version),
//! `write::PartitionWrite` (bad rows, audit, dead letters, commit) over `compute` (the
//! query run and its output uploaded: `Embedded` or `OnCluster`, two implementations of one
//! step), `code::CodeLedger` (the code that wrote a version, for shadow runs), `lineage`,
//! `report`. A run is asked for with a [`RunRequest`].

mod attempt;
mod claimed;
mod code;
mod compute;
mod handles;
mod inputs;
mod lease;
mod lineage;
mod merge;
mod merge_audit;
mod merge_lanes;
mod report;
mod scope;
mod step_tests;
mod tell;
mod write;

pub use crate::catalog::Trigger;
pub use inputs::CompletePartitions;
pub(crate) use merge::SIDECARS;
pub use report::{RunOutcome, RunReport};
pub use scope::partition_scope;

use crate::catalog::{Catalog, CatalogError, DoneIf};
use crate::clock::SharedClock;
use crate::delta::DeltaError;
use crate::engine::conform::ConformError;
use crate::engine::{Engine, EngineError};
use crate::job::Job;
use crate::partition::PartitionKey;
use crate::project::Project;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "table `{table}` does not exist in the catalog; its CREATE TABLE is in migrations/ but not applied: run `sluice migrate`"
    )]
    TableNotMigrated { table: String },
    #[error("upstream input `{input}`: table `{table}` {why}")]
    Upstream {
        input: String,
        table: String,
        why: String,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Delta(#[from] DeltaError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Conform(#[from] ConformError),
    #[error(
        "the lease on the partition was lost while running (another worker took it after it expired)"
    )]
    LeaseLost,
    /// The daemon could not run the partition (its spec no longer validates, its input
    /// files did not arrive in time) and records why.
    #[error("{0}")]
    NotRunnable(String),
    /// A data-quality check of severity error failed: nothing was published.
    #[error("{0}; nothing was published, the previous content stays")]
    CheckFailed(String),
    /// The checks could not run at all: nothing was published.
    #[error(
        "the data-quality audit could not run: {0}; nothing was published, the previous content stays"
    )]
    AuditCouldNotRun(#[source] crate::quality::QualityError),
    /// Too many input rows could not be used.
    #[error("{0}")]
    TooManyBadRows(String),
    /// The bad rows could not be kept aside (in the temporary folder) for the dead letters.
    #[error(transparent)]
    BadRows(#[from] crate::engine::BadRowError),
    /// The rows set aside could not be made durable before the partition's commit:
    /// nothing was published.
    #[error(
        "the dead letters (rows set aside) could not be written, so the partition was not published: {0}"
    )]
    DeadLetters(#[source] DeltaError),
    /// A command input's program failed, or its output did not fit: nothing was read.
    #[error(transparent)]
    Command(#[from] crate::command_input::CommandError),
    /// A database input's query failed: nothing was read.
    #[error(transparent)]
    Database(#[from] crate::database_input::DatabaseInputError),
    /// A merge job's changes could not be merged: nothing was published.
    #[error(
        "merging into table `{table}`: {source}; nothing was published, the table is as it was"
    )]
    Merge {
        table: String,
        #[source]
        source: crate::merge::MergeError,
    },
}

impl From<crate::engine::output::OutputError> for RunError {
    fn from(e: crate::engine::output::OutputError) -> RunError {
        match e {
            crate::engine::output::OutputError::Engine(e) => RunError::Engine(e),
            crate::engine::output::OutputError::Conform(e) => RunError::Conform(e),
        }
    }
}

impl RunError {
    /// Transient errors (I/O, object store, catalog busy) are retried; SQL, schema and
    /// input errors are not: running them again gives the same answer.
    pub fn is_transient(&self) -> bool {
        match self {
            RunError::Catalog(e) => e.is_transient(),
            RunError::Delta(e) | RunError::DeadLetters(e) => e.is_transient(),
            RunError::Engine(e) => e.is_transient(),
            RunError::Command(e) => e.is_transient(),
            RunError::Database(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Everything a run needs that outlives it. Built once per process by the composition
/// root (`cli::context`); the catalog, engine and clock are its own, never reached through.
pub struct Runner {
    /// The project as last loaded; the daemon swaps in a fresh one when files change, so
    /// each run reads the code current when it starts.
    project: std::sync::RwLock<Arc<Project>>,
    catalog: Catalog,
    engine: Engine,
    /// The way to a Ballista cluster, for jobs that run on one.
    cluster: crate::cluster::Cluster,
    clock: SharedClock,
    leases: lease::Leases,
    tables: handles::Tables,
    code: code::CodeLedger,
    /// Bounds the partitions computing at once (query and file upload); runs waiting for a
    /// lease check or a commit do not hold a permit, so commits of many partitions can be
    /// grouped while others compute.
    compute: Option<Arc<tokio::sync::Semaphore>>,
    /// Where each run's OpenLineage events go (disabled unless configured).
    lineage: crate::lineage::Emitter,
}

/// What a caller asks of the runner: one partition of one job, and how. Built with
/// [`RunRequest::new`] and the methods that add to it; [`Runner::run`] consumes it.
pub struct RunRequest<'a> {
    job: &'a Job,
    key: PartitionKey,
    trigger: Trigger,
    done_if: Option<DoneIf>,
    refusal: Option<String>,
    ahead: Option<AheadPermit>,
}

impl<'a> RunRequest<'a> {
    /// Runs `key` of `job`, retrying transient failures per the job's retry policy.
    pub fn new(job: &'a Job, key: PartitionKey, trigger: Trigger) -> RunRequest<'a> {
        RunRequest {
            job,
            key,
            trigger,
            done_if: None,
            refusal: None,
            ahead: None,
        }
    }

    /// Does nothing if, once the lease is held, the partition turns out complete by a run
    /// that finished at or after `ms` (`None`: no cut-off): a backfill or the daemon does
    /// not redo what another worker did while it was going.
    pub fn unless_done_since(mut self, ms: Option<i64>) -> RunRequest<'a> {
        self.done_if = ms.map(DoneIf::CompletedSince);
        self
    }

    /// Does nothing if, once the lease is held, the partition turns out complete or failed
    /// by a run that finished after `ms` (see [`DoneIf::TriedAfter`]).
    pub fn unless_tried_after(mut self, ms: i64) -> RunRequest<'a> {
        self.done_if = Some(DoneIf::TriedAfter(ms));
        self
    }

    /// Does nothing if, once the lease is held, the partition turns out complete with
    /// content other than run `content_run`'s: a stale partition rerun by another worker
    /// since it was judged stale.
    pub fn unless_rewritten_after(mut self, content_run: String) -> RunRequest<'a> {
        self.done_if = Some(DoneIf::RewrittenAfter(content_run));
        self
    }

    /// Holds `ahead` until the partition's output is computed or the run ends (see
    /// [`AheadPermit`]).
    pub fn ahead(mut self, ahead: AheadPermit) -> RunRequest<'a> {
        self.ahead = Some(ahead);
        self
    }

    /// Records a failed run with `why` instead of running, under the partition's lease
    /// like any run, so that `sluice status` and the run history say why the daemon did
    /// not run it. Nothing is written to the table.
    pub fn refused(mut self, why: String) -> RunRequest<'a> {
        self.refusal = Some(why);
        self
    }
}

/// A place among the partitions a backfill has leased ahead of the compute: held by a run
/// from its start until its output is computed (or it ends), so that runs done computing and
/// waiting for their table's commit leave room for others to start.
pub type AheadPermit = tokio::sync::OwnedSemaphorePermit;

/// This process's worker id, `HOST:PID:ID`: the holder of the leases it takes.
pub fn holder_id() -> String {
    format!(
        "{}:{}:{}",
        crate::actor::host(),
        std::process::id(),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    )
}

impl Runner {
    pub fn new(
        project: Arc<Project>,
        catalog: Catalog,
        engine: Engine,
        clock: SharedClock,
        holder: String,
    ) -> Runner {
        Runner {
            leases: lease::Leases::new(
                catalog.clone(),
                clock.clone(),
                holder,
                project.settings.lease_ttl,
            ),
            tables: handles::Tables::new(catalog.clone(), clock.clone()),
            code: code::CodeLedger::new(catalog.clone(), clock.clone()),
            project: std::sync::RwLock::new(project),
            catalog,
            engine,
            cluster: crate::cluster::Cluster::default(),
            clock,
            compute: None,
            lineage: crate::lineage::Emitter::disabled(),
        }
    }

    /// Runs send their OpenLineage events to `emitter` (linked to its parent run, if any).
    pub fn with_lineage(mut self, emitter: crate::lineage::Emitter) -> Runner {
        self.lineage = emitter;
        self
    }

    /// Who this process is in the leases table.
    pub fn holder(&self) -> &str {
        self.leases.holder()
    }

    /// The project as last loaded.
    pub fn project(&self) -> Arc<Project> {
        self.project
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Runs started from now on see `project`; runs under way keep the one they started with.
    pub fn set_project(&self, project: Arc<Project>) {
        match self.project.write() {
            Ok(mut p) => *p = project,
            Err(e) => *e.into_inner() = project,
        }
    }

    /// At most `n` partitions compute at once (see [`Runner::compute`]).
    pub fn with_compute_limit(mut self, n: usize) -> Runner {
        self.compute = Some(Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        self
    }

    /// For each table input of `key` of `job`: the version its alias points at, and which
    /// of its partitions the partition reads.
    pub async fn resolve_upstream(
        &self,
        job: &Job,
        key: &PartitionKey,
    ) -> Result<Vec<crate::engine::UpstreamInput>, RunError> {
        let project = self.project();
        Ok(self.inputs(&project).resolve(job, key).await?.0)
    }

    /// The upstream partitions `key` of `job` reads that are not complete yet, as
    /// `table/partition`: the daemon runs the partition only when this is empty. `seen`
    /// caches each upstream version's complete partitions across calls of one pass.
    pub async fn upstream_waits(
        &self,
        job: &Job,
        key: &PartitionKey,
        seen: &mut CompletePartitions,
    ) -> Result<Vec<String>, RunError> {
        let project = self.project();
        self.inputs(&project).waits(job, key, seen).await
    }

    fn inputs<'r>(&'r self, project: &'r Project) -> inputs::Inputs<'r> {
        inputs::Inputs {
            project,
            catalog: &self.catalog,
            tables: &self.tables,
        }
    }

    /// The job as the code that last wrote `version` of its table had it, when `version` is
    /// not the spec's own: what a shadow run of the live version executes.
    pub async fn job_at_version(&self, job: &Job, version: u32) -> Result<Option<Job>, RunError> {
        let root = self.project().settings.root.clone();
        self.code.job_at_version(&root, job, version).await
    }

    /// After runs were cancelled (a daemon's shutdown after its grace period): for each
    /// lease this process still holds, records what became of the run, as a later worker
    /// would after the lease expired (its commit landed, or it is abandoned), and releases
    /// the lease at once. Returns how many were settled.
    pub async fn settle_own_leases(&self) -> usize {
        let project = self.project();
        self.leases.settle_own(&project, &self.tables).await
    }

    /// Runs what `request` asks, retrying transient failures per the job's retry policy.
    pub async fn run(&self, request: RunRequest<'_>) -> RunReport {
        let RunRequest {
            job,
            key,
            trigger,
            done_if,
            refusal,
            ahead,
        } = request;
        // Elapsed time is measured, not read from the (injectable) clock.
        let started = std::time::Instant::now();
        let ahead = std::sync::Mutex::new(ahead);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let request = attempt::Request {
                job,
                key,
                trigger,
                attempt,
                done_if: done_if.clone(),
                refusal: refusal.as_deref(),
                ahead: &ahead,
            };
            let mut report = self.attempt(&request).await;
            report.attempts = attempt;
            report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            let retry = report.state == RunOutcome::Failed
                && report.transient
                && attempt < job.retry.max_attempts;
            if !retry {
                return report;
            }
            let wait = backoff(&job.retry, attempt);
            warn!(
                job = %job.name, partition = %key, attempt, wait_ms = wait.as_millis() as u64,
                error = report.error.as_deref().unwrap_or_default(),
                "transient failure; retrying"
            );
            self.clock.sleep(wait).await;
        }
    }
}

/// Exponential backoff with full jitter: the n-th retry waits a random time up to
/// `backoff * 2^(n-1)`, capped, so retries of many partitions do not move in lockstep.
pub fn backoff(policy: &crate::job::RetryPolicy, attempt: u32) -> Duration {
    let cap = policy.max_backoff_seconds;
    let base = (policy.backoff_seconds * 2f64.powi(attempt.saturating_sub(1) as i32)).min(cap);
    let jitter = (uuid::Uuid::now_v7().as_u128() & 0xffff) as f64 / 65535.0;
    Duration::from_secs_f64((base * (0.5 + jitter / 2.0)).max(0.0))
}
