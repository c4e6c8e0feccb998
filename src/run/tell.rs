//! What a run's end tells people (`[[notify]]`): which event it is and which targets want
//! it, recorded by the catalog in the finish's own transaction (`catalog::FinishEvents`).
//! A failure is told of the daemon's runs only (a `run` is watched by who typed it, and a
//! backfill's failures are its summary); a recovery from a failure that was told is told
//! whatever ran it.

use super::RunError;
use crate::catalog::{FinishEvents, Trigger};
use crate::job::Job;
use crate::notify::{EventKind, NotifyTarget};
use crate::quality::{Quality, Severity};

/// The events of try `attempt` of a run of `job` started by `trigger` that ended with
/// `outcome`.
pub(super) fn finish_events<T>(
    targets: &[NotifyTarget],
    (job, trigger, attempt): (&Job, Trigger, u32),
    outcome: &Result<T, RunError>,
    quality: Option<&Quality>,
) -> FinishEvents {
    if targets.is_empty() {
        return FinishEvents::default();
    }
    // A failure the runner retries is not the partition's failure yet.
    let last = outcome
        .as_ref()
        .err()
        .is_none_or(|e| !(e.is_transient() && attempt < job.retry.max_attempts));
    let wanting = |kind: EventKind| crate::notify::wanting(targets, kind, Some(job.name.as_str()));
    let warned = quality.is_some_and(|q| {
        q.checks
            .iter()
            .any(|c| !c.passed && c.severity == Severity::Warn)
    });
    // A failed check that fails the run is told as what it is, not also as `failed`.
    let kind = match outcome {
        Err(RunError::CheckFailed(_)) if last => Some(EventKind::CheckFailed),
        Err(_) if last => Some(EventKind::Failed),
        Err(_) => None,
        Ok(_) if warned => Some(EventKind::CheckWarned),
        Ok(_) => None,
    };
    FinishEvents {
        event: kind
            .filter(|_| trigger == Trigger::Daemon)
            .map(|k| (k, wanting(k)))
            .filter(|(_, t)| !t.is_empty()),
        recovered: match outcome {
            Ok(_) => wanting(EventKind::Recovered),
            Err(_) => Vec::new(),
        },
    }
}
