//! What a run tells OpenLineage (see `crate::lineage`): START once its run is recorded,
//! then COMPLETE with the Delta version and rows, FAIL with the error, or ABORT when the
//! run is dropped unfinished (a daemon's shutdown past its grace period).

use super::claimed::Attempt;
use crate::clock::SharedClock;
use crate::cost::RunCost;
use crate::engine::{UpstreamData, UpstreamInput};
use crate::job::{InputSource, Job};
use crate::lineage::{Dataset, Emitter, EventType, Field, Output, RunEvent};

/// The parts of a run's events that do not change between START and its end.
pub(super) struct RunLineage {
    emitter: Emitter,
    clock: SharedClock,
    /// The run's event, until its end is sent (COMPLETE or FAIL); dropped with it still
    /// here, the run was cancelled and ABORT is sent. `None` when lineage is off.
    event: Option<RunEvent>,
}

impl RunLineage {
    /// Sends START for the attempt `a`, reading `upstream` (its file inputs relative to
    /// `root`); the returned value sends the run's end.
    pub(super) fn start(
        emitter: &Emitter,
        clock: &SharedClock,
        root: &std::path::Path,
        a: &Attempt<'_>,
        upstream: &[UpstreamInput],
    ) -> RunLineage {
        let (emitter, clock) = (emitter.clone(), clock.clone());
        if !emitter.is_enabled() {
            return RunLineage {
                emitter,
                clock,
                event: None,
            };
        }
        let job = a.job;
        let mut inputs = file_inputs(job, &a.key, root);
        inputs.extend(upstream.iter().filter_map(|u| match &u.data {
            UpstreamData::Delta(table) => Some(Dataset::of_url(table.table_url())),
            UpstreamData::Rows(_) => None,
        }));
        let event = RunEvent {
            kind: EventType::Start,
            at: clock.now(),
            job: job.name.to_string(),
            run_id: a.run_id.clone(),
            nominal: a.key.instant_bounds(job.partition_time_zone),
            sql: Some(job.sql.clone()),
            inputs,
            output: Some(Output {
                dataset: Dataset::of_url(&a.handle.url),
                fields: a
                    .schema
                    .columns
                    .iter()
                    .map(|c| Field {
                        name: c.name.to_string(),
                        ty: c.ty.to_string(),
                        description: c.comment.clone(),
                    })
                    .collect(),
                delta_version: None,
                rows: None,
            }),
            error: None,
            cost: None,
        };
        emitter.emit(&event);
        RunLineage {
            emitter,
            clock,
            event: Some(event),
        }
    }

    pub(super) fn complete(&mut self, rows: u64, delta_version: u64, cost: Option<RunCost>) {
        if let Some(e) = self.event.as_mut() {
            e.cost = cost;
            if let Some(o) = e.output.as_mut() {
                o.rows = Some(rows);
                o.delta_version = Some(delta_version);
            }
        }
        self.end(EventType::Complete, None);
    }

    pub(super) fn fail(&mut self, error: &str, cost: Option<RunCost>) {
        if let Some(e) = self.event.as_mut() {
            e.cost = cost;
        }
        self.end(EventType::Fail, Some(crate::redact::redact_text(error)));
    }

    fn end(&mut self, kind: EventType, error: Option<String>) {
        if let Some(mut event) = self.event.take() {
            event.kind = kind;
            event.at = self.clock.now();
            event.error = error;
            self.emitter.emit(&event);
        }
    }
}

impl Drop for RunLineage {
    fn drop(&mut self) {
        self.end(EventType::Abort, None);
    }
}

/// The files and commands a partition reads, as OpenLineage datasets (a template that is not usable
/// for this partition names no dataset; the run fails on it anyway).
fn file_inputs(
    job: &Job,
    key: &crate::partition::PartitionKey,
    root: &std::path::Path,
) -> Vec<Dataset> {
    job.inputs
        .iter()
        .filter_map(|i| match &i.source {
            InputSource::Files { template, .. } => {
                let rel = Job::resolve_template(template, key).ok()?;
                Some(match url::Url::parse(&rel) {
                    Ok(u) if u.scheme().len() > 1 => Dataset::of_url(&u),
                    _ => Dataset::of_path(&root.join(&rel)),
                })
            }
            InputSource::Command(c) => Some(Dataset::of_command(root, &c.argv)),
            InputSource::Database(db) => Some(Dataset::of_database(
                crate::database_input::location(root, db).as_ref(),
                db.system.as_str(),
                db.system.default_port(),
                i.name.as_str(),
            )),
            InputSource::Table { .. } => None,
        })
        .collect()
}
