//! Running one partition of one job: the lease, the run record, the engine, the write and
//! the commit, in that order, with the run id on every log line.
//!
//! The order is what keeps the promises: the lease comes before any write (one writer per
//! partition), files are uploaded before the commit makes them visible (no partial
//! partition), the commit carries the lease's fencing token (a stale writer is refused by
//! the table), and the catalog is told last; if the process dies before that, the next run
//! reads the Delta log to learn whether the commit landed (Delta is the truth for data).

use crate::catalog::{Catalog, CatalogError, Claim, RunEnd, RunStart};
use crate::clock::SharedClock;
use crate::delta::{self, CommitInfo, DeltaError, PartitionCommit, PartitionWriter, Scope};
use crate::engine::conform::{ConformError, Conformer, partition_value};
use crate::engine::{self, BadRow, Engine, EngineError, PartitionQuery, UpstreamInput};
use crate::fingerprint::fingerprint;
use crate::job::{BadRows, Job, UpstreamPartitions};
use crate::partition::{Granularity, PartitionKey};
use crate::project::Project;
use crate::schema::{ColumnType, TableSchema};
use crate::warehouse;
use futures::StreamExt as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tracing::{Instrument as _, error_span, info, warn};

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
    /// Too many input rows could not be used.
    #[error("{0}")]
    TooManyBadRows(String),
}

impl RunError {
    /// Transient errors (I/O, object store, catalog busy) are retried; SQL, schema and
    /// input errors are not: running them again gives the same answer.
    pub fn is_transient(&self) -> bool {
        match self {
            RunError::Catalog(e) => e.is_transient(),
            RunError::Delta(e) => e.is_transient(),
            RunError::Engine(e) => e.is_transient(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Run,
    Backfill,
    Daemon,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Run => "run",
            Trigger::Backfill => "backfill",
            Trigger::Daemon => "daemon",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Succeeded,
    Failed,
    /// Another worker holds the partition's lease; nothing was done.
    Held,
    /// Another worker completed the partition after the caller's cut-off; nothing was done.
    DoneElsewhere,
}

/// What became of one partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub job: String,
    pub table: String,
    pub table_version: u32,
    pub partition: String,
    pub state: RunState,
    /// The run id of the last attempt (absent when the lease was held elsewhere).
    pub run_id: Option<String>,
    pub attempts: u32,
    pub rows: Option<u64>,
    pub delta_version: Option<u64>,
    pub fingerprint: String,
    pub error: Option<String>,
    pub transient: bool,
    pub bad_rows_skipped: Vec<BadRow>,
    /// The new content's profile and check results (absent when no content was made).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::quality::Quality>,
    pub held_by: Option<String>,
    /// From the call to its end: lease, run, write, commit, catalog, retries included.
    pub duration_ms: f64,
}

/// A partition's new files, uploaded but not committed, and the rows they hold.
struct WrittenFiles {
    adds: Vec<deltalake::kernel::Add>,
    rows: u64,
    batches: Vec<deltalake::arrow::record_batch::RecordBatch>,
    target: deltalake::arrow::datatypes::SchemaRef,
    /// Output rows left out because they do not fit the table.
    rejected: Vec<BadRow>,
    /// The CSV files read (the denominator of a `max_bad_rows` fraction).
    csv_files: Vec<engine::CsvFile>,
}

/// One row of a batch as a JSON object: the raw record of a dead letter from the output.
fn row_json(batch: &deltalake::arrow::record_batch::RecordBatch, row: usize) -> String {
    let mut w = deltalake::arrow::json::LineDelimitedWriter::new(Vec::new());
    let one = batch.slice(row, 1);
    if w.write(&one).and_then(|_| w.finish()).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&w.into_inner())
        .trim_end()
        .to_string()
}

/// One open Delta table per physical version per process, kept across runs so that a
/// backfill does not replay the log for every partition. Its mutex is also the table's
/// in-process commit lock.
pub struct VersionHandle {
    pub url: url::Url,
    /// The schema the handle was opened with; a migration since then reopens it.
    schema_json: String,
    pub table: tokio::sync::Mutex<deltalake::DeltaTable>,
    /// Partition commits waiting for the commit lock (see [`Runner::commit`]).
    queue: std::sync::Mutex<Vec<Queued>>,
    /// Runs of this version on their way to a commit (waiting for a compute slot, or
    /// computing): a commit waits a moment for them (see [`COMMIT_LINGER`]).
    pending: AtomicUsize,
    /// Told when a pending run leaves the count (to commit, or because it failed).
    changed: tokio::sync::Notify,
}

/// How long a commit waits for partitions of the same table that are on their way to a
/// commit, so that they join it. A Delta commit costs about the same whatever it holds
/// (the snapshot is rebuilt after it, reading every file's entry), so a backfill that
/// commits its partitions several at a time does a fraction of that work; a lone run (the
/// daemon's usual case) has no sibling and does not wait.
const COMMIT_LINGER: Duration = Duration::from_millis(50);

/// Counts a run among its version's pending ones while alive.
struct Pending<'a>(&'a VersionHandle);

