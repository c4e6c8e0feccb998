//! Each partition as `status` and the pages show it: its catalog row, whether it is stale
//! and why (`provenance::Staleness`, the one rule), and what its content's run read.

use crate::catalog::{Catalog, CatalogError, PartitionStatus};
use crate::project::Project;
use crate::provenance::{Reads, StaleBecause, Staleness};
use std::collections::HashMap;

pub struct PartitionView {
    pub status: PartitionStatus,
    /// Set when complete and stale; judged only for the version the job's spec builds.
    pub stale: Option<StaleBecause>,
    /// What the run that wrote the content read.
    pub reads: Option<Reads>,
}

crate::spelling::spelled_enum! {
    /// A partition's state as `status` shows it and `status --state` selects: the
    /// catalog's, with a stale complete partition apart.
    pub enum ShownState {
        Running => "running",
        Complete => "complete",
        Failed => "failed",
        Stale => "stale",
    }
}

impl PartitionView {
    /// The state shown: `stale` for a stale complete partition, else the catalog's.
    pub fn state(&self) -> ShownState {
        use crate::catalog::PartitionState;
        match (&self.stale, self.status.state) {
            (Some(_), _) => ShownState::Stale,
            (None, PartitionState::Running) => ShownState::Running,
            (None, PartitionState::Complete) => ShownState::Complete,
            (None, PartitionState::Failed) => ShownState::Failed,
        }
    }
}

/// Every partition (of `job`, when given), with staleness judged per job.
pub async fn partitions(
    project: &Project,
    catalog: &Catalog,
    job: Option<&str>,
) -> Result<Vec<PartitionView>, CatalogError> {
    let rows = catalog.partition_statuses(job).await?;
    let mut staleness = Staleness::new(project, catalog);
    let mut stale = HashMap::new();
    let mut reads = HashMap::new();
    let mut judged_versions = std::collections::HashSet::new();
    let mut jobs: Vec<&str> = rows.iter().map(|r| r.job.as_str()).collect();
    jobs.dedup();
    for name in jobs {
        let Some(j) = project.jobs.get(name) else {
            continue;
        };
        let Some(table) = catalog.table(j.table.as_str()).await? else {
            continue;
        };
        let fp = crate::fingerprint::fingerprint(j, &table.schema);
        let version = i64::from(j.version);
        let mine: Vec<PartitionStatus> = rows
            .iter()
            .filter(|r| r.job == name && r.table_version == version)
            .cloned()
            .collect();
        let (judged, read) = staleness.of_job_with_reads(j, &fp, &mine).await?;
        for (p, why) in judged {
            stale.insert((name.to_string(), version, p), why);
        }
        reads.extend(
            read.into_iter()
                .map(|(p, r)| ((j.table.to_string(), version, p), r)),
        );
        judged_versions.insert((j.table.to_string(), version));
    }
    // What the content of the other versions' partitions read.
    let mut tables: Vec<(&str, i64)> = rows
        .iter()
        .map(|r| (r.table_name.as_str(), r.table_version))
        .filter(|(t, v)| !judged_versions.contains(&(t.to_string(), *v)))
        .collect();
    tables.dedup();
    for (t, v) in tables {
        for (p, json) in catalog.content_reads(t, v).await? {
            if let Some(r) = Reads::from_json(json.as_deref()) {
                reads.insert((t.to_string(), v, p), r);
            }
        }
    }
    Ok(rows
        .into_iter()
        .map(|status| {
            let k = (
                status.job.clone(),
                status.table_version,
                status.partition_key.clone(),
            );
            let t = (
                status.table_name.clone(),
                status.table_version,
                status.partition_key.clone(),
            );
            PartitionView {
                stale: stale.remove(&k),
                reads: reads.remove(&t),
                status,
            }
        })
        .collect())
}
