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
//!   backfill, never write one partition at once, and a partition another worker completed
//!   or failed after it was queued here is not run again (with several daemons, a failure
//!   is failed, and told, once);
//! - on stop, nothing new starts; what is cancelled after the grace period is settled from
//!   the Delta log (landed or abandoned) and its lease released.

mod deadlines;
mod deliver;
pub mod metrics;
mod prune;
mod queue;
mod reload;
pub mod replay;
pub mod schedule;
mod shadow;
mod signals;
mod stale;
mod stale_watch;

pub use signals::{forward_signals, start_sweep};

use queue::{Finished, JobState, Pending};

use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::names::Name;
use crate::partition::PartitionKey;
use crate::run::Runner;
use chrono::{DateTime, Utc};
use metrics::{JobGauges, Metrics};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

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
    catalog: Catalog,
    clock: SharedClock,
    opts: Options,
    jobs: BTreeMap<Name, JobState>,
    queue: Vec<Pending>,
    /// What runs, with when it became due and why.
    running: BTreeMap<(Name, PartitionKey), (DateTime<Utc>, queue::Due)>,
    tasks: JoinSet<Finished>,
    files_hash: Option<blake3::Hash>,
    /// The aliases that point at versions an environment built, as last read: when they
    /// move (`env promote`, a rollback), the jobs write elsewhere (`reload`).
    env_built: Option<BTreeMap<String, (i64, i64)>>,
    reload_requested: bool,
    stopping: bool,
    pub metrics: Arc<Metrics>,
    /// Per job, its stale partitions as last judged, and what to judge again when its
    /// tables change.
    stale_watch: BTreeMap<Name, stale_watch::JobWatch>,
    /// The project was read again: each job's code is compared with what was judged.
    stale_recheck_code: bool,
    /// Per job, its stale partitions this daemon would run again, as last judged: what
    /// reads them waits for them, whichever daemon reruns them.
    stale_reruns: BTreeMap<Name, std::collections::BTreeSet<crate::partition::PartitionKey>>,
    /// Sends notifications (`deliver`).
    http: reqwest::Client,
    /// The running daemon's delivery task; without one (a replay, a test's polls), each
    /// poll delivers.
    delivering: Option<(tokio::task::JoinHandle<()>, Arc<tokio::sync::Notify>)>,
    /// Run history beyond `[catalog] retention`, pruned a little at each poll.
    pruning: prune::Pruning,
    /// How long the last poll took.
    last_poll: std::time::Duration,
}

/// Most ticks handled per job in one poll; more than this since the last poll is downtime,
/// and catch-up rules apply.
pub(super) const MAX_TICKS_PER_POLL: usize = 10_000;

impl Daemon {
    pub fn new(runner: Arc<Runner>, catalog: Catalog, clock: SharedClock, opts: Options) -> Daemon {
        Daemon {
            runner,
            catalog,
            clock,
            opts,
            jobs: BTreeMap::new(),
            queue: Vec::new(),
            running: BTreeMap::new(),
            tasks: JoinSet::new(),
            files_hash: None,
            env_built: None,
            reload_requested: false,
            stopping: false,
            metrics: Arc::new(Metrics::default()),
            stale_watch: BTreeMap::new(),
            stale_recheck_code: false,
            stale_reruns: BTreeMap::new(),
            http: reqwest::Client::new(),
            delivering: None,
            pruning: Default::default(),
            last_poll: std::time::Duration::ZERO,
        }
    }

