//! Computing a backfill's plan: the partitions of each job in the range that the request
//! selects, why each runs, and what each waits on (in the plan) or reads outside it.

use super::{
    BackfillError, ExternalDependency, NotSelected, Plan, PlanItem, Reason, Request, Selection,
    Shared,
};
use crate::catalog::{Catalog, PartitionState, PartitionStatus};
use crate::fingerprint::fingerprint;
use crate::job::Job;
use crate::names::Name;
use crate::partition::{Granularity, PartitionKey, TimeKey};
use crate::project::Project;
use crate::provenance::{StaleKind, Staleness};
use chrono::NaiveDateTime;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The wall-clock interval a bound names: `2024-01-05` is that day, `2024-01` that month.
fn parse_bound(
    flag: &'static str,
    text: &str,
) -> Result<(NaiveDateTime, NaiveDateTime), BackfillError> {
    for g in [
        Granularity::Daily,
        Granularity::Monthly,
        Granularity::Hourly,
    ] {
        if let Ok(k) = g.parse_time(text)
            && let Some(b) = k.bounds()
        {
            return Ok(b);
        }
    }
    Err(BackfillError::Bound {
        flag,
        text: text.escape_debug().to_string(),
    })
}

/// The times of a job whose whole interval lies inside `[start, end)`: a monthly partition
/// is in a range only if the range covers its month, so a backfill never computes a month
/// from part of its days.
fn times_in(g: Granularity, start: NaiveDateTime, end: NaiveDateTime) -> Vec<TimeKey> {
    if g == Granularity::None {
        return vec![TimeKey::All];
    }
    let mut out = Vec::new();
    let mut k = g.key_at(start);
    while let Some((ks, ke)) = k.bounds() {
        if ke > end {
            break;
        }
        if ks >= start {
            out.push(k);
        }
        match k.next() {
            Some(n) => k = n,
            None => break,
        }
    }
    out
}

/// Computes the plan from the project and the catalog's partition states.
pub async fn plan(
    project: &Project,
    catalog: &Catalog,
    req: &Request,
) -> Result<Plan, BackfillError> {
    let chosen = chosen_jobs(project, req)?;
    check_keys(project, &chosen, req)?;
    let (from_start, to_end) = if req.from.is_empty() && req.to.is_empty() {
        // No time named: only jobs whose partitions are their keys (or their one `all`)
        // can be selected; a job partitioned by time needs its range.
        if let Some(timed) = chosen
            .iter()
            .filter_map(|n| project.jobs.get(n))
            .find(|j| j.granularity != Granularity::None)
        {
            return Err(BackfillError::NoTimes {
                job: timed.name.to_string(),
            });
        }
        (NaiveDateTime::MIN, NaiveDateTime::MAX)
    } else {
        let (from_start, _) = parse_bound("from", &req.from)?;
        let (_, to_end) = parse_bound("to", &req.to)?;
        (from_start, to_end)
    };
    if from_start >= to_end {
        return Err(BackfillError::Range {
            from: req.from.clone(),
            to: req.to.clone(),
        });
    }

    let mut picked = Picked::default();
    // As many items as partitions in the range at most, reserved (untouched pages cost
    // nothing) so that the items are never copied into a vector twice the size.
    let at_most: usize = chosen
        .iter()
        .filter_map(|n| project.jobs.get(n))
        .map(|job| partitions_in(job, req, (from_start, to_end)).len())
        .sum();
    picked.items.reserve_exact(at_most);
    for name in project.graph.order.iter().filter(|n| chosen.contains(*n)) {
        let Some(job) = project.jobs.get(name) else {
            continue;
        };
        select_partitions(
            project,
            catalog,
            job,
            req,
            (from_start, to_end),
            &mut picked,
        )
        .await?;
    }

    let Picked {
        mut items,
        not_selected,
        index,
    } = picked;
    items.shrink_to_fit();
    // Dependencies: the upstream partitions each item reads, in the plan or outside it.
    // Each upstream table's alias is read once.
    let mut aliases = HashMap::new();
    for item in items.iter_mut() {
        let Some(job) = project.jobs.get(item.job.as_str()) else {
            continue;
        };
        let (waits, outside) =
            dependencies(project, catalog, job, &item.key, &index, &mut aliases).await?;
        item.waits_on = waits;
        item.reads_outside_plan = outside;
    }
    Ok(Plan {
        from: req.from.clone(),
        to: req.to.clone(),
        only: req.only.clone(),
        version: req.version,
        selection: req.selection,
        items,
        not_selected,
    })
}

