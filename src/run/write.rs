//! Writing a partition: run the query, fit its output to the table, upload it as new
//! files, set bad rows aside, audit the new rows, and commit them with the lease's fencing
//! token. Nothing is visible before the commit; what a refused run uploaded is deleted.

use super::claimed::Attempt;
use super::compute::{
    Compute as _, ComputeOn, Embedded, KeptRows, OnCluster, WriteFailure, WrittenFiles,
};
use super::lease::Leases;
use super::{RunError, RunReport};
use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::config::EngineKind;
use crate::delta::store::delete_unpublished;
use crate::delta::{CommitInfo, DeltaError, PartitionCommit};
use crate::engine::bad_rows;
use crate::engine::{self, BadRowLog, Engine, EngineError, PartitionQuery, UpstreamInput};
use crate::job::{BadRowVerdict, BadRows, InputSource};
use crate::project::Project;
use crate::quality::{Check, Quality, Severity};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Add;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tracing::{debug, warn};

/// The write step of a run: what it reads (the project as the run started, the catalog for
/// the checks' baseline), the engine that computes, the lease it commits under, and the
/// bound on partitions computing at once.
pub(super) struct PartitionWrite<'r> {
    pub project: Arc<Project>,
    pub catalog: &'r Catalog,
    pub engine: &'r Engine,
    pub cluster: &'r crate::cluster::Cluster,
    pub clock: &'r SharedClock,
    pub leases: &'r Leases,
    pub compute: Option<&'r Arc<tokio::sync::Semaphore>>,
}

