//! `sluice plan [--env NAME]`: what the checkout's jobs would need built in an environment
//! (production's aliases without one). A job has changed when the version its table's
//! alias points at there was written by other code than the checkout's (a partition's
//! recorded fingerprint differs: SQL, spec or the table's schema); it is new when its table
//! has no version yet. Every job that reads a changed or new one, directly or not, is
//! affected, unless the change only adds columns (`env_classify`) and the job does not take
//! every column (`*`): such a job is not rebuilt, nor what reads it because of it. Each job
//! to build needs the partitions the version it replaces holds, or, given a range, those of
//! the range (as `backfill --force` would select them). The plan reads the catalog only.

use crate::backfill::{self, BackfillError, Request, Selection};
use crate::catalog::{Catalog, CatalogError, PROD};
use crate::job::Job;
use crate::names::Name;
use crate::partition::PartitionKey;
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
    /// For a changed job: whether its change may change what its readers compute (false
    /// only when it adds columns and nothing else).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaking: Option<bool>,
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
    /// Of those, the ones downstream of a change that need no rebuild, and why.
    pub not_rebuilt: Vec<NotRebuilt>,
}

/// A job downstream of a change that only adds columns, which it does not read.
#[derive(Debug, Clone, Serialize)]
pub struct NotRebuilt {
    pub job: String,
    pub because: String,
}

/// Why a job is to be built: its change, the version it replaces, what differs and (for a
/// changed job) whether that breaks its readers.
struct Why {
    change: Change,
    replaces: Option<i64>,
    because: String,
    breaking: Option<bool>,
}

impl Why {
    fn breaks_readers(&self) -> bool {
        self.breaking != Some(false)
    }
}

/// Plans the build of `project`'s jobs in the environment `catalog` is scoped to; `range`
/// (`from`, `to`, as `backfill` takes them) chooses the partitions.
pub async fn plan(
    project: &Project,
    catalog: &Catalog,
    range: Option<(&str, &str)>,
) -> Result<EnvPlan, EnvPlanError> {
    let mut changes: BTreeMap<Name, Why> = BTreeMap::new();
    for name in &project.graph.order {
        let Some(job) = project.jobs.get(name) else {
            continue;
        };
        if let Some(why) = own_change(catalog, job).await? {
            changes.insert(name.clone(), why);
        }
    }
    let (affected, skipped) = downstream(project, &changes);
    for (name, upstream) in affected {
        let Some(job) = project.jobs.get(&name) else {
            continue;
        };
        let why = Why {
            change: Change::Affected,
            replaces: catalog.alias(job.table.as_str()).await?,
            because: format!("downstream of {}", joined(&upstream)),
            breaking: None,
        };
        changes.insert(name, why);
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
        let Some(why) = changes.remove(name) else {
            unchanged.push(name.to_string());
            continue;
        };
        let partitions = match (&in_range, why.replaces) {
            (Some(by_job), _) => by_job.get(name).cloned().unwrap_or_default(),
            (None, Some(v)) => held_partitions(catalog, job, v).await?,
            (None, None) => Vec::new(),
        };
        build.push(JobToBuild {
            job: name.to_string(),
            table: job.table.to_string(),
            change: why.change,
            replaces: why.replaces,
            because: why.because,
            breaking: why.breaking,
            partitions,
        });
    }
    let not_rebuilt = skipped
        .into_iter()
        .map(|(job, ups)| NotRebuilt {
            job: job.to_string(),
            because: format!(
                "the change of {} only adds columns, and it takes none of them (no `*`)",
                joined(&ups)
            ),
        })
        .collect();
    Ok(EnvPlan {
        env: catalog.env().unwrap_or(PROD).to_string(),
        range: range.map(|(f, t)| (f.to_string(), t.to_string())),
        build,
        unchanged,
        not_rebuilt,
    })
}

