//! What the daemon counts, in Prometheus' text format, with `/health`'s answer and the
//! queue as of the last poll (what the pages draw as queued or waiting). The pages' server
//! (`ui`) serves them at the daemon's address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the run-duration histogram buckets.
const BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];
/// Upper bounds (seconds) of the poll-duration histogram buckets.
const POLL_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (i, b) in bounds.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    /// The histogram's lines for `name`, with `labels` (`job="x"`, or empty).
    fn render(&self, s: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in bounds.iter().zip(&self.counts) {
            let _ = writeln!(s, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            s,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(s, "{name}_sum{braced} {:.6}", self.sum);
        let _ = writeln!(s, "{name}_count{braced} {}", self.count);
    }
}

/// Per-job gauges, as the daemon saw them after its last poll.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct JobGauges {
    pub queued: usize,
    pub waiting: usize,
    pub running: usize,
    /// Seconds since the oldest partition not yet done became due (0 when caught up).
    pub lag_seconds: f64,
    /// Complete partitions that are stale, by why, as of the last look.
    pub stale: super::stale_watch::StaleCounts,
}

/// What a job's runs used since the daemon started (`cost`), and its last run's peak.
#[derive(Debug, Default)]
struct JobCost {
    total: crate::cost::RunCost,
    rows: u64,
    last_peak_memory: u64,
}

