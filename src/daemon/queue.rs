//! The daemon's queue: ticks and catch-up turned into due partitions, each queued once;
//! starting them within the concurrency limits once their inputs are there; recording how
//! they ended.

use super::schedule::Cadence;
use super::{Daemon, MAX_TICKS_PER_POLL};
use crate::catalog::PartitionState;
use crate::job::{CatchUp, InputSource, Job};
use crate::names::Name;
use crate::partition::{Granularity, PartitionKey, StaticKey, TimeKey};
use crate::run::{RunOutcome, RunReport, RunRequest, Trigger};
use chrono::{DateTime, Utc};
use std::path::Path;
use std::time::Duration;
use tracing::{error, info, warn};

/// Why a partition was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Due {
    /// Its tick came.
    Tick,
    /// Its tick was missed while the daemon was down (or before the job was added).
    CatchUp,
    /// Complete, but what it read changed since (`stale.rs`): the run whose content was
    /// judged stale. A rerun elsewhere since (other content) counts as done.
    Stale { content_run: String },
}

impl Due {
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            Due::Tick => "tick",
            Due::CatchUp => "catch-up",
            Due::Stale { .. } => "stale",
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) job: Name,
    pub(super) key: PartitionKey,
    /// The tick that made it due.
    pub(super) due: DateTime<Utc>,
    /// When it was queued.
    pub(super) queued_ms: i64,
    /// A run by another worker that ended after this (its queueing, or its requeueing after
    /// a transient failure here) counts as done, failed or not.
    pub(super) tried_after_ms: i64,
    pub(super) why: Due,
    pub(super) not_before: Option<DateTime<Utc>>,
    /// What it waits for (upstream partitions, input files), as last checked.
    pub(super) waiting_on: Vec<String>,
    /// How often it was queued again after its runs failed for a transient cause.
    pub(super) requeued: u32,
}

/// How often the daemon queues a partition again after its runs (each with the job's own
/// retries) failed for a transient cause, such as a catalog or store outage longer than
/// the job's retries last. Past that the partition stays failed until its next tick or a
/// backfill, as after any failure.
const TRANSIENT_REQUEUES: u32 = 3;

#[derive(Debug)]
pub(super) struct JobState {
    /// The last spec of the job that validated: its schedule keeps ticking while a broken
    /// spec is fixed.
    pub(super) job: Job,
    pub(super) cadence: Cadence,
    /// Why the current spec does not validate.
    pub(super) invalid: Option<String>,
    /// Ticks up to here have been handled.
    pub(super) cursor: DateTime<Utc>,
    /// The newest partition time the schedule has produced.
    pub(super) last_scheduled: Option<TimeKey>,
    /// Catch-up done (once per daemon, when the job is first seen).
    pub(super) started: bool,
    /// Keys added to the spec since catch-up: their missing partitions are caught up at
    /// the next poll, like a new job's.
    pub(super) added_keys: Vec<StaticKey>,
    pub(super) running: usize,
    /// The newest partition time whose deadline was judged (`deadlines`).
    pub(super) deadline_judged: Option<TimeKey>,
}

pub(super) struct Finished {
    pub(super) job: Name,
    pub(super) key: PartitionKey,
    pub(super) due: DateTime<Utc>,
    pub(super) queued_ms: i64,
    pub(super) tried_after_ms: i64,
    pub(super) why: Due,
    pub(super) requeued: u32,
    pub(super) report: RunReport,
    /// The run of the live version, when the spec's version is another (not promoted yet).
    pub(super) shadow: Option<RunReport>,
}

impl Finished {
    /// The partition queued again, to run not before `at`, its original due time and
    /// queueing time kept; what another worker does after `tried_after_ms` counts.
    fn again(&self, at: DateTime<Utc>, requeued: u32, tried_after_ms: i64) -> Pending {
        Pending {
            job: self.job.clone(),
            key: self.key,
            due: self.due,
            queued_ms: self.queued_ms,
            tried_after_ms,
            why: self.why.clone(),
            not_before: Some(at),
            waiting_on: Vec::new(),
            requeued,
        }
    }
}

