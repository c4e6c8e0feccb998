//! A backfill's failures told once, at its end: one `failed` event listing what failed, to
//! each target that wants failures of those jobs and hears of backfills in summary (the
//! default; `backfill = "per_partition"` targets heard of each failure as it came, from the
//! runner). A backfill of a hundred failing days is one message, not a hundred.

use super::{Outcome, Summary};
use crate::catalog::{Catalog, NewEvent};
use crate::notify::{BackfillTelling, EventKind, NotifyTarget};
use tracing::warn;

/// Failures named in the message; the rest are counted.
const NAMED: usize = 20;

/// Records the end of a backfill that had failures, for the targets that want it.
pub async fn tell_end(catalog: &Catalog, targets: &[NotifyTarget], summary: &Summary, now_ms: i64) {
    let failed: Vec<(&str, &str, &str)> = summary
        .items
        .iter()
        .filter_map(|i| match &i.outcome {
            Outcome::Failed { error, .. } => {
                Some((i.job.as_str(), i.partition.as_str(), error.as_str()))
            }
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        return;
    }
    // Targets narrowed to some jobs hear of those jobs' failures: one event per distinct list.
    let mut told: Vec<(Vec<usize>, Vec<String>)> = Vec::new();
    for t in targets
        .iter()
        .filter(|t| t.backfill == BackfillTelling::Summary)
    {
        let theirs: Vec<usize> = (0..failed.len())
            .filter(|&i| {
                let job = Some(failed[i].0);
                t.wants(EventKind::Failed, job) || t.wants(EventKind::CheckFailed, job)
            })
            .collect();
        if theirs.is_empty() {
            continue;
        }
        match told.iter_mut().find(|(f, _)| *f == theirs) {
            Some((_, names)) => names.push(t.name.clone()),
            None => told.push((theirs, vec![t.name.clone()])),
        }
    }
    for (theirs, names) in told {
        let first_job = failed[theirs[0]].0;
        let one_job = theirs.iter().all(|&i| failed[i].0 == first_job);
        let mut said = format!(
            "backfill: {} of {} partition(s) failed: ",
            theirs.len(),
            summary.planned
        );
        let listed: Vec<String> = theirs
            .iter()
            .take(NAMED)
            .map(|&i| {
                let (job, partition, error) = failed[i];
                format!("{job} {partition} ({})", crate::text::one_line(error, 120))
            })
            .collect();
        said.push_str(&listed.join("; "));
        if theirs.len() > NAMED {
            said.push_str(&format!("; and {} more", theirs.len() - NAMED));
        }
        let said = crate::redact::redact_text(&said);
        let ev = NewEvent {
            kind: EventKind::Failed,
            job: one_job.then_some(first_job),
            partition: None,
            run_id: None,
            error: Some(&said),
            dedup_key: format!("failed:backfill:{}", uuid::Uuid::now_v7()),
        };
        if let Err(e) = catalog.record_event(&ev, now_ms, &names).await {
            warn!(error = %e, "could not record the backfill's failures for the notification targets");
        }
    }
}
