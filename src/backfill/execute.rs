//! Running a plan: each partition once what it waits on has succeeded, a bounded number in
//! flight, failures skipping only their dependents, partitions held by another worker
//! looked at again until that worker is done with them.
//!
//! The bookkeeping is by event, not by scanning the plan: an item counts what it still
//! waits on, and a finished item tells its dependents, so each partition costs the same
//! in a plan of a thousand partitions or of a hundred thousand.

use super::{ItemResult, Options, Outcome, Plan, PlanItem, Progress, Summary};
use crate::catalog::{Catalog, PartitionState};
use crate::clock::SharedClock;
use crate::run::{AheadPermit, RunOutcome, RunReport, Runner, Trigger};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tracing::info;

/// Partitions leased ahead of the compute, per compute slot: enough that a slot never waits
/// for a claim, few enough that another worker backfilling the same range still finds
/// partitions to take, and that the leases waiting are few to renew.
const AHEAD_PER_WORKER: usize = 8;

/// Runs in flight per compute slot, most of them done computing and waiting for their
/// table's commit. A Delta commit costs milliseconds whatever it holds, and the partitions
/// that finish computing during one join the next: when at most 8 per slot could be in
/// flight, waiting or not, a no-op backfill committed about 5 partitions at a time and the
/// commit was its slowest step; 64 let about 17 gather (debug build, 2,000 hourly
/// partitions: 2.1 ms per partition with 8, 1.4 with 32, 1.2 with 64, 1.2 with 128).
const IN_FLIGHT_PER_WORKER: usize = 64;

#[derive(Debug, Clone)]
enum State {
    Pending { not_before: Option<Instant> },
    Running,
    Done(Outcome),
}

enum TaskResult {
    Report(Box<RunReport>),
    Blocked(String),
}

/// Runs the plan: each partition when what it waits on has succeeded; at most
/// `concurrency` computing at once (the runner's compute limit, set by the caller).
pub async fn execute(
    plan: &Plan,
    runner: Arc<Runner>,
    catalog: &Catalog,
    clock: &SharedClock,
    opts: &Options,
    progress: &dyn Progress,
) -> Summary {
    let started = Instant::now();
    let n = plan.items.len();
    let mut dependents = vec![Vec::new(); n];
    for (i, item) in plan.items.iter().enumerate() {
        for &d in &item.waits_on {
            dependents[d].push(i);
        }
    }
    let mut x = Execution {
        plan,
        catalog,
        opts,
        progress,
        started_ms: clock.now_ms(),
        // How often to look again at a partition another worker holds.
        poll: (runner.project().settings.lease_ttl / 4)
            .clamp(Duration::from_millis(200), Duration::from_secs(2)),
        runner,
        state: vec![State::Pending { not_before: None }; n],
        held_by: vec![None; n],
        waiting: plan.items.iter().map(|i| i.waits_on.len()).collect(),
        ready: (0..n)
            .filter(|&i| plan.items[i].waits_on.is_empty())
            .collect(),
        delayed: BTreeSet::new(),
        pending: n,
        dependents,
        tasks: JoinSet::new(),
        ahead: Arc::new(tokio::sync::Semaphore::new(
            opts.concurrency.max(1) * AHEAD_PER_WORKER,
        )),
        running: 0,
        done: 0,
        stop: None,
    };
    loop {
        if let Some(reason) = x.stop.clone() {
            x.skip_pending(&reason);
        }
        let next_wake = x.launch_ready();
        if x.running == 0 {
            match (x.pending > 0, next_wake) {
                (false, _) => break,
                (true, Some(t)) => {
                    tokio::time::sleep_until(t.into()).await;
                    continue;
                }
                // Pending items that can never become ready: should not happen, since
                // dependencies point backwards in the plan; end rather than spin.
                (true, None) => {
                    x.skip_pending("its dependencies never became ready (this is likely a bug)");
                    break;
                }
            }
        }
        // A run that is done computing gives back its place ahead of the compute: another
        // may start before it commits.
        let can_start = x.stop.is_none() && !x.ready.is_empty() && x.running < x.in_flight();
        let ahead = x.ahead.clone();
        let joined = tokio::select! {
            j = x.tasks.join_next() => j,
            _ = sleep_until(next_wake) => continue,
            _ = ahead.acquire_owned(), if can_start => continue,
        };
        let Some(joined) = joined else {
            continue;
        };
        x.running -= 1;
        match joined {
            Ok((i, result)) => {
                if let Some(outcome) = x.outcome_of(i, result).await {
                    x.finish(i, outcome);
                }
            }
            Err(e) => {
                // A panicked task: which item it ran is not known; treat the whole backfill
                // as failed rather than guess.
                tracing::error!(error = %e, "a backfill task panicked (this is a bug)");
                x.stop = Some("stopped after an internal error".into());
            }
        }
    }
    let targets = x.runner.project().settings.notify.clone();
    let summary = x.summary(started);
    super::tell::tell_end(catalog, &targets, &summary, clock.now_ms()).await;
    summary
}

