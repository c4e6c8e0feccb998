//! The downstream partitions a run made stale: those that read a partition it rewrote
//! (`provenance`'s rule, asked of the jobs that read its table); and rerunning them, level
//! by level (day, then month), as `run --downstream` does.

use crate::catalog::{Catalog, CatalogError};
use crate::job::Job;
use crate::names::Name;
use crate::partition::PartitionKey;
use crate::project::Project;
use crate::provenance::{StaleBecause, StaleKind, Staleness};
use crate::run::{RunOutcome, RunReport, RunRequest, Runner, Trigger};

/// A downstream partition made stale by a rewrite.
pub struct MadeStale {
    pub job: Job,
    pub key: PartitionKey,
    pub because: StaleBecause,
    /// The run whose content is stale: a rerun elsewhere since counts as done.
    pub content_run: Option<String>,
}

/// The complete partitions of the jobs that read `written`'s tables (directly) that are
/// stale because a partition in `written` was rewritten since they read it; in the
/// project's job order.
pub async fn made_stale_by(
    project: &Project,
    catalog: &Catalog,
    written: &[(Name, PartitionKey)],
) -> Result<Vec<MadeStale>, CatalogError> {
    let mut changed = std::collections::BTreeSet::new();
    let mut writers = std::collections::BTreeSet::new();
    for (job, key) in written {
        if let Some(j) = project.jobs.get(job) {
            changed.insert(format!("{} {key}", j.table));
            writers.insert(job.clone());
        }
    }
    let mut out = Vec::new();
    let mut staleness = Staleness::new(project, catalog).without_files();
    for name in &project.graph.order {
        let reads_written = project
            .graph
            .upstream
            .get(name)
            .is_some_and(|ups| ups.iter().any(|u| writers.contains(u)));
        let Some(job) = project.jobs.get(name).filter(|_| reads_written) else {
            continue;
        };
        let Some(table) = catalog.table(job.table.as_str()).await? else {
            continue;
        };
        let fp = crate::fingerprint::fingerprint(job, &table.schema);
        let statuses = catalog
            .partitions_of(job.table.as_str(), i64::from(job.version))
            .await?;
        let stale = staleness.of_job(job, &fp, &statuses).await?;
        for p in &statuses {
            let Some(why) = stale.get(&p.partition_key) else {
                continue;
            };
            if why.kind != StaleKind::Upstream || !why.changed.iter().any(|c| changed.contains(c)) {
                continue;
            }
            let Ok(key) = job.parse_partition(&p.partition_key) else {
                continue;
            };
            out.push(MadeStale {
                job: job.clone(),
                key,
                because: why.clone(),
                content_run: p.content_run_id.clone(),
            });
        }
    }
    Ok(out)
}

/// Reruns what `written` made stale downstream, then what those reruns made stale, until
/// nothing is; returns each rerun's report, in the order run. Stops at a level with a
/// failure: what reads a failed partition is not rerun.
pub async fn rerun_downstream(
    runner: &Runner,
    catalog: &Catalog,
    written: Vec<(Name, PartitionKey)>,
) -> Result<Vec<RunReport>, CatalogError> {
    let mut reports = Vec::new();
    let mut level = written;
    while !level.is_empty() {
        let project = runner.project();
        let stale = made_stale_by(&project, catalog, &level).await?;
        let mut next = Vec::new();
        for s in stale {
            let request = RunRequest::new(&s.job, s.key, Trigger::Run);
            let request = match s.content_run {
                Some(run) => request.unless_rewritten_after(run),
                None => request,
            };
            let report = runner.run(request).await;
            if report.state == RunOutcome::Succeeded {
                next.push((s.job.name.clone(), s.key));
            }
            let failed = report.state == RunOutcome::Failed;
            reports.push(report);
            if failed {
                return Ok(reports);
            }
        }
        level = next;
    }
    Ok(reports)
}
