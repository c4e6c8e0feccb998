//! `sluice plan [--env NAME]`: what the checkout's jobs would need built in an environment
//! (production's aliases without one). A job has changed when the version its table's
//! alias points at there was written by other code than the checkout's (a partition's
//! recorded fingerprint differs: SQL, spec or the table's schema); it is new when its table
//! has no version yet. Every job that reads a changed or new one, directly or not, is
//! affected. Each job to build needs the partitions the version it replaces holds, or,
//! given a range, those of the range (as `backfill --force` would select them). The plan
//! reads the catalog only.

use crate::backfill::{self, BackfillError, Request, Selection};
use crate::catalog::{Catalog, CatalogError, PROD};
use crate::job::Job;
use crate::names::Name;
use crate::project::Project;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error)]
pub enum EnvPlanError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Backfill(#[from] BackfillError),
}

crate::spelling::spelled_enum! {
    /// Why a job is in the plan.
    pub enum Change {
        /// Its table has no version yet.
        New => "new",
        /// The version its alias points at was written by other code.
        Changed => "changed",
        /// It reads a changed or new job, directly or through others.
        Affected => "affected",
    }
}

/// One job the plan builds.
#[derive(Debug, Clone, Serialize)]
pub struct JobToBuild {
    pub job: String,
    pub table: String,
    pub change: Change,
    /// The version its table's alias points at (what a build would replace), if any.
    pub replaces: Option<i64>,
    /// For a changed job, what differs; for an affected one, the changed jobs it reads,
    /// directly or through others.
    pub because: String,
    /// The partitions to build, in key order.
    pub partitions: Vec<String>,
}

/// What `sluice plan` shows.
#[derive(Debug, Clone, Serialize)]
pub struct EnvPlan {
    pub env: String,
    /// The range asked for, if any (`FROM..TO`).
    pub range: Option<(String, String)>,
    /// In the project's job order: upstream first.
    pub build: Vec<JobToBuild>,
    /// The jobs whose tables are read as they are, through the environment's aliases.
    pub unchanged: Vec<String>,
}

/// Plans the build of `project`'s jobs in the environment `catalog` is scoped to; `range`
/// (`from`, `to`, as `backfill` takes them) chooses the partitions.
pub async fn plan(
    project: &Project,
    catalog: &Catalog,
    range: Option<(&str, &str)>,
) -> Result<EnvPlan, EnvPlanError> {
    let mut changes: BTreeMap<Name, (Change, Option<i64>, String)> = BTreeMap::new();
    for name in &project.graph.order {
        let Some(job) = project.jobs.get(name) else {
            continue;
        };
        if let Some((change, replaces, because)) = own_change(catalog, job).await? {
            changes.insert(name.clone(), (change, replaces, because));
        }
    }
    // What reads a changed job is built again with it: by name of what it reads.
    let mut affected: BTreeMap<Name, BTreeSet<Name>> = BTreeMap::new();
    for changed in changes.keys() {
        for d in project.graph.downstream_of(changed) {
            if !changes.contains_key(&d) {
                affected.entry(d).or_default().insert(changed.clone());
            }
        }
    }
    for (name, upstream) in affected {
        let Some(job) = project.jobs.get(&name) else {
            continue;
        };
        let replaces = catalog.alias(job.table.as_str()).await?;
        let names: Vec<String> = upstream.iter().map(Name::to_string).collect();
        let because = format!("downstream of {}", names.join(", "));
        changes.insert(name, (Change::Affected, replaces, because));
    }
    let in_range = match range {
        Some((from, to)) => Some(range_partitions(project, catalog, &changes, from, to).await?),
        None => None,
    };
    let mut build = Vec::new();
    let mut unchanged = Vec::new();
    for name in &project.graph.order {
        let Some(job) = project.jobs.get(name) else {
            continue;
        };
        let Some((change, replaces, because)) = changes.remove(name) else {
            unchanged.push(name.to_string());
            continue;
        };
        let partitions = match (&in_range, replaces) {
            (Some(by_job), _) => by_job.get(name).cloned().unwrap_or_default(),
            (None, Some(v)) => held_partitions(catalog, job, v).await?,
            (None, None) => Vec::new(),
        };
        build.push(JobToBuild {
            job: name.to_string(),
            table: job.table.to_string(),
            change,
            replaces,
            because,
            partitions,
        });
    }
    Ok(EnvPlan {
        env: catalog.env().unwrap_or(PROD).to_string(),
        range: range.map(|(f, t)| (f.to_string(), t.to_string())),
        build,
        unchanged,
    })
}

