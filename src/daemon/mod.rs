//! `sluice daemon`: runs each scheduled job's partitions as their ticks come, catches up
//! after downtime, holds downstream partitions until what they read is complete, and picks
//! up new code without a restart.
//!
//! The core is [`Daemon::poll`]: read the (injected) clock, reload the project if its files
//! changed, queue the partitions that became due, start the ones that may run. Tests drive
//! it step by step with a manual clock; production calls it from [`Daemon::run`] whenever
//! something may have changed: the next tick is reached, a run ended, a held partition may
//! be free, the wall-clock sweep fired, or SIGHUP asked for a reload.
//!
//! Why ticks are computed here with croner rather than by tokio-cron-scheduler's jobs:
//! tokio-cron-scheduler fixes a time zone's UTC offset when a job is created (a Berlin job
//! would fire an hour off after the next DST change) and reads the system clock, which
//! tests cannot inject. It drives the once-a-minute wall-clock sweep, which also covers
//! what tokio's monotonic timers miss (a suspended host, a clock stepped by NTP).
//!
//! Invariants:
//! - a partition is queued at most once per daemon: a tick whose partition is not newer
//!   than the last one scheduled for the job is ignored (DST overlaps, repeated ticks);
//! - every run goes through the runner's lease, so two daemons, or a daemon and a
//!   backfill, never write one partition at once, and a partition another worker finished
//!   after it was queued here is not redone;
//! - on stop, nothing new starts; what is cancelled after the grace period is settled from
//!   the Delta log (landed or abandoned) and its lease released.

pub mod metrics;
pub mod schedule;

use crate::job::{CatchUp, InputSource, Job};
use crate::names::Name;
use crate::partition::{Granularity, PartitionKey};
use crate::project::Project;
use crate::runner::{RunReport, RunState, Runner, Trigger};
use chrono::{DateTime, Utc};
use metrics::{JobGauges, Metrics};
use schedule::Cadence;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

#[derive(Debug, Clone)]
pub struct Options {
    /// Partitions running at once over all jobs.
    pub max_concurrency: usize,
    /// After a stop request, how long running partitions may take before they are cancelled.
    pub grace: Duration,
    /// How soon a partition found leased by another worker is tried again.
    pub held_retry: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_concurrency: 2,
            grace: Duration::from_secs(30),
            held_retry: Duration::from_secs(5),
        }
    }
}

/// Why a partition was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Its tick came.
    Tick,
    /// Its tick was missed while the daemon was down (or before the job was added).
    CatchUp,
}

impl Due {
    fn as_str(self) -> &'static str {
        match self {
            Due::Tick => "tick",
            Due::CatchUp => "catch-up",
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    job: Name,
    key: PartitionKey,
    /// The tick that made it due.
    due: DateTime<Utc>,
    /// When it was queued; a run by another worker that ended since then counts as done.
    queued_ms: i64,
    why: Due,
    not_before: Option<DateTime<Utc>>,
    /// What it waits for (upstream partitions, input files), as last checked.
    waiting_on: Vec<String>,
}

#[derive(Debug)]
struct JobState {
    /// The last spec of the job that validated: its schedule keeps ticking while a broken
    /// spec is fixed.
    job: Job,
    cadence: Cadence,
    /// Why the current spec does not validate.
    invalid: Option<String>,
    /// Ticks up to here have been handled.
    cursor: DateTime<Utc>,
    /// The newest partition the schedule has produced.
    last_scheduled: Option<PartitionKey>,
    /// Catch-up done (once per daemon, when the job is first seen).
    started: bool,
    running: usize,
}

struct Finished {
    job: Name,
    key: PartitionKey,
    due: DateTime<Utc>,
    queued_ms: i64,
    why: Due,
    report: RunReport,
    /// The run of the live version, when the spec's version is another (not promoted yet).
    shadow: Option<RunReport>,
}

/// What the outside tells a running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Look at the clock (the wall-clock sweep).
    Wake,
    /// Re-read the project now (SIGHUP).
    Reload,
    /// Stop claiming; let running partitions finish within the grace period (SIGTERM, SIGINT).
    Stop,
}

