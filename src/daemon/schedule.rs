//! When a job is due and which partition a tick runs: pure functions of a job's schedule
//! and an instant, so the rules are tested without a clock, a catalog or a sleep.
//!
//! The rule: a tick at local time `t` (in the schedule's zone) runs the partition `lag`
//! partitions before the one holding `t` (in the partition zone). With the default lag of
//! 1 a daily job at 02:30 runs yesterday, an hourly job at :05 runs the previous hour, a
//! monthly job on the 1st runs last month. Ticks come from croner in the job's own zone, so
//! a DST change moves the tick with the wall clock. Whatever croner does in a gap or an
//! overlap, the daemon runs a partition once: a tick whose partition is not newer than the
//! last one scheduled is ignored, and one that jumps ahead also queues the partitions in
//! between.

use crate::job::{CatchUp, Job, Schedule};
use crate::partition::{Granularity, TimeKey};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone)]
pub struct Cadence {
    cron: croner::Cron,
    pub schedule: Schedule,
    pub granularity: Granularity,
    pub partition_tz: Tz,
}

impl Cadence {
    /// `None` when the job has no schedule (it runs only from the CLI).
    pub fn of(job: &Job) -> Option<Result<Cadence, String>> {
        let schedule = job.schedule.clone()?;
        Some(crate::job::parse_cron(&schedule.cron).map(|cron| Cadence {
            cron,
            schedule,
            granularity: job.granularity,
            partition_tz: job.partition_time_zone,
        }))
    }