fn joined(names: &BTreeSet<Name>) -> String {
    names
        .iter()
        .map(Name::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Jobs, each with the changed jobs that reach it.
type ByRoot = BTreeMap<Name, BTreeSet<Name>>;

/// The jobs downstream of the changed ones, upstream first: those to rebuild (with the
/// changed jobs that reach them) and those a change that only adds columns leaves as they
/// are (with those changes). A rebuilt job's readers are rebuilt in turn.
fn downstream(project: &Project, own: &BTreeMap<Name, Why>) -> (ByRoot, ByRoot) {
    let (mut rebuild, mut skipped) = (ByRoot::new(), ByRoot::new());
    for name in &project.graph.order {
        if own.contains_key(name) {
            continue;
        }
        let Some(ups) = project.graph.upstream.get(name) else {
            continue;
        };
        let takes_all = || {
            project
                .jobs
                .get(name)
                .is_none_or(|j| super::env_classify::reads_every_column(&j.sql))
        };
        for u in ups {
            if let Some(o) = own.get(u) {
                let into = match o.breaks_readers() || takes_all() {
                    true => &mut rebuild,
                    false => &mut skipped,
                };
                into.entry(name.clone()).or_default().insert(u.clone());
            } else if let Some(roots) = rebuild.get(u).cloned() {
                rebuild.entry(name.clone()).or_default().extend(roots);
            }
        }
        if rebuild.contains_key(name) {
            skipped.remove(name);
        }
    }
    (rebuild, skipped)
}

/// Whether `job` itself differs from what wrote its table's aliased version: the change,
/// the version replaced, what differs, and whether it may break its readers.
async fn own_change(catalog: &Catalog, job: &Job) -> Result<Option<Why>, CatalogError> {
    let new = |because: String| Why {
        change: Change::New,
        replaces: None,
        because,
        breaking: None,
    };
    let Some(version) = catalog.alias(job.table.as_str()).await? else {
        return Ok(Some(new(format!("table {} has no version yet", job.table))));
    };
    let Some(table) = catalog.table(job.table.as_str()).await? else {
        return Ok(Some(new(format!(
            "table {} is not migrated yet",
            job.table
        ))));
    };
    let fp = crate::fingerprint::fingerprint(job, &table.schema);
    let written: BTreeSet<String> = held(catalog, job, version)
        .await?
        .into_iter()
        .filter_map(|p| p.content_fingerprint)
        .collect();
    let spec_names = i64::from(job.spec_version);
    // A version an environment built stands for the spec's number it was built for.
    let stands_for = catalog
        .table_version(job.table.as_str(), version)
        .await?
        .map_or(version, |v| v.stands_for());
    let because = if written.is_empty() {
        // Nothing written in it: the version the checkout names is what would be built.
        if spec_names == stands_for {
            return Ok(None);
        }
        format!("its spec names v{spec_names}; the alias points at v{version}")
    } else if written.iter().all(|w| *w == fp) {
        return Ok(None);
    } else if spec_names == stands_for {
        format!("its code differs from what wrote {} v{version}", job.table)
    } else {
        format!(
            "its spec names v{spec_names}; {} v{version} was written by other code",
            job.table
        )
    };
    let breaking = match catalog.job_code(job.name.as_str(), version).await? {
        Some((spec, sql)) => {
            !super::env_classify::adds_columns_only(&spec, &sql, &job.spec_text, &job.sql)
        }
        None => true,
    };
    Ok(Some(Why {
        change: Change::Changed,
        replaces: Some(version),
        because,
        breaking: Some(breaking),
    }))
}

/// The partitions of `version` of `job`'s table that hold data.
async fn held(
    catalog: &Catalog,
    job: &Job,
    version: i64,
) -> Result<Vec<crate::catalog::PartitionStatus>, CatalogError> {
    let mut all = catalog.partitions_of(job.table.as_str(), version).await?;
    all.retain(|p| p.content_run_id.is_some());
    Ok(all)
}

/// Their keys, in order.
async fn held_partitions(
    catalog: &Catalog,
    job: &Job,
    version: i64,
) -> Result<Vec<String>, CatalogError> {
    let mut keys: Vec<String> = held(catalog, job, version)
        .await?
        .into_iter()
        .map(|p| p.partition_key)
        .collect();
    keys.sort();
    Ok(keys)
}

/// The partitions of the range of each job to build, as a forced backfill of exactly
/// those jobs would select them, and the partitions of jobs to build that those read
/// outside the range (a rolling window's first days read days before it): what the range
/// builds reads only what was built for it.
async fn range_partitions(
    project: &Project,
    catalog: &Catalog,
    changes: &BTreeMap<Name, Why>,
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
        exactly: None,
    };
    if req.jobs.is_empty() {
        return Ok(BTreeMap::new());
    }
    let plan = backfill::plan(project, catalog, &req).await?;
    let mut sets: BTreeMap<Name, BTreeSet<PartitionKey>> = BTreeMap::new();
    for item in plan.items {
        let Some(job) = project.jobs.get(item.job.as_str()) else {
            continue;
        };
        if let Ok(key) = job.parse_partition(&item.partition) {
            sets.entry(job.name.clone()).or_default().insert(key);
        }
    }
    // Downstream first: a job's reads add to its upstream's set before that one is read.
    for name in project.graph.order.iter().rev() {
        let (Some(job), Some(keys)) = (project.jobs.get(name), sets.get(name).cloned()) else {
            continue;
        };
        for key in &keys {
            for read in project.upstream_reads(job, key) {
                let (Some(writer), Some(read_keys)) = (read.writer, read.keys) else {
                    continue;
                };
                if changes.contains_key(&writer.name) {
                    sets.entry(writer.name.clone())
                        .or_default()
                        .extend(read_keys);
                }
            }
        }
    }
    Ok(sets
        .into_iter()
        .map(|(name, keys)| (name, keys.iter().map(PartitionKey::to_string).collect()))
        .collect())
}
