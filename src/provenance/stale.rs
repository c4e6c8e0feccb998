//! The one rule for whether a complete partition is stale, and why: its code changed
//! (another fingerprint), an upstream partition it read has another data version now (or
//! the upstream alias moved to another version), or its input files are not those it read.
//! `status`, the grid, the metrics, `backfill --stale`, the daemon and `run` all ask here.

use super::files::{Listings, differences};
use super::{Reads, TableRead};
use crate::catalog::{Catalog, CatalogError, NAMED_AT_MOST, PartitionState, PartitionStatus};
use crate::job::Job;
use crate::project::Project;
use crate::spelling::spelled_enum;
use std::collections::{BTreeMap, HashMap, HashSet};

spelled_enum! {
    /// Why a complete partition is stale.
    pub enum StaleKind {
        /// Written by other code than the job's current spec, SQL and schema.
        Code => "code",
        /// An upstream partition it read has another data version now.
        Upstream => "upstream",
        /// An input file it read changed or disappeared, or a new one matches.
        Input => "input",
    }
}

/// Why a partition is stale: the kind, and what changed (`clean_orders 2024-01-05`,
/// `sample-data/orders/dt=2024-01-05/orders.csv changed`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaleBecause {
    pub kind: StaleKind,
    pub changed: Vec<String>,
}

impl std::fmt::Display for StaleBecause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            StaleKind::Code => f.write_str("code changed"),
            kind => write!(
                f,
                "{kind} changed: {}",
                crate::text::shorten(&self.changed, 3)
            ),
        }
    }
}

/// An upstream table as it is now: its alias, and per physical version the data version
/// of each partition's content looked up so far.
struct UpstreamNow {
    alias: Option<i64>,
    contents: HashMap<i64, Contents>,
}

/// The data versions of some partitions of one physical version.
#[derive(Default)]
struct Contents {
    /// Every partition's is here.
    all: bool,
    /// Partitions looked up (those without content are looked up and absent below).
    looked: HashSet<String>,
    versions: HashMap<String, String>,
}

/// Asks the rule for many partitions: upstream tables and input folders are read once.
pub struct Staleness<'a> {
    catalog: &'a Catalog,
    listings: Listings<'a>,
    files: bool,
    upstream: HashMap<String, UpstreamNow>,
}

