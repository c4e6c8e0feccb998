//! Each partition as `status` and the pages show it: its catalog row, whether it is stale
//! and why (`provenance::Staleness`, the one rule), and what its content's run read.

use crate::catalog::{Catalog, CatalogError, PartitionStatus};
use crate::project::Project;
use crate::provenance::{Reads, StaleBecause, Staleness};

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

/// The views of partition rows read already, with staleness judged per job.
pub async fn views(
    project: &Project,
    catalog: &Catalog,
    rows: Vec<PartitionStatus>,
) -> Result<Vec<PartitionView>, CatalogError> {
    // Each row becomes its view in place: a row is never copied, whatever the count. What
    // its content read is parsed once, here.
    let mut views: Vec<PartitionView> = rows
        .into_iter()
        .map(|status| PartitionView {
            reads: Reads::of_content(&status),
            status,
            stale: None,
        })
        .collect();
    let mut staleness = Staleness::new(project, catalog);
    // The jobs in the order their rows come, each once (rows come a job at a time).
    let mut jobs: Vec<String> = Vec::new();
    for v in &views {
        if jobs.last() != Some(&v.status.job) {
            jobs.push(v.status.job.clone());
        }
    }
    for name in jobs {
        let Some(j) = project.jobs.get(name.as_str()) else {
            continue;
        };
        let Some(table) = catalog.table(j.table.as_str()).await? else {
            continue;
        };
        let fp = crate::fingerprint::fingerprint(j, &table.schema);
        let version = i64::from(j.version);
        let judged: Vec<usize> = (0..views.len())
            .filter(|i| views[*i].status.job == name && views[*i].status.table_version == version)
            .collect();
        let each: Vec<_> = judged
            .iter()
            .map(|i| (&views[*i].status, views[*i].reads.as_ref()))
            .collect();
        let stale = staleness.of_each(j, &fp, &each).await?;
        for (i, why) in judged.into_iter().zip(stale) {
            views[i].stale = why;
        }
    }
    Ok(views)
}