impl PartitionWrite<'_> {
    /// Computes, audits and commits the partition; returns its rows and Delta version.
    pub(super) async fn run(
        &self,
        a: &Attempt<'_>,
        upstream: Vec<UpstreamInput>,
        report: &mut RunReport,
    ) -> Result<(u64, u64), RunError> {
        let mut query = PartitionQuery::new(a.job, a.key, upstream);
        self.run_commands(a, &mut query, report).await?;
        let pending = a.handle.pending();
        let WrittenFiles {
            adds,
            written_under,
            rows,
            profile,
            kept,
            target,
            rejected,
            text_files,
        } = self.compute_files(a, &mut query).await?;
        a.computed();
        // The input rows left out, then the output rows: the partition's dead letters.
        let mut skipped = query.without_bad_rows.take().unwrap_or_default();
        if !rejected.is_empty() {
            let merged: Result<(), engine::BadRowError> = rejected
                .rows()
                .and_then(|mut rows| rows.try_for_each(|r| r.and_then(|r| skipped.push(r))));
            if let Err(e) = merged {
                delete_unpublished(&a.handle.url, &adds).await;
                return Err(RunError::BadRows(e));
            }
            let verdict = a.job.bad_row_verdict(skipped.len(), || {
                if text_files.is_empty() {
                    rows + skipped.len()
                } else {
                    Engine::count_records(&text_files)
                }
            });
            if let BadRowVerdict::TooMany { limit, read } = verdict {
                delete_unpublished(&a.handle.url, &adds).await;
                self.record_dead_letters(a, &skipped).await;
                report.set_bad_rows_skipped(&skipped);
                return Err(RunError::TooManyBadRows(bad_rows::too_many(
                    a.job, &a.key, &skipped, read, limit, "row(s)",
                )));
            }
        }
        report.set_bad_rows_skipped(&skipped);
        // Audit: profile and check the new rows before anything is published. A merging
        // job's rows are checked as its merge publishes them (run/merge_audit.rs).
        let quality = match a.job.write.merges() {
            true => Ok(Quality {
                profile: Some(profile),
                checks: Vec::new(),
            }),
            false => {
                let audit = self.audit_output(a, profile, kept, target, &adds);
                crate::cost::measure(&a.meter, self.engine.settings().measure_cost, audit).await
            }
        };
        let judged = quality.and_then(|q| judge(report, q));
        if let Err(e) = judged {
            delete_unpublished(&a.handle.url, &adds).await;
            return Err(e);
        }
        if a.lost.load(Ordering::SeqCst) {
            return Err(RunError::LeaseLost);
        }
        crate::failpoint::delay_if_set("slow_commit").await;
        crate::failpoint::pause_if_set("before_commit").await;
        if crate::failpoint::fail_once("transient_commit_error") {
            // Typed as a broken connection would be, so that it is classified as one.
            let reset = std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected: connection reset (failpoint transient_commit_error)",
            );
            return Err(DeltaError::commit(&a.handle.url, reset.into()).into());
        }
        drop(pending);
        // The rows set aside are data too: they are durable before the partition is
        // published, or it is not published (and the run is retried if the store's trouble
        // is transient). A partition called complete whose dead letters were lost would
        // never be run again to find them.
        if let Err(e) = self.replace_dead_letters(a, &skipped).await {
            delete_unpublished(&a.handle.url, &adds).await;
            return Err(RunError::DeadLetters(e));
        }
        let dv = match a.job.write.merges() {
            false => self.commit(a, adds, written_under).await?,
            true => self.merge_commit(a, adds, written_under, report).await?,
        };
        crate::failpoint::pause_if_set("after_commit").await;
        Ok((rows, dv))
    }

    /// Runs the job's extracts first (its command inputs' programs, its database inputs'
    /// queries): their rows are read like a file's, and are part of what the partition
    /// read.
    async fn run_commands(
        &self,
        a: &Attempt<'_>,
        query: &mut PartitionQuery<'_>,
        report: &mut RunReport,
    ) -> Result<(), RunError> {
        let of = crate::command_input::RunOf {
            job: a.job,
            key: &a.key,
            run_id: &a.run_id,
            attempt: a.attempt,
        };
        let root = &self.project.settings.root;
        query.command_outputs = crate::command_input::run_all(root, &of).await?;
        let mut rows = std::collections::HashMap::new();
        for input in &a.job.inputs {
            if let InputSource::Database(db) = &input.source {
                let zone = a.job.partition_time_zone;
                let read = crate::database_input::read(root, &input.name, db, &a.key, zone).await?;
                rows.insert(input.name.clone(), read.rows);
                query
                    .command_outputs
                    .insert(input.name.clone(), read.output);
            }
        }
        report.command_reads = query
            .command_outputs
            .iter()
            .map(|(input, o)| crate::provenance::CommandRead {
                input: input.to_string(),
                bytes: o.bytes,
                sha256: o.sha256.clone(),
                rows: rows.get(input).copied(),
            })
            .collect();
        report.command_reads.sort_by(|a, b| a.input.cmp(&b.input));
        Ok(())
    }

    /// Runs the query into new files under a compute permit. When reading a CSV input
    /// fails, finds the bad rows by file and line and, as the job's `bad_rows` policy says,
    /// fails naming them or runs once more without them.
    async fn compute_files(
        &self,
        a: &Attempt<'_>,
        query: &mut PartitionQuery<'_>,
    ) -> Result<WrittenFiles, RunError> {
        let permit = self.compute_permit().await;
        let written = crate::cost::measure(
            &a.meter,
            self.engine.settings().measure_cost,
            self.files(a, query),
        )
        .await;
        drop(permit);
        let (e, text_files) = match written {
            Ok(done) => return Ok(done),
            Err(failure) => failure,
        };
        if text_files.is_empty() || !matches!(e, RunError::Engine(EngineError::Execution { .. })) {
            return Err(e);
        }
        // A read failed: find which rows, by file and line.
        let bad = Engine::find_bad_rows(&text_files, &self.project.settings.root)?;
        if bad.is_empty() {
            return Err(e);
        }
        match a
            .job
            .bad_row_verdict(bad.len(), || Engine::count_records(&text_files))
        {
            BadRowVerdict::Fail => {
                self.record_dead_letters(a, &bad).await;
                return Err(EngineError::BadRows {
                    total: bad.len(),
                    rows: bad.shown().to_vec(),
                }
                .into());
            }
            BadRowVerdict::TooMany { limit, read } => {
                self.record_dead_letters(a, &bad).await;
                return Err(RunError::TooManyBadRows(bad_rows::too_many(
                    a.job,
                    &a.key,
                    &bad,
                    read,
                    limit,
                    "input row(s)",
                )));
            }
            BadRowVerdict::Skip => {}
        }
        for b in bad.shown() {
            warn!(input = %b.input, file = %b.file, line = b.line, error = %b.error, raw = %b.raw, "skipping bad input row (bad_rows = \"skip\")");
        }
        let more = bad.len() - bad.shown().len() as u64;
        if more > 0 {
            warn!(
                more,
                "skipping {more} more bad input row(s) (bad_rows = \"skip\"): they are in the dead letters"
            );
        }
        query.without_bad_rows = Some(bad);
        let _permit = self.compute_permit().await;
        crate::cost::measure(
            &a.meter,
            self.engine.settings().measure_cost,
            self.files(a, query),
        )
        .await
        .map_err(|(e, _)| e)
    }

    /// A place among the partitions computing at once, when they are bounded.
    async fn compute_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match self.compute {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// The new files, computed where the job runs: the embedded engine, or a cluster.
    async fn files(
        &self,
        a: &Attempt<'_>,
        query: &PartitionQuery<'_>,
    ) -> Result<WrittenFiles, WriteFailure> {
        let on = ComputeOn {
            project: &self.project,
            engine: self.engine,
            cluster: self.cluster,
        };
        match self.engine.kind_of(a.job) {
            EngineKind::Datafusion => Embedded.files(&on, a, query).await,
            EngineKind::Ballista => OnCluster.files(&on, a, query).await,
        }
    }

    /// Runs the job's checks on the new rows (kept in memory, or the uploaded files read
    /// back).
    async fn audit_output(
        &self,
        a: &Attempt<'_>,
        profile: crate::quality::Profile,
        kept: Option<KeptRows>,
        target: SchemaRef,
        adds: &[Add],
    ) -> Result<Quality, RunError> {
        let job = a.job;
        if job.checks.is_empty() {
            return Ok(Quality {
                profile: Some(profile),
                checks: Vec::new(),
            });
        }
        let failed = RunError::AuditCouldNotRun;
        let ctx = self.engine.session();
        // `kept` (and its room in the pool) lives until the audit is over.
        let table = match &kept {
            Some(k) => Arc::new(
                MemTable::try_new(target, vec![k.batches.clone()]).map_err(|e| failed(e.into()))?,
            ) as Arc<dyn TableProvider>,
            None => {
                let partition: Vec<_> = job
                    .partition_values(&a.schema, &a.key)
                    .into_iter()
                    .map(|v| (v.column, v.value))
                    .collect();
                let t = a.handle.latest();
                crate::delta::uploaded_files(&ctx, &t, &a.schema, &partition, adds)?
            }
        };
        let quality = self.audit(a, &ctx, profile, table, &job.checks).await;
        drop(kept);
        quality
    }

    /// Runs `checks` on the rows of `table` (of the given profile), in `ctx`, against the
    /// profiles of the partitions before this one when a check needs a baseline.
    pub(super) async fn audit(
        &self,
        a: &Attempt<'_>,
        ctx: &SessionContext,
        profile: crate::quality::Profile,
        table: Arc<dyn TableProvider>,
        checks: &[Check],
    ) -> Result<Quality, RunError> {
        let job = a.job;
        let depth = checks.iter().filter_map(|c| c.baseline()).max();
        let baseline = match depth {
            Some(n) => crate::quality::profiles_from_json(
                &self
                    .catalog
                    .quality_before(job.table.as_str(), i64::from(job.version), &a.key, n)
                    .await?,
            ),
            None => Vec::new(),
        };
        let end_us = a
            .key
            .instant_bounds(job.partition_time_zone)
            .map(|(_, e)| e.timestamp_micros());
        let new = crate::quality::audit::NewRows { profile, table };
        crate::quality::audit::audit(ctx, new, checks, &baseline, end_us)
            .await
            .map_err(RunError::AuditCouldNotRun)
    }

    /// Commits the partition's files through its version's group-commit queue, with a
    /// check, just before the commit, that the lease is still ours.
    async fn commit(
        &self,
        a: &Attempt<'_>,
        adds: Vec<Add>,
        written_under: String,
    ) -> Result<u64, DeltaError> {
        let item = PartitionCommit {
            scope: a.scope.clone(),
            adds,
            written_under,
            info: CommitInfo {
                partition: a.key.to_string(),
                token: a.lease.token,
                run_id: a.run_id.clone(),
                fingerprint: a.fingerprint.clone(),
                job: a.job.name.to_string(),
            },
        };
        a.handle
            .commit(item, self.leases.still_leased(&a.lease, &a.lost))
            .await
    }

    /// Records the dead letters of a run that fails for its bad rows. A failure here is
    /// logged, not fatal: the run fails anyway, and its error names the rows.
    async fn record_dead_letters(&self, a: &Attempt<'_>, bad: &BadRowLog) {
        if let Err(e) = self.replace_dead_letters(a, bad).await {
            warn!(error = %e, "could not record the dead letters of the failed run");
        }
    }

    /// Replaces the partition's dead letters with `bad` (none: clears them), in one
    /// commit fenced by the run's lease like its output.
    async fn replace_dead_letters(
        &self,
        a: &Attempt<'_>,
        bad: &BadRowLog,
    ) -> Result<(), DeltaError> {
        // Only jobs that read files, or that set rows aside, have dead letters.
        let reads_files = a.job.inputs.iter().any(|i| {
            matches!(
                i.source,
                InputSource::Files { .. } | InputSource::Command(_) | InputSource::Database(_)
            )
        });
        if !reads_files && a.job.bad_rows == BadRows::Fail {
            return Ok(());
        }
        let url = crate::dead_letters::table_url(
            &self.project.settings.warehouse,
            &a.job.name,
            a.job.version,
        );
        let letters = crate::dead_letters::Letters {
            partition: a.key.to_string(),
            run_id: a.run_id.clone(),
            token: a.lease.token,
            at_ms: self.clock.now_ms(),
            rows: bad,
        };
        if !bad.is_empty() && crate::failpoint::fail_once("dead_letters_write") {
            let reset = std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected: connection reset (failpoint dead_letters_write)",
            );
            return Err(DeltaError::below(crate::delta::Doing::Write, &url, reset));
        }
        crate::dead_letters::replace(&url, &letters, self.leases.still_leased(&a.lease, &a.lost))
            .await
    }
}

/// Puts the audit's findings in the run's report; fails the run on the first failing check
/// of severity error. A failed check that fails the run is said by the run's failure; one
/// that only warns is said here, the only place it is.
pub(super) fn judge(report: &mut RunReport, quality: Quality) -> Result<(), RunError> {
    for c in quality.checks.iter().filter(|c| !c.passed) {
        match c.severity {
            Severity::Warn => warn!(check = %c.name, failing = c.failing, "{c}"),
            Severity::Error => debug!(check = %c.name, failing = c.failing, "{c}"),
        }
    }
    let blocking = quality.blocking().map(|c| c.to_string());
    report.quality = Some(quality);
    match blocking {
        Some(why) => Err(RunError::CheckFailed(why)),
        None => Ok(()),
    }
}
