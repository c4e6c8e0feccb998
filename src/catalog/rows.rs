//! Typed rows: what the catalog's queries return, with states decoded at this boundary.

use super::{CatalogError, query_err};
use crate::schema::TableSchema;
use crate::spelling::spelled_enum;
use sqlx::Row as _;
use sqlx::any::AnyRow;

spelled_enum! {
    /// Where a partition of a physical version stands (`partitions.state`).
    pub enum PartitionState {
        /// A run holds it now, or held it and died (found out once its lease expires).
        Running => "running",
        /// Its content is the last successful run's.
        Complete => "complete",
        /// Its last run failed; the content before that run, if any, is still there.
        Failed => "failed",
    }
}

spelled_enum! {
    /// How one run stands or ended (`runs.state`).
    pub enum RunState {
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        /// Its process died or was cancelled before committing; nothing it wrote is visible.
        Abandoned => "abandoned",
    }
}

spelled_enum! {
    /// What started a run (`runs.trigger_kind`).
    pub enum Trigger {
        Run => "run",
        Backfill => "backfill",
        Daemon => "daemon",
    }
}

/// A lease on one (table version, partition): the right to write it until `expires_at_ms`,
/// proven at commit by `token` (the fencing token, which only grows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub table: String,
    pub version: i64,
    pub partition: String,
    pub token: i64,
    pub holder: String,
    pub run_id: String,
}

/// What [`Catalog::claim`] found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The lease is ours and the run is recorded as started.
    Started(Lease),
    /// The lease is ours, nothing started: the partition needs a look first.
    Look {
        lease: Lease,
        status: Box<PartitionStatus>,
    },
    Held {
        holder: String,
        run_id: Option<String>,
    },
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppliedMigration {
    pub name: String,
    pub checksum: String,
    pub applied_at: i64,
    pub applied_by: String,
}

#[derive(Debug, Clone)]
pub struct TableRow {
    pub schema: TableSchema,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TableVersionRow {
    pub table_name: String,
    pub version: i64,
    pub uri: String,
    pub schema_json: String,
    pub created_at: i64,
    /// The environment that builds it (`apply --env`); `None`: production's.
    pub owner_env: Option<String>,
    /// For a version an environment built: the spec's `version` it was built for.
    pub spec_version: Option<i64>,
}

impl TableVersionRow {
    /// The spec `version` this physical version stands for: its own number, or for one an
    /// environment built, the number the spec named.
    pub fn stands_for(&self) -> i64 {
        self.spec_version.unwrap_or(self.version)
    }
}

/// What one physical version of a table holds: its partitions by state, its rows, and
/// its first and last partition key (see [`super::Catalog::version_coverage`]).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct VersionCoverage {
    pub version: i64,
    pub uri: String,
    pub created_at: i64,
    /// The environment that built it and alone writes it; `None`: production's.
    pub owner_env: Option<String>,
    pub partitions: i64,
    pub complete: i64,
    pub failed: i64,
    pub running: i64,
    pub rows: i64,
    pub first: Option<String>,
    pub last: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AliasFlip {
    pub alias: String,
    pub from_version: Option<i64>,
    pub to_version: i64,
    #[serde(serialize_with = "crate::clock::as_rfc3339")]
    pub at: i64,
    pub by_whom: String,
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunStart {
    pub run_id: String,
    pub job: String,
    pub table: String,
    pub version: i64,
    pub partition: String,
    pub attempt: i64,
    pub trigger: Trigger,
    pub fingerprint: String,
    pub lease_token: i64,
    pub host: String,
    pub pid: i64,
    pub started_at: i64,
    /// What the run reads (`provenance::Reads` as JSON), known before it starts.
    pub reads_json: Option<String>,
    /// The data version of what it writes: its code and what it reads, hashed.
    pub data_version: Option<String>,
}

/// What a run measured besides its rows: its profile and check results (as JSON; stored
/// packed, `packed.rs`) and what it used.
#[derive(Debug, Clone, Default)]
pub struct RunMeasures {
    pub quality_json: Option<String>,
    pub cost: Option<crate::cost::RunCost>,
}

#[derive(Debug, Clone)]
pub enum RunEnd {
    Succeeded { rows: i64, delta_version: i64 },
    Failed { error: String },
}

/// One partition of one physical version, with its last run (read by `folded`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionStatus {
    pub job: String,
    pub table_name: String,
    pub table_version: i64,
    pub partition_key: String,
    pub state: PartitionState,
    pub content_rows: Option<i64>,
    pub content_run_id: Option<String>,
    pub content_fingerprint: Option<String>,
    pub content_delta_version: Option<i64>,
    pub last_run_id: String,
    pub error: Option<String>,
    #[serde(serialize_with = "crate::clock::as_rfc3339_opt")]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "crate::clock::as_rfc3339_opt")]
    pub finished_at: Option<i64>,
    pub attempt: Option<i64>,
    /// The data version of the content (`provenance`): its run's code and what it read.
    pub content_version: Option<String>,
    /// How its last run ended (none: a row written before migration 0013 whose run was
    /// already pruned): a failure is told apart from an abandoned run (its worker died).
    #[serde(skip)]
    pub last_run_state: LastRunState,
    /// What its last run used.
    #[serde(rename = "cost")]
    pub last_run_cost: StoredCost,
    /// What the run that wrote its content read (`provenance::Reads` as JSON): read with
    /// the row, so that judging it asks nothing more of the catalog.
    #[serde(skip)]
    pub content_reads_json: Option<String>,
}

/// What a job's runs used on one day (UTC), summed; the peak is the day's largest.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DayCost {
    /// Days since 1970-01-01.
    pub day: i64,
    pub runs: i64,
    pub cpu_us: i64,
    pub bytes_read: i64,
    pub bytes_written: i64,
    pub requests: i64,
    pub peak_memory_bytes: i64,
}

