//! Backfills: which partitions of which jobs to run over a range, why, in what order, and
//! running them with bounded parallelism.
//!
//! The [`Plan`] is computed first, from the catalog's partition states, and is what
//! `--dry-run` prints; [`execute`] consumes that same object, so a dry run lists exactly
//! what a real run then attempts (`plan`, `execute`). Upstream partitions run before the downstream partitions
//! that read them; a failure skips its dependents (with the reason) and nothing else. Its
//! failures are told once, at its end (`tell`).

mod execute;
mod plan;
mod tell;

pub use execute::execute;
pub use plan::plan;

use crate::partition::PartitionKey;
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(
        "--{flag} `{text}`: expected a day (2024-01-05), a month (2024-01) or an hour (2024-01-05T03)"
    )]
    Bound { flag: &'static str, text: String },
    #[error("--from {from} is after --to {to}")]
    Range { from: String, to: String },
    #[error(
        "job `{job}` is partitioned by time: give --from and --to, or times in --partitions (2024-01-01..2024-01-31:emea); keys alone select the partitions of a job whose partitions are its keys"
    )]
    NoTimes { job: String },
    #[error("{0}")]
    Job(String),
    #[error(
        "table `{table}` of job `{job}` does not exist in the catalog: run `sluice migrate` first"
    )]
    NotMigrated { job: String, table: String },
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

/// Which partitions in the range are selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Missing, failed or interrupted partitions.
    Default,
    /// Every partition, complete ones too.
    Force,
    /// Failed and interrupted partitions only.
    OnlyFailed,
    /// The default, and complete partitions that are stale: written by other code than
    /// the current, from upstream partitions or input files that changed since, or reading
    /// an upstream partition the plan rewrites.
    Stale,
}

pub struct Request {
    /// Jobs named on the command line; empty means every job.
    pub jobs: Vec<String>,
    pub downstream: bool,
    pub from: String,
    pub to: String,
    /// Only these times (as written, e.g. `2024-01-03`) of the range.
    pub only: Option<BTreeSet<String>>,
    /// Only these keys, of the jobs with a static dimension (`--keys`, or the keys of
    /// `--partitions`).
    pub keys: Option<BTreeSet<crate::partition::StaticKey>>,
    /// The table version the named jobs' specs must name (`--version`).
    pub version: Option<u32>,
    pub selection: Selection,
    pub newest_first: bool,
    /// Only these partitions (their text), per job: what an environment's build takes
    /// from its plan. A job not in it is not narrowed.
    pub exactly: Option<std::collections::BTreeMap<String, BTreeSet<String>>>,
}

crate::spelling::spelled_enum! {
    /// Why a plan item runs.
    pub enum Reason {
        /// Never written.
        Missing => "missing",
        Failed => "failed",
        /// Left `running` by a process that stopped, or running elsewhere now.
        Interrupted => "interrupted",
        Forced => "forced",
        /// Written by another code fingerprint.
        Stale => "stale",
        /// An upstream partition it read was rewritten since.
        UpstreamChanged => "upstream_changed",
        /// An input file it read changed or went, or a new one matches its template.
        InputChanged => "input_changed",
        /// An upstream partition it reads is rewritten by this plan (`--stale`).
        UpstreamRerun => "upstream_rerun",
    }
}

/// An upstream partition outside the plan that an item reads: it must be complete when
/// the item runs.
#[derive(Debug, Clone, Serialize)]
pub struct ExternalDependency {
    pub table: String,
    pub version: i64,
    pub partition: String,
}

/// A plan item's job, table and fingerprints: one text per job shared by its items, since
/// a plan of a million partitions holds a million items.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shared(std::sync::Arc<str>);

impl Shared {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Shared {
    fn from(s: &str) -> Self {
        Shared(s.into())
    }
}

impl std::ops::Deref for Shared {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Shared {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    pub id: usize,
    pub job: Shared,
    pub table: Shared,
    pub version: u32,
    pub partition: String,
    pub reason: Reason,
    /// What changed, for a partition stale because of its data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_because: Option<Box<crate::provenance::StaleBecause>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_fingerprint: Option<Shared>,
    pub fingerprint: Shared,
    /// Plan items that must succeed first.
    pub waits_on: Vec<usize>,
    pub reads_outside_plan: Vec<ExternalDependency>,
    #[serde(skip)]
    key: PartitionKey,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotSelected {
    pub job: String,
    pub partition: String,
    pub why: String,
}

/// What a backfill will do, in the order it will do it.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub from: String,
    pub to: String,
    /// Only these partitions of the range (`--partitions LIST`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub selection: Selection,
    pub items: Vec<PlanItem>,
    pub not_selected: Vec<NotSelected>,
}

impl Plan {
    /// The range as people read it: `2024-01-01 .. 2024-01-31`, or `of keys` when no time
    /// was named (jobs whose partitions are their keys).
    pub fn range_shown(&self) -> String {
        if self.from.is_empty() && self.to.is_empty() {
            "of keys".into()
        } else {
            format!("{} .. {}", self.from, self.to)
        }
    }
}

/// What became of one plan item.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded {
        run_id: String,
        rows: u64,
        attempts: u32,
        duration_ms: f64,
    },
    Failed {
        run_id: Option<String>,
        error: String,
        attempts: u32,
    },
    /// Not run: an upstream failed, a dependency outside the plan is not complete, or
    /// `--fail-fast` stopped the backfill.
    /// (`skipped_because` in JSON: `reason` is the item's own, why it was planned.)
    Skipped {
        #[serde(rename = "skipped_because")]
        reason: String,
    },
    /// Another worker held its lease and completed it while this backfill waited.
    DoneElsewhere {
        held_by: String,
        run_id: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemResult {
    pub job: Shared,
    pub version: u32,
    pub partition: String,
    pub reason: Reason,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub planned: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub done_elsewhere: usize,
    pub not_selected: usize,
    pub rows: u64,
    pub elapsed_ms: u128,
    pub items: Vec<ItemResult>,
    pub not_selected_items: Vec<NotSelected>,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.skipped == 0
    }
}

pub struct Options {
    pub concurrency: usize,
    pub fail_fast: bool,
}

/// Told of each item as it ends: a progress bar on a terminal, log lines otherwise.
pub trait Progress: Send + Sync {
    fn item_done(&self, item: &PlanItem, outcome: &Outcome, done: usize, total: usize);
    fn item_waiting(&self, _item: &PlanItem, _held_by: &str) {}
}
