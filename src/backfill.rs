//! Backfills: which partitions of which jobs to run over a range, why, in what order, and
//! running them with bounded parallelism.
//!
//! The [`Plan`] is computed first, from the catalog's partition states, and is what
//! `--dry-run` prints; [`execute`] consumes that same object, so a dry run lists exactly
//! what a real run then attempts. Upstream partitions run before the downstream partitions
//! that read them; a failure skips its dependents (with the reason) and nothing else.

use crate::catalog::PartitionStatus;
use crate::fingerprint::fingerprint;
use crate::job::{Job, UpstreamPartitions};
use crate::names::Name;
use crate::partition::{Granularity, PartitionKey};
use crate::runner::{RunState, Runner, Trigger};
use chrono::NaiveDateTime;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(
        "--{flag} `{text}`: expected a day (2024-01-05), a month (2024-01) or an hour (2024-01-05T03)"
    )]
    Bound { flag: &'static str, text: String },
    #[error("--from {from} is after --to {to}")]
    Range { from: String, to: String },
    #[error("{0}")]
    Job(String),
    #[error(
        "table `{table}` of job `{job}` does not exist in the catalog: run `sluice migrate` first"
    )]
    NotMigrated { job: String, table: String },
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

/// Which partitions in the range are selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Missing, failed or interrupted partitions.
    Default,
    /// Every partition, complete ones too.
    Force,
    /// Failed and interrupted partitions only.
    OnlyFailed,
    /// The default, and complete partitions written by other code than the current.
    Stale,
}

pub struct Request {
    /// Jobs named on the command line; empty means every job.
    pub jobs: Vec<String>,
    pub downstream: bool,
    pub from: String,
    pub to: String,
    /// Only these partitions (as written, e.g. `2024-01-03`) of the range.
    pub only: Option<BTreeSet<String>>,
    /// The table version the named jobs' specs must name (`--version`).
    pub version: Option<u32>,
    pub selection: Selection,
    pub newest_first: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Never written.
    Missing,
    Failed,
    /// Left `running` by a process that stopped, or running elsewhere now.
    Interrupted,
    Forced,
    /// Written by another code fingerprint.
    Stale,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Missing => "missing",
            Reason::Failed => "failed",
            Reason::Interrupted => "interrupted",
            Reason::Forced => "forced",
            Reason::Stale => "stale",
        })
    }
}

/// An upstream partition outside the plan that an item reads: it must be complete when
/// the item runs.
#[derive(Debug, Clone, Serialize)]
pub struct ExternalDependency {
    pub table: String,
    pub version: i64,
    pub partition: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    pub id: usize,
    pub job: String,
    pub table: String,
    pub version: u32,
    pub partition: String,
    pub reason: Reason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_fingerprint: Option<String>,
    pub fingerprint: String,
    /// Plan items that must succeed first.
    pub waits_on: Vec<usize>,
    pub reads_outside_plan: Vec<ExternalDependency>,
    #[serde(skip)]
    key: PartitionKey,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotSelected {
    pub job: String,
    pub partition: String,
    pub why: String,
}

/// What a backfill will do, in the order it will do it.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub from: String,
    pub to: String,
    /// Only these partitions of the range (`--partitions LIST`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only: Option<BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub selection: Selection,
    pub items: Vec<PlanItem>,
    pub not_selected: Vec<NotSelected>,
}

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
        if let Ok(k) = g.parse_key(text) {
            if let Some(b) = k.bounds() {
                return Ok(b);
            }
        }
    }
    Err(BackfillError::Bound {
        flag,
        text: text.escape_debug().to_string(),
    })
}

