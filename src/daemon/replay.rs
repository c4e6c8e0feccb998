//! A rehearsal of the schedule (`sluice daemon --replay FROM..TO`): the daemon's own code
//! (`poll`: ticks in each job's zone, catch-up, dependency and file waits, dispatch, shadow
//! runs; the runner's retries) against a simulated clock that jumps from one event to the
//! next: a tick, a retry, a file wait's deadline. Everything due at an instant runs to its
//! end before the clock moves, so a window replays as fast as the work allows (or `speed`
//! times real time), and writes to the catalog and warehouse as the daemon would.

use super::Daemon;
use super::queue::Finished;
use crate::clock::ManualClock;
use crate::names::Name;
use crate::partition::PartitionKey;
use crate::run::RunOutcome;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashSet;
use std::time::Duration;

/// The simulated time a replay covers: ticks in `(from, to]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    /// `FROM..TO`: dates (the start of FROM to the end of TO, UTC; TO is included, as in
    /// `backfill --to`) or RFC 3339 times.
    pub fn parse(text: &str) -> Result<Window, String> {
        let (a, b) = text.split_once("..").ok_or_else(|| {
            format!("`{text}`: write the window as FROM..TO, e.g. 2024-01-01..2024-02-01")
        })?;
        let at = |s: &str, end: bool| -> Result<DateTime<Utc>, String> {
            let s = s.trim();
            if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                let d = if end { d.succ_opt().unwrap_or(d) } else { d };
                return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
            }
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    format!(
                        "`{s}`: give a date (2024-01-31) or an RFC 3339 time (2024-01-31T06:00:00Z)"
                    )
                })
        };
        let w = Window {
            from: at(a, false)?,
            to: at(b, true)?,
        };
        if w.to <= w.from {
            return Err(format!("`{text}`: TO must be after FROM"));
        }
        Ok(w)
    }
}

/// What a replay did, line by line and in sum.
#[derive(Debug, Default)]
pub struct Replayed {
    pub succeeded: usize,
    pub failed: Vec<String>,
    /// Partitions still queued when the window ended (waiting on what never came).
    pub left: Vec<String>,
    /// How long each poll took (wall time), in milliseconds.
    pub poll_ms: Vec<f64>,
}

impl Replayed {
    /// The polls' count, median, 99th percentile and longest, in milliseconds.
    pub fn poll_times(&self) -> Option<(usize, f64, f64, f64)> {
        let mut ms = self.poll_ms.clone();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        let longest = *ms.last()?;
        Some((ms.len(), at(0.5), at(0.99), longest))
    }
}

/// A partition shown as due or started: once per tick; a stale rerun once per time it was
/// found stale (its due time).
type Shown = (Name, PartitionKey, Option<DateTime<Utc>>);

fn shown(job: &Name, key: PartitionKey, due: DateTime<Utc>, why: &super::queue::Due) -> Shown {
    let episode = matches!(why, super::queue::Due::Stale { .. }).then_some(due);
    (job.clone(), key, episode)
}

/// One thing a replay shows: at a simulated time, what happened.
#[derive(Debug, Clone)]
pub struct ReplayEvent {
    pub at: DateTime<Utc>,
    pub text: String,
}

impl Daemon {
    /// Replays `window` on `clock` (the daemon's clock, simulated). `show` receives each
    /// partition as it becomes due and as it ends.
    pub async fn replay(
        &mut self,
        clock: &ManualClock,
        window: Window,
        speed: Option<f64>,
        mut show: impl FnMut(ReplayEvent),
    ) -> Replayed {
        clock.set(window.from);
        let mut out = Replayed::default();
        let mut seen: HashSet<Shown> = HashSet::new();
        loop {
            // Everything due at this instant, to its end.
            loop {
                self.poll().await;
                out.poll_ms.push(self.last_poll.as_secs_f64() * 1000.0);
                self.show_due(&mut seen, &mut show);
                if self.tasks.is_empty() {
                    break;
                }
                while let Some(done) = self.tasks.join_next().await {
                    if let Ok(f) = &done {
                        show(ReplayEvent {
                            at: self.clock.now(),
                            text: ended(f, &mut out),
                        });
                    }
                    self.finished(done);
                }
            }
            let now = self.clock.now();
            let Some(next) = self.next_replay_event(window.to).filter(|t| *t > now) else {
                break;
            };
            if let Some(speed) = speed {
                let real = (next - now).to_std().unwrap_or_default().div_f64(speed);
                tokio::time::sleep(real.min(Duration::from_secs(3600))).await;
            }
            clock.set(next);
        }
        out.left = self
            .queue
            .iter()
            .map(|p| {
                let why = if p.waiting_on.is_empty() {
                    String::new()
                } else {
                    format!(" (waiting on {})", p.waiting_on.join(", "))
                };
                format!("{} {}{why}", p.job, p.key)
            })
            .collect();
        out
    }

