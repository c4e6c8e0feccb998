//! Deadlines (`schedule.deadline`): at each poll, the newest partition of each job whose
//! deadline has passed is judged once; if it (or one of its keys) is not complete, that is
//! `deadline_missed`, recorded once per partition (its dedup key) for the targets that want
//! it. The daemon wakes at the next deadline (a replay's clock jumps to it), so a miss is
//! told within a poll of the deadline.

use super::Daemon;
use super::queue::JobState;
use crate::catalog::{CatalogError, NewEvent, PartitionState};
use crate::notify::EventKind;
use crate::partition::TimeKey;
use chrono::{DateTime, Utc};
use tracing::warn;

/// How far back from now a job's partitions are walked to find the one whose deadline
/// passed last (an offset of weeks for hourly partitions is the most this needs).
const MAX_STEPS: usize = 2_000;

/// The deadline of partition `time` of the job.
fn deadline_of(st: &JobState, time: TimeKey) -> Option<DateTime<Utc>> {
    st.job.deadline_of(time)
}

/// The newest partition whose deadline is at or before `now` (from the job's start on).
pub(super) fn latest_passed(st: &JobState, now: DateTime<Utc>) -> Option<TimeKey> {
    st.job.schedule.as_ref()?.deadline?;
    let local = now.with_timezone(&st.job.partition_time_zone).naive_local();
    let mut t = st.job.granularity.key_at(local);
    for _ in 0..MAX_STEPS {
        if st.job.start.is_some_and(|s| t < s) {
            return None;
        }
        if deadline_of(st, t)? <= now {
            return Some(t);
        }
        t = t.prev()?;
    }
    None
}

/// The next deadline after `now`: the one of the partition after the latest passed.
pub(super) fn next_deadline(st: &JobState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let next = match latest_passed(st, now) {
        Some(t) => t.next()?,
        None => st.job.start?,
    };
    deadline_of(st, next).filter(|d| *d > now)
}

impl Daemon {
    /// Judges each job's newest partition past its deadline, once.
    pub(super) async fn check_deadlines(&mut self, now: DateTime<Utc>) {
        let project = self.runner.project();
        let names: Vec<_> = self.jobs.keys().cloned().collect();
        for name in names {
            let Some(st) = self.jobs.get(&name) else {
                continue;
            };
            let Some(t) = latest_passed(st, now) else {
                continue;
            };
            if st.deadline_judged == Some(t) {
                continue;
            }
            let targets = crate::notify::wanting(
                &project.settings.notify,
                EventKind::DeadlineMissed,
                Some(name.as_str()),
            );
            if !targets.is_empty()
                && let Err(e) = self.tell_missed(st, t, &targets).await
            {
                warn!(job = %name, error = %e, "could not judge a deadline; trying again at the next poll");
                continue;
            }
            if let Some(st) = self.jobs.get_mut(&name) {
                st.deadline_judged = Some(t);
            }
        }
    }

    /// Records `deadline_missed` for each partition of `time` that is not complete.
    async fn tell_missed(
        &self,
        st: &JobState,
        time: TimeKey,
        targets: &[String],
    ) -> Result<(), CatalogError> {
        let Some(due) = deadline_of(st, time) else {
            return Ok(());
        };
        let shown_due = due
            .with_timezone(&st.cadence.schedule.time_zone)
            .format("%Y-%m-%d %H:%M %Z");
        let job = &st.job;
        for key in job.partitions_at(time) {
            let text = key.to_string();
            let status = self
                .catalog
                .partition_status(job.table.as_str(), i64::from(job.version), &text)
                .await?;
            let state = match &status {
                Some(s) if s.state == PartitionState::Complete => continue,
                Some(s) => s.state.to_string(),
                None => "not run".to_string(),
            };
            let why = format!("not complete by {shown_due} (it is {state})");
            let ev = NewEvent {
                kind: EventKind::DeadlineMissed,
                job: Some(job.name.as_str()),
                partition: Some(&text),
                run_id: status.as_ref().map(|s| s.last_run_id.as_str()),
                error: Some(&why),
                dedup_key: format!("deadline_missed:{}:{text}", job.name),
            };
            warn!(job = %job.name, partition = %text, "{why}: deadline missed");
            self.catalog
                .record_event(&ev, self.clock.now_ms(), targets)
                .await?;
        }
        Ok(())
    }
}