/// The keys of a job whose whole interval lies inside `[start, end)`: a monthly partition is
/// in a range only if the range covers its month, so a backfill never computes a month
/// from part of its days.
fn keys_in(g: Granularity, start: NaiveDateTime, end: NaiveDateTime) -> Vec<PartitionKey> {
    if g == Granularity::None {
        return vec![PartitionKey::All];
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
pub async fn plan(runner: &Runner, req: &Request) -> Result<Plan, BackfillError> {
    let project = runner.project();
    let (from_start, _) = parse_bound("from", &req.from)?;
    let (_, to_end) = parse_bound("to", &req.to)?;
    if from_start >= to_end {
        return Err(BackfillError::Range {
            from: req.from.clone(),
            to: req.to.clone(),
        });
    }

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
            if let Some(v) = req.version {
                if v != job.version {
                    return Err(BackfillError::Job(format!(
                        "jobs/{}.toml builds version {}, not {v}; set `version = {v}` in it to build v{v} beside the live version",
                        job.name, job.version
                    )));
                }
            }
            chosen.insert(job.name.clone());
            if req.downstream {
                chosen.extend(project.graph.downstream_of(&job.name));
            }
        }
    }

    let mut items: Vec<PlanItem> = Vec::new();
    let mut not_selected = Vec::new();
    let mut index: HashMap<(String, PartitionKey), usize> = HashMap::new();
    for name in project.graph.order.iter().filter(|n| chosen.contains(*n)) {
        let Some(job) = project.jobs.get(name) else {
            continue;
        };
        let schema = runner
            .catalog
            .table(job.table.as_str())
            .await?
            .ok_or_else(|| BackfillError::NotMigrated {
                job: job.name.to_string(),
                table: job.table.to_string(),
            })?
            .schema;
        let fp = fingerprint(job, &schema);
        let states: BTreeMap<String, PartitionStatus> = runner
            .catalog
            .partitions_of(job.table.as_str(), i64::from(job.version))
            .await?
            .into_iter()
            .map(|p| (p.partition_key.clone(), p))
            .collect();
        let mut keys = keys_in(job.granularity, from_start, to_end);
        if let Some(only) = &req.only {
            keys.retain(|k| only.contains(&k.to_string()));
        }
        if req.newest_first {
            keys.reverse();
        }
        for key in keys {
            let partition = key.to_string();
            let skip = |why: String| NotSelected {
                job: job.name.to_string(),
                partition: partition.clone(),
                why,
            };
            if let Some(start) = job.start {
                if key < start {
                    not_selected.push(skip(format!("before the job's start ({start})")));
                    continue;
                }
            }
            let state = states.get(&partition);
            let reason = match (state.map(|s| s.state.as_str()), req.selection) {
                (Some("complete"), Selection::Force) => Some(Reason::Forced),
                (Some("complete"), Selection::Stale)
                    if state.and_then(|s| s.content_fingerprint.as_deref())
                        != Some(fp.as_str()) =>
                {
                    Some(Reason::Stale)
                }
                (Some("complete"), _) => None,
                (Some("failed"), _) => Some(Reason::Failed),
                (Some("running"), _) => Some(Reason::Interrupted),
                (_, Selection::OnlyFailed) => None,
                (_, Selection::Force) if state.is_some() => Some(Reason::Forced),
                _ => Some(Reason::Missing),
            };
            let Some(reason) = reason else {
                let why = match state.map(|s| s.state.as_str()) {
                    Some("complete") => "complete".to_string(),
                    _ => "not failed (--only-failed)".to_string(),
                };
                not_selected.push(skip(why));
                continue;
            };
            let id = items.len();
            index.insert((job.name.to_string(), key), id);
            items.push(PlanItem {
                id,
                job: job.name.to_string(),
                table: job.table.to_string(),
                version: job.version,
                partition,
                reason,
                previous_fingerprint: state.and_then(|s| s.content_fingerprint.clone()),
                fingerprint: fp.clone(),
                waits_on: Vec::new(),
                reads_outside_plan: Vec::new(),
                key,
            });
        }
    }

    // Dependencies: the upstream partitions each item reads, in the plan or outside it.
    for item in items.iter_mut() {
        let Some(job) = project.jobs.get(item.job.as_str()) else {
            continue;
        };
        let (waits, outside) = dependencies(runner, job, &item.key, &index).await?;
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

async fn dependencies(
    runner: &Runner,
    job: &Job,
    key: &PartitionKey,
    index: &HashMap<(String, PartitionKey), usize>,
) -> Result<(Vec<usize>, Vec<ExternalDependency>), BackfillError> {
    let project = runner.project();
    let mut waits = BTreeSet::new();
    let mut outside = Vec::new();
    for (table, partitions) in job.upstream_tables() {
        let Some(up) = project.writer_of(table.as_str()) else {
            continue;
        };
        let up_keys: Vec<PartitionKey> = match partitions {
            UpstreamPartitions::Same => key.covering(up.granularity),
            UpstreamPartitions::All => {
                // The whole table: wait for every planned partition of it.
                waits.extend(
                    index
                        .iter()
                        .filter(|((j, _), _)| j == up.name.as_str())
                        .map(|(_, id)| *id),
                );
                continue;
            }
        };
        let version = runner.catalog.alias(table.as_str()).await?;
        for k in up_keys {
            if let Some(id) = index.get(&(up.name.to_string(), k)) {
                waits.insert(*id);
            } else {
                outside.push(ExternalDependency {
                    table: table.to_string(),
                    // Not written yet: the first version the upstream job will write.
                    version: version.unwrap_or(i64::from(up.version)),
                    partition: k.to_string(),
                });
            }
        }
    }
    Ok((waits.into_iter().collect(), outside))
}

/// What became of one plan item.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded {
        run_id: String,
        rows: u64,
        attempts: u32,
        duration_ms: f64,
    },
    Failed {
        run_id: Option<String>,
        error: String,
        attempts: u32,
    },
    /// Not run: an upstream failed, a dependency outside the plan is not complete, or
    /// `--fail-fast` stopped the backfill.
    Skipped { reason: String },
    /// Another worker held its lease and completed it while this backfill waited.
    DoneElsewhere {
        held_by: String,
        run_id: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemResult {
    pub job: String,
    pub version: u32,
    pub partition: String,
    pub reason: Reason,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub planned: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub done_elsewhere: usize,
    pub not_selected: usize,
    pub rows: u64,
    pub elapsed_ms: u128,
    pub items: Vec<ItemResult>,
    pub not_selected_items: Vec<NotSelected>,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.skipped == 0
    }
}

/// Runs in flight per computing one; see [`execute`].
const IN_FLIGHT_PER_WORKER: usize = 8;

pub struct Options {
    pub concurrency: usize,
    pub fail_fast: bool,
}

/// Told of each item as it ends: a progress bar on a terminal, log lines otherwise.
pub trait Progress: Send + Sync {
    fn item_done(&self, item: &PlanItem, outcome: &Outcome, done: usize, total: usize);
    fn item_waiting(&self, _item: &PlanItem, _held_by: &str) {}
}

#[derive(Debug, Clone)]
enum State {
    Pending { not_before: Option<Instant> },
    Running,
    Done(Outcome),
}

enum TaskResult {
    Report(Box<crate::runner::RunReport>),
    Blocked(String),
}

/// Runs the plan: each partition when what it waits on has succeeded; at most
/// `concurrency` computing at once (the runner's compute limit, set by the caller).
pub async fn execute(
    plan: &Plan,
    runner: Arc<Runner>,
    opts: &Options,
    progress: &dyn Progress,
) -> Summary {
    let started = Instant::now();
    let started_ms = runner.clock.now_ms();
    let n = plan.items.len();
    let mut state: Vec<State> = vec![State::Pending { not_before: None }; n];
    let mut held_by: Vec<Option<String>> = vec![None; n];
    let mut tasks: JoinSet<(usize, TaskResult)> = JoinSet::new();
    let mut running = 0usize;
    let mut done = 0usize;
    let mut stop: Option<String> = None;
    // How often to look again at a partition another worker holds.
    let poll = (runner.lease_ttl / 4).clamp(Duration::from_millis(200), Duration::from_secs(2));

    loop {
        // Skip what can no longer run: an upstream failed or was skipped, or we stopped.
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..n {
                if !matches!(state[i], State::Pending { .. }) {
                    continue;
                }
                let reason = if let Some(why) = &stop {
                    Some(why.clone())
                } else {
                    plan.items[i]
                        .waits_on
                        .iter()
                        .find_map(|&d| match &state[d] {
                            State::Done(Outcome::Failed { .. }) => Some(format!(
                                "upstream {} {} failed",
                                plan.items[d].job, plan.items[d].partition
                            )),
                            State::Done(Outcome::Skipped { .. }) => Some(format!(
                                "upstream {} {} was skipped",
                                plan.items[d].job, plan.items[d].partition
                            )),
                            _ => None,
                        })
                };
                if let Some(reason) = reason {
                    let outcome = Outcome::Skipped { reason };
                    done += 1;
                    progress.item_done(&plan.items[i], &outcome, done, n);
                    state[i] = State::Done(outcome);
                    changed = true;
                }
            }
        }

        // Launch what is ready, in plan order. More runs are in flight than compute at once
        // (the runner's compute permits bound that): the others hold their lease and wait
        // to compute or to commit, so that commits of a table group several partitions.
        let now = Instant::now();
        let mut next_wake: Option<Instant> = None;
        // With --fail-fast nothing may be waiting to start when a failure stops the backfill.
        let in_flight = if opts.fail_fast {
            opts.concurrency.max(1)
        } else {
            opts.concurrency.max(1) * IN_FLIGHT_PER_WORKER
        };
        for i in 0..n {
            if running >= in_flight {
                break;
            }
            let State::Pending { not_before } = state[i] else {
                continue;
            };
            if let Some(t) = not_before {
                if t > now {
                    next_wake = Some(next_wake.map_or(t, |w| w.min(t)));
                    continue;
                }
            }
            let ready = plan.items[i].waits_on.iter().all(|&d| {
                matches!(
                    state[d],
                    State::Done(Outcome::Succeeded { .. } | Outcome::DoneElsewhere { .. })
                )
            });
            if !ready {
                continue;
            }
            state[i] = State::Running;
            running += 1;
            let item = plan.items[i].clone();
            let runner = runner.clone();
            tasks.spawn(async move {
                if let Some(why) = blocked_by_outside(&runner, &item).await {
                    return (i, TaskResult::Blocked(why));
                }
                let Some(job) = runner.project().jobs.get(item.job.as_str()).cloned() else {
                    return (
                        i,
                        TaskResult::Blocked(format!("job `{}` is no longer valid", item.job)),
                    );
                };
                let report = runner
                    .run_partition_unless_done_since(
                        &job,
                        item.key,
                        Trigger::Backfill,
                        Some(started_ms),
                    )
                    .await;
                (i, TaskResult::Report(Box::new(report)))
            });
        }

        if running == 0 {
            let pending = state.iter().any(|s| matches!(s, State::Pending { .. }));
            match (pending, next_wake) {
                (false, _) => break,
                (true, Some(t)) => {
                    tokio::time::sleep_until(t.into()).await;
                    continue;
                }
                // Pending items that can never become ready: should not happen, since
                // dependencies point backwards in the plan; end rather than spin.
                (true, None) => {
                    for (i, s) in state.iter_mut().enumerate() {
                        if matches!(s, State::Pending { .. }) {
                            let outcome = Outcome::Skipped {
                                reason:
                                    "its dependencies never became ready (this is likely a bug)"
                                        .into(),
                            };
                            done += 1;
                            progress.item_done(&plan.items[i], &outcome, done, n);
                            *s = State::Done(outcome);
                        }
                    }
                    break;
                }
            }
        }

        let joined = match next_wake {
            Some(t) => tokio::select! {
                j = tasks.join_next() => j,
                _ = tokio::time::sleep_until(t.into()) => continue,
            },
            None => tasks.join_next().await,
        };
        let Some(joined) = joined else {
            continue;
        };
        running -= 1;
        let (i, result) = match joined {
            Ok(r) => r,
            Err(e) => {
                // A panicked task: find it is impossible without its index; treat the
                // whole backfill as failed rather than guess.
                tracing::error!(error = %e, "a backfill task panicked (this is a bug)");
                stop = Some("stopped after an internal error".into());
                continue;
            }
        };
        let item = &plan.items[i];
        let outcome = match result {
            TaskResult::Blocked(reason) => Outcome::Skipped { reason },
            TaskResult::Report(r) => match r.state {
                RunState::Succeeded => Outcome::Succeeded {
                    run_id: r.run_id.unwrap_or_default(),
                    rows: r.rows.unwrap_or(0),
                    attempts: r.attempts,
                    duration_ms: r.duration_ms,
                },
                RunState::Failed => {
                    if opts.fail_fast && stop.is_none() {
                        stop = Some(format!(
                            "--fail-fast: stopped after {} {} failed",
                            item.job, item.partition
                        ));
                    }
                    Outcome::Failed {
                        run_id: r.run_id,
                        error: r.error.unwrap_or_default(),
                        attempts: r.attempts,
                    }
                }
                RunState::DoneElsewhere => Outcome::DoneElsewhere {
                    held_by: held_by[i]
                        .clone()
                        .unwrap_or_else(|| "another worker".into()),
                    run_id: r.run_id,
                },
                RunState::Held => {
                    let holder = r.held_by.unwrap_or_default();
                    // Done by the holder since we started? Then it is done; else look again.
                    let status = runner
                        .catalog
                        .partition_status(&item.table, i64::from(item.version), &item.partition)
                        .await
                        .ok()
                        .flatten();
                    match status {
                        Some(p)
                            if p.state == "complete"
                                && p.finished_at.unwrap_or(0) >= started_ms =>
                        {
                            Outcome::DoneElsewhere {
                                held_by: holder,
                                run_id: p.content_run_id,
                            }
                        }
                        _ => {
                            if held_by[i].is_none() {
                                progress.item_waiting(item, &holder);
                            }
                            held_by[i] = Some(holder);
                            state[i] = State::Pending {
                                not_before: Some(Instant::now() + poll),
                            };
                            continue;
                        }
                    }
                }
            },
        };
        done += 1;
        progress.item_done(item, &outcome, done, n);
        state[i] = State::Done(outcome);
    }

    let mut items = Vec::with_capacity(n);
    let (mut succeeded, mut failed, mut skipped, mut elsewhere, mut rows) = (0, 0, 0, 0, 0u64);
    for (item, s) in plan.items.iter().zip(state) {
        let outcome = match s {
            State::Done(o) => o,
            _ => Outcome::Skipped {
                reason: "not run".into(),
            },
        };
        match &outcome {
            Outcome::Succeeded { rows: r, .. } => {
                succeeded += 1;
                rows += r;
            }
            Outcome::Failed { .. } => failed += 1,
            Outcome::Skipped { .. } => skipped += 1,
            Outcome::DoneElsewhere { .. } => elsewhere += 1,
        }
        items.push(ItemResult {
            job: item.job.clone(),
            version: item.version,
            partition: item.partition.clone(),
            reason: item.reason,
            outcome,
        });
    }
    info!(
        succeeded,
        failed,
        skipped,
        done_elsewhere = elsewhere,
        rows,
        "backfill finished"
    );
    Summary {
        planned: n,
        succeeded,
        failed,
        skipped,
        done_elsewhere: elsewhere,
        not_selected: plan.not_selected.len(),
        rows,
        elapsed_ms: started.elapsed().as_millis(),
        items,
        not_selected_items: plan.not_selected.clone(),
    }
}

/// An upstream partition outside the plan that is not complete blocks the item: running it
/// would read a gap.
async fn blocked_by_outside(runner: &Runner, item: &PlanItem) -> Option<String> {
    for d in &item.reads_outside_plan {
        let state = runner
            .catalog
            .partition_status(&d.table, d.version, &d.partition)
            .await
            .ok()
            .flatten()
            .map(|p| p.state);
        if state.as_deref() != Some("complete") {
            return Some(format!(
                "upstream {} {} is {} and not in this backfill; include its job or use --downstream from it",
                d.table,
                d.partition,
                state.as_deref().unwrap_or("missing")
            ));
        }
    }
    None
}