#[derive(Debug, Default)]
struct Inner {
    runs: BTreeMap<(String, &'static str), u64>,
    costs: BTreeMap<String, JobCost>,
    durations: BTreeMap<String, Histogram>,
    jobs: BTreeMap<String, JobGauges>,
    queue: BTreeMap<(String, String), Vec<String>>,
    polls: u64,
    poll_durations: Histogram,
    last_poll_unix: f64,
    stopping: bool,
    /// Notifications given up, as the catalog counted them at the last delivery pass.
    undelivered: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Metrics(Mutex<Inner>);

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    pub fn run_finished(&self, job: &str, r: &crate::run::RunReport) {
        let (state, seconds) = (r.state.as_str(), r.duration_ms / 1000.0);
        self.with(|m| {
            *m.runs.entry((job.to_string(), state)).or_default() += 1;
            if let Some(c) = &r.cost {
                let j = m.costs.entry(job.to_string()).or_default();
                j.total.cpu_us += c.cpu_us;
                j.total.bytes_read += c.bytes_read;
                j.total.bytes_written += c.bytes_written;
                j.total.requests += c.requests;
                j.rows += r.rows.unwrap_or(0);
                j.last_peak_memory = c.peak_memory_bytes;
            }
            m.durations
                .entry(job.to_string())
                .or_default()
                .observe(BUCKETS, seconds);
        });
    }

    /// After a poll: the gauges per job, and the partitions queued, by (job, partition),
    /// each with what it waits on (nothing: ready to start).
    pub fn polled(
        &self,
        jobs: BTreeMap<String, JobGauges>,
        queue: BTreeMap<(String, String), Vec<String>>,
        now_unix: f64,
        took_seconds: f64,
    ) {
        self.with(|m| {
            m.jobs = jobs;
            m.queue = queue;
            m.polls += 1;
            m.poll_durations.observe(POLL_BUCKETS, took_seconds);
            m.last_poll_unix = now_unix;
        });
    }

    pub fn stopping(&self) {
        self.with(|m| m.stopping = true);
    }

    /// The runs counted so far with `state` for `job` (for tests and the summary).
    pub fn runs(&self, job: &str, state: &'static str) -> u64 {
        self.with(|m| m.runs.get(&(job.to_string(), state)).copied().unwrap_or(0))
    }

    pub fn render(&self) -> String {
        self.with(|m| {
            let mut s = String::new();
            s.push_str("# HELP sluice_up Whether the daemon is running (0 once it is stopping).\n# TYPE sluice_up gauge\n");
            let _ = writeln!(s, "sluice_up {}", u8::from(!m.stopping));
            s.push_str("# HELP sluice_polls_total Scheduling passes made.\n# TYPE sluice_polls_total counter\n");
            let _ = writeln!(s, "sluice_polls_total {}", m.polls);
            s.push_str("# HELP sluice_last_poll_timestamp_seconds When the last scheduling pass ran.\n# TYPE sluice_last_poll_timestamp_seconds gauge\n");
            let _ = writeln!(s, "sluice_last_poll_timestamp_seconds {:.3}", m.last_poll_unix);
            s.push_str("# HELP sluice_poll_duration_seconds How long scheduling passes took (reading the catalog, queueing, starting runs; not the runs).\n# TYPE sluice_poll_duration_seconds histogram\n");
            m.poll_durations.render(&mut s, "sluice_poll_duration_seconds", "", POLL_BUCKETS);
            s.push_str("# HELP sluice_runs_total Partition runs ended, by job and state.\n# TYPE sluice_runs_total counter\n");
            for ((job, state), n) in &m.runs {
                let _ = writeln!(s, "sluice_runs_total{{job=\"{}\",state=\"{state}\"}} {n}", esc(job));
            }
            render_costs(&mut s, &m.costs);
            s.push_str("# HELP sluice_run_duration_seconds Partition run durations, retries included.\n# TYPE sluice_run_duration_seconds histogram\n");
            for (job, h) in &m.durations {
                h.render(&mut s, "sluice_run_duration_seconds", &format!("job=\"{}\"", esc(job)), BUCKETS);
            }
            s.push_str("# HELP sluice_queued_partitions Partitions due and not started, by job (waiting ones included).\n# TYPE sluice_queued_partitions gauge\n");
            for (job, g) in &m.jobs {
                let _ = writeln!(s, "sluice_queued_partitions{{job=\"{}\"}} {}", esc(job), g.queued);
            }
            s.push_str("# HELP sluice_waiting_partitions Queued partitions waiting for upstream partitions or input files.\n# TYPE sluice_waiting_partitions gauge\n");
            for (job, g) in &m.jobs {
                let _ = writeln!(s, "sluice_waiting_partitions{{job=\"{}\"}} {}", esc(job), g.waiting);
            }
            s.push_str("# HELP sluice_running_partitions Partitions running now, by job.\n# TYPE sluice_running_partitions gauge\n");
            for (job, g) in &m.jobs {
                let _ = writeln!(s, "sluice_running_partitions{{job=\"{}\"}} {}", esc(job), g.running);
            }
            s.push_str("# HELP sluice_stale_partitions Complete partitions that are stale, by job and why (code, upstream, input).\n# TYPE sluice_stale_partitions gauge\n");
            for (job, g) in &m.jobs {
                for (because, n) in [("code", g.stale.code), ("upstream", g.stale.upstream), ("input", g.stale.input)] {
                    let _ = writeln!(s, "sluice_stale_partitions{{job=\"{}\",because=\"{because}\"}} {n}", esc(job));
                }
            }
            s.push_str("# HELP sluice_job_lag_seconds Seconds since the oldest partition not yet done became due (0 when caught up).\n# TYPE sluice_job_lag_seconds gauge\n");
            for (job, g) in &m.jobs {
                let _ = writeln!(s, "sluice_job_lag_seconds{{job=\"{}\"}} {:.3}", esc(job), g.lag_seconds);
            }
            if let Some(n) = m.undelivered {
                s.push_str("# HELP sluice_notifications_undelivered Notifications given up after their retries (or refused for good).\n# TYPE sluice_notifications_undelivered gauge\n");
                let _ = writeln!(s, "sluice_notifications_undelivered {n}");
            }
            s
        })
    }

    /// After a delivery pass: the notifications given up so far (every daemon's).
    pub fn notifications_undelivered(&self, n: i64) {
        self.with(|m| m.undelivered = Some(n));
    }

    /// The partitions queued at the last poll, by (job, partition), with what each waits on.
    pub fn queue(&self) -> BTreeMap<(String, String), Vec<String>> {
        self.with(|m| m.queue.clone())
    }

    /// `/health`: 200 and counts while running, 503 once stopping.
    pub fn health(&self) -> (u16, String) {
        self.with(|m| {
            let running: usize = m.jobs.values().map(|g| g.running).sum();
            let queued: usize = m.jobs.values().map(|g| g.queued).sum();
            let status = if m.stopping { "stopping" } else { "ok" };
            let body = serde_json::json!({
                "status": status,
                "jobs": m.jobs.len(),
                "running": running,
                "queued": queued,
                "polls": m.polls,
            })
            .to_string();
            (if m.stopping { 503 } else { 200 }, body + "\n")
        })
    }
}

/// A label value as Prometheus' text format writes it.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What each job's runs used, as counters (and the last run's peak memory as a gauge).
fn render_costs(s: &mut String, costs: &BTreeMap<String, JobCost>) {
    type Of = fn(&JobCost) -> String;
    let families: [(&str, &str, &str, Of); 6] = [
        (
            "sluice_run_cpu_seconds_total",
            "counter",
            "CPU time of runs' compute and audit, by job.",
            |c| format!("{:.6}", c.total.cpu_seconds()),
        ),
        (
            "sluice_run_read_bytes_total",
            "counter",
            "Bytes runs read from object stores, by job.",
            |c| c.total.bytes_read.to_string(),
        ),
        (
            "sluice_run_written_bytes_total",
            "counter",
            "Bytes runs wrote to object stores, by job.",
            |c| c.total.bytes_written.to_string(),
        ),
        (
            "sluice_run_object_store_requests_total",
            "counter",
            "Object-store calls runs made, by job.",
            |c| c.total.requests.to_string(),
        ),
        (
            "sluice_run_rows_total",
            "counter",
            "Rows runs wrote, by job.",
            |c| c.rows.to_string(),
        ),
        (
            "sluice_run_peak_memory_bytes",
            "gauge",
            "The most of the engine's memory pool the job's last run held.",
            |c| c.last_peak_memory.to_string(),
        ),
    ];
    for (name, kind, help, of) in families {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (job, c) in costs {
            let _ = writeln!(s, "{name}{{job=\"{}\"}} {}", esc(job), of(c));
        }
    }
}
