//! One attempt at one partition: read the schema and fingerprint, claim the lease (which
//! records the run as started in the same catalog write), look first when a dead run or
//! another worker's completion needs it, execute, and record the end.

use super::claimed::Attempt;
use super::lease::{AbortOnDrop, DIED};
use super::lineage::RunLineage;
use super::write::PartitionWrite;
use super::{RunError, RunOutcome, RunReport, Runner, Trigger};
use crate::catalog::{
    Claim, DoneIf, PartitionState, PartitionStatus, RunEnd, RunMeasures, RunStart,
};
use crate::engine::UpstreamInput;
use crate::fingerprint::fingerprint;
use crate::job::Job;
use crate::logging::LIFECYCLE;
use crate::notify::EventKind;
use crate::partition::PartitionKey;
use crate::project::Project;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::{Instrument as _, error_span, info, warn};

/// What the caller asked of one attempt.
pub(super) struct Request<'a> {
    pub job: &'a Job,
    pub key: PartitionKey,
    pub trigger: Trigger,
    /// 1 for the first try, then one more per retry.
    pub attempt: u32,
    /// Do nothing if the partition was completed by a run that finished at or after this.
    pub done_if: Option<DoneIf>,
    /// Record a failed run with this reason instead of running (the daemon's refusals).
    pub refusal: Option<&'a str>,
    /// Given back once the output is computed (see [`super::AheadPermit`]).
    pub ahead: &'a std::sync::Mutex<Option<super::AheadPermit>>,
}

/// What the claim left to decide under the lease.
enum Look {
    /// Nothing: the run is recorded as started.
    Started,
    /// The partition's status needs a look before starting (a dead run, or done since).
    First(Box<PartitionStatus>),
}

/// How much of a run's error its log line carries.
const ERROR_IN_LOG: usize = 160;

impl Runner {
    pub(super) async fn attempt(&self, req: &Request<'_>) -> RunReport {
        let mut report = RunReport::new(req.job, &req.key, req.attempt);
        let run_id = uuid::Uuid::now_v7().to_string();
        // At error level so that the span, and its run id, is on every line the run logs
        // whatever level is shown (an info span vanishes under `--quiet`).
        let span = error_span!("run", run_id = %run_id, job = %req.job.name, partition = %req.key);
        let result = self
            .attempt_inner(req, run_id, &mut report)
            .instrument(span.clone())
            .await;
        let _enter = span.enter();
        if let Err(e) = result {
            report.state = RunOutcome::Failed;
            report.transient = e.is_transient();
            let error = crate::redact::redact_text(&e.to_string());
            // One line per failure: the whole error is in the catalog, where `status JOB
            // --partition P`, the page and a backfill's summary show it once.
            warn!(error = %crate::text::one_line(&error, ERROR_IN_LOG), "run failed");
            report.error = Some(error);
        }
        report
    }