impl<'a> Pending<'a> {
    fn new(handle: &'a VersionHandle) -> Pending<'a> {
        handle.pending.fetch_add(1, Ordering::SeqCst);
        Pending(handle)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

struct Queued {
    item: PartitionCommit,
    lease: crate::catalog::Lease,
    lost: Arc<AtomicBool>,
    reply: tokio::sync::oneshot::Sender<Result<u64, DeltaError>>,
}

impl VersionHandle {
    fn new(url: url::Url, schema_json: String, table: deltalake::DeltaTable) -> Arc<VersionHandle> {
        Arc::new(VersionHandle {
            url,
            schema_json,
            table: tokio::sync::Mutex::new(table),
            queue: std::sync::Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
            changed: tokio::sync::Notify::new(),
        })
    }
}

/// Everything a run needs that outlives it.
pub struct Runner {
    /// The project as last loaded; the daemon swaps in a fresh one when files change, so
    /// each run reads the code current when it starts.
    project: std::sync::RwLock<Arc<Project>>,
    pub catalog: Catalog,
    pub engine: Engine,
    pub clock: SharedClock,
    /// Who we are in the leases table: host, process, and a random part.
    pub holder: String,
    pub lease_ttl: Duration,
    handles: tokio::sync::Mutex<HashMap<(String, u32), Arc<VersionHandle>>>,
    /// Bounds the partitions computing at once (query and file upload); runs waiting for a
    /// lease check or a commit do not hold a permit, so commits of many partitions can be
    /// grouped while others compute.
    compute: Option<Arc<tokio::sync::Semaphore>>,
    /// The code fingerprint last recorded per (job, version) by this process: the catalog's
    /// `job_code` is written when it changes, not on every run.
    recorded_code: std::sync::Mutex<HashMap<(String, u32), String>>,
}

pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    )
}

fn host_name(holder: &str) -> String {
    holder.split(':').next().unwrap_or_default().to_string()
}

/// How a partition is named in its table's partition column, for the Delta log (its
/// string form) and for filters and checks (its typed value).
fn partition_scope(schema: &TableSchema, job: &Job, key: &PartitionKey) -> Scope {
    match schema.partition_column() {
        Some(col) if job.granularity != Granularity::None => Scope::Partition {
            column: col.name.to_string(),
            value: delta_partition_string(col.ty, key, job.partition_time_zone),
        },
        _ => Scope::WholeTable,
    }
}

fn delta_partition_string(ty: ColumnType, key: &PartitionKey, tz: chrono_tz::Tz) -> String {
    match (ty, key.start()) {
        (ColumnType::Date, Some(s)) => s.date().format("%Y-%m-%d").to_string(),
        (ColumnType::Timestamp, Some(s)) => crate::partition::local_to_utc(tz, s)
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
        (ColumnType::TimestampNtz, Some(s)) => s.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        _ => key.to_string(),
    }
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
            lease_ttl: project.settings.lease_ttl,
            project: std::sync::RwLock::new(project),
            catalog,
            engine,
            clock,
            holder,
            handles: tokio::sync::Mutex::new(HashMap::new()),
            compute: None,
            recorded_code: std::sync::Mutex::new(HashMap::new()),
        }
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