    /// The first tick strictly after `t`.
    pub fn next_tick_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.schedule.time_zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The newest tick at or before `t`.
    pub fn latest_tick(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.schedule.time_zone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// Ticks in `(after, upto]`, oldest first, at most `max` of them (the oldest).
    pub fn ticks_between(
        &self,
        after: DateTime<Utc>,
        upto: DateTime<Utc>,
        max: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < max {
            match self.next_tick_after(t) {
                Some(n) if n <= upto && n > t => {
                    out.push(n);
                    t = n;
                }
                _ => break,
            }
        }
        out
    }

    /// The partition time a tick at `tick` runs (for every key of a job with keys).
    pub fn partition_for(&self, tick: DateTime<Utc>) -> TimeKey {
        let local = tick.with_timezone(&self.partition_tz).naive_local();
        let mut key = self.granularity.key_at(local);
        for _ in 0..self.schedule.lag {
            match key.prev() {
                Some(k) => key = k,
                None => break,
            }
        }
        key
    }
}

/// What the daemon queues on start for a job whose newest due partition is `latest`:
/// `missing` are the partitions after the last complete one up to `latest`, oldest first.
/// Returns the partitions to queue, oldest first, and how many were left out by
/// `max_catch_up`.
pub fn catch_up(
    policy: CatchUp,
    max: u32,
    latest: TimeKey,
    missing: Vec<TimeKey>,
) -> (Vec<TimeKey>, usize) {
    match policy {
        CatchUp::None => {
            let n = missing.len();
            (Vec::new(), n)
        }
        CatchUp::Latest => {
            let has = missing.contains(&latest);
            let n = missing.len() - usize::from(has);
            (if has { vec![latest] } else { Vec::new() }, n)
        }
        CatchUp::All => {
            let keep = (max as usize).min(missing.len());
            let left = missing.len() - keep;
            (missing[left..].to_vec(), left)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn cadence(cron: &str, tz: Tz, g: Granularity, lag: u32) -> Cadence {
        Cadence {
            cron: crate::job::parse_cron(cron).expect("cron"),
            schedule: Schedule {
                cron: cron.into(),
                time_zone: tz,
                lag,
                catch_up: CatchUp::All,
                max_catch_up: 31,
                max_concurrency: 1,
                wait_for_inputs: None,
                on_upstream_change: Default::default(),
                watch_inputs: None,
                deadline: None,
            },
            granularity: g,
            partition_tz: tz,
        }
    }

    fn day(y: i32, m: u32, d: u32) -> TimeKey {
        TimeKey::Day(NaiveDate::from_ymd_opt(y, m, d).expect("date"))
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("instant")
    }

    /// The partitions ticks run over `(from, to]`, deduplicated the daemon's way.
    fn scheduled(c: &Cadence, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<TimeKey> {
        let mut last: Option<TimeKey> = None;
        let mut out = Vec::new();
        for t in c.ticks_between(from, to, 100_000) {
            let p = c.partition_for(t);
            if last.is_some_and(|l| p <= l) {
                continue;
            }
            out.push(p);
            last = Some(p);
        }
        out
    }

    #[test]
    fn a_daily_tick_runs_yesterday_in_the_jobs_zone() {
        let c = cadence(
            "30 2 * * *",
            chrono_tz::Europe::Berlin,
            Granularity::Daily,
            1,
        );
        // 2024-01-10 02:30 in Berlin is 01:30 UTC.
        let t = c.next_tick_after(utc(2024, 1, 10, 0, 0)).expect("tick");
        assert_eq!(t, utc(2024, 1, 10, 1, 30));
        assert_eq!(c.partition_for(t), day(2024, 1, 9));
        let same_day = cadence(
            "30 2 * * *",
            chrono_tz::Europe::Berlin,
            Granularity::Daily,
            0,
        );
        assert_eq!(same_day.partition_for(t), day(2024, 1, 10));
    }

    #[test]
    fn spring_forward_runs_every_partition_once() {
        // 2024-03-31 02:00 → 03:00 in Berlin: 02:30 does not exist that day.
        let c = cadence(
            "30 2 * * *",
            chrono_tz::Europe::Berlin,
            Granularity::Daily,
            1,
        );
        let got = scheduled(&c, utc(2024, 3, 28, 12, 0), utc(2024, 4, 2, 12, 0));
        assert_eq!(
            got,
            vec![
                day(2024, 3, 28),
                day(2024, 3, 29),
                day(2024, 3, 30),
                day(2024, 3, 31),
                day(2024, 4, 1)
            ]
        );
        // The gap's tick comes right after the gap, on the same local day.
        let t = c.next_tick_after(utc(2024, 3, 30, 12, 0)).expect("tick");
        assert_eq!(
            t.with_timezone(&chrono_tz::Europe::Berlin).date_naive(),
            NaiveDate::from_ymd_opt(2024, 3, 31).expect("d")
        );
    }

    #[test]
    fn fall_back_runs_every_partition_once_even_with_hourly_ticks() {
        // 2024-10-27 03:00 → 02:00 in Berlin: 02:30 happens twice.
        for cron in ["30 2 * * *", "30 * * * *", "*/20 * * * *"] {
            let c = cadence(cron, chrono_tz::Europe::Berlin, Granularity::Daily, 1);
            let got = scheduled(&c, utc(2024, 10, 24, 22, 10), utc(2024, 10, 29, 12, 0));
            assert_eq!(
                got,
                vec![
                    day(2024, 10, 24),
                    day(2024, 10, 25),
                    day(2024, 10, 26),
                    day(2024, 10, 27),
                    day(2024, 10, 28)
                ],
                "cron {cron}"
            );
        }
    }

    #[test]
    fn new_york_transitions_too() {
        let c = cadence(
            "30 2 * * *",
            chrono_tz::America::New_York,
            Granularity::Daily,
            1,
        );
        let spring = scheduled(&c, utc(2024, 3, 8, 12, 0), utc(2024, 3, 12, 12, 0));
        assert_eq!(
            spring,
            vec![
                day(2024, 3, 8),
                day(2024, 3, 9),
                day(2024, 3, 10),
                day(2024, 3, 11)
            ]
        );
        let fall = scheduled(&c, utc(2024, 11, 1, 12, 0), utc(2024, 11, 5, 12, 0));
        assert_eq!(
            fall,
            vec![
                day(2024, 11, 1),
                day(2024, 11, 2),
                day(2024, 11, 3),
                day(2024, 11, 4)
            ]
        );
    }

    #[test]
    fn hourly_and_monthly_rules() {
        let h = cadence("5 * * * *", chrono_tz::UTC, Granularity::Hourly, 1);
        let t = utc(2024, 5, 1, 7, 5);
        assert_eq!(h.partition_for(t).to_string(), "2024-05-01T06");
        let m = cadence("0 6 2 * *", chrono_tz::UTC, Granularity::Monthly, 1);
        assert_eq!(
            m.partition_for(utc(2024, 5, 2, 6, 0)).to_string(),
            "2024-04"
        );
    }

    #[test]
    fn catch_up_policies() {
        let missing = vec![day(2024, 1, 3), day(2024, 1, 4), day(2024, 1, 5)];
        let latest = day(2024, 1, 5);
        assert_eq!(
            catch_up(CatchUp::All, 31, latest, missing.clone()),
            (missing.clone(), 0)
        );
        assert_eq!(
            catch_up(CatchUp::All, 2, latest, missing.clone()),
            (vec![day(2024, 1, 4), day(2024, 1, 5)], 1)
        );
        assert_eq!(
            catch_up(CatchUp::Latest, 31, latest, missing.clone()),
            (vec![latest], 2)
        );
        assert_eq!(
            catch_up(CatchUp::None, 31, latest, missing),
            (Vec::new(), 3)
        );
    }
}