impl<'a> Staleness<'a> {
    pub fn new(project: &'a Project, catalog: &'a Catalog) -> Staleness<'a> {
        Staleness {
            catalog,
            listings: Listings::shared(&project.settings.root),
            files: true,
            upstream: HashMap::new(),
        }
    }

    /// Input files are not looked at (the daemon looks only within `watch_inputs`).
    pub fn without_files(mut self) -> Staleness<'a> {
        self.files = false;
        self
    }

    /// The stale partitions among `statuses` (of `job`'s table version), by partition.
    /// `fingerprint` is the job's current code.
    pub async fn of_job<'s>(
        &mut self,
        job: &Job,
        fingerprint: &str,
        statuses: impl IntoIterator<Item = &'s PartitionStatus>,
    ) -> Result<BTreeMap<String, StaleBecause>, CatalogError> {
        let with_content: Vec<&PartitionStatus> = statuses
            .into_iter()
            .filter(|p| p.content_run_id.is_some())
            .collect();
        let reads: Vec<Option<Reads>> = with_content.iter().map(|p| Reads::of_content(p)).collect();
        let each: Vec<(&PartitionStatus, Option<&Reads>)> = with_content
            .iter()
            .copied()
            .zip(reads.iter().map(Option::as_ref))
            .collect();
        let stale = self.of_each(job, fingerprint, &each).await?;
        Ok(with_content
            .iter()
            .zip(stale)
            .filter_map(|(p, why)| Some((p.partition_key.clone(), why?)))
            .collect())
    }

    /// Why each of `statuses` (of `job`'s table version) is stale, in their order, each
    /// with what its content's run read (as its row carries it, parsed by the caller).
    /// `fingerprint` is the job's current code.
    pub async fn of_each(
        &mut self,
        job: &Job,
        fingerprint: &str,
        statuses: &[(&PartitionStatus, Option<&Reads>)],
    ) -> Result<Vec<Option<StaleBecause>>, CatalogError> {
        let with_content = |p: &PartitionStatus| p.content_run_id.is_some();
        let reads = statuses
            .iter()
            .filter(|(p, _)| with_content(p))
            .filter_map(|(_, r)| *r);
        self.prefetch(reads).await?;
        let mut out = Vec::with_capacity(statuses.len());
        for (p, r) in statuses {
            out.push(match with_content(p) {
                true => self.of(job, fingerprint, p, *r).await?,
                false => None,
            });
        }
        Ok(out)
    }

    /// Looks up together the upstream partitions that all of `reads` name, so that asking
    /// [`Staleness::of`] of each of them then reads nothing more.
    pub async fn prefetch<'r>(
        &mut self,
        reads: impl Iterator<Item = &'r Reads>,
    ) -> Result<(), CatalogError> {
        let mut wanted: HashMap<(&str, i64), Option<HashSet<&str>>> = HashMap::new();
        for read in reads.flat_map(|r| &r.upstream) {
            let w = wanted
                .entry((read.table.as_str(), read.version))
                .or_insert_with(|| Some(HashSet::new()));
            match (&read.whole, &read.partitions, w.as_mut()) {
                (Some(_), _, _) => *w = None,
                (None, Some(ps), Some(set)) => set.extend(ps.keys().map(String::as_str)),
                _ => {}
            }
        }
        for ((table, version), keys) in wanted {
            let keys: Option<Vec<&str>> = keys.map(|k| k.into_iter().collect());
            self.look_up(table, version, keys.as_deref()).await?;
        }
        Ok(())
    }

    /// Why the complete partition `p` of `job` is stale, given what its content's run read
    /// (`None`: recorded before reads were; only its code is compared).
    pub async fn of(
        &mut self,
        job: &Job,
        fingerprint: &str,
        p: &PartitionStatus,
        reads: Option<&Reads>,
    ) -> Result<Option<StaleBecause>, CatalogError> {
        if p.state != PartitionState::Complete {
            return Ok(None);
        }
        if p.content_fingerprint.as_deref() != Some(fingerprint) {
            return Ok(Some(StaleBecause {
                kind: StaleKind::Code,
                changed: Vec::new(),
            }));
        }
        let Some(reads) = reads else {
            return Ok(None);
        };
        let mut changed = Vec::new();
        for read in &reads.upstream {
            changed.extend(self.upstream_changes(read).await?);
        }
        if !changed.is_empty() {
            return Ok(Some(StaleBecause {
                kind: StaleKind::Upstream,
                changed,
            }));
        }
        if self.files
            && let Ok(key) = job.parse_partition(&p.partition_key)
        {
            let now = self.listings.files_of(job, &key);
            let changed = differences(&reads.files, &now);
            if !changed.is_empty() {
                return Ok(Some(StaleBecause {
                    kind: StaleKind::Input,
                    changed,
                }));
            }
        }
        Ok(None)
    }

    /// The upstream partitions `read` names whose data version is not the one read, as
    /// `table partition`; or the alias's move, when it points at another version now.
    async fn upstream_changes(&mut self, read: &TableRead) -> Result<Vec<String>, CatalogError> {
        let named: Option<Vec<&str>> = match &read.whole {
            Some(_) => None,
            None => Some(
                read.partitions
                    .iter()
                    .flatten()
                    .map(|(p, _)| p.as_str())
                    .collect(),
            ),
        };
        self.look_up(&read.table, read.version, named.as_deref())
            .await?;
        let Some(now) = self.upstream.get(&read.table) else {
            return Ok(Vec::new());
        };
        if let Some(alias) = now.alias
            && alias != read.version
        {
            return Ok(vec![format!(
                "{} now v{alias} (read v{})",
                read.table, read.version
            )]);
        }
        let empty = HashMap::new();
        let contents = now
            .contents
            .get(&read.version)
            .map_or(&empty, |c| &c.versions);
        let mut changed: Vec<String> = read
            .partitions
            .iter()
            .flatten()
            .filter(|(p, v)| contents.get(*p).map_or("", String::as_str) != v.as_str())
            .map(|(p, _)| format!("{} {p}", read.table))
            .collect();
        if let Some(whole) = &read.whole {
            let now =
                super::whole_table_version(contents.iter().map(|(p, v)| (p.as_str(), v.as_str())));
            if &now != whole {
                changed.push(format!("{} (the whole table)", read.table));
            }
        }
        Ok(changed)
    }

    /// Makes sure the data versions of `keys` (all: `None`) of `table`'s `version` are
    /// known, with the table's alias: reads what is not known yet.
    async fn look_up(
        &mut self,
        table: &str,
        version: i64,
        keys: Option<&[&str]>,
    ) -> Result<(), CatalogError> {
        if !self.upstream.contains_key(table) {
            let alias = self.catalog.alias(table).await?;
            self.upstream.insert(
                table.to_string(),
                UpstreamNow {
                    alias,
                    contents: HashMap::new(),
                },
            );
        }
        let Some(now) = self.upstream.get_mut(table) else {
            return Ok(());
        };
        let known = now.contents.entry(version).or_default();
        if known.all {
            return Ok(());
        }
        let missing: Option<Vec<String>> = keys.map(|keys| {
            keys.iter()
                .filter(|k| !known.looked.contains(**k))
                .map(|k| k.to_string())
                .collect()
        });
        match missing {
            Some(m) if m.is_empty() => {}
            Some(m) if m.len() <= NAMED_AT_MOST => {
                let found = self
                    .catalog
                    .content_versions(table, version, Some(&m))
                    .await?;
                known.versions.extend(found);
                known.looked.extend(m);
            }
            _ => {
                known.versions = self.catalog.content_versions(table, version, None).await?;
                known.all = true;
                known.looked.clear();
            }
        }
        Ok(())
    }
}