    async fn compute_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.compute {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// The handle of a physical version this process writes: created in the warehouse and
    /// registered in the catalog on first use.
    async fn output_handle(
        &self,
        job: &Job,
        schema: &TableSchema,
    ) -> Result<Arc<VersionHandle>, RunError> {
        let key = (job.table.to_string(), job.version);
        let schema_json = schema.to_json();
        let mut handles = self.handles.lock().await;
        if let Some(h) = handles.get(&key) {
            if h.schema_json == schema_json {
                return Ok(h.clone());
            }
        }
        let url =
            warehouse::version_url(&self.project().settings.warehouse, &job.table, job.version);
        let table = delta::ensure_table(&url, schema).await?;
        self.catalog
            .register_table_version(
                job.table.as_str(),
                i64::from(job.version),
                url.as_str(),
                &schema_json,
                &self.holder,
                self.clock.now_ms(),
            )
            .await?;
        let h = VersionHandle::new(url, schema_json, table);
        handles.insert(key, h.clone());
        Ok(h)
    }

    /// A snapshot of a physical version this process reads: at least at Delta version
    /// `at_least` when given (what the catalog says holds the partitions read), else the
    /// latest. Listing the log is skipped when the handle is recent enough, which it is
    /// whenever this process wrote the partitions itself.
    async fn read_snapshot(
        &self,
        table: &str,
        version: u32,
        url: &url::Url,
        schema_json: &str,
        at_least: Option<i64>,
    ) -> Result<deltalake::DeltaTable, RunError> {
        let key = (table.to_string(), version);
        let handle = {
            let mut handles = self.handles.lock().await;
            match handles.get(&key) {
                Some(h) => h.clone(),
                None => {
                    let h = VersionHandle::new(
                        url.clone(),
                        schema_json.to_string(),
                        delta::open(url).await?,
                    );
                    handles.insert(key, h.clone());
                    h
                }
            }
        };
        let mut t = handle.table.lock().await;
        let recent =
            matches!((at_least, t.version()), (Some(need), Some(have)) if have as i64 >= need);
        if !recent {
            // Commits by other processes since the handle last looked.
            t.update_state().await.map_err(|e| DeltaError::Open {
                url: warehouse::display(url),
                message: e.to_string(),
            })?;
        }
        Ok(t.clone())
    }

    /// Runs one partition, retrying transient failures per the job's retry policy.
    pub async fn run_partition(&self, job: &Job, key: PartitionKey, trigger: Trigger) -> RunReport {
        self.run_partition_unless_done_since(job, key, trigger, None)
            .await
    }

    /// Like [`Runner::run_partition`], but does nothing if, once the lease is held, the
    /// partition turns out complete by a run that finished at or after `done_since_ms`: a
    /// backfill does not redo what another worker did while it was going.
    pub async fn run_partition_unless_done_since(
        &self,
        job: &Job,
        key: PartitionKey,
        trigger: Trigger,
        done_since_ms: Option<i64>,
    ) -> RunReport {
        self.run_or_refuse(job, key, trigger, done_since_ms, None)
            .await
    }

    /// Records a failed run of the partition with `why`, under its lease like any run, so
    /// that `sluice status` and the run history say why the daemon did not run it. Nothing
    /// is written to the table.
    pub async fn fail_partition(
        &self,
        job: &Job,
        key: PartitionKey,
        trigger: Trigger,
        done_since_ms: Option<i64>,
        why: String,
    ) -> RunReport {
        self.run_or_refuse(job, key, trigger, done_since_ms, Some(why))
            .await
    }

    async fn run_or_refuse(
        &self,
        job: &Job,
        key: PartitionKey,
        trigger: Trigger,
        done_since_ms: Option<i64>,
        refusal: Option<String>,
    ) -> RunReport {
        // Elapsed time is measured, not read from the (injectable) clock.
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut report = self
                .attempt(
                    job,
                    key,
                    trigger,
                    attempt,
                    done_since_ms,
                    refusal.as_deref(),
                )
                .await;
            report.attempts = attempt;
            report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            let retry = report.state == RunState::Failed
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
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        job: &Job,
        key: PartitionKey,
        trigger: Trigger,
        attempt: u32,
        done_since_ms: Option<i64>,
        refusal: Option<&str>,
    ) -> RunReport {
        let mut report = RunReport {
            job: job.name.to_string(),
            table: job.table.to_string(),
            table_version: job.version,
            partition: key.to_string(),
            state: RunState::Failed,
            run_id: None,
            attempts: attempt,
            rows: None,
            delta_version: None,
            fingerprint: String::new(),
            error: None,
            transient: false,
            bad_rows_skipped: Vec::new(),
            quality: None,
            held_by: None,
            duration_ms: 0.0,
        };
        let run_id = uuid::Uuid::now_v7().to_string();
        // At error level so that the span, and its run id, is on every line the run logs
        // whatever level is shown (an info span vanishes under `--quiet`).
        let span = error_span!("run", run_id = %run_id, job = %job.name, partition = %key);
        let result = self
            .attempt_inner(
                job,
                key,
                trigger,
                attempt,
                done_since_ms,
                refusal,
                &run_id,
                &mut report,
            )
            .instrument(span.clone())
            .await;
        let _enter = span.enter();
        match result {
            Ok(()) => {}
            Err(e) => {
                report.state = RunState::Failed;
                report.transient = e.is_transient();
                report.error = Some(crate::redact::redact_text(&e.to_string()));
                warn!(error = %report.error.as_deref().unwrap_or_default(), "run failed");
            }
        }
        report
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt_inner(
        &self,
        job: &Job,
        key: PartitionKey,
        trigger: Trigger,
        attempt: u32,
        done_since_ms: Option<i64>,
        refusal: Option<&str>,
        run_id: &str,
        report: &mut RunReport,
    ) -> Result<(), RunError> {
        let table_name = job.table.as_str();
        let schema = self
            .catalog
            .table(table_name)
            .await?
            .ok_or_else(|| RunError::TableNotMigrated {
                table: table_name.to_string(),
            })?
            .schema;
        let fp = fingerprint(job, &schema);
        report.fingerprint = fp.clone();
        let handle = self.output_handle(job, &schema).await?;
        let version = i64::from(job.version);
        let upstream = match refusal {
            None => self.resolve_upstream(job, &key).await?,
            Some(_) => Vec::new(),
        };

        let partition = key.to_string();
        let ttl_ms = self.lease_ttl.as_millis() as i64;
        let mut start = RunStart {
            run_id: run_id.to_string(),
            job: job.name.to_string(),
            table: table_name.to_string(),
            version,
            partition: partition.clone(),
            attempt: i64::from(attempt),
            trigger: trigger.as_str(),
            fingerprint: fp.clone(),
            lease_token: 0,
            host: host_name(&self.holder),
            pid: i64::from(std::process::id()),
            started_at: self.clock.now_ms(),
        };
        let (lease, look) = match self
            .catalog
            .claim(&mut start, &self.holder, ttl_ms, done_since_ms)
            .await?
        {
            Claim::Started(lease) => (lease, None),
            Claim::Look { lease, status } => (lease, Some(*status)),
            Claim::Held { holder, run_id } => {
                info!(held_by = %holder, other_run = run_id.as_deref().unwrap_or("-"), "partition is leased by another worker; skipping");
                report.state = RunState::Held;
                report.held_by = Some(holder);
                return Ok(());
            }
        };
        let scope = partition_scope(&schema, job, &key);
        let mut released = false;
        let result = async {
            if let Some(status) = look {
                let status = if status.state == "running" {
                    self.reconcile(&handle, &scope, &lease, status, DIED)
                        .await?
                } else {
                    Some(status)
                };
                let done = status.filter(|p| {
                    done_since_ms.is_some_and(|since| {
                        p.state == "complete" && p.finished_at.unwrap_or(0) >= since
                    })
                });
                if let Some(p) = done {
                    info!(
                        by_run = p.content_run_id.as_deref().unwrap_or("-"),
                        "partition was completed by another worker meanwhile; nothing to do"
                    );
                    report.state = RunState::DoneElsewhere;
                    report.run_id = p.content_run_id;
                    report.rows = p.content_rows.map(|r| r as u64);
                    return Ok(());
                }
                start.started_at = self.clock.now_ms();
                self.catalog.start_run(&start).await?;
            }
            report.run_id = Some(run_id.to_string());
            info!(table = %table_name, table_version = version, token = lease.token, trigger = trigger.as_str(), "run started");

            let lost = Arc::new(AtomicBool::new(false));
            // Aborted on drop too: a run cancelled by a daemon's shutdown stops renewing.
            let heartbeat = AbortOnDrop(self.spawn_heartbeat(lease.clone(), lost.clone()));
            let outcome = match refusal {
                None => {
                    self.write_and_commit(job, &key, &schema, &scope, upstream, &handle, &lease, &lost, &fp, run_id, report)
                        .await
                }
                Some(why) => Err(RunError::NotRunnable(why.to_string())),
            };
            drop(heartbeat);
            let end = match &outcome {
                Ok((rows, dv)) => RunEnd::Succeeded {
                    rows: *rows as i64,
                    delta_version: *dv as i64,
                },
                Err(e) => RunEnd::Failed {
                    error: e.to_string(),
                },
            };
            let quality_json = report
                .quality
                .as_ref()
                .and_then(|q| serde_json::to_string(q).ok());
            self.catalog
                .finish_run(&start, &end, self.clock.now_ms(), Some(&lease), quality_json.as_deref())
                .await?;
            released = true;
            let (rows, dv) = outcome?;
            report.rows = Some(rows);
            report.delta_version = Some(dv);
            report.state = RunState::Succeeded;
            info!(rows, delta_version = dv, "run succeeded");
            self.record_code(job, &fp).await;
            Ok(())
        }
        .await;
        if !released {
            if let Err(e) = self.catalog.release_lease(&lease).await {
                // It expires by itself; the next worker takes it over then.
                warn!(error = %e, "could not release the lease");
            }
        }
        result
    }

    /// A previous run of this partition, `p.last_run_id`, is still marked running, and it
    /// died: we hold the lease now, so its lease expired. The Delta log says whether its
    /// commit landed: the partition's `txn` carries the token of the last writer that
    /// committed. Returns the partition's state after reconciling.
    async fn reconcile(
        &self,
        handle: &VersionHandle,
        scope: &Scope,
        lease: &crate::catalog::Lease,
        p: crate::catalog::PartitionStatus,
        why: &str,
    ) -> Result<Option<crate::catalog::PartitionStatus>, RunError> {
        let partition = lease.partition.as_str();
        let status = Some(p.clone());
        let Some(prev) = self.catalog.run(&p.last_run_id).await? else {
            return Ok(status);
        };
        let mut table = handle.table.lock().await;
        let landed = delta::landed_token(&mut table, partition).await?;
        let now = self.clock.now_ms();
        if landed.is_some_and(|t| t >= prev.lease_token) {
            let rows = delta::partition_rows(&table, scope).await?;
            let dv = table.version().unwrap_or_default() as i64;
            info!(previous_run = %prev.run_id, rows, "previous run's commit had landed; recording it as succeeded");
            self.catalog
                .reconcile_landed_run(&prev, rows, dv, now)
                .await?;
        } else {
            if why == DIED {
                info!(previous_run = %prev.run_id, "previous run died before committing; marking it abandoned");
            } else {
                info!(previous_run = %prev.run_id, why, "run ended before committing; marking it abandoned");
            }
            self.catalog.abandon_run(&prev.run_id, why, now).await?;
        }
        drop(table);
        Ok(self
            .catalog
            .partition_status(&lease.table, lease.version, partition)
            .await?)
    }

    /// Remembers in the catalog which code wrote this version, for shadow runs.
    async fn record_code(&self, job: &Job, fp: &str) {
        let key = (job.name.to_string(), job.version);
        let known = self
            .recorded_code
            .lock()
            .map(|m| m.get(&key).is_some_and(|f| f == fp))
            .unwrap_or(false);
        if known {
            return;
        }
        match self
            .catalog
            .record_job_code(
                job.name.as_str(),
                i64::from(job.version),
                fp,
                &job.spec_text,
                &job.sql,
                self.clock.now_ms(),
            )
            .await
        {
            Ok(()) => {
                if let Ok(mut m) = self.recorded_code.lock() {
                    m.insert(key, fp.to_string());
                }
            }
            Err(e) => {
                warn!(error = %e, "could not record the job's code; shadow runs of this version use older code")
            }
        }
    }

    /// The job as the code that last wrote `version` of its table had it, when `version` is
    /// not the spec's own: what a shadow run of the live version executes.
    pub async fn job_at_version(&self, job: &Job, version: u32) -> Result<Option<Job>, RunError> {
        if version == job.version {
            return Ok(Some(job.clone()));
        }
        let Some((spec, sql)) = self
            .catalog
            .job_code(job.name.as_str(), i64::from(version))
            .await?
        else {
            return Ok(None);
        };
        let root = self.project().settings.root.clone();
        match Job::from_recorded(&root, &job.spec_path, spec, sql) {
            Ok(j) if j.version == version => Ok(Some(j)),
            Ok(_) => Ok(None),
            Err(errs) => Err(RunError::NotRunnable(format!(
                "the recorded code of v{version} no longer validates: {}",
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))),
        }
    }

    /// After runs were cancelled (a daemon's shutdown after its grace period): for each
    /// lease this process still holds, records what became of the run, as a later worker
    /// would after the lease expired (its commit landed, or it is abandoned), and releases
    /// the lease at once. Returns how many were settled.
    pub async fn settle_own_leases(&self) -> usize {
        let leases = match self
            .catalog
            .leases_held_by(&self.holder, self.clock.now_ms())
            .await
        {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "could not list this process's leases; they expire by themselves");
                return 0;
            }
        };
        let mut settled = 0;
        for lease in leases {
            if let Err(e) = self.settle_one(&lease).await {
                warn!(table = %lease.table, partition = %lease.partition, error = %e, "could not settle a cancelled run; the next worker does it once the lease expires");
                continue;
            }
            settled += 1;
        }
        settled
    }