impl Daemon {
    pub(super) async fn schedule_job(
        &mut self,
        name: &Name,
        now: DateTime<Utc>,
    ) -> Result<(), crate::catalog::CatalogError> {
        let Some(st) = self.jobs.get(name) else {
            return Ok(());
        };
        if !st.started {
            return self.catch_up(name, now).await;
        }
        if !st.added_keys.is_empty() {
            let added: Vec<Option<StaticKey>> = st.added_keys.iter().map(|k| Some(*k)).collect();
            self.catch_up_keys(name, &added, now).await?;
            if let Some(st) = self.jobs.get_mut(name) {
                st.added_keys.clear();
            }
        }
        let Some(st) = self.jobs.get(name) else {
            return Ok(());
        };
        let (cadence, job) = (st.cadence.clone(), st.job.clone());
        let ticks = cadence.ticks_between(st.cursor, now, MAX_TICKS_PER_POLL);
        let mut last = st.last_scheduled;
        let mut new: Vec<(TimeKey, DateTime<Utc>)> = Vec::new();
        for tick in ticks {
            let p = cadence.partition_for(tick);
            if cadence.granularity == Granularity::None {
                new.push((p, tick));
                continue;
            }
            if last.is_some_and(|l| p <= l) {
                continue;
            }
            // A tick that skips partitions (a schedule change, a DST gap) queues them too.
            let from = last.and_then(|l| l.next()).unwrap_or(p);
            let mut keys = cadence.granularity.range(from, p);
            let max = cadence.schedule.max_catch_up.max(1) as usize;
            if keys.len() > max {
                keys.drain(..keys.len() - max);
            }
            new.extend(keys.into_iter().map(|k| (k, tick)));
            last = Some(p);
        }
        if let Some(st) = self.jobs.get_mut(name) {
            st.cursor = now;
            st.last_scheduled = last;
        }
        for (time, tick) in new {
            for key in job.partitions_at(time) {
                self.enqueue(name, key, tick, Due::Tick, true).await?;
            }
        }
        Ok(())
    }

    /// The first look at a job: queue the partitions missed while the daemon was down, per
    /// the job's catch-up policy (for each key of a job with keys).
    pub(super) async fn catch_up(
        &mut self,
        name: &Name,
        now: DateTime<Utc>,
    ) -> Result<(), crate::catalog::CatalogError> {
        let Some(st) = self.jobs.get(name) else {
            return Ok(());
        };
        let keys: Vec<Option<StaticKey>> = match &st.job.static_keys {
            None => vec![None],
            Some(d) => d.keys.iter().map(|k| Some(*k)).collect(),
        };
        let latest = self.catch_up_keys(name, &keys, now).await?;
        self.mark_started(name, now, latest);
        Ok(())
    }