    pub fn runner(&self) -> &Arc<Runner> {
        &self.runner
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Re-read the project at the next poll even if no file changed.
    pub fn request_reload(&mut self) {
        self.reload_requested = true;
    }

    /// One scheduling pass: reload if needed, queue what became due, start what may run.
    pub async fn poll(&mut self) {
        // Wall time, not the daemon's clock: how long the pass itself took, for the metrics
        // and a replay's summary.
        let started = std::time::Instant::now();
        let now = self.clock.now();
        self.reload_if_changed(now).await;
        let names: Vec<Name> = self.jobs.keys().cloned().collect();
        for name in names {
            if let Err(e) = self.schedule_job(&name, now).await {
                warn!(job = %name, error = %e, "could not read the catalog to schedule the job; trying again at the next poll");
            }
        }
        if !self.stopping
            && let Err(e) = self.queue_stale(now).await
        {
            warn!(error = %e, "could not read the catalog to find stale partitions; trying again at the next poll");
        }
        if !self.stopping {
            self.dispatch(now).await;
        }
        self.check_deadlines(now).await;
        self.deliver().await;
        if !self.stopping {
            self.prune_history(now).await;
        }
        self.last_poll = started.elapsed();
        self.publish(now);
    }

    /// Sends the notifications due, unless the delivery task does.
    async fn deliver(&self) {
        if self.delivering.is_none() {
            self.deliverer().pass().await;
        }
    }

    fn deliverer(&self) -> deliver::Deliverer {
        deliver::Deliverer {
            catalog: self.catalog.clone(),
            runner: self.runner.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            http: self.http.clone(),
        }
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
        self.tell(crate::notify::EventKind::DaemonStarted).await;
        let stop = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(self.deliverer().run(stop.clone()));
        self.delivering = Some((task, stop));
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
        self.tell(crate::notify::EventKind::DaemonStopped).await;
        // One last pass, so that the stop (and what ended meanwhile) is sent now; what is
        // not sent is left to the next daemon.
        if let Some((mut task, stop)) = self.delivering.take() {
            stop.notify_one();
            // A pass under way ends within a send's timeout; one that does not is cut
            // short, and what it had claimed is sent by the next daemon when its claim lapses.
            if tokio::time::timeout(Duration::from_secs(15), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        self.deliver().await;
        self.publish(self.clock.now());
        info!("daemon stopped");
    }

    /// Records that this daemon started or stopped, for the targets that want it (a
    /// target's `jobs` does not narrow these: they concern every job).
    async fn tell(&self, kind: crate::notify::EventKind) {
        let project = self.runner.project();
        let targets = crate::notify::wanting(&project.settings.notify, kind, None);
        let holder = self.runner.holder();
        let ev = crate::catalog::NewEvent {
            kind,
            job: None,
            partition: None,
            run_id: None,
            error: None,
            dedup_key: format!("{}:{holder}", kind.as_str()),
        };
        if let Err(e) = self
            .catalog
            .record_event(&ev, self.clock.now_ms(), &targets)
            .await
        {
            warn!(error = %e, event = %kind, "could not record the event");
        }
    }

    /// How long until something is due: the next tick of any job, or a held partition's
    /// retry. At most a minute (the sweep wakes us anyway).
    fn until_next_event(&self) -> Duration {
        let now = self.clock.now();
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
        for st in self.jobs.values() {
            if let Some(t) = deadlines::next_deadline(st, now) {
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

    fn publish(&self, now: DateTime<Utc>) {
        let mut gauges: BTreeMap<String, JobGauges> = self
            .jobs
            .iter()
            .map(|(n, st)| {
                (
                    n.to_string(),
                    JobGauges {
                        running: st.running,
                        stale: self
                            .stale_watch
                            .get(n)
                            .map(|w| w.counts())
                            .unwrap_or_default(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        let mut oldest: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        let mut queue = BTreeMap::new();
        for p in &self.queue {
            queue.insert((p.job.to_string(), p.key.to_string()), p.waiting_on.clone());
            let g = gauges.entry(p.job.to_string()).or_default();
            g.queued += 1;
            if !p.waiting_on.is_empty() {
                g.waiting += 1;
            }
            let o = oldest.entry(p.job.to_string()).or_insert(p.due);
            *o = (*o).min(p.due);
        }
        for ((job, _), (due, _)) in &self.running {
            let o = oldest.entry(job.to_string()).or_insert(*due);
            *o = (*o).min(*due);
        }
        for (job, due) in oldest {
            gauges.entry(job).or_default().lag_seconds =
                ((now - due).num_milliseconds().max(0) as f64) / 1000.0;
        }
        self.metrics.polled(
            gauges,
            queue,
            now.timestamp_millis() as f64 / 1000.0,
            self.last_poll.as_secs_f64(),
        );
    }
}