    async fn settle_one(&self, lease: &crate::catalog::Lease) -> Result<(), RunError> {
        let project = self.project();
        let job = project
            .jobs
            .values()
            .find(|j| j.table.as_str() == lease.table && i64::from(j.version) == lease.version);
        let status = self
            .catalog
            .partition_status(&lease.table, lease.version, &lease.partition)
            .await?;
        if let (Some(job), Some(status)) = (job, status) {
            if status.state == "running" {
                let schema = self
                    .catalog
                    .table(&lease.table)
                    .await?
                    .ok_or_else(|| RunError::TableNotMigrated {
                        table: lease.table.clone(),
                    })?
                    .schema;
                let key = job.granularity.parse_key(&lease.partition).map_err(|e| {
                    RunError::NotRunnable(format!("lease on unknown partition: {e}"))
                })?;
                let scope = partition_scope(&schema, job, &key);
                let handle = self.output_handle(job, &schema).await?;
                self.reconcile(&handle, &scope, lease, status, CANCELLED)
                    .await?;
            }
        }
        self.catalog.release_lease(lease).await?;
        Ok(())
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
        let mut waits = Vec::new();
        for (table, partitions) in job.upstream_tables() {
            let Some(up) = project.writer_of(table.as_str()) else {
                continue;
            };
            let version = self
                .catalog
                .alias(table.as_str())
                .await?
                .unwrap_or(i64::from(up.version));
            let cache_key = (table.to_string(), version);
            if !seen.contains_key(&cache_key) {
                let complete = self
                    .catalog
                    .partitions_of(table.as_str(), version)
                    .await?
                    .into_iter()
                    .filter(|p| p.state == "complete")
                    .map(|p| p.partition_key)
                    .collect();
                seen.insert(cache_key.clone(), complete);
            }
            let complete = &seen[&cache_key];
            match partitions {
                UpstreamPartitions::Same => {
                    for k in key.covering(up.granularity) {
                        if !complete.contains(&k.to_string()) {
                            waits.push(format!("{table}/{k}"));
                        }
                    }
                }
                // The whole table: it must have been written at least once.
                UpstreamPartitions::All if complete.is_empty() => {
                    waits.push(format!("{table} (any partition)"));
                }
                UpstreamPartitions::All => {}
            }
        }
        Ok(waits)
    }