    /// Shows the partitions that started or became due since the last look, with their
    /// tick in the job's zone.
    fn show_due(&self, seen: &mut HashSet<Shown>, show: &mut impl FnMut(ReplayEvent)) {
        let local = |job: &Name, due: DateTime<Utc>| {
            self.jobs
                .get(job)
                .map(|st| {
                    let tz = st.cadence.schedule.time_zone;
                    format!("{} {tz}", due.with_timezone(&tz).format("%Y-%m-%d %H:%M"))
                })
                .unwrap_or_default()
        };
        for ((job, key), (due, why)) in &self.running {
            if seen.insert(shown(job, *key, *due, why)) {
                let text = match why {
                    super::queue::Due::Stale { .. } => {
                        format!("{job} {key} started again (stale)")
                    }
                    _ => format!("{job} {key} started (tick {})", local(job, *due)),
                };
                show(ReplayEvent {
                    at: self.clock.now(),
                    text,
                });
            }
        }
        for p in &self.queue {
            if seen.insert(shown(&p.job, p.key, p.due, &p.why)) {
                if matches!(p.why, super::queue::Due::Stale { .. }) {
                    show(ReplayEvent {
                        at: self.clock.now(),
                        text: format!("{} {} is stale: queued to run again", p.job, p.key),
                    });
                    continue;
                }
                let waiting = if p.waiting_on.is_empty() {
                    String::new()
                } else {
                    format!(", waiting on {}", p.waiting_on.join(", "))
                };
                show(ReplayEvent {
                    at: self.clock.now(),
                    text: format!(
                        "{} {} due ({} {}){waiting}",
                        p.job,
                        p.key,
                        match p.why {
                            super::queue::Due::Tick => "tick",
                            super::queue::Due::CatchUp => "catch-up of the tick",
                            super::queue::Due::Stale { .. } => "stale",
                        },
                        local(&p.job, p.due)
                    ),
                });
            }
        }
    }

    /// The next simulated time something can happen: a tick within the window, a held
    /// partition's retry, or a file wait's deadline (after the window too, so that every
    /// partition ticked inside it ends).
    fn next_replay_event(&self, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        let mut times: Vec<DateTime<Utc>> = Vec::new();
        for st in self.jobs.values() {
            if let Some(t) = st.cadence.next_tick_after(st.cursor.max(now))
                && t <= to
            {
                times.push(t);
            }
            if let Some(t) = super::deadlines::next_deadline(st, now)
                && t <= to
            {
                times.push(t);
            }
        }
        for p in &self.queue {
            if let Some(t) = p.not_before {
                times.push(t);
            }
            let wait = self
                .jobs
                .get(&p.job)
                .and_then(|st| st.cadence.schedule.wait_for_inputs);
            if let Some(wait) = wait
                && !p.waiting_on.is_empty()
                && let Some(t) =
                    DateTime::<Utc>::from_timestamp_millis(p.queued_ms + wait.as_millis() as i64)
            {
                times.push(t);
            }
        }
        times.into_iter().filter(|t| *t > now).min()
    }
}

/// A line for a partition that ended, counted in `out`.
fn ended(f: &Finished, out: &mut Replayed) -> String {
    let r = &f.report;
    match r.state {
        RunOutcome::Succeeded => {
            out.succeeded += 1;
            format!(
                "{} {} succeeded: {} row(s), Delta version {}",
                f.job,
                f.key,
                r.rows.unwrap_or(0),
                r.delta_version.map_or("-".into(), |v| v.to_string())
            )
        }
        RunOutcome::Failed => {
            let line = format!(
                "{} {} failed: {}",
                f.job,
                f.key,
                r.error.as_deref().unwrap_or("-")
            );
            out.failed.push(line.clone());
            line
        }
        RunOutcome::DoneElsewhere => format!("{} {} was done by another worker", f.job, f.key),
        RunOutcome::Held => format!("{} {} is leased by another worker; later", f.job, f.key),
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn a_window_of_dates_includes_its_last_day() {
        let w = Window::parse("2024-01-01..2024-02-01").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.from.to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert_eq!(w.to.to_rfc3339(), "2024-02-02T00:00:00+00:00");
        let w = Window::parse("2024-01-01T06:00:00Z..2024-01-02T06:00:00Z")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.to.to_rfc3339(), "2024-01-02T06:00:00+00:00");
        assert!(Window::parse("2024-01-02..2024-01-01").is_err());
        assert!(Window::parse("2024-01-01").is_err());
    }
}