pub struct Daemon {
    runner: Arc<Runner>,
    opts: Options,
    jobs: BTreeMap<Name, JobState>,
    queue: Vec<Pending>,
    running: BTreeMap<(Name, PartitionKey), DateTime<Utc>>,
    tasks: JoinSet<Finished>,
    files_hash: Option<blake3::Hash>,
    reload_requested: bool,
    stopping: bool,
    pub metrics: Arc<Metrics>,
}

/// Most ticks handled per job in one poll; more than this since the last poll is downtime,
/// and catch-up rules apply.
const MAX_TICKS_PER_POLL: usize = 10_000;

impl Daemon {
    pub fn new(runner: Arc<Runner>, opts: Options) -> Daemon {
        Daemon {
            runner,
            opts,
            jobs: BTreeMap::new(),
            queue: Vec::new(),
            running: BTreeMap::new(),
            tasks: JoinSet::new(),
            files_hash: None,
            reload_requested: false,
            stopping: false,
            metrics: Arc::new(Metrics::default()),
        }
    }

    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    /// Re-read the project at the next poll even if no file changed.
    pub fn request_reload(&mut self) {
        self.reload_requested = true;
    }

    /// One scheduling pass: reload if needed, queue what became due, start what may run.
    pub async fn poll(&mut self) {
        let now = self.runner.clock.now();
        self.reload_if_changed(now);
        let names: Vec<Name> = self.jobs.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.schedule_job(&name, now).await {
                warn!(job = %name, error = %e, "could not read the catalog to schedule the job; trying again at the next poll");
            }
        }
        if !self.stopping {
            self.dispatch(now).await;
        }
        self.publish(now);
    }

    /// Polls, then waits for every run started to end, and polls again, until a poll starts
    /// nothing. Partitions left waiting (upstream, files, a held lease) stay queued. For
    /// tests and one-shot use: nothing here sleeps.
    pub async fn run_until_idle(&mut self) {
        loop {
            self.poll().await;
            if self.tasks.is_empty() {
                return;
            }
            while let Some(done) = self.tasks.join_next().await {
                self.finished(done);
            }
        }
    }

    /// Partitions queued and not started, as `job/partition`, in queue order.
    pub fn queued(&self) -> Vec<String> {
        self.queue
            .iter()
            .map(|p| format!("{}/{}", p.job, p.key))
            .collect()
    }

    /// The production loop; returns when stopped, after the grace period and settling.
    pub async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        loop {
            self.poll().await;
            let sleep = self.until_next_event();
            tokio::select! {
                c = control.recv() => match c {
                    Some(Control::Wake) => {}
                    Some(Control::Reload) => {
                        info!("reload requested");
                        self.reload_requested = true;
                    }
                    Some(Control::Stop) | None => break,
                },
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => self.finished(done),
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        self.shutdown(&mut control).await;
    }

    async fn shutdown(&mut self, control: &mut mpsc::Receiver<Control>) {
        self.stopping = true;
        self.metrics.stopping();
        let grace = self.opts.grace;
        info!(
            running = self.tasks.len(),
            grace_seconds = grace.as_secs_f64(),
            "stopping: starting nothing new; waiting for running partitions"
        );
        let deadline = tokio::time::Instant::now() + grace;
        let mut cancelled = false;
        let mut open = true;
        while !self.tasks.is_empty() {
            tokio::select! {
                Some(done) = self.tasks.join_next() => self.finished(done),
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(running = self.tasks.len(), "grace period over; cancelling the running partitions (a partition is one commit: nothing partial is left)");
                    cancelled = true;
                    break;
                }
                c = control.recv(), if open => match c {
                    Some(Control::Stop) => {
                        warn!(running = self.tasks.len(), "second stop request; cancelling the running partitions now");
                        cancelled = true;
                        break;
                    }
                    None => open = false,
                    Some(_) => {}
                },
            }
        }
        if cancelled {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
            let n = self.runner.settle_own_leases().await;
            info!(
                settled = n,
                "cancelled runs settled and their leases released"
            );
        }
        self.publish(self.runner.clock.now());
        info!("daemon stopped");
    }

    /// How long until something is due: the next tick of any job, or a held partition's
    /// retry. At most a minute (the sweep wakes us anyway).
    fn until_next_event(&self) -> Duration {
        let now = self.runner.clock.now();
        let mut next: Option<DateTime<Utc>> = None;
        for st in self.jobs.values() {
            if let Some(t) = st.cadence.next_tick_after(st.cursor.max(now)) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        for p in &self.queue {
            if let Some(t) = p.not_before {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let cap = Duration::from_secs(60);
        match next {
            Some(t) => (t - now).to_std().unwrap_or(Duration::ZERO).min(cap),
            None => cap,
        }
    }

    // ---- project reloads ----------------------------------------------------------------

    fn reload_if_changed(&mut self, now: DateTime<Utc>) {
        let root = self.runner.project().settings.root.clone();
        let hash = project_files_hash(&root);
        if self.files_hash == Some(hash) && !self.reload_requested && !self.jobs.is_empty() {
            return;
        }
        let first = self.files_hash.is_none();
        let changed = self.files_hash.is_some_and(|h| h != hash);
        self.files_hash = Some(hash);
        self.reload_requested = false;
        let project = if first {
            self.runner.project()
        } else {
            let settings = self.runner.project().settings.clone();
            let p = Arc::new(Project::load_with(settings));
            self.runner.set_project(p.clone());
            if changed {
                info!("project files changed; the next runs use the new specs, SQL and migrations");
            }
            p
        };
        self.apply_project(&project, now, first || changed);
    }

    fn apply_project(&mut self, project: &Project, now: DateTime<Utc>, log_problems: bool) {
        for (name, job) in &project.jobs {
            let cadence = match Cadence::of(job) {
                None => {
                    if self.jobs.remove(name).is_some() {
                        info!(job = %name, "the job has no schedule any more; the daemon no longer runs it");
                        self.queue.retain(|p| &p.job != name);
                    }
                    continue;
                }
                Some(Err(m)) => {
                    error!(job = %name, error = %m, "the job's cron does not parse");
                    continue;
                }
                Some(Ok(c)) => c,
            };
            match self.jobs.get_mut(name) {
                Some(st) => {
                    if st.invalid.take().is_some() {
                        info!(job = %name, "the job's spec validates again");
                    }
                    st.job = job.clone();
                    st.cadence = cadence;
                }
                None => {
                    info!(job = %name, cron = %cadence.schedule.cron, time_zone = %cadence.schedule.time_zone, "scheduling job");
                    self.jobs.insert(
                        name.clone(),
                        JobState {
                            job: job.clone(),
                            cadence,
                            invalid: None,
                            cursor: now,
                            last_scheduled: None,
                            started: false,
                            running: 0,
                        },
                    );
                }
            }
        }
        let gone: Vec<Name> = self
            .jobs
            .keys()
            .filter(|n| !project.jobs.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            let spec = project.settings.jobs_dir().join(format!("{name}.toml"));
            if !spec.exists() {
                info!(job = %name, "the job's spec was removed; the daemon no longer runs it");
                self.jobs.remove(&name);
                self.queue.retain(|p| p.job != name);
                continue;
            }
            let why = match project.job(name.as_str()) {
                Err(errs) => errs
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
                Ok(_) => "the spec does not validate".into(),
            };
            if let Some(st) = self.jobs.get_mut(&name) {
                if st.invalid.as_deref() != Some(why.as_str()) {
                    error!(job = %name, error = %why, "the job's spec no longer validates; its partitions fail until it is fixed, the other jobs go on");
                }
                st.invalid = Some(why);
            }
        }
        if log_problems {
            for p in &project.problems {
                let known = self.jobs.keys().any(|n| p.file == format!("jobs/{n}.toml"));
                if !known {
                    error!(file = %p.file, error = %p.message, "not scheduled: the spec does not validate");
                }
            }
        }
    }

    // ---- scheduling ---------------------------------------------------------------------

    async fn schedule_job(
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
        let cadence = st.cadence.clone();
        let ticks = cadence.ticks_between(st.cursor, now, MAX_TICKS_PER_POLL);
        let mut last = st.last_scheduled;
        let mut new: Vec<(PartitionKey, DateTime<Utc>)> = Vec::new();
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
        for (key, tick) in new {
            self.enqueue(name, key, tick, Due::Tick, true).await?;
        }
        Ok(())
    }

    /// The first look at a job: queue the partitions missed while the daemon was down, per
    /// the job's catch-up policy.
    async fn catch_up(
        &mut self,
        name: &Name,
        now: DateTime<Utc>,
    ) -> Result<(), crate::catalog::CatalogError> {
        let Some(st) = self.jobs.get(name) else {
            return Ok(());
        };
        let (job, cadence) = (st.job.clone(), st.cadence.clone());
        let Some(tick) = cadence.latest_tick(now) else {
            self.mark_started(name, now, None);
            return Ok(());
        };
        let latest = cadence.partition_for(tick);
        let policy = cadence.schedule.catch_up;
        let statuses = self
            .runner
            .catalog
            .partitions_of(job.table.as_str(), i64::from(job.version))
            .await?;
        let complete: std::collections::BTreeSet<PartitionKey> = statuses
            .iter()
            .filter(|p| p.state == "complete")
            .filter_map(|p| job.granularity.parse_key(&p.partition_key).ok())
            .collect();
        let missing: Vec<PartitionKey> = if job.granularity == Granularity::None {
            let done = statuses.iter().any(|p| {
                p.state == "complete" && p.finished_at.unwrap_or(0) >= tick.timestamp_millis()
            });
            if done { Vec::new() } else { vec![latest] }
        } else {
            let last_complete = complete.range(..=latest).next_back().copied();
            let mut floor = match last_complete {
                Some(k) => k.next().unwrap_or(latest),
                None => job.start.unwrap_or(latest),
            };
            if let Some(start) = job.start {
                floor = floor.max(start);
            }
            if floor > latest {
                Vec::new()
            } else {
                job.granularity
                    .range(floor, latest)
                    .into_iter()
                    .filter(|k| !complete.contains(k))
                    .collect()
            }
        };
        let (keys, left_out) = schedule::catch_up(
            policy,
            cadence.schedule.max_catch_up,
            latest,
            missing.clone(),
        );
        if left_out > 0 {
            let oldest = missing.first().map(|k| k.to_string()).unwrap_or_default();
            let policy_name = match policy {
                CatchUp::All => "all",
                CatchUp::Latest => "latest",
                CatchUp::None => "none",
            };
            warn!(
                job = %name, left_out, catch_up = policy_name,
                "missed partitions not queued by the catch-up policy; backfill them with `sluice backfill {name} --from {oldest} --to {}`",
                missing.get(left_out.saturating_sub(1)).map(|k| k.to_string()).unwrap_or_default()
            );
        }
        if !keys.is_empty() {
            info!(job = %name, count = keys.len(), first = %keys[0], last = %keys[keys.len() - 1], "catching up missed partitions");
        }
        for k in keys {
            self.enqueue(name, k, tick, Due::CatchUp, false).await?;
        }
        self.mark_started(name, now, Some(latest));
        Ok(())
    }

    fn mark_started(&mut self, name: &Name, now: DateTime<Utc>, latest: Option<PartitionKey>) {
        if let Some(st) = self.jobs.get_mut(name) {
            st.started = true;
            st.cursor = now;
            st.last_scheduled = latest;
        }
    }

    async fn enqueue(
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
        if st.job.start.is_some_and(|s| key < s) {
            return Ok(());
        }
        if check_catalog && st.job.granularity != Granularity::None {
            let status = self
                .runner
                .catalog
                .partition_status(
                    st.job.table.as_str(),
                    i64::from(st.job.version),
                    &key.to_string(),
                )
                .await?;
            if status.is_some_and(|p| p.state == "complete") {
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
            queued_ms: self.runner.clock.now_ms(),
            why,
            not_before: None,
            waiting_on: Vec::new(),
        });
        Ok(())
    }

    /// Starts queued partitions, oldest due first, within the global and per-job limits,
    /// once what they read is there.
    async fn dispatch(&mut self, now: DateTime<Utc>) {
        self.queue
            .sort_by(|a, b| (a.due, &a.job, a.key).cmp(&(b.due, &b.job, b.key)));
        let project = self.runner.project();
        let mut complete = crate::runner::CompletePartitions::new();
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
            let mut waits = match self
                .runner
                .upstream_waits(&job, &p.key, &mut complete)
                .await
            {
                Ok(w) => w,
                Err(e) => {
                    warn!(job = %p.job, partition = %p.key, error = %e, "could not check the upstream partitions; trying again at the next poll");
                    i += 1;
                    continue;
                }
            };
            let mut timed_out = None;
            if waits.is_empty() {
                if let Some(limit) = job.schedule.as_ref().and_then(|s| s.wait_for_inputs) {
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

    fn start(&mut self, p: Pending, job: Job, refuse: Option<String>) {
        if let Some(st) = self.jobs.get_mut(&p.job) {
            st.running += 1;
        }
        self.running.insert((p.job.clone(), p.key), p.due);
        let runner = self.runner.clone();
        self.tasks.spawn(async move {
            let shadow = match refuse {
                None => shadow_live_version(&runner, &job, p.key, p.queued_ms).await,
                Some(_) => None,
            };
            let report = match refuse {
                None => {
                    runner
                        .run_partition_unless_done_since(
                            &job,
                            p.key,
                            Trigger::Daemon,
                            Some(p.queued_ms),
                        )
                        .await
                }
                Some(why) => {
                    runner
                        .fail_partition(&job, p.key, Trigger::Daemon, Some(p.queued_ms), why)
                        .await
                }
            };
            Finished {
                job: p.job,
                key: p.key,
                due: p.due,
                queued_ms: p.queued_ms,
                why: p.why,
                report,
                shadow,
            }
        });
    }

    fn finished(&mut self, done: Result<Finished, tokio::task::JoinError>) {
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
            self.metrics
                .run_finished(f.job.as_str(), state_name(l.state), l.duration_ms / 1000.0);
            match l.state {
                RunState::Failed => {
                    warn!(job = %f.job, partition = %f.key, table_version = l.table_version, error = l.error.as_deref().unwrap_or("-"), "live version's partition failed")
                }
                _ => {
                    info!(job = %f.job, partition = %f.key, table_version = l.table_version, "live version's partition written beside the new one")
                }
            }
        }
        let r = &f.report;
        let state = state_name(r.state);
        self.metrics
            .run_finished(f.job.as_str(), state, r.duration_ms / 1000.0);
        match r.state {
            RunState::Held => {
                let retry = self.runner.clock.now()
                    + chrono::Duration::from_std(self.opts.held_retry).unwrap_or_default();
                info!(job = %f.job, partition = %f.key, held_by = r.held_by.as_deref().unwrap_or("-"), "partition is leased by another worker; trying again later");
                self.queue.push(Pending {
                    job: f.job,
                    key: f.key,
                    due: f.due,
                    queued_ms: f.queued_ms,
                    why: f.why,
                    not_before: Some(retry),
                    waiting_on: Vec::new(),
                });
            }
            RunState::Succeeded => {
                info!(job = %f.job, partition = %f.key, run_id = r.run_id.as_deref().unwrap_or("-"), rows = r.rows.unwrap_or(0), duration_ms = r.duration_ms as u64, "partition done");
            }
            RunState::DoneElsewhere => {
                info!(job = %f.job, partition = %f.key, "partition was completed by another worker");
            }
            RunState::Failed => {
                warn!(job = %f.job, partition = %f.key, run_id = r.run_id.as_deref().unwrap_or("-"), error = r.error.as_deref().unwrap_or("-"), "partition failed");
            }
        }
    }

    fn publish(&self, now: DateTime<Utc>) {
        let mut gauges: BTreeMap<String, JobGauges> = self
            .jobs
            .iter()
            .map(|(n, st)| {
                (
                    n.to_string(),
                    JobGauges {
                        running: st.running,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let mut oldest: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for p in &self.queue {
            let g = gauges.entry(p.job.to_string()).or_default();
            g.queued += 1;
            if !p.waiting_on.is_empty() {
                g.waiting += 1;
            }
            let o = oldest.entry(p.job.to_string()).or_insert(p.due);
            *o = (*o).min(p.due);
        }
        for ((job, _), due) in &self.running {
            let o = oldest.entry(job.to_string()).or_insert(*due);
            *o = (*o).min(*due);
        }
        for (job, due) in oldest {
            gauges.entry(job).or_default().lag_seconds =
                ((now - due).num_milliseconds().max(0) as f64) / 1000.0;
        }
        self.metrics
            .polled(gauges, now.timestamp_millis() as f64 / 1000.0);
    }
}

fn state_name(s: RunState) -> &'static str {
    match s {
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Held => "held",
        RunState::DoneElsewhere => "done_elsewhere",
    }
}

/// Shadow runs: while the spec's version is not the live one (a new version being built
/// beside it, not promoted yet), the live version keeps getting new partitions, written by
/// the code that last wrote it, so consumers reading the alias miss nothing. Runs before
/// the new version's partition; does nothing when the live partition is already complete.
async fn shadow_live_version(
    runner: &Runner,
    job: &Job,
    key: PartitionKey,
    queued_ms: i64,
) -> Option<RunReport> {
    let live = runner
        .catalog
        .alias(job.table.as_str())
        .await
        .ok()
        .flatten()?;
    let live = u32::try_from(live).ok()?;
    if live == job.version {
        return None;
    }
    let done = runner
        .catalog
        .partition_status(job.table.as_str(), i64::from(live), &key.to_string())
        .await
        .ok()
        .flatten()
        .is_some_and(|p| p.state == "complete");
    if done {
        return None;
    }
    match runner.job_at_version(job, live).await {
        Ok(Some(live_job)) => Some(
            runner
                .run_partition_unless_done_since(&live_job, key, Trigger::Daemon, Some(queued_ms))
                .await,
        ),
        Ok(None) => {
            warn!(job = %job.name, partition = %key, live_version = live, "no recorded code for the live version; only the new version is written");
            None
        }
        Err(e) => {
            warn!(job = %job.name, partition = %key, live_version = live, error = %e, "cannot run the live version beside the new one");
            None
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

/// A hash of what the daemon reloads: the job specs, their SQL and the migrations.
fn project_files_hash(root: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    for dir in ["jobs", "migrations"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        paths.sort();
        for p in paths {
            h.update(p.to_string_lossy().as_bytes());
            h.update(&[0]);
            if let Ok(bytes) = std::fs::read(&p) {
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
        }
    }
    h.finalize()
}

/// Starts the wall-clock sweep: a tokio-cron-scheduler job that sends [`Control::Wake`]
/// at every minute (every second when a job's cron has seconds).
pub async fn start_sweep(
    tx: mpsc::Sender<Control>,
    every_second: bool,
) -> Result<tokio_cron_scheduler::JobScheduler, tokio_cron_scheduler::JobSchedulerError> {
    let sched = tokio_cron_scheduler::JobScheduler::new().await?;
    let expr = if every_second {
        "* * * * * *"
    } else {
        "0 * * * * *"
    };
    let job = tokio_cron_scheduler::Job::new_async(expr, move |_id, _lock| {
        let tx = tx.clone();
        Box::pin(async move {
            // A full channel already holds a wake-up.
            let _ = tx.try_send(Control::Wake);
        })
    })?;
    sched.add(job).await?;
    sched.start().await?;
    Ok(sched)
}

/// Turns SIGTERM and SIGINT into [`Control::Stop`] and SIGHUP into [`Control::Reload`].
pub fn forward_signals(tx: mpsc::Sender<Control>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
                _ = hup.recv() => Control::Reload,
            };
            if c == Control::Stop {
                info!("stop signal received");
            }
            if tx.send(c).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