/// The jobs a backfill covers: those named (all when none is), checked against the
/// requested `--version`, and with `--downstream` the jobs that read them.
fn chosen_jobs(project: &Project, req: &Request) -> Result<BTreeSet<Name>, BackfillError> {
    let mut chosen: BTreeSet<Name> = BTreeSet::new();
    if req.jobs.is_empty() {
        chosen.extend(project.jobs.keys().cloned());
    } else {
        for name in &req.jobs {
            let job = project.job(name).map_err(|errs| {
                BackfillError::Job(
                    errs.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
            if let Some(v) = req.version
                && v != job.spec_version
            {
                return Err(BackfillError::Job(format!(
                    "jobs/{}.toml builds version {}, not {v}; set `version = {v}` in it to build v{v} beside the live version",
                    job.name, job.spec_version
                )));
            }
            chosen.insert(job.name.clone());
            if req.downstream {
                chosen.extend(project.graph.downstream_of(&job.name));
            }
        }
    }
    Ok(chosen)
}

/// The keys `--keys` names must each be declared by a chosen job with a static dimension.
fn check_keys(
    project: &Project,
    chosen: &BTreeSet<Name>,
    req: &Request,
) -> Result<(), BackfillError> {
    let Some(wanted) = &req.keys else {
        return Ok(());
    };
    let keyed: Vec<&Job> = chosen
        .iter()
        .filter_map(|n| project.jobs.get(n))
        .filter(|j| j.static_keys.is_some())
        .collect();
    if keyed.is_empty() {
        return Err(BackfillError::Job(
            "partition keys were given but no job of the backfill has a static dimension (`partitioning.key_column`)".into(),
        ));
    }
    for k in wanted {
        if !keyed.iter().any(|j| j.keys().contains(k)) {
            let declared: Vec<_> = keyed
                .iter()
                .flat_map(|j| j.keys().iter())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            return Err(BackfillError::Job(format!(
                "no job of the backfill declares the key `{k}`; declared: {}",
                crate::text::shorten(&declared, 12)
            )));
        }
    }
    Ok(())
}

/// Each item's place, by job and partition.
type Index = HashMap<String, HashMap<PartitionKey, usize>>;

/// What a plan has chosen so far: its items, what it left out and why, and each item's
/// place by (job, partition).
#[derive(Default)]
struct Picked {
    items: Vec<PlanItem>,
    not_selected: Vec<NotSelected>,
    index: Index,
}

/// The catalog's rows of `keys`, by partition. A plan of some partitions reads those; of
/// many, the job's whole table at once.
async fn states_of(
    catalog: &Catalog,
    job: &Job,
    keys: &[PartitionKey],
) -> Result<BTreeMap<String, PartitionStatus>, BackfillError> {
    let texts: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let (table, version) = (job.table.as_str(), i64::from(job.version));
    let rows = if texts.len() <= crate::catalog::NAMED_AT_MOST {
        catalog.partitions_named(table, version, &texts).await?
    } else {
        catalog.partitions_of(table, version).await?
    };
    Ok(rows
        .into_iter()
        .map(|p| (p.partition_key.clone(), p))
        .collect())
}

/// Adds the partitions of `job` in `[start, end)` that the request selects to `out`, with
/// the reason each runs, and the others to its not-selected list with theirs.
async fn select_partitions(
    project: &Project,
    catalog: &Catalog,
    job: &Job,
    req: &Request,
    (from_start, to_end): (NaiveDateTime, NaiveDateTime),
    out: &mut Picked,
) -> Result<(), BackfillError> {
    let schema = catalog
        .table(job.table.as_str())
        .await?
        .ok_or_else(|| BackfillError::NotMigrated {
            job: job.name.to_string(),
            table: job.table.to_string(),
        })?
        .schema;
    let fp = Shared::from(fingerprint(job, &schema).as_str());
    let (job_name, table) = (
        Shared::from(job.name.as_str()),
        Shared::from(job.table.as_str()),
    );
    let keys = partitions_in(job, req, (from_start, to_end));
    let states = states_of(catalog, job, &keys).await?;
    let mut stale = match req.selection {
        Selection::Stale => {
            Staleness::new(project, catalog)
                .of_job(job, &fp, states.values())
                .await?
        }
        _ => BTreeMap::new(),
    };
    for key in keys {
        let partition = key.to_string();
        let skip = |why: String| NotSelected {
            job: job.name.to_string(),
            partition: partition.clone(),
            why,
        };
        if let Some(start) = job.start
            && key.time < start
        {
            out.not_selected
                .push(skip(format!("before the job's start ({start})")));
            continue;
        }
        let state = states.get(&partition);
        let stale_because = stale.remove(&partition);
        let stale_kind = stale_because.as_ref().map(|s| s.kind);
        let upstream_rerun = || reads_from_plan(project, job, &key, &out.index);
        let Some(reason) = reason_of(state, req.selection, stale_kind, upstream_rerun) else {
            let why = match state.map(|s| s.state) {
                Some(PartitionState::Complete) => PartitionState::Complete.to_string(),
                _ => "not failed (--only-failed)".to_string(),
            };
            out.not_selected.push(skip(why));
            continue;
        };
        let id = out.items.len();
        match out.index.get_mut(job.name.as_str()) {
            Some(planned) => _ = planned.insert(key, id),
            None => {
                _ = out
                    .index
                    .insert(job.name.to_string(), HashMap::from([(key, id)]))
            }
        }
        let previous = state.and_then(|s| s.content_fingerprint.as_deref());
        out.items.push(PlanItem {
            id,
            job: job_name.clone(),
            table: table.clone(),
            version: job.version,
            partition,
            reason,
            stale_because: stale_because
                .filter(|s| s.kind != StaleKind::Code)
                .map(Box::new),
            previous_fingerprint: previous.map(|p| match p == fp.as_str() {
                true => fp.clone(),
                false => Shared::from(p),
            }),
            fingerprint: fp.clone(),
            waits_on: Vec::new(),
            reads_outside_plan: Vec::new(),
            key,
        });
    }
    Ok(())
}

/// Why a partition in `state` runs under `selection`, if it does; `upstream_rerun` says
/// whether it reads a partition the plan rewrites (asked only of a complete, fresh one).
fn reason_of(
    state: Option<&PartitionStatus>,
    selection: Selection,
    stale: Option<StaleKind>,
    upstream_rerun: impl FnOnce() -> bool,
) -> Option<Reason> {
    match (state.map(|s| s.state), selection) {
        (Some(PartitionState::Complete), Selection::Force) => Some(Reason::Forced),
        (Some(PartitionState::Complete), Selection::Stale) => match stale {
            Some(StaleKind::Code) => Some(Reason::Stale),
            Some(StaleKind::Upstream) => Some(Reason::UpstreamChanged),
            Some(StaleKind::Input) => Some(Reason::InputChanged),
            // Reading a partition this plan rewrites: stale once it is rewritten.
            None if upstream_rerun() => Some(Reason::UpstreamRerun),
            None => None,
        },
        (Some(PartitionState::Complete), _) => None,
        (Some(PartitionState::Failed), _) => Some(Reason::Failed),
        (Some(PartitionState::Running), _) => Some(Reason::Interrupted),
        (_, Selection::OnlyFailed) => None,
        (_, Selection::Force) if state.is_some() => Some(Reason::Forced),
        _ => Some(Reason::Missing),
    }
}

/// The partitions of `job` in `[start, end)` the request names, in the order asked.
fn partitions_in(
    job: &Job,
    req: &Request,
    (from_start, to_end): (NaiveDateTime, NaiveDateTime),
) -> Vec<PartitionKey> {
    let mut times = times_in(job.granularity, from_start, to_end);
    if let Some(only) = &req.only {
        times.retain(|k| only.contains(&k.to_string()));
    }
    // Every declared key at each time (those `--keys` names, when it does).
    let mut keys: Vec<PartitionKey> = times
        .into_iter()
        .flat_map(|t| job.partitions_at(t))
        .filter(|p| match (&req.keys, p.key) {
            (Some(wanted), Some(k)) => wanted.contains(&k),
            _ => true,
        })
        .filter(
            |p| match req.exactly.as_ref().and_then(|e| e.get(job.name.as_str())) {
                Some(these) => these.contains(&p.to_string()),
                None => true,
            },
        )
        .collect();
    if req.newest_first {
        keys.reverse();
    }
    keys
}

/// Whether `key` of `job` reads an upstream partition that is in the plan.
fn reads_from_plan(project: &Project, job: &Job, key: &PartitionKey, index: &Index) -> bool {
    project.upstream_reads(job, key).iter().any(|read| {
        let Some(up) = read.writer else {
            return false;
        };
        match &read.keys {
            Some(keys) => index
                .get(up.name.as_str())
                .is_some_and(|planned| keys.iter().any(|k| planned.contains_key(k))),
            None => index.get(up.name.as_str()).is_some_and(|p| !p.is_empty()),
        }
    })
}

async fn dependencies(
    project: &Project,
    catalog: &Catalog,
    job: &Job,
    key: &PartitionKey,
    index: &Index,
    aliases: &mut HashMap<String, Option<i64>>,
) -> Result<(Vec<usize>, Vec<ExternalDependency>), BackfillError> {
    let mut waits = BTreeSet::new();
    let mut outside = Vec::new();
    for read in project.upstream_reads(job, key) {
        let Some(up) = read.writer else {
            continue;
        };
        let Some(up_keys) = read.keys else {
            // The whole table: wait for every planned partition of it.
            waits.extend(
                index
                    .get(up.name.as_str())
                    .into_iter()
                    .flat_map(|p| p.values()),
            );
            continue;
        };
        let version = match aliases.get(read.table.as_str()) {
            Some(v) => *v,
            None => {
                let v = catalog.alias(read.table.as_str()).await?;
                aliases.insert(read.table.to_string(), v);
                v
            }
        };
        let planned = index.get(up.name.as_str());
        for k in up_keys {
            if let Some(id) = planned.and_then(|p| p.get(&k)) {
                waits.insert(*id);
            } else {
                outside.push(ExternalDependency {
                    table: read.table.to_string(),
                    // Not written yet: the first version the upstream job will write.
                    version: version.unwrap_or(i64::from(up.version)),
                    partition: k.to_string(),
                });
            }
        }
    }
    Ok((waits.into_iter().collect(), outside))
}
