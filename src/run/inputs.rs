//! A partition's upstream inputs: each table input's alias resolved to a physical version
//! and a snapshot that holds what is read, with the partition filter pushed into the scan;
//! and, for the daemon, which upstream partitions are not complete yet. Which upstream
//! partitions are read is `Project::upstream_reads`, the one rule.

use super::RunError;
use super::handles::Tables;
use crate::catalog::{Catalog, PartitionState};
use crate::engine::UpstreamInput;
use crate::job::Job;
use crate::partition::PartitionKey;
use crate::project::{Project, UpstreamRead};
use crate::provenance::TableRead;
use crate::schema::TableSchema;
use std::collections::{HashMap, HashSet};
use tracing::warn;

/// The complete partitions of upstream (table, version)s, as read once per daemon pass.
pub type CompletePartitions = HashMap<(String, i64), HashSet<String>>;

/// A partition's inputs, read through the catalog (aliases, what is complete) and this
/// process's open tables (snapshots).
pub(super) struct Inputs<'r> {
    pub project: &'r Project,
    pub catalog: &'r Catalog,
    pub tables: &'r Tables,
}

impl Inputs<'_> {
    /// For each table input: the version its alias points at, and which of its partitions
    /// this partition reads; with what identifies the content read (the snapshot's Delta
    /// version), which the run records.
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
        // The Delta version the snapshot must have reached to hold what we read; `None`
        // when only the latest will do.
        let needed_version = match (&filter, &read.keys) {
            (Some(_), Some(keys)) => self.newest_content_of(table, version, keys).await?,
            _ => None,
        };
        let snapshot = self
            .tables
            .snapshot(table, version as u32, &url, &tv.schema_json, needed_version)
            .await?;
        let record = TableRead {
            table: table.to_string(),
            version,
            delta_version: snapshot.version().map_or(0, |v| v as i64),
            partitions: read
                .keys
                .as_ref()
                .map(|keys| keys.iter().map(|k| k.to_string()).collect()),
        };
        let input = UpstreamInput {
            name: read.input.clone(),
            data: crate::engine::UpstreamData::Delta(snapshot),
            filter,
        };
        Ok((input, record))
    }

    /// The newest Delta version holding the content of `keys`, or `None` when some are
    /// not complete (then only the latest snapshot will do, and the gap is logged).
    async fn newest_content_of(
        &self,
        table: &str,
        version: i64,
        keys: &[PartitionKey],
    ) -> Result<Option<i64>, RunError> {
        let mut incomplete = Vec::new();
        let mut newest = Some(0i64);
        for k in keys {
            let p = self
                .catalog
                .partition_status(table, version, &k.to_string())
                .await?;
            match p {
                Some(p) if p.state == PartitionState::Complete => {
                    newest = newest.zip(p.content_delta_version).map(|(a, b)| a.max(b));
                }
                _ => {
                    incomplete.push(k.to_string());
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
        Ok(newest)
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
                    .filter(|p| p.state == PartitionState::Complete)
                    .map(|p| p.partition_key)
                    .collect();
                seen.insert(cache_key.clone(), complete);
            }
            let complete = &seen[&cache_key];
            match &read.keys {
                Some(keys) => {
                    for k in keys {
                        if !complete.contains(&k.to_string()) {
                            waits.push(format!("{table}/{k}"));
                        }
                    }
                }
                // The whole table: it must have been written at least once.
                None if complete.is_empty() => {
                    waits.push(format!("{table} (any partition)"));
                }
                None => {}
            }
        }
        Ok(waits)
    }
}