    async fn attempt_inner(
        &self,
        req: &Request<'_>,
        run_id: String,
        report: &mut RunReport,
    ) -> Result<(), RunError> {
        let job = req.job;
        let schema = self
            .catalog
            .table(job.table.as_str())
            .await?
            .ok_or_else(|| RunError::TableNotMigrated {
                table: job.table.to_string(),
            })?
            .schema;
        let fp = fingerprint(job, &schema);
        report.fingerprint = fp.clone();
        let project = self.project();
        let handle = self
            .tables
            .output(&project.settings.warehouse, job, &schema)
            .await?;
        let (upstream, reads) = match req.refusal {
            None => {
                let (upstream, tables) = self.inputs(&project).resolve(job, &req.key).await?;
                // Listed before the query reads them: a file changed meanwhile makes the
                // partition stale again, never fresh with content it did not read.
                let files = crate::provenance::Listings::one(&project.settings.root)
                    .files_of(job, &req.key);
                let reads = crate::provenance::Reads {
                    upstream: tables,
                    files,
                    commands: Vec::new(),
                };
                (upstream, Some(reads))
            }
            Some(_) => (Vec::new(), None),
        };
        let mut start = RunStart {
            run_id: run_id.clone(),
            job: job.name.to_string(),
            table: job.table.to_string(),
            version: i64::from(job.version),
            partition: req.key.to_string(),
            attempt: i64::from(req.attempt),
            trigger: req.trigger,
            fingerprint: fp.clone(),
            lease_token: 0,
            host: host_name(self.leases.holder()),
            pid: i64::from(std::process::id()),
            started_at: self.clock.now_ms(),
            reads_json: reads.as_ref().map(|r| r.to_json()),
            data_version: reads.as_ref().map(|r| r.data_version(&fp)),
        };
        let (lease, look) = match self.leases.claim(&mut start, req.done_if.clone()).await? {
            Claim::Started(lease) => (lease, Look::Started),
            Claim::Look { lease, status } => (lease, Look::First(status)),
            Claim::Held { holder, run_id } => {
                info!(held_by = %holder, other_run = run_id.as_deref().unwrap_or("-"), "partition is leased by another worker; skipping");
                report.state = RunOutcome::Held;
                report.held_by = Some(holder);
                return Ok(());
            }
        };
        let a = Attempt {
            job,
            key: req.key,
            scope: super::scope::partition_scope(&schema, job, &req.key),
            schema,
            handle,
            lease,
            lost: Arc::new(AtomicBool::new(false)),
            fingerprint: fp,
            run_id,
            attempt: req.attempt,
            released: AtomicBool::new(false),
            ahead: req.ahead,
            meter: crate::cost::RunMeter::new(),
        };
        let result = self
            .under_lease(req, &a, &mut start, look, (project, upstream), report)
            .await;
        if !a.released.load(Ordering::SeqCst)
            && let Err(e) = self.catalog.release_lease(&a.lease).await
        {
            // It expires by itself; the next worker takes it over then.
            warn!(error = %e, "could not release the lease");
        }
        result
    }

    /// Everything done while the lease is held.
    async fn under_lease(
        &self,
        req: &Request<'_>,
        a: &Attempt<'_>,
        start: &mut RunStart,
        look: Look,
        (project, upstream): (Arc<Project>, Vec<UpstreamInput>),
        report: &mut RunReport,
    ) -> Result<(), RunError> {
        if let Look::First(status) = look {
            if let Some(p) = self.done_elsewhere(req, a, *status).await? {
                info!(
                    by_run = p.last_run_id.as_str(),
                    state = %p.state,
                    "partition was run by another worker meanwhile; nothing to do"
                );
                report.state = RunOutcome::DoneElsewhere;
                report.run_id = p.content_run_id;
                report.rows = p.content_rows.map(|r| r as u64);
                return Ok(());
            }
            start.started_at = self.clock.now_ms();
            self.catalog.start_run(start).await?;
        }
        report.run_id = Some(a.run_id.clone());
        info!(target: LIFECYCLE, table = %a.job.table, table_version = a.job.version, token = a.lease.token, trigger = %req.trigger, "run started");
        // Dropped unfinished (the run cancelled), it reports the run aborted.
        let mut lineage = RunLineage::start(
            &self.lineage,
            &self.clock,
            &project.settings.root,
            a,
            &upstream,
        );

        // Aborted on drop too: a run cancelled by a daemon's shutdown stops renewing.
        let heartbeat = AbortOnDrop(self.leases.heartbeat(a.lease.clone(), a.lost.clone()).await);
        let outcome = match req.refusal {
            None => {
                let write = PartitionWrite {
                    project: project.clone(),
                    catalog: &self.catalog,
                    engine: &self.engine,
                    cluster: &self.cluster,
                    clock: &self.clock,
                    leases: &self.leases,
                    compute: self.compute.as_ref(),
                };
                write.run(a, upstream, report).await
            }
            Some(why) => Err(RunError::NotRunnable(why.to_string())),
        };
        drop(heartbeat);
        with_command_reads(start, report, &a.fingerprint);
        let measured = self.measures(req, a, report);
        match &outcome {
            Ok((rows, dv)) => lineage.complete(*rows, *dv, measured.cost),
            Err(e) => lineage.fail(&e.to_string(), measured.cost),
        }
        let end = end_of(&outcome);
        let events = super::tell::finish_events(
            &project.settings.notify,
            (a.job, req.trigger, req.attempt),
            super::tell::Ended {
                outcome: &outcome,
                quality: report.quality.as_ref(),
                dead_letters: report.bad_rows_skipped_total,
            },
        );
        let recorded = self
            .catalog
            .finish_run_telling(
                start,
                &end,
                self.clock.now_ms(),
                Some(&a.lease),
                &measured,
                events,
            )
            .await;
        if let Err(e) = recorded {
            // The run's own error would be lost behind the catalog's: say it first.
            if let Err(failed) = &outcome {
                warn!(error = %crate::redact::redact_text(&failed.to_string()), "run failed, and its end could not be recorded");
            }
            return Err(e.into());
        }
        a.released.store(true, Ordering::SeqCst);
        let (rows, dv) = outcome?;
        report.rows = Some(rows);
        report.delta_version = Some(dv);
        report.state = RunOutcome::Succeeded;
        info!(target: LIFECYCLE, rows, delta_version = dv, "run succeeded");
        self.code.record(a.job, &a.fingerprint).await;
        Ok(())
    }