    /// Queues the missed partitions of `keys` (`None`: a job without keys); returns the
    /// newest due partition time.
    async fn catch_up_keys(
        &mut self,
        name: &Name,
        keys: &[Option<StaticKey>],
        now: DateTime<Utc>,
    ) -> Result<Option<TimeKey>, crate::catalog::CatalogError> {
        let Some(st) = self.jobs.get(name) else {
            return Ok(None);
        };
        let (job, cadence) = (st.job.clone(), st.cadence.clone());
        let Some(tick) = cadence.latest_tick(now) else {
            return Ok(None);
        };
        let latest = cadence.partition_for(tick);
        let policy = cadence.schedule.catch_up;
        let statuses = self
            .catalog
            .partitions_of(job.table.as_str(), i64::from(job.version))
            .await?;
        for key in keys {
            let mine: Vec<_> = statuses
                .iter()
                .filter_map(|s| job.parse_partition(&s.partition_key).ok().map(|p| (p, s)))
                .filter(|(p, _)| p.key == *key)
                .collect();
            let complete: std::collections::BTreeSet<TimeKey> = mine
                .iter()
                .filter(|(_, s)| s.state == PartitionState::Complete)
                .map(|(p, _)| p.time)
                .collect();
            let missing: Vec<TimeKey> = if job.granularity == Granularity::None {
                let done = mine
                    .iter()
                    .any(|(_, s)| s.completed_since(tick.timestamp_millis()));
                if done { Vec::new() } else { vec![latest] }
            } else {
                missing_times(&job, &complete, latest)
            };
            let (times, left_out) = super::schedule::catch_up(
                policy,
                cadence.schedule.max_catch_up,
                latest,
                missing.clone(),
            );
            let at = |t: &TimeKey| PartitionKey::new(*t, *key);
            if left_out > 0 {
                let oldest = missing
                    .first()
                    .map(|t| at(t).to_string())
                    .unwrap_or_default();
                let policy_name = match policy {
                    CatchUp::All => "all",
                    CatchUp::Latest => "latest",
                    CatchUp::None => "none",
                };
                warn!(
                    job = %name, left_out, catch_up = policy_name,
                    "missed partitions not queued by the catch-up policy; backfill them with `sluice backfill {name} --from {oldest} --to {}`",
                    missing.get(left_out.saturating_sub(1)).map(|t| at(t).to_string()).unwrap_or_default()
                );
            }
            if let (Some(first), Some(last)) = (times.first(), times.last()) {
                info!(job = %name, count = times.len(), first = %at(first), last = %at(last), "catching up missed partitions");
            }
            for t in times {
                self.enqueue(name, at(&t), tick, Due::CatchUp, false)
                    .await?;
            }
        }
        Ok(Some(latest))
    }

    pub(super) fn mark_started(
        &mut self,
        name: &Name,
        now: DateTime<Utc>,
        latest: Option<TimeKey>,
    ) {
        if let Some(st) = self.jobs.get_mut(name) {
            st.started = true;
            st.cursor = now;
            st.last_scheduled = latest;
        }
    }

    pub(super) async fn enqueue(
        &mut self,
        name: &Name,
        key: PartitionKey,
        due: DateTime<Utc>,
        why: Due,
        check_catalog: bool,
    ) -> Result<(), crate::catalog::CatalogError> {
        let known = self.queue.iter().any(|p| &p.job == name && p.key == key)
            || self.running.contains_key(&(name.clone(), key));
        if known {
            return Ok(());
        }
        let Some(st) = self.jobs.get(name) else {
            return Ok(());
        };
        if st.job.start.is_some_and(|s| key.time < s) || !st.job.declares(&key) {
            return Ok(());
        }
        if check_catalog && st.job.granularity != Granularity::None {
            let status = self
                .catalog
                .partition_status(
                    st.job.table.as_str(),
                    i64::from(st.job.version),
                    &key.to_string(),
                )
                .await?;
            if status.is_some_and(|p| p.state == PartitionState::Complete) {
                info!(job = %name, partition = %key, "partition is due but already complete; not running it again");
                return Ok(());
            }
        }
        if why == Due::CatchUp {
            // One line per catch-up says how many and which; these are details.
            tracing::debug!(job = %name, partition = %key, why = why.as_str(), "partition due");
        } else {
            info!(job = %name, partition = %key, why = why.as_str(), "partition due");
        }
        self.queue.push(Pending {
            job: name.clone(),
            key,
            due,
            queued_ms: self.clock.now_ms(),
            tried_after_ms: self.clock.now_ms(),
            why,
            not_before: None,
            waiting_on: Vec::new(),
            requeued: 0,
        });
        Ok(())
    }

