//! A partition's upstream inputs: each table input's alias resolved to a physical version
//! and a snapshot that holds what is read, with the partition filter pushed into the scan;
//! and, for the daemon, which upstream partitions are not complete yet. Which upstream
//! partitions are read is `Project::upstream_reads`, the one rule.

use super::RunError;
use super::handles::Tables;
use crate::catalog::{Catalog, PartitionState, PartitionStatus};
use crate::engine::UpstreamInput;
use crate::job::Job;
use crate::partition::PartitionKey;
use crate::project::{Project, UpstreamRead};
use crate::provenance::TableRead;
use crate::schema::TableSchema;
use std::collections::HashMap;
use tracing::warn;

/// What an upstream input's partitions hold as the run starts.
enum Contents {
    /// Those the partition reads, by key (`None`: never written).
    Some(Vec<(String, Option<PartitionStatus>)>),
    /// Every partition of the table.
    Whole(Vec<PartitionStatus>),
}

/// The newest Delta version holding the content of the partitions found, or `None` when
/// some are not complete (then only the latest snapshot will do, and the gap is logged).
fn newest_content(table: &str, found: &[(String, Option<PartitionStatus>)]) -> Option<i64> {
    let mut incomplete = Vec::new();
    let mut newest = Some(0i64);
    for (k, p) in found {
        match p {
            Some(p) if p.state == PartitionState::Complete => {
                newest = newest.zip(p.content_delta_version).map(|(a, b)| a.max(b));
            }
            _ => {
                incomplete.push(k.clone());
                newest = None;
            }
        }
    }
    if !incomplete.is_empty() {
        warn!(
            upstream = %table,
            count = incomplete.len(),
            partitions = %crate::text::shorten(&incomplete, 5),
            "upstream partitions are not complete; reading what is there"
        );
    }
    newest
}

/// What one daemon pass has read of upstream tables: each alias, and per (table,
/// version) whether each partition asked about is complete and whether any is. Only the
/// partitions the queue's items read are looked up, whatever the tables' lengths.
#[derive(Debug, Default)]
pub struct CompletePartitions {
    aliases: HashMap<String, Option<i64>>,
    named: HashMap<(String, i64), HashMap<String, bool>>,
    any: HashMap<(String, i64), bool>,
}

impl CompletePartitions {
    pub fn new() -> Self {
        Self::default()
    }
}

/// A partition's inputs, read through the catalog (aliases, what is complete) and this
/// process's open tables (snapshots).
pub(super) struct Inputs<'r> {
    pub project: &'r Project,
    pub catalog: &'r Catalog,
    pub tables: &'r Tables,
}

