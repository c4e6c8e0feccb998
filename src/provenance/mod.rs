//! What a partition's content was made from, and whether that changed since: a data
//! engineer's "data version". Every run records what it read (`Reads`): for each upstream
//! table, the physical version and the data version of each partition read; for each input
//! file, its path, size, last-modified time and ETag. A run's own data version is a hash of
//! its code fingerprint and of what it read: it identifies the content the run writes,
//! since a run is a function of its code and its inputs (promise 2: idempotent). A complete
//! partition is stale (`stale::Staleness`) when its code changed, when an upstream
//! partition it read has another data version now (or the upstream alias moved to another
//! physical version), or when its input files are not the ones it read.
//!
//! Why data versions and not the Delta version of the commit that wrote a partition: a
//! rewrite from the same code and the same inputs (a forced backfill, a retry after a crash
//! that had committed) writes the same rows, and must not make everything downstream run
//! again. As in Dagster, a version is derived from the code and the versions read, so a
//! change propagates exactly as far as it changes something. A file is known by its size
//! and ETag (which holds its modification time): a file rewritten with the same bytes is a
//! change (reading it would cost what the run costs); rerunning is idempotent, so the cost
//! is work, never wrong data.

pub mod files;
pub mod stale;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use files::{FileRead, Listings};
pub use stale::{StaleBecause, StaleKind, Staleness};

/// What one run read, stored as compact JSON with the run (`runs.reads_json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reads {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<TableRead>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRead>,
    /// What each command input's program wrote (known once it has run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandRead>,
}

/// One command input's output, as read: its size and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRead {
    pub input: String,
    pub bytes: u64,
    pub sha256: String,
    /// A database input's row count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// One upstream table input as read: which physical version, and the data version of each
/// partition read (empty when it had none: not written yet, or before data versions); for
/// a read of the whole table, one hash over every partition's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRead {
    pub table: String,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole: Option<String>,
}

/// The hash of a whole table's partitions' data versions, by partition.
pub fn whole_table_version<'a>(versions: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = versions.collect();
    sorted.sort();
    let mut h = blake3::Hasher::new();
    for (p, v) in sorted {
        h.update(p.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex()[..16].to_string()
}

impl Reads {
    /// The data version of what a run of code `fingerprint` writes from these reads.
    pub fn data_version(&self, fingerprint: &str) -> String {
        // The JSON of the reads is canonical here: upstream inputs in the job's order,
        // partitions sorted, files in listing order (sorted by path).
        let mut h = blake3::Hasher::new();
        h.update(fingerprint.as_bytes());
        h.update(b"\n");
        for t in &self.upstream {
            h.update(format!("{}@{}\n", t.table, t.version).as_bytes());
            for (p, v) in t.partitions.iter().flatten() {
                h.update(format!("{p}={v}\n").as_bytes());
            }
            if let Some(w) = &t.whole {
                h.update(format!("*={w}\n").as_bytes());
            }
        }
        for f in &self.files {
            h.update(format!("{}:{}:{}:{}\n", f.input, f.path, f.size, f.etag).as_bytes());
        }
        for c in &self.commands {
            h.update(format!("command {}:{}:{}\n", c.input, c.bytes, c.sha256).as_bytes());
        }
        h.finalize().to_hex()[..16].to_string()
    }

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

    /// What the run that wrote `p`'s content read, as its row carries it; none for a
    /// partition without content.
    pub fn of_content(p: &crate::catalog::PartitionStatus) -> Option<Reads> {
        p.content_run_id.as_ref()?;
        Reads::from_json(p.content_reads_json.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(day_version: &str, etag: &str) -> Reads {
        Reads {
            upstream: vec![TableRead {
                table: "clean_orders".into(),
                version: 1,
                partitions: Some(BTreeMap::from([(
                    "2024-01-05".to_string(),
                    day_version.to_string(),
                )])),
                whole: None,
            }],
            files: vec![FileRead {
                input: "orders".into(),
                path: "in/2024-01-05.csv".into(),
                size: 10,
                modified: 1,
                etag: etag.into(),
            }],
            commands: Vec::new(),
        }
    }

    #[test]
    fn a_data_version_changes_with_the_code_and_with_anything_read() {
        let base = reads("aaaa", "e1").data_version("fp1");
        assert_eq!(
            base,
            reads("aaaa", "e1").data_version("fp1"),
            "deterministic"
        );
        assert_eq!(base.len(), 16);
        assert_ne!(base, reads("aaaa", "e1").data_version("fp2"), "code");
        assert_ne!(
            base,
            reads("bbbb", "e1").data_version("fp1"),
            "an upstream partition"
        );
        assert_ne!(base, reads("aaaa", "e2").data_version("fp1"), "a file");
    }

    #[test]
    fn the_reads_round_trip_through_their_json_and_unknown_text_is_none() {
        let r = reads("aaaa", "e1");
        assert_eq!(Reads::from_json(Some(&r.to_json())), Some(r));
        assert_eq!(Reads::from_json(Some("not json")), None);
        assert_eq!(Reads::from_json(None), None);
    }

    #[test]
    fn a_whole_tables_version_does_not_depend_on_the_order_listed() {
        let a = whole_table_version([("b", "2"), ("a", "1")].into_iter());
        let b = whole_table_version([("a", "1"), ("b", "2")].into_iter());
        assert_eq!(a, b);
        assert_ne!(a, whole_table_version([("a", "1"), ("b", "3")].into_iter()));
    }
}