/// A plan being run: each item's state, and what is in flight.
struct Execution<'a> {
    plan: &'a Plan,
    runner: Arc<Runner>,
    catalog: &'a Catalog,
    opts: &'a Options,
    progress: &'a dyn Progress,
    /// When the backfill started, by the injected clock: a partition completed by another
    /// worker since then is not redone.
    started_ms: i64,
    poll: Duration,
    state: Vec<State>,
    /// Who held each item's lease when it was last tried.
    held_by: Vec<Option<String>>,
    /// Per item, how many of the items it waits on have not succeeded yet.
    waiting: Vec<usize>,
    /// Per item, the items that wait on it.
    dependents: Vec<Vec<usize>>,
    /// Pending items that wait on nothing, in plan order: started first to last.
    ready: BTreeSet<usize>,
    /// Pending items held by another worker, by when to look at them again.
    delayed: BTreeSet<(Instant, usize)>,
    /// How many items are pending (ready, delayed or waiting).
    pending: usize,
    tasks: JoinSet<(usize, TaskResult)>,
    /// Places ahead of the compute: a run holds one from its start until its output is
    /// computed (see [`AHEAD_PER_WORKER`]).
    ahead: Arc<tokio::sync::Semaphore>,
    running: usize,
    done: usize,
    /// Why nothing more starts (`--fail-fast`, an internal error).
    stop: Option<String>,
}