    /// What the run measured, as its end records it; its cost goes in its report too.
    fn measures(&self, req: &Request<'_>, a: &Attempt<'_>, report: &mut RunReport) -> RunMeasures {
        // Nothing was computed for a refused run: it has no cost.
        let costed = req.refusal.is_none() && self.engine.settings().measure_cost;
        report.cost = costed.then(|| a.meter.cost());
        RunMeasures {
            quality_json: report
                .quality
                .as_ref()
                .and_then(|q| serde_json::to_string(q).ok()),
            cost: report.cost,
        }
    }

    /// The claim asked for a look: a run left running is reconciled from the Delta log
    /// first; then the partition is done elsewhere if another worker completed it after
    /// the caller's cut-off.
    async fn done_elsewhere(
        &self,
        req: &Request<'_>,
        a: &Attempt<'_>,
        status: PartitionStatus,
    ) -> Result<Option<PartitionStatus>, RunError> {
        let status = if status.state == PartitionState::Running {
            let project = self.project();
            let tell = crate::notify::wanting(
                &project.settings.notify,
                EventKind::LeaseLost,
                Some(a.job.name.as_str()),
            );
            self.leases
                .reconcile(&a.handle, &a.scope, &a.lease, status, (DIED, &tell))
                .await?
        } else {
            Some(status)
        };
        Ok(status.filter(|p| req.done_if.as_ref().is_some_and(|d| d.holds(p))))
    }
}

/// The host part of a lease holder id (`host:pid:random`).
fn host_name(holder: &str) -> String {
    holder.split(':').next().unwrap_or_default().to_string()
}

/// How a run's outcome is recorded.
fn end_of(outcome: &Result<(u64, u64), RunError>) -> RunEnd {
    match outcome {
        Ok((rows, dv)) => RunEnd::Succeeded {
            rows: *rows as i64,
            delta_version: *dv as i64,
        },
        Err(e) => RunEnd::Failed {
            error: e.to_string(),
        },
    }
}

/// What the command inputs wrote, known once they have run, added to what the run read
/// (and so to its data version).
fn with_command_reads(start: &mut RunStart, report: &mut RunReport, fingerprint: &str) {
    if report.command_reads.is_empty() {
        return;
    }
    if let Some(mut reads) = crate::provenance::Reads::from_json(start.reads_json.as_deref()) {
        reads.commands = std::mem::take(&mut report.command_reads);
        start.reads_json = Some(reads.to_json());
        start.data_version = Some(reads.data_version(fingerprint));
    }
}
