//! What the daemon remembers of a job's staleness between polls, so that a poll judges
//! again only the partitions a change can have made stale or fresh: those of the job's own
//! table written since (a run started, ended, was abandoned), and those whose content read
//! an upstream partition written since. Which partitions read an upstream partition is
//! known from what their content read (`Reads`), indexed here as they are judged.
//!
//! A poll reads every table's change counter once (`Catalog::table_changes`); a job whose
//! tables' counters did not move costs nothing more. The whole job is judged again on the
//! first look, after a change that cannot be followed partition by partition (an alias
//! moved, a version dropped: the counter's reset), when the job's code or version is not
//! what was judged, for a partition that read an upstream table whole, and at each poll for
//! a job that watches its input files (`watch_inputs`: a file changes without a write).

use crate::catalog::{Catalog, CatalogError, TableChange};
use crate::job::Job;
use crate::partition::PartitionKey;
use crate::provenance::{Reads, StaleKind};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// How many complete partitions of a job are stale, by kind, as of the daemon's last look.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StaleCounts {
    pub code: usize,
    pub upstream: usize,
    pub input: usize,
}

/// One job's staleness as last judged.
#[derive(Debug)]
pub(super) struct JobWatch {
    /// The job's physical version and code (fingerprint) judged.
    version: u32,
    fingerprint: String,
    /// The counters of the job's own table and its upstream tables when judged.
    marks: BTreeMap<String, TableChange>,
    /// The stale partitions and why.
    stale: BTreeMap<PartitionKey, StaleKind>,
    /// Per upstream table, per partition key, the job's partitions whose content read it.
    readers: HashMap<String, HashMap<String, Vec<PartitionKey>>>,
    /// Upstream tables some partition's content read whole.
    read_whole: HashSet<String>,
}

/// What a poll judges of a job.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Judge {
    /// Nothing changed since the last judging.
    Nothing,
    /// These partitions (by key, as the catalog writes them).
    Some(BTreeSet<String>),
    /// Every partition of the job.
    All,
}

/// The counters of `tables` now (a table never written: zero).
pub(super) fn marks_of(
    tables: &[String],
    now: &HashMap<String, TableChange>,
) -> BTreeMap<String, TableChange> {
    tables
        .iter()
        .map(|t| (t.clone(), now.get(t).copied().unwrap_or_default()))
        .collect()
}

impl JobWatch {
    pub(super) fn new(
        job: &Job,
        fingerprint: String,
        marks: BTreeMap<String, TableChange>,
    ) -> Self {
        JobWatch {
            version: job.version,
            fingerprint,
            marks,
            stale: BTreeMap::new(),
            readers: HashMap::new(),
            read_whole: HashSet::new(),
        }
    }

    /// Whether the watch was judged for this code of `job`.
    pub(super) fn judged_code(&self, job: &Job, fingerprint: &str) -> bool {
        self.version == job.version && self.fingerprint == fingerprint
    }

    /// Whether any of the tables moved since the judging.
    pub(super) fn moved(&self, now: &BTreeMap<String, TableChange>) -> bool {
        &self.marks != now
    }

    /// What to judge of `job` given its tables' counters `now`: reads the partitions written
    /// since the marks, of the tables that moved.
    pub(super) async fn to_judge(
        &self,
        catalog: &Catalog,
        job: &Job,
        now: &BTreeMap<String, TableChange>,
    ) -> Result<Judge, CatalogError> {
        if !self.moved(now) {
            return Ok(Judge::Nothing);
        }
        let own = job.table.as_str();
        let mut keys = BTreeSet::new();
        for (table, change) in now {
            let before = self.marks.get(table).copied().unwrap_or_default();
            if change.seq == before.seq {
                continue;
            }
            if change.reset_seq > before.seq || change.seq < before.seq {
                return Ok(Judge::All);
            }
            if table == own {
                let version = Some(i64::from(job.version));
                keys.extend(catalog.changed_since(table, version, before.seq).await?);
                continue;
            }
            if self.read_whole.contains(table) {
                return Ok(Judge::All);
            }
            let Some(readers) = self.readers.get(table) else {
                continue;
            };
            for key in catalog.changed_since(table, None, before.seq).await? {
                let read_by = readers.get(&key).into_iter().flatten();
                keys.extend(read_by.map(|k| k.to_string()));
            }
        }
        Ok(Judge::Some(keys))
    }

    /// Takes in a judging: the `judged` partitions (all when `None`), those of them found
    /// stale, and what their content read; the marks become `now`.
    pub(super) fn record(
        &mut self,
        judged: Option<&BTreeSet<PartitionKey>>,
        stale: impl Iterator<Item = (PartitionKey, StaleKind)>,
        reads: &HashMap<&str, Reads>,
        job: &Job,
        now: BTreeMap<String, TableChange>,
    ) {
        match judged {
            None => {
                self.stale.clear();
                self.readers.clear();
                self.read_whole.clear();
            }
            Some(keys) => self.stale.retain(|k, _| !keys.contains(k)),
        }
        self.stale.extend(stale);
        for (key, r) in reads {
            let Ok(key) = job.parse_partition(key) else {
                continue;
            };
            for read in &r.upstream {
                if read.whole.is_some() {
                    self.read_whole.insert(read.table.clone());
                }
                let by_key = self.readers.entry(read.table.clone()).or_default();
                for upstream in read.partitions.iter().flat_map(|p| p.keys()) {
                    let readers = by_key.entry(upstream.clone()).or_default();
                    if !readers.contains(&key) {
                        readers.push(key);
                    }
                }
            }
        }
        self.marks = now;
    }

    /// The stale partitions by kind.
    pub(super) fn counts(&self) -> StaleCounts {
        let mut counts = StaleCounts::default();
        for kind in self.stale.values() {
            match kind {
                StaleKind::Code => counts.code += 1,
                StaleKind::Upstream => counts.upstream += 1,
                StaleKind::Input => counts.input += 1,
            }
        }
        counts
    }
}