impl Execution<'_> {
    /// Records item `i`'s outcome; its dependents are one step closer to ready, or, when it
    /// failed or was skipped, skipped too, and theirs after them.
    fn finish(&mut self, i: usize, outcome: Outcome) {
        let mut work = vec![(i, outcome)];
        while let Some((i, outcome)) = work.pop() {
            let gone = match &outcome {
                Outcome::Failed { .. } => Some("failed"),
                Outcome::Skipped { .. } => Some("was skipped"),
                Outcome::Succeeded { .. } | Outcome::DoneElsewhere { .. } => None,
            };
            self.done += 1;
            self.progress.item_done(
                &self.plan.items[i],
                &outcome,
                self.done,
                self.plan.items.len(),
            );
            self.unpend(i);
            self.state[i] = State::Done(outcome);
            for k in 0..self.dependents[i].len() {
                let j = self.dependents[i][k];
                if !matches!(self.state[j], State::Pending { .. }) {
                    continue;
                }
                match gone {
                    Some(what) => {
                        let up = &self.plan.items[i];
                        let reason = format!("upstream {} {} {what}", up.job, up.partition);
                        // No longer pending once queued, so it is queued once.
                        self.unpend(j);
                        self.state[j] = State::Running;
                        work.push((j, Outcome::Skipped { reason }));
                    }
                    None => {
                        self.waiting[j] -= 1;
                        if self.waiting[j] == 0 {
                            self.ready.insert(j);
                        }
                    }
                }
            }
        }
    }

    /// Takes item `i` out of the pending ones, if it is one.
    fn unpend(&mut self, i: usize) {
        if let State::Pending { not_before } = self.state[i] {
            self.pending -= 1;
            self.ready.remove(&i);
            if let Some(t) = not_before {
                self.delayed.remove(&(t, i));
            }
        }
    }

    /// Starts what is ready, in plan order, up to the in-flight bound. Returns when the
    /// earliest item waiting out a poll interval may be tried again.
    fn launch_ready(&mut self) -> Option<Instant> {
        let now = Instant::now();
        while let Some(&(t, i)) = self.delayed.first() {
            if t > now {
                break;
            }
            self.delayed.pop_first();
            self.state[i] = State::Pending { not_before: None };
            self.ready.insert(i);
        }
        while self.running < self.in_flight() && !self.ready.is_empty() {
            let Ok(ahead) = self.ahead.clone().try_acquire_owned() else {
                break;
            };
            let Some(i) = self.ready.pop_first() else {
                break;
            };
            self.spawn(i, ahead);
        }
        self.delayed.first().map(|(t, _)| *t)
    }

    /// How many runs may be in flight at once.
    fn in_flight(&self) -> usize {
        // With --fail-fast nothing may be waiting to start when a failure stops the backfill.
        if self.opts.fail_fast {
            self.opts.concurrency.max(1)
        } else {
            self.opts.concurrency.max(1) * IN_FLIGHT_PER_WORKER
        }
    }

    fn spawn(&mut self, i: usize, ahead: AheadPermit) {
        self.unpend(i);
        self.state[i] = State::Running;
        self.running += 1;
        let item = self.plan.items[i].clone();
        let runner = self.runner.clone();
        let catalog = self.catalog.clone();
        let since = self.started_ms;
        self.tasks.spawn(async move {
            if let Some(why) = blocked_by_outside(&catalog, &item).await {
                return (i, TaskResult::Blocked(why));
            }
            let Some(job) = runner.project().jobs.get(item.job.as_str()).cloned() else {
                let why = format!("job `{}` is no longer valid", item.job);
                return (i, TaskResult::Blocked(why));
            };
            let request = crate::run::RunRequest::new(&job, item.key, Trigger::Backfill)
                .unless_done_since(Some(since))
                .ahead(ahead);
            let report = runner.run(request).await;
            (i, TaskResult::Report(Box::new(report)))
        });
    }

    /// Skips every item still pending, with `reason`.
    fn skip_pending(&mut self, reason: &str) {
        if self.pending == 0 {
            return;
        }
        for i in 0..self.plan.items.len() {
            if matches!(self.state[i], State::Pending { .. }) {
                self.finish(
                    i,
                    Outcome::Skipped {
                        reason: reason.into(),
                    },
                );
            }
        }
    }

    /// What became of item `i`; `None` when another worker holds it and it is to be tried
    /// again after a poll interval.
    async fn outcome_of(&mut self, i: usize, result: TaskResult) -> Option<Outcome> {
        let item = &self.plan.items[i];
        let r = match result {
            TaskResult::Blocked(reason) => return Some(Outcome::Skipped { reason }),
            TaskResult::Report(r) => r,
        };
        Some(match r.state {
            RunOutcome::Succeeded => Outcome::Succeeded {
                run_id: r.run_id.unwrap_or_default(),
                rows: r.rows.unwrap_or(0),
                attempts: r.attempts,
                duration_ms: r.duration_ms,
            },
            RunOutcome::Failed => {
                if self.opts.fail_fast && self.stop.is_none() {
                    self.stop = Some(format!(
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
            RunOutcome::DoneElsewhere => Outcome::DoneElsewhere {
                held_by: self.held_by[i]
                    .clone()
                    .unwrap_or_else(|| "another worker".into()),
                run_id: r.run_id,
            },
            RunOutcome::Held => {
                let holder = r.held_by.unwrap_or_default();
                // Done by the holder since we started? Then it is done; else look again.
                let status = self
                    .catalog
                    .partition_status(&item.table, i64::from(item.version), &item.partition)
                    .await
                    .ok()
                    .flatten();
                match status {
                    Some(p) if p.completed_since(self.started_ms) => Outcome::DoneElsewhere {
                        held_by: holder,
                        run_id: p.content_run_id,
                    },
                    _ => {
                        if self.held_by[i].is_none() {
                            self.progress.item_waiting(item, &holder);
                        }
                        self.held_by[i] = Some(holder);
                        let t = Instant::now() + self.poll;
                        self.state[i] = State::Pending {
                            not_before: Some(t),
                        };
                        self.pending += 1;
                        self.delayed.insert((t, i));
                        return None;
                    }
                }
            }
        })
    }

    fn summary(self, started: Instant) -> Summary {
        let n = self.plan.items.len();
        let mut items = Vec::with_capacity(n);
        let (mut succeeded, mut failed, mut skipped, mut elsewhere, mut rows) = (0, 0, 0, 0, 0u64);
        for (item, s) in self.plan.items.iter().zip(self.state) {
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
            not_selected: self.plan.not_selected.len(),
            rows,
            elapsed_ms: started.elapsed().as_millis(),
            items,
            not_selected_items: self.plan.not_selected.clone(),
        }
    }
}

/// An upstream partition outside the plan that is not complete blocks the item: running it
/// would read a gap.
async fn blocked_by_outside(catalog: &Catalog, item: &PlanItem) -> Option<String> {
    for d in &item.reads_outside_plan {
        let state = catalog
            .partition_status(&d.table, d.version, &d.partition)
            .await
            .ok()
            .flatten()
            .map(|p| p.state);
        if state != Some(PartitionState::Complete) {
            return Some(format!(
                "upstream {} {} is {} and not in this backfill; include its job or use --downstream from it",
                d.table,
                d.partition,
                state.map_or("missing", |s| s.as_str())
            ));
        }
    }
    None
}

/// Sleeps until `t`; with none, forever.
async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
