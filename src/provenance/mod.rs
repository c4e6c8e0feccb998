//! What a partition's content was made from, and whether that changed since: a data
//! engineer's "data version". Every run records what it read (`Reads`): for each upstream
//! table, the physical version and the Delta version of the snapshot it read, with the
//! partitions read; for each input file, its path, size, last-modified time and ETag. A
//! complete partition is stale (`stale::Staleness`) when its code changed, when an upstream
//! partition it read was written by a commit after that snapshot (or the upstream alias
//! moved to another version), or when its input files are not the ones it read.
//!
//! Content is identified by the commit that wrote it, not by a hash of the rows: a commit's
//! version is known without reading anything, is comparable (a later commit is a later
//! content) and costs a number per upstream table in the catalog. A rewrite with identical
//! rows therefore still makes its readers stale; rerunning them is idempotent, so the cost
//! is work, never wrong data.

pub mod files;
pub mod stale;

use serde::{Deserialize, Serialize};

pub use files::{FileRead, Listings};
pub use stale::{StaleBecause, StaleKind, Staleness};

/// What one run read, stored as compact JSON with the run (`runs.reads_json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reads {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<TableRead>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRead>,
}

/// One upstream table input as read: which physical version, the Delta version of the
/// snapshot (every partition read holds content written at or before it), and the
/// partitions read (`None`: the whole table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRead {
    pub table: String,
    pub version: i64,
    pub delta_version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<Vec<String>>,
}

impl Reads {
    /// The JSON stored with the run.
    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// What a run stored; `None` for a run recorded before reads were (or unreadable text),
    /// which is never called stale for its data.
    pub fn from_json(text: Option<&str>) -> Option<Reads> {
        text.and_then(|t| serde_json::from_str(t).ok())
    }
}