    fn spawn_heartbeat(
        &self,
        lease: crate::catalog::Lease,
        lost: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let catalog = self.catalog.clone();
        let clock = self.clock.clone();
        let ttl = self.lease_ttl;
        tokio::spawn(
            async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    match catalog
                        .renew_lease(&lease, ttl.as_millis() as i64, clock.now_ms())
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            warn!("lease lost: another worker took the partition");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => warn!(error = %e, "lease heartbeat failed; will retry"),
                    }
                }
            }
            .in_current_span(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_and_commit(
        &self,
        job: &Job,
        key: &PartitionKey,
        schema: &TableSchema,
        scope: &Scope,
        upstream: Vec<UpstreamInput>,
        handle: &VersionHandle,
        lease: &crate::catalog::Lease,
        lost: &Arc<AtomicBool>,
        fp: &str,
        run_id: &str,
        report: &mut RunReport,
    ) -> Result<(u64, u64), RunError> {
        let mut query = PartitionQuery {
            job,
            key: *key,
            upstream,
            without_bad_rows: HashMap::new(),
        };
        let pending = Pending::new(handle);
        let permit = self.compute_permit().await;
        let written = self.write_files(&query, schema, key, job, handle).await;
        drop(permit);
        let written = match written {
            Ok(done) => done,
            Err((e, csv_files))
                if !csv_files.is_empty()
                    && matches!(e, RunError::Engine(EngineError::Execution { .. })) =>
            {
                // A read failed: find which rows, by file and line.
                let bad = Engine::find_bad_rows(&csv_files, &self.project().settings.root)?;
                if bad.is_empty() {
                    return Err(e);
                }
                if job.bad_rows == BadRows::Fail {
                    self.record_dead_letters(job, key, run_id, lease, &bad)
                        .await;
                    return Err(EngineError::BadRows {
                        total: bad.len(),
                        rows: bad,
                    }
                    .into());
                }
                if let Some(limit) = job.max_bad_rows {
                    let read = Engine::count_records(&csv_files);
                    if !limit.allows(bad.len() as u64, read) {
                        self.record_dead_letters(job, key, run_id, lease, &bad)
                            .await;
                        let first: Vec<String> =
                            bad.iter().take(3).map(|b| b.to_string()).collect();
                        return Err(RunError::TooManyBadRows(format!(
                            "{} of {read} input row(s) cannot be used, more than `max_bad_rows` allows ({limit}); first: {}; see `sluice dlq list {} --partition {key}`",
                            bad.len(),
                            first.join("; "),
                            job.name
                        )));
                    }
                }
                for b in &bad {
                    warn!(input = %b.input, file = %b.file, line = b.line, error = %b.error, raw = %b.raw, "skipping bad input row (bad_rows = \"skip\")");
                }
                for b in &bad {
                    if let Ok(n) = crate::names::Name::new(&b.input) {
                        query.without_bad_rows.entry(n).or_default().push(b.clone());
                    }
                }
                report.bad_rows_skipped = bad;
                let _permit = self.compute_permit().await;
                self.write_files(&query, schema, key, job, handle)
                    .await
                    .map_err(|(e, _)| e)?
            }
            Err((e, _)) => return Err(e),
        };
        let WrittenFiles {
            adds,
            rows,
            batches,
            target,
            rejected,
            csv_files,
        } = written;
        if !rejected.is_empty() {
            for b in &rejected {
                warn!(row = b.line, error = %b.error, raw = %b.raw, "leaving out an output row that does not fit the table (bad_rows = \"skip\")");
            }
            report.bad_rows_skipped.extend(rejected);
            if let Some(limit) = job.max_bad_rows {
                let bad = report.bad_rows_skipped.len() as u64;
                let read = if csv_files.is_empty() {
                    rows + bad
                } else {
                    Engine::count_records(&csv_files)
                };
                if !limit.allows(bad, read) {
                    delta::delete_unpublished(&handle.url, &adds).await;
                    let all = report.bad_rows_skipped.clone();
                    self.record_dead_letters(job, key, run_id, lease, &all)
                        .await;
                    let first: Vec<String> = all.iter().take(3).map(|b| b.to_string()).collect();
                    return Err(RunError::TooManyBadRows(format!(
                        "{bad} of {read} row(s) cannot be used, more than `max_bad_rows` allows ({limit}); first: {}; see `sluice dlq list {} --partition {key}`",
                        first.join("; "),
                        job.name
                    )));
                }
            }
        }
        // Audit: profile and check the new rows before anything is published.
        let quality = self.audit(job, key, target, batches).await?;
        for c in quality.checks.iter().filter(|c| !c.passed) {
            warn!(check = %c.name, severity = ?c.severity, failing = c.failing, "{c}");
        }
        let blocking = quality.blocking().map(|c| c.to_string());
        report.quality = Some(quality);
        if let Some(why) = blocking {
            delta::delete_unpublished(&handle.url, &adds).await;
            return Err(RunError::CheckFailed(why));
        }
        if lost.load(Ordering::SeqCst) {
            return Err(RunError::LeaseLost);
        }
        let info = CommitInfo {
            partition: key.to_string(),
            token: lease.token,
            run_id: run_id.to_string(),
            fingerprint: fp.to_string(),
            job: job.name.to_string(),
        };
        crate::failpoint::delay_if_set("slow_commit").await;
        crate::failpoint::pause_if_set("before_commit").await;
        if crate::failpoint::fail_once("transient_commit_error") {
            return Err(DeltaError::Commit {
                url: warehouse::display(&handle.url),
                message: "injected I/O error: connection reset (failpoint transient_commit_error)"
                    .into(),
            }
            .into());
        }
        let item = PartitionCommit {
            scope: scope.clone(),
            adds,
            info,
        };
        drop(pending);
        let dv = self.commit(handle, item, lease, lost).await?;
        crate::failpoint::pause_if_set("after_commit").await;
        self.record_dead_letters(job, key, run_id, lease, &report.bad_rows_skipped)
            .await;
        Ok((rows, dv))
    }

    /// Profiles the new rows and runs the job's checks on them, against the profiles of
    /// the partitions before this one when a check needs a baseline.
    async fn audit(
        &self,
        job: &Job,
        key: &PartitionKey,
        target: deltalake::arrow::datatypes::SchemaRef,
        batches: Vec<deltalake::arrow::record_batch::RecordBatch>,
    ) -> Result<crate::quality::Quality, RunError> {
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if job.checks.is_empty() && rows == 0 {
            return Ok(crate::quality::Quality {
                profile: Some(crate::quality::Profile::default()),
                checks: Vec::new(),
            });
        }
        let depth = job.checks.iter().filter_map(|c| c.baseline()).max();
        let baseline = match depth {
            Some(n) => {
                self.catalog
                    .profiles_before(
                        job.table.as_str(),
                        i64::from(job.version),
                        &key.to_string(),
                        n,
                    )
                    .await?
            }
            None => Vec::new(),
        };
        let end_us = key
            .instant_bounds(job.partition_time_zone)
            .map(|(_, e)| e.timestamp_micros());
        crate::quality::audit::audit(
            || self.engine.session(),
            target,
            batches,
            &job.checks,
            &baseline,
            end_us,
        )
        .await
        .map_err(|e| RunError::CheckFailed(format!("the data-quality audit could not run: {e}")))
    }

    /// Replaces the partition's dead letters with `bad` (none: clears them). A failure
    /// here is logged, not fatal: the rows are in the run's log lines too.
    async fn record_dead_letters(
        &self,
        job: &Job,
        key: &PartitionKey,
        run_id: &str,
        lease: &crate::catalog::Lease,
        bad: &[BadRow],
    ) {
        // Only jobs that read files, or that set rows aside, have dead letters.
        let reads_files = job
            .inputs
            .iter()
            .any(|i| matches!(i.source, crate::job::InputSource::Files { .. }));
        if !reads_files && job.bad_rows == BadRows::Fail {
            return;
        }
        let url = crate::dead_letters::table_url(&self.project().settings.warehouse, &job.name);
        let letters = crate::dead_letters::Letters {
            partition: key.to_string(),
            run_id: run_id.to_string(),
            token: lease.token,
            at_ms: self.clock.now_ms(),
            rows: bad.to_vec(),
        };
        if let Err(e) = crate::dead_letters::replace(&url, &letters).await {
            warn!(error = %e, "could not record the dead letters");
        }
    }

    /// Commits a partition's files: group commit. The request joins the table's queue; whoever
    /// takes the table's commit lock commits everything queued at that moment in one Delta
    /// commit, so partitions that finish while a commit is under way share the next one.
    async fn commit(
        &self,
        handle: &VersionHandle,
        item: PartitionCommit,
        lease: &crate::catalog::Lease,
        lost: &Arc<AtomicBool>,
    ) -> Result<u64, DeltaError> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        handle
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Queued {
                item,
                lease: lease.clone(),
                lost: lost.clone(),
                reply,
            });
        // Before taking the lock, which a computing run needs a moment of to start writing.
        let until = tokio::time::Instant::now() + COMMIT_LINGER;
        while handle.pending.load(Ordering::SeqCst) > 0 {
            let changed = handle.changed.notified();
            if tokio::time::timeout_at(until, changed).await.is_err() {
                break;
            }
        }
        let mut table = handle.table.lock().await;
        // Committed by whoever held the lock before us?
        if let Ok(result) = answer.try_recv() {
            return result;
        }
        let queued = std::mem::take(&mut *handle.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let batch: Vec<PartitionCommit> = queued.iter().map(|q| q.item.clone()).collect();
        if batch.len() > 1 {
            tracing::debug!(partitions = batch.len(), "committing a batch of partitions");
        }
        let results = delta::commit_partitions(&mut table, &batch, |i| {
            let q = &queued[i];
            async move {
                !q.lost.load(Ordering::SeqCst)
                    && self
                        .catalog
                        .lease_is_current(&q.lease, self.clock.now_ms())
                        .await
                        .unwrap_or(false)
            }
        })
        .await;
        drop(table);
        for (q, r) in queued.into_iter().zip(results) {
            // A requester that went away (its run was aborted) is reconciled by the next run.
            let _ = q.reply.send(r);
        }
        answer.await.unwrap_or_else(|_| {
            Err(DeltaError::Commit {
                url: warehouse::display(&handle.url),
                message: "the commit request was lost (this is likely a bug)".into(),
            })
        })
    }

    /// Runs the query and uploads its output as new files; returns their `add` actions.
    /// On failure, also returns the CSV files read, for the bad-row scan.
    async fn write_files(
        &self,
        query: &PartitionQuery<'_>,
        schema: &TableSchema,
        key: &PartitionKey,
        job: &Job,
        handle: &VersionHandle,
    ) -> Result<WrittenFiles, (RunError, Vec<engine::CsvFile>)> {
        let prepared = self
            .engine
            .prepare(query)
            .await
            .map_err(|e| (e.into(), Vec::new()))?;
        let csv_files = prepared.csv_files.clone();
        let fail = |e: RunError| (e, csv_files.clone());
        let mut stream = engine::execute(prepared.df)
            .await
            .map_err(|e| fail(e.into()))?;
        let pvalue = schema.partition_column().and_then(|c| {
            partition_value(c.ty, key, job.partition_time_zone)
                .map(|v| (c.name.to_string(), v, key.to_string()))
        });
        let pvalue = if job.granularity == Granularity::None {
            None
        } else {
            pvalue
        };
        let project = self.project();
        let produced = match &job.record_id {
            Some(column) => crate::engine::record_id::schema_with(&stream.schema(), column),
            None => stream.schema(),
        };
        let conformer = Conformer::new(schema, &produced, pvalue, |column| {
            match crate::migrate::file_adding_column(&project.migrations, job.table.as_str(), column) {
                Some(f) => format!(
                    "it is added by migrations/{}, not applied: run `sluice migrate` first (schema changes deploy before the code that uses them)",
                    f.name
                ),
                None => "remove it from the SELECT, or add the column to the table with a migration".into(),
            }
        })
        .map_err(|e| fail(e.into()))?;
        let mut writer = {
            let table = handle.table.lock().await;
            PartitionWriter::new(&handle.url, &table).map_err(|e| fail(e.into()))?
        };
        // The audit reads the new rows again; they are kept until then (a partition's worth).
        let mut kept = Vec::new();
        // Rows of the output that do not fit the table, set aside under bad_rows = "skip".
        let mut rejected: Vec<BadRow> = Vec::new();
        let mut output_rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| fail(engine::execution_error(e).into()))?;
            let batch_rows = batch.num_rows() as u64;
            let batch = match &job.record_id {
                Some(column) => crate::engine::record_id::append(&batch, column, &job.key)
                    .map_err(|e| fail(RunError::Conform(e)))?,
                None => batch,
            };
            let batch = if job.bad_rows == BadRows::Skip {
                let (good, rejects) = conformer
                    .apply_rejecting(&batch)
                    .map_err(|e| fail(e.into()))?;
                for (row, error) in rejects {
                    rejected.push(BadRow {
                        input: "(output)".into(),
                        file: format!(
                            "(output of jobs/{})",
                            job.sql_path
                                .file_name()
                                .map(|n| n.to_string_lossy().to_string())
                                .unwrap_or_default()
                        ),
                        line: output_rows + row as u64 + 1,
                        raw: row_json(&batch, row),
                        error,
                    });
                }
                good
            } else {
                conformer.apply(&batch).map_err(|e| fail(e.into()))?
            };
            output_rows += batch_rows;
            if batch.num_rows() > 0 {
                kept.push(batch.clone());
            }
            writer.write(batch).await.map_err(|e| fail(e.into()))?;
        }
        let rows = writer.rows();
        let adds = writer.finish().await.map_err(|e| fail(e.into()))?;
        Ok(WrittenFiles {
            adds,
            rows,
            batches: kept,
            target: conformer.target_schema(),
            rejected,
            csv_files,
        })
    }

    /// For each table input: the version its alias points at, and which of its partitions
    /// this partition reads.
    async fn resolve_upstream(
        &self,
        job: &Job,
        key: &PartitionKey,
    ) -> Result<Vec<UpstreamInput>, RunError> {
        let mut out = Vec::new();
        for input in &job.inputs {
            let crate::job::InputSource::Table { table, partitions } = &input.source else {
                continue;
            };
            let err = |why: String| RunError::Upstream {
                input: input.name.to_string(),
                table: table.to_string(),
                why,
            };
            let version = self.catalog.alias(table.as_str()).await?.ok_or_else(|| {
                err("has no data yet (no version is live); run the job that writes it first".into())
            })?;
            let tv = self
                .catalog
                .table_version(table.as_str(), version)
                .await?
                .ok_or_else(|| {
                    err(format!(
                        "alias points at version {version}, which is not registered"
                    ))
                })?;
            let url = url::Url::parse(&tv.uri)
                .map_err(|e| err(format!("bad location {}: {e}", tv.uri)))?;
            let up_schema: TableSchema = serde_json::from_str(&tv.schema_json)
                .map_err(|e| err(format!("stored schema does not parse: {e}")))?;
            let project = self.project();
            let up_granularity = project
                .writer_of(table.as_str())
                .map(|j| (j.granularity, j.partition_time_zone));
            // The Delta version the snapshot must have reached to hold what we read; `None`
            // when only the latest will do.
            let mut needed_version: Option<i64> = None;
            let filter = match (partitions, up_schema.partition_column(), up_granularity) {
                (UpstreamPartitions::Same, Some(col), Some((g, tz))) if g != Granularity::None => {
                    let keys = key.covering(g);
                    let mut incomplete = Vec::new();
                    let mut newest = Some(0i64);
                    for k in &keys {
                        let p = self
                            .catalog
                            .partition_status(table.as_str(), version, &k.to_string())
                            .await?;
                        match p {
                            Some(p) if p.state == "complete" => {
                                newest = newest.zip(p.content_delta_version).map(|(a, b)| a.max(b));
                            }
                            _ => {
                                incomplete.push(k.to_string());
                                newest = None;
                            }
                        }
                    }
                    needed_version = newest;
                    if !incomplete.is_empty() {
                        warn!(
                            upstream = %table,
                            count = incomplete.len(),
                            partitions = %shorten(&incomplete),
                            "upstream partitions are not complete; reading what is there"
                        );
                    }
                    let values = keys
                        .iter()
                        .filter_map(|k| partition_value(col.ty, k, tz))
                        .collect();
                    Some((col.name.to_string(), values))
                }
                _ => None,
            };
            let snapshot = self
                .read_snapshot(
                    table.as_str(),
                    version as u32,
                    &url,
                    &tv.schema_json,
                    needed_version,
                )
                .await?;
            out.push(UpstreamInput {
                name: input.name.clone(),
                table: snapshot,
                filter,
            });
        }
        Ok(out)
    }
}

