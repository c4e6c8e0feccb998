//! `sluice apply --env NAME`: builds exactly what `plan` shows for the environment. Each
//! job to build gets a physical version of the environment's own (`Catalog::
//! env_build_version`: the one it built before, if nothing else points there, else a new
//! one from `FIRST_ENV_VERSION` up), and the environment's alias points there before the
//! build, so that a job downstream reads what was built for it; every other table is read
//! through the environment's aliases as it is (production's physical tables). The build
//! itself is a backfill of the plan's partitions, the runner scoped to the environment:
//! its claims refuse any version the environment does not own, so it never writes a table
//! production or another environment points at. Run again, it builds what is missing or
//! stale only (a changed job's code, or what it read).

use super::env_plan::{self, EnvPlan, EnvPlanError};
use crate::backfill::{Request, Selection};
use crate::catalog::{Catalog, CatalogError, EnvBuild};
use crate::names::Name;
use crate::project::Project;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error)]
pub enum EnvApplyError {
    #[error(
        "apply builds in an environment: give --env NAME (`sluice env create NAME` makes one); production is built by `backfill` and `promote`"
    )]
    Production,
    #[error(
        "job {job}: its table {table} is not migrated yet; run `sluice migrate` on production first"
    )]
    NotMigrated { job: String, table: String },
    #[error(transparent)]
    Plan(#[from] EnvPlanError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// A table the build writes, and where.
#[derive(Debug, Clone, Serialize)]
pub struct Built {
    pub job: String,
    pub table: String,
    /// The environment's own physical version, its alias there.
    pub version: i64,
    /// What the environment's alias pointed at before (production's, until a first apply).
    pub replaces: Option<i64>,
}

/// What an apply builds: the plan, the versions it writes, and the backfill that builds
/// them, over the project with those jobs writing there.
pub struct Prepared {
    pub plan: EnvPlan,
    pub built: Vec<Built>,
    /// The jobs of the plan with no partition to build (a new table, no range given):
    /// given no version.
    pub empty: Vec<String>,
    /// `None` when nothing needs building.
    pub request: Option<Request>,
    pub project: Project,
}

/// Plans the build in the environment `catalog` is scoped to, takes a version of its own
/// for each job to build and points the environment's aliases there.
pub async fn prepare(
    project: &Project,
    catalog: &Catalog,
    range: Option<(&str, &str)>,
    now_ms: i64,
) -> Result<Prepared, EnvApplyError> {
    if catalog.env().is_none() {
        return Err(EnvApplyError::Production);
    }
    let plan = env_plan::plan(project, catalog, range).await?;
    let (mut built, mut empty) = (Vec::new(), Vec::new());
    let mut versions: BTreeMap<Name, u32> = BTreeMap::new();
    let mut exactly: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for j in &plan.build {
        let Some(job) = project.jobs.get(j.job.as_str()) else {
            continue;
        };
        if j.partitions.is_empty() {
            empty.push(j.job.clone());
            continue;
        }
        let not_migrated = || EnvApplyError::NotMigrated {
            job: j.job.clone(),
            table: j.table.clone(),
        };
        let schema = catalog
            .table(job.table.as_str())
            .await?
            .ok_or_else(not_migrated)?
            .schema;
        let uri_of = |v: i64| {
            let v = u32::try_from(v).unwrap_or(u32::MAX);
            crate::warehouse::version_url(&project.settings.warehouse, &job.table, v).to_string()
        };
        let version = catalog
            .env_build_version(&EnvBuild {
                table: job.table.as_str(),
                spec_version: i64::from(job.version),
                schema_json: &schema.to_json(),
                uri_of: &uri_of,
                now_ms,
            })
            .await?;
        let physical = u32::try_from(version).map_err(|_| {
            CatalogError::Corrupt(format!("{} v{version} is past any version number", j.table))
        })?;
        versions.insert(job.name.clone(), physical);
        exactly.insert(j.job.clone(), j.partitions.iter().cloned().collect());
        built.push(Built {
            job: j.job.clone(),
            table: j.table.clone(),
            version,
            replaces: j.replaces,
        });
    }
    let request = (!built.is_empty()).then(|| {
        // The plan's partitions may reach before a range given (what a window reads).
        let (from, to) = match (span(project, &exactly), range) {
            ((f, _), Some((from, to))) if f.is_empty() => (from.to_string(), to.to_string()),
            (span, _) => span,
        };
        Request {
            jobs: built.iter().map(|b| b.job.clone()).collect(),
            downstream: false,
            from,
            to,
            only: None,
            keys: None,
            version: None,
            // What is missing or stale: a version built before is rebuilt only where the
            // code or what it read changed since.
            selection: Selection::Stale,
            newest_first: false,
            exactly: Some(exactly),
        }
    });
    Ok(Prepared {
        project: project.at_versions(&versions),
        plan,
        built,
        empty,
        request,
    })
}

/// The first and last time of the partitions to build (empty when none has a time: jobs
/// partitioned by key only). Times of one form sort as they fall; a coarser one sorts
/// before the finer ones it holds, and ends with the last of them.
fn span(project: &Project, partitions: &BTreeMap<String, BTreeSet<String>>) -> (String, String) {
    let times: BTreeSet<String> = partitions
        .iter()
        .filter_map(|(job, keys)| Some((project.jobs.get(job.as_str())?, keys)))
        .flat_map(|(job, keys)| keys.iter().filter_map(|k| job.parse_partition(k).ok()))
        .filter(|k| k.start().is_some())
        .map(|k| k.time.to_string())
        .collect();
    match (times.first(), times.last()) {
        (Some(first), Some(last)) => (first.clone(), last.clone()),
        _ => (String::new(), String::new()),
    }
}