/// A run's cost as its row holds it: all NULL for a run that measured none (recorded
/// before costs were, refused, or never finished). Shown as a [`RunCost`] or `null`.
///
/// [`RunCost`]: crate::cost::RunCost
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub struct StoredCost {
    pub cpu_us: Option<i64>,
    pub bytes_read: Option<i64>,
    pub bytes_written: Option<i64>,
    pub requests: Option<i64>,
    pub peak_memory_bytes: Option<i64>,
}

impl StoredCost {
    pub fn cost(&self) -> Option<crate::cost::RunCost> {
        let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        self.cpu_us.map(|cpu| crate::cost::RunCost {
            cpu_us: cpu.max(0) as u64,
            bytes_read: n(self.bytes_read),
            bytes_written: n(self.bytes_written),
            requests: n(self.requests),
            peak_memory_bytes: n(self.peak_memory_bytes),
        })
    }
}

impl serde::Serialize for StoredCost {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.cost().serialize(s)
    }
}

/// The state of a partition's last run, when its row is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LastRunState(pub Option<RunState>);

impl LastRunState {
    /// From its spelling in the catalog, borrowed (`None`: NULL).
    pub fn parse(text: Option<&str>) -> Result<Self, crate::spelling::UnknownSpelling> {
        text.map(str::parse).transpose().map(LastRunState)
    }
}

#[cfg(test)]
impl PartitionStatus {
    /// A row of its names and state alone, every other column NULL: for tests to fill in.
    pub fn bare(job: &str, version: i64, key: &str, state: PartitionState) -> PartitionStatus {
        PartitionStatus {
            job: job.into(),
            table_name: format!("t_{job}"),
            table_version: version,
            partition_key: key.into(),
            state,
            content_rows: None,
            content_run_id: None,
            content_fingerprint: None,
            content_delta_version: None,
            last_run_id: String::new(),
            error: None,
            started_at: None,
            finished_at: None,
            attempt: None,
            content_version: None,
            last_run_state: Default::default(),
            last_run_cost: Default::default(),
            content_reads_json: None,
        }
    }
}

impl PartitionStatus {
    /// Whether its content is an earlier run's: the last run did not complete and changed
    /// nothing, so the table still holds what a run before it wrote (its rows are those).
    pub fn keeps_earlier_content(&self) -> bool {
        self.state != PartitionState::Complete
            && self
                .content_run_id
                .as_ref()
                .is_some_and(|c| *c != self.last_run_id)
    }
}

/// When a partition counts as done by another worker, decided under its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoneIf {
    /// Completed by a run that finished at or after this time (ms): a backfill or a due
    /// partition of the daemon does not redo what another worker did meanwhile.
    CompletedSince(i64),
    /// Complete, or failed (not abandoned), by a run that finished after this time (ms): a
    /// due partition of the daemon that another daemon ran meanwhile is not run again here,
    /// whatever came of it (a failure is not failed, and told, once per daemon).
    TriedAfter(i64),
    /// Complete with content other than this run's: a stale partition rerun elsewhere
    /// since it was judged stale (by content, not by time, so a replay's simulated clock
    /// cannot confuse it).
    RewrittenAfter(String),
}

impl DoneIf {
    pub fn holds(&self, p: &PartitionStatus) -> bool {
        match self {
            DoneIf::CompletedSince(ms) => p.completed_since(*ms),
            DoneIf::TriedAfter(ms) => {
                let failed = p.state == PartitionState::Failed
                    && p.last_run_state.0 == Some(RunState::Failed);
                (p.state == PartitionState::Complete || failed) && p.finished_at.unwrap_or(0) > *ms
            }
            DoneIf::RewrittenAfter(run) => {
                p.state == PartitionState::Complete && p.content_run_id.as_deref() != Some(run)
            }
        }
    }
}

impl PartitionStatus {
    /// Complete, by a run that finished at or after `since_ms`: done by another worker
    /// while the caller was waiting or planning.
    pub fn completed_since(&self, since_ms: i64) -> bool {
        self.state == PartitionState::Complete && self.finished_at.unwrap_or(0) >= since_ms
    }
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub job: String,
    pub table_name: String,
    pub table_version: i64,
    pub partition_key: String,
    pub attempt: i64,
    #[sqlx(try_from = "String")]
    pub state: RunState,
    #[sqlx(try_from = "String")]
    pub trigger_kind: Trigger,
    pub fingerprint: String,
    pub lease_token: i64,
    pub rows_written: Option<i64>,
    pub delta_version: Option<i64>,
    pub error: Option<String>,
    pub host: String,
    pub pid: i64,
    #[serde(serialize_with = "crate::clock::as_rfc3339")]
    pub started_at: i64,
    #[serde(serialize_with = "crate::clock::as_rfc3339_opt")]
    pub finished_at: Option<i64>,
    /// What it used.
    #[sqlx(flatten)]
    pub cost: StoredCost,
}

pub(super) fn table_row(r: &AnyRow) -> Result<TableRow, CatalogError> {
    let json: String = r.try_get(0).map_err(query_err("read table"))?;
    let schema: TableSchema = serde_json::from_str(&json)
        .map_err(|e| CatalogError::Corrupt(format!("stored table schema does not parse: {e}")))?;
    Ok(TableRow {
        schema,
        created_at: r.try_get(1).map_err(query_err("read table"))?,
        updated_at: r.try_get(2).map_err(query_err("read table"))?,
    })
}