/// Whether `job` itself differs from what its table's aliased version was written by:
/// the change, the version replaced, and what differs.
async fn own_change(
    catalog: &Catalog,
    job: &Job,
) -> Result<Option<(Change, Option<i64>, String)>, CatalogError> {
    let Some(version) = catalog.alias(job.table.as_str()).await? else {
        return Ok(Some((
            Change::New,
            None,
            format!("table {} has no version yet", job.table),
        )));
    };
    let Some(table) = catalog.table(job.table.as_str()).await? else {
        return Ok(Some((
            Change::New,
            None,
            format!("table {} is not migrated yet", job.table),
        )));
    };
    let fp = crate::fingerprint::fingerprint(job, &table.schema);
    let written: BTreeSet<String> = catalog
        .partitions_of(job.table.as_str(), version)
        .await?
        .into_iter()
        .filter(|p| p.content_run_id.is_some())
        .filter_map(|p| p.content_fingerprint)
        .collect();
    if written.is_empty() {
        // Nothing written in it: the version the checkout names is what would be built.
        return Ok((i64::from(job.version) != version).then(|| {
            (
                Change::Changed,
                Some(version),
                format!(
                    "its spec names v{}; the alias points at v{version}",
                    job.version
                ),
            )
        }));
    }
    if written.iter().all(|w| *w == fp) {
        return Ok(None);
    }
    let what = match i64::from(job.version) == version {
        true => format!("its code differs from what wrote {} v{version}", job.table),
        false => format!(
            "its spec names v{}; {} v{version} was written by other code",
            job.version, job.table
        ),
    };
    Ok(Some((Change::Changed, Some(version), what)))
}

/// The partitions of `version` of `job`'s table that hold data, in key order.
async fn held_partitions(
    catalog: &Catalog,
    job: &Job,
    version: i64,
) -> Result<Vec<String>, CatalogError> {
    let mut keys: Vec<String> = catalog
        .partitions_of(job.table.as_str(), version)
        .await?
        .into_iter()
        .filter(|p| p.content_run_id.is_some())
        .map(|p| p.partition_key)
        .collect();
    keys.sort();
    Ok(keys)
}

/// The partitions of the range of each job to build, as a forced backfill of exactly
/// those jobs would select them.
async fn range_partitions(
    project: &Project,
    catalog: &Catalog,
    changes: &BTreeMap<Name, (Change, Option<i64>, String)>,
    from: &str,
    to: &str,
) -> Result<BTreeMap<Name, Vec<String>>, EnvPlanError> {
    let req = Request {
        jobs: changes.keys().map(Name::to_string).collect(),
        downstream: false,
        from: from.to_string(),
        to: to.to_string(),
        only: None,
        keys: None,
        version: None,
        selection: Selection::Force,
        newest_first: false,
    };
    if req.jobs.is_empty() {
        return Ok(BTreeMap::new());
    }
    let plan = backfill::plan(project, catalog, &req).await?;
    let mut out: BTreeMap<Name, Vec<String>> = BTreeMap::new();
    for item in plan.items {
        let Ok(name) = Name::new(&item.job) else {
            continue;
        };
        out.entry(name).or_default().push(item.partition);
    }
    for keys in out.values_mut() {
        keys.sort();
    }
    Ok(out)
}