/// The complete partitions of upstream (table, version)s, as read once per daemon pass.
pub type CompletePartitions = HashMap<(String, i64), std::collections::HashSet<String>>;

/// Why a run that never committed is abandoned: its process died (found by the next
/// worker once the lease expired), or its daemon cancelled it at shutdown.
const DIED: &str = "the process stopped before committing; its lease expired";
const CANCELLED: &str = "cancelled by the daemon's shutdown after the grace period, before committing; nothing was written";

/// A spawned task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `a, b, c ... (n more)` for long lists in log lines.
fn shorten(items: &[String]) -> String {
    let mut s = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        s.push_str(&format!(" ... ({} more)", items.len() - 5));
    }
    s
}

/// Exponential backoff with full jitter: the n-th retry waits a random time up to
/// `backoff * 2^(n-1)`, capped, so retries of many partitions do not move in lockstep.
pub fn backoff(policy: &crate::job::RetryPolicy, attempt: u32) -> Duration {
    let cap = policy.max_backoff_seconds;
    let base = (policy.backoff_seconds * 2f64.powi(attempt.saturating_sub(1) as i32)).min(cap);
    let jitter = (uuid::Uuid::now_v7().as_u128() & 0xffff) as f64 / 65535.0;
    Duration::from_secs_f64((base * (0.5 + jitter / 2.0)).max(0.0))
}
