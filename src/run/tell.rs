//! What a run's end tells people (`[[notify]]`): which events it is and which targets want
//! them, recorded by the catalog in the finish's own transaction (`catalog::FinishEvents`).
//! A failure, a warning or dead letters are told of the daemon's runs (a `run` is watched
//! by who typed it), and of a backfill's runs to a target that asks for them one by one
//! (`backfill = "per_partition"`; otherwise a backfill tells its failures once, at its end:
//! `backfill::tell`). A recovery from a failure that was told is told whatever ran it.

use super::RunError;
use crate::catalog::{FinishEvents, TellOf, Trigger};
use crate::job::Job;
use crate::notify::{BackfillTelling, EventKind, NotifyTarget};
use crate::quality::{Quality, Severity};

/// What a run's end is made of, as far as telling goes.
pub(super) struct Ended<'a, T> {
    pub outcome: &'a Result<T, RunError>,
    pub quality: Option<&'a Quality>,
    /// Rows set aside in the dead letters.
    pub dead_letters: u64,
}

/// The events of try `attempt` of a run of `job` started by `trigger` that ended so.
pub(super) fn finish_events<T>(
    targets: &[NotifyTarget],
    (job, trigger, attempt): (&Job, Trigger, u32),
    ended: Ended<'_, T>,
) -> FinishEvents {
    if targets.is_empty() {
        return FinishEvents::default();
    }
    // A failure the runner retries is not the partition's failure yet.
    let last = ended
        .outcome
        .as_ref()
        .err()
        .is_none_or(|e| !(e.is_transient() && attempt < job.retry.max_attempts));
    let told_of_this_run = |t: &NotifyTarget| match trigger {
        Trigger::Daemon => true,
        Trigger::Backfill => t.backfill == BackfillTelling::PerPartition,
        _ => false,
    };
    let wanting = |kind: EventKind, also: &dyn Fn(&NotifyTarget) -> bool| -> Vec<String> {
        targets
            .iter()
            .filter(|t| t.wants(kind, Some(job.name.as_str())) && told_of_this_run(t) && also(t))
            .map(|t| t.name.clone())
            .collect()
    };
    let warned: Vec<&str> = ended
        .quality
        .map(|q| {
            q.checks
                .iter()
                .filter(|c| !c.passed && c.severity == Severity::Warn)
                .map(|c| c.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut events = Vec::new();
    let mut tell = |kind: EventKind, detail: Option<String>, to: Vec<String>| {
        if !to.is_empty() {
            events.push(TellOf { kind, detail, to });
        }
    };
    match ended.outcome {
        // A failed check that fails the run is told as what it is, not also as `failed`.
        Err(RunError::CheckFailed(_)) if last => tell(
            EventKind::CheckFailed,
            None,
            wanting(EventKind::CheckFailed, &|_| true),
        ),
        Err(_) if last => tell(
            EventKind::Failed,
            None,
            wanting(EventKind::Failed, &|_| true),
        ),
        Err(_) => {}
        Ok(_) => {
            if !warned.is_empty() {
                let detail = format!("check(s) warned: {}", warned.join(", "));
                tell(
                    EventKind::CheckWarned,
                    Some(detail),
                    wanting(EventKind::CheckWarned, &|_| true),
                );
            }
            let n = ended.dead_letters;
            if n > 0 {
                let detail = format!(
                    "{n} row(s) set aside in the dead letters (`sluice dlq list {}`)",
                    job.name
                );
                let over = |t: &NotifyTarget| n > t.dead_letters_over;
                tell(
                    EventKind::DeadLetters,
                    Some(detail),
                    wanting(EventKind::DeadLetters, &over),
                );
            }
        }
    }
    FinishEvents {
        events,
        recovered: match ended.outcome {
            Ok(_) => crate::notify::wanting(targets, EventKind::Recovered, Some(job.name.as_str())),
            Err(_) => Vec::new(),
        },
    }
}