    /// Starts queued partitions, oldest due first, within the global and per-job limits,
    /// once what they read is there.
    pub(super) async fn dispatch(&mut self, now: DateTime<Utc>) {
        self.queue
            .sort_by(|a, b| (a.due, &a.job, a.key).cmp(&(b.due, &b.job, b.key)));
        let project = self.runner.project();
        let mut complete = crate::run::CompletePartitions::new();
        let mut i = 0;
        while i < self.queue.len() {
            if self.running.len() >= self.opts.max_concurrency {
                break;
            }
            let p = self.queue[i].clone();
            if p.not_before.is_some_and(|t| t > now) {
                i += 1;
                continue;
            }
            let Some(st) = self.jobs.get(&p.job) else {
                self.queue.remove(i);
                continue;
            };
            if st.running >= st.cadence.schedule.max_concurrency as usize {
                i += 1;
                continue;
            }
            if let Some(why) = st.invalid.clone() {
                let job = st.job.clone();
                self.queue.remove(i);
                let why = format!(
                    "not run: the job's spec no longer validates: {why}; fix it (see `sluice validate`), then run this partition again"
                );
                self.start(p, job, Some(why));
                continue;
            }
            let Some(job) = project.jobs.get(&p.job).cloned() else {
                self.queue.remove(i);
                continue;
            };
            let busy = self.upstream_busy(&job, &p.key);
            let waits = match self
                .runner
                .upstream_waits(&job, &p.key, &mut complete)
                .await
            {
                Ok(w) if busy.is_empty() => Ok(w),
                Ok(_) => Ok(busy),
                Err(e) => Err(e),
            };
            let mut waits = match waits {
                Ok(w) => w,
                Err(e) => {
                    warn!(job = %p.job, partition = %p.key, error = %e, "could not check the upstream partitions; trying again at the next poll");
                    i += 1;
                    continue;
                }
            };
            let mut timed_out = None;
            if waits.is_empty()
                && let Some(limit) = job.schedule.as_ref().and_then(|s| s.wait_for_inputs)
            {
                let missing = missing_input_files(&job, &p.key, &project.settings.root);
                let waited = now.timestamp_millis() - p.queued_ms;
                if !missing.is_empty() && waited >= limit.as_millis() as i64 {
                    timed_out = Some(format!(
                        "input files did not arrive within {} (schedule.wait_for_inputs): {}; once they are there, run the partition again (`sluice run {} --partition {}`)",
                        humanize(limit),
                        missing.join(", "),
                        p.job,
                        p.key
                    ));
                } else {
                    waits = missing;
                }
            }
            if let Some(why) = timed_out {
                self.queue.remove(i);
                self.start(p, job, Some(why));
                continue;
            }
            if !waits.is_empty() {
                if self.queue[i].waiting_on != waits {
                    info!(job = %p.job, partition = %p.key, waiting_on = %waits.join(", "), "partition waits for its inputs");
                    self.queue[i].waiting_on = waits;
                }
                i += 1;
                continue;
            }
            self.queue.remove(i);
            self.start(p, job, None);
        }
    }

    pub(super) fn start(&mut self, p: Pending, job: Job, refuse: Option<String>) {
        if let Some(st) = self.jobs.get_mut(&p.job) {
            st.running += 1;
        }
        self.running
            .insert((p.job.clone(), p.key), (p.due, p.why.clone()));
        let runner = self.runner.clone();
        let catalog = self.catalog.clone();
        self.tasks.spawn(async move {
            let shadow = match refuse {
                None if !matches!(p.why, Due::Stale { .. }) => {
                    super::shadow::shadow_live_version(&runner, &catalog, &job, p.key, p.queued_ms)
                        .await
                }
                _ => None,
            };
            let request = RunRequest::new(&job, p.key, Trigger::Daemon);
            let request = match &p.why {
                Due::Stale { content_run } => request.unless_rewritten_after(content_run.clone()),
                _ => request.unless_tried_after(p.tried_after_ms),
            };
            let report = match refuse {
                None => runner.run(request).await,
                Some(why) => runner.run(request.refused(why)).await,
            };
            Finished {
                job: p.job,
                key: p.key,
                due: p.due,
                queued_ms: p.queued_ms,
                tried_after_ms: p.tried_after_ms,
                why: p.why,
                requeued: p.requeued,
                report,
                shadow,
            }
        });
    }