impl Inputs<'_> {
    /// For each table input: the version its alias points at, and which of its partitions
    /// this partition reads; with what the run records of it (the physical version and each
    /// partition's data version).
    pub(super) async fn resolve(
        &self,
        job: &Job,
        key: &PartitionKey,
    ) -> Result<(Vec<UpstreamInput>, Vec<TableRead>), RunError> {
        let mut inputs = Vec::new();
        let mut reads = Vec::new();
        for read in self.project.upstream_reads(job, key) {
            let (input, record) = self.resolve_one(&read).await?;
            inputs.push(input);
            reads.push(record);
        }
        Ok((inputs, reads))
    }

    async fn resolve_one(
        &self,
        read: &UpstreamRead<'_>,
    ) -> Result<(UpstreamInput, TableRead), RunError> {
        let table = read.table.as_str();
        let err = |why: String| RunError::Upstream {
            input: read.input.to_string(),
            table: table.to_string(),
            why,
        };
        let version = self.catalog.alias(table).await?.ok_or_else(|| {
            err("has no data yet (no version is live); run the job that writes it first".into())
        })?;
        let tv = self
            .catalog
            .table_version(table, version)
            .await?
            .ok_or_else(|| {
                err(format!(
                    "alias points at version {version}, which is not registered"
                ))
            })?;
        let url =
            url::Url::parse(&tv.uri).map_err(|e| err(format!("bad location {}: {e}", tv.uri)))?;
        let up_schema: TableSchema = serde_json::from_str(&tv.schema_json)
            .map_err(|e| err(format!("stored schema does not parse: {e}")))?;
        let filter = crate::engine::upstream_filter(read, &up_schema);
        // What the partitions read hold now, read before the snapshot is taken: a rewrite
        // in between makes the partition stale again (it recorded the older version), never
        // fresh with content it did not read.
        let contents = match &read.keys {
            Some(keys) => Contents::Some(self.contents_of(table, version, keys).await?),
            None => Contents::Whole(self.catalog.partitions_of(table, version).await?),
        };
        // The Delta version the snapshot must have reached to hold what we read; `None`
        // when only the latest will do.
        let needed_version = match (&filter, &contents) {
            (Some(_), Contents::Some(found)) => newest_content(table, found),
            _ => None,
        };
        let snapshot = self
            .tables
            .snapshot(table, version as u32, &url, &tv.schema_json, needed_version)
            .await?;
        let version_of = |p: &PartitionStatus| p.content_version.clone().unwrap_or_default();
        let record = match &contents {
            Contents::Some(found) => TableRead {
                table: table.to_string(),
                version,
                partitions: Some(
                    found
                        .iter()
                        .map(|(k, p)| (k.clone(), p.as_ref().map(version_of).unwrap_or_default()))
                        .collect(),
                ),
                whole: None,
            },
            Contents::Whole(all) => {
                let versions: Vec<(String, String)> = all
                    .iter()
                    .filter(|p| p.content_run_id.is_some())
                    .map(|p| (p.partition_key.clone(), version_of(p)))
                    .collect();
                TableRead {
                    table: table.to_string(),
                    version,
                    partitions: None,
                    whole: Some(crate::provenance::whole_table_version(
                        versions.iter().map(|(p, v)| (p.as_str(), v.as_str())),
                    )),
                }
            }
        };
        let input = UpstreamInput {
            name: read.input.clone(),
            data: crate::engine::UpstreamData::Delta(snapshot),
            filter,
        };
        Ok((input, record))
    }

    /// Each of `keys` as the catalog has it now (`None`: never written).
    async fn contents_of(
        &self,
        table: &str,
        version: i64,
        keys: &[PartitionKey],
    ) -> Result<Vec<(String, Option<PartitionStatus>)>, RunError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let key = k.to_string();
            let p = self.catalog.partition_status(table, version, &key).await?;
            out.push((key, p));
        }
        Ok(out)
    }

    /// The upstream partitions `key` of `job` reads that are not complete yet, as
    /// `table/partition`: the daemon runs the partition only when this is empty. `seen`
    /// caches each upstream version's complete partitions across calls of one pass.
    pub(super) async fn waits(
        &self,
        job: &Job,
        key: &PartitionKey,
        seen: &mut CompletePartitions,
    ) -> Result<Vec<String>, RunError> {
        let mut waits = Vec::new();
        for read in self.project.upstream_reads(job, key) {
            let Some(up) = read.writer else {
                continue;
            };
            let table = read.table;
            let alias = match seen.aliases.get(table.as_str()) {
                Some(a) => *a,
                None => {
                    let a = self.catalog.alias(table.as_str()).await?;
                    seen.aliases.insert(table.to_string(), a);
                    a
                }
            };
            let cache_key = (table.to_string(), alias.unwrap_or(i64::from(up.version)));
            let version = cache_key.1;
            match &read.keys {
                Some(keys) => {
                    let texts: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                    let known = seen.named.entry(cache_key).or_default();
                    let missing: Vec<String> = texts
                        .iter()
                        .filter(|t| !known.contains_key(*t))
                        .cloned()
                        .collect();
                    if !missing.is_empty() {
                        let states = self
                            .catalog
                            .states_named(table.as_str(), version, &missing)
                            .await?;
                        for t in missing {
                            let complete = states.get(&t) == Some(&PartitionState::Complete);
                            known.insert(t, complete);
                        }
                    }
                    for t in texts {
                        if known.get(&t) != Some(&true) {
                            waits.push(format!("{table}/{t}"));
                        }
                    }
                }
                // The whole table: it must have been written at least once.
                None => {
                    let any = match seen.any.get(&cache_key) {
                        Some(any) => *any,
                        None => {
                            let any = self.catalog.any_complete(table.as_str(), version).await?;
                            seen.any.insert(cache_key, any);
                            any
                        }
                    };
                    if !any {
                        waits.push(format!("{table} (any partition)"));
                    }
                }
            }
        }
        Ok(waits)
    }
}
