//! A backfill as a front door asks for it: which partitions of a range (the selection,
//! named by a word or by the CLI's flags) and the request the planner takes.

use crate::backfill::{Request, Selection};

/// A selection named by a word that is not one.
#[derive(Debug, thiserror::Error)]
#[error("selection `{}` is not missing, failed, stale or force", .0.escape_debug())]
pub struct UnknownSelection(pub String);

/// The selection a word names: `missing` (missing, failed and interrupted partitions: the
/// default, also when empty), `failed`, `stale` or `force`.
pub fn selection_named(word: &str) -> Result<Selection, UnknownSelection> {
    match word {
        "" | "missing" => Ok(Selection::Default),
        "failed" => Ok(Selection::OnlyFailed),
        "stale" => Ok(Selection::Stale),
        "force" => Ok(Selection::Force),
        other => Err(UnknownSelection(other.to_string())),
    }
}

/// The selection the CLI's flags ask for; `--force` wins over `--only-failed`, which wins
/// over `--stale`.
pub fn selection_of_flags(force: bool, only_failed: bool, stale: bool) -> Selection {
    match (force, only_failed, stale) {
        (true, _, _) => Selection::Force,
        (_, true, _) => Selection::OnlyFailed,
        (_, _, true) => Selection::Stale,
        _ => Selection::Default,
    }
}

/// Every partition of `from..=to` of `job` (every job when none), as `selection` picks
/// them, oldest first, the jobs downstream of it left alone.
pub fn range(job: Option<String>, from: &str, to: &str, selection: Selection) -> Request {
    Request {
        jobs: job.into_iter().collect(),
        downstream: false,
        from: from.trim().to_string(),
        to: to.trim().to_string(),
        only: None,
        keys: None,
        version: None,
        selection,
        newest_first: false,
        exactly: None,
    }
}