    pub(super) fn finished(&mut self, done: Result<Finished, tokio::task::JoinError>) {
        let f = match done {
            Ok(f) => f,
            Err(e) => {
                // A panic in a run is a bug; the partition's lease expires and another
                // worker (or the next tick) takes it over.
                if e.is_panic() {
                    error!(error = %e, "a run panicked");
                }
                return;
            }
        };
        self.running.remove(&(f.job.clone(), f.key));
        if let Some(st) = self.jobs.get_mut(&f.job) {
            st.running = st.running.saturating_sub(1);
        }
        if let Some(l) = &f.shadow {
            self.metrics.run_finished(f.job.as_str(), l);
            match l.state {
                RunOutcome::Failed => {
                    warn!(job = %f.job, partition = %f.key, table_version = l.table_version, error = l.error.as_deref().unwrap_or("-"), "live version's partition failed")
                }
                _ => {
                    info!(job = %f.job, partition = %f.key, table_version = l.table_version, "live version's partition written beside the new one")
                }
            }
        }
        let r = &f.report;
        self.metrics.run_finished(f.job.as_str(), r);
        match r.state {
            RunOutcome::Held => {
                let retry = self.clock.now()
                    + chrono::Duration::from_std(self.opts.held_retry).unwrap_or_default();
                info!(job = %f.job, partition = %f.key, held_by = r.held_by.as_deref().unwrap_or("-"), "partition is leased by another worker; trying again later");
                self.queue
                    .push(f.again(retry, f.requeued, f.tried_after_ms));
            }
            RunOutcome::Failed if r.transient && f.requeued < TRANSIENT_REQUEUES => {
                let policy = self.jobs.get(&f.job).map(|st| st.job.retry.clone());
                let wait = policy
                    .map(|p| crate::run::backoff(&p, p.max_attempts + f.requeued))
                    .unwrap_or_default()
                    .max(self.opts.held_retry);
                warn!(job = %f.job, partition = %f.key, run_id = r.run_id.as_deref().unwrap_or("-"), error = r.error.as_deref().unwrap_or("-"), wait_ms = wait.as_millis() as u64, "partition failed for a transient cause; queued again");
                let at = self.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
                // Its own failure is not another worker's: what counts starts now.
                self.queue
                    .push(f.again(at, f.requeued + 1, self.clock.now_ms()));
            }
            RunOutcome::Succeeded => {
                info!(job = %f.job, partition = %f.key, run_id = r.run_id.as_deref().unwrap_or("-"), rows = r.rows.unwrap_or(0), duration_ms = r.duration_ms as u64, "partition done");
            }
            RunOutcome::DoneElsewhere => {
                info!(job = %f.job, partition = %f.key, "partition was run by another worker meanwhile");
            }
            RunOutcome::Failed => {
                warn!(job = %f.job, partition = %f.key, run_id = r.run_id.as_deref().unwrap_or("-"), error = r.error.as_deref().unwrap_or("-"), "partition failed");
            }
        }
    }
}

/// The local input files of `key` that do not exist yet (relative to the project root).
/// Globs and URLs are not checked here: the run reports what it cannot read.
fn missing_input_files(job: &Job, key: &PartitionKey, root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for input in &job.inputs {
        let InputSource::Files { template, .. } = &input.source else {
            continue;
        };
        let Ok(rel) = Job::resolve_template(template, key) else {
            continue;
        };
        if rel.contains("://") || rel.contains(['*', '?', '[']) {
            continue;
        }
        if !root.join(&rel).exists() {
            out.push(rel);
        }
    }
    out
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86400 == 0 && s > 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The times after the last complete one (from the job's start) up to `latest`, not
/// complete, oldest first.
fn missing_times(
    job: &Job,
    complete: &std::collections::BTreeSet<TimeKey>,
    latest: TimeKey,
) -> Vec<TimeKey> {
    let last_complete = complete.range(..=latest).next_back().copied();
    let mut floor = match last_complete {
        Some(k) => k.next().unwrap_or(latest),
        None => job.start.unwrap_or(latest),
    };
    if let Some(start) = job.start {
        floor = floor.max(start);
    }
    if floor > latest {
        return Vec::new();
    }
    job.granularity
        .range(floor, latest)
        .into_iter()
        .filter(|k| !complete.contains(k))
        .collect()
}
