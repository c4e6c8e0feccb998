//! Writing a partition: run the query, fit its output to the table, upload it as new
//! files, set bad rows aside, audit the new rows, and commit them with the lease's fencing
//! token. Nothing is visible before the commit; what a refused run uploaded is deleted.

use super::attempt::Attempt;
use super::{RunError, RunReport, Runner};
use crate::delta::store::delete_unpublished;
use crate::delta::{
    CommitInfo, DeltaError, LeaseCheck, PartitionCommit, PartitionWriter, StillLeased,
};
use crate::engine::bad_rows;
use crate::engine::{
    self, AuditReservation, BadRowLog, Engine, EngineError, PartitionQuery, UpstreamInput,
};
use crate::job::{BadRowVerdict, BadRows, InputSource, Job};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::datasource::MemTable;
use deltalake::kernel::Add;
use futures::FutureExt as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tracing::warn;

/// A partition's new files, uploaded but not committed, and the rows they hold.
struct WrittenFiles {
    adds: Vec<Add>,
    /// The table's schema the files were written under.
    written_under: String,
    rows: u64,
    /// The rows' profile, built as they streamed.
    profile: crate::quality::Profile,
    /// The conformed rows, kept for the audit while the engine's memory pool has room for
    /// them; `None`: the audit reads the uploaded files back.
    kept: Option<KeptRows>,
    target: SchemaRef,
    /// Output rows left out because they do not fit the table.
    rejected: BadRowLog,
    /// The text files read (the denominator of a `max_bad_rows` fraction).
    text_files: Vec<engine::TextFile>,
}

/// New rows kept for the audit, and the room they take in the engine's memory pool (given
/// back when dropped).
struct KeptRows {
    batches: Vec<RecordBatch>,
    _room: AuditReservation,
}

/// A failed write, with the CSV files it read (for the bad-row scan).
type WriteFailure = (RunError, Vec<engine::TextFile>);

impl Runner {
    /// Computes, audits and commits the partition; returns its rows and Delta version.
    pub(super) async fn write_and_commit(
        &self,
        a: &Attempt<'_>,
        upstream: Vec<UpstreamInput>,
        report: &mut RunReport,
    ) -> Result<(u64, u64), RunError> {
        let mut query = PartitionQuery::new(a.job, a.key, upstream);
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
        // Audit: profile and check the new rows before anything is published.
        let quality = self.audit(a, profile, kept, target, &adds).await;
        let quality = match quality {
            Ok(q) => q,
            Err(e) => {
                delete_unpublished(&a.handle.url, &adds).await;
                return Err(e);
            }
        };
        for c in quality.checks.iter().filter(|c| !c.passed) {
            warn!(check = %c.name, severity = ?c.severity, failing = c.failing, "{c}");
        }
        let blocking = quality.blocking().map(|c| c.to_string());
        report.quality = Some(quality);
        if let Some(why) = blocking {
            delete_unpublished(&a.handle.url, &adds).await;
            return Err(RunError::CheckFailed(why));
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
        let dv = self.commit(a, adds, written_under).await?;
        crate::failpoint::pause_if_set("after_commit").await;
        Ok((rows, dv))
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
        let written = self.write_files(a, query).await;
        drop(permit);
        let (e, text_files) = match written {
            Ok(done) => return Ok(done),
            Err(failure) => failure,
        };
        if text_files.is_empty() || !matches!(e, RunError::Engine(EngineError::Execution { .. })) {
            return Err(e);
        }
        // A read failed: find which rows, by file and line.
        let bad = Engine::find_bad_rows(&text_files, &self.project().settings.root)?;
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
        self.write_files(a, query).await.map_err(|(e, _)| e)
    }

    /// Runs the query and uploads its output as new files; returns their `add` actions.
    /// On failure, also returns the CSV files read, for the bad-row scan.
    async fn write_files(
        &self,
        a: &Attempt<'_>,
        query: &PartitionQuery<'_>,
    ) -> Result<WrittenFiles, WriteFailure> {
        if self.engine.kind_of(a.job) == crate::config::EngineKind::Ballista {
            return self.write_files_on_cluster(a, query).await;
        }
        let job = a.job;
        let project = self.project();
        let mut output = self
            .engine
            .output(query, &a.schema, |column| {
                unknown_column_hint(&project, job, column)
            })
            .await
            .map_err(|(e, files)| (e.into(), files))?;
        let text_files = output.text_files.clone();
        let fail = |e: RunError| (e, text_files.clone());
        // The table as of the last commit: a commit under way does not hold up the compute.
        let mut writer =
            PartitionWriter::new(&a.handle.url, &a.handle.latest()).map_err(|e| fail(e.into()))?;
        // The audit reads the new rows again: they are kept while the engine's memory
        // pool has room for them, and profiled as they pass.
        let mut profiler = crate::quality::profiler::Profiler::new(output.target_schema());
        let room = self
            .engine
            .audit_reservation(format!("audit of {} {}", job.name, a.key));
        // A job without checks needs only the profile: nothing is kept.
        let mut kept = (!job.checks.is_empty()).then(Vec::new);
        let mut room = Some(room);
        // Rows of the output that do not fit the table, set aside under bad_rows = "skip".
        let mut rejected = BadRowLog::default();
        while let Some(fitted) = output.next().await {
            let fitted = fitted.map_err(|(e, files)| (e.into(), files))?;
            for b in fitted.rejected {
                set_aside(&mut rejected, b).map_err(|e| fail(RunError::BadRows(e)))?;
            }
            profiler.update(&fitted.batch);
            if let (Some(k), Some(r)) = (&mut kept, &mut room)
                && fitted.batch.num_rows() > 0
            {
                if r.try_grow(fitted.batch.get_array_memory_size()) {
                    k.push(fitted.batch.clone());
                } else {
                    kept = None;
                    room = None;
                }
            }
            writer
                .write(fitted.batch)
                .await
                .map_err(|e| fail(e.into()))?;
        }
        let rows = writer.rows();
        let written_under = writer.schema_json().to_string();
        let adds = writer.finish().await.map_err(|e| fail(e.into()))?;
        Ok(WrittenFiles {
            adds,
            written_under,
            rows,
            profile: profiler.finish(),
            kept: kept.zip(room).map(|(batches, room)| KeptRows {
                batches,
                _room: room,
            }),
            target: output.target_schema(),
            rejected,
            text_files,
        })
    }

    /// [`Runner::write_files`] for a job that runs on Ballista: the executors compute, fit
    /// and upload; the new rows are then profiled from the uploaded files, which the audit
    /// reads too.
    async fn write_files_on_cluster(
        &self,
        a: &Attempt<'_>,
        query: &PartitionQuery<'_>,
    ) -> Result<WrittenFiles, WriteFailure> {
        let project = self.project();
        let latest = a.handle.latest();
        let layout = crate::delta::WriterLayout::of(&latest);
        let written_under = layout.schema_json.clone();
        let mut rejected = BadRowLog::default();
        let written = self
            .engine
            .write_on_cluster(
                query,
                &a.schema,
                (&a.handle.url, layout),
                |column| unknown_column_hint(&project, a.job, column),
                |b| set_aside(&mut rejected, b),
            )
            .await
            .map_err(|(e, files)| (e.into(), files))?;
        let profile = self.profile_uploaded(a, &written.adds).await;
        let profile = match profile {
            Ok(p) => p,
            Err(e) => {
                delete_unpublished(&a.handle.url, &written.adds).await;
                return Err((e, written.text_files));
            }
        };
        Ok(WrittenFiles {
            adds: written.adds,
            written_under,
            rows: written.rows,
            profile,
            kept: None,
            target: written.target,
            rejected,
            text_files: written.text_files,
        })
    }

    /// The profile of a partition's uploaded files, read back as they stream.
    async fn profile_uploaded(
        &self,
        a: &Attempt<'_>,
        adds: &[Add],
    ) -> Result<crate::quality::Profile, RunError> {
        let ctx = self.engine.session();
        let partition: Vec<_> = a
            .job
            .partition_values(&a.schema, &a.key)
            .into_iter()
            .map(|v| (v.column, v.value))
            .collect();
        let table =
            crate::delta::uploaded_files(&ctx, &a.handle.latest(), &a.schema, &partition, adds)?;
        let read = |e: deltalake::datafusion::error::DataFusionError| {
            RunError::Engine(engine::execution_error(e))
        };
        let mut rows = ctx
            .read_table(table)
            .map_err(read)?
            .execute_stream()
            .await
            .map_err(read)?;
        let mut profiler = crate::quality::profiler::Profiler::new(rows.schema());
        while let Some(batch) = futures::StreamExt::next(&mut rows).await {
            profiler.update(&batch.map_err(read)?);
        }
        Ok(profiler.finish())
    }

    /// Runs the job's checks on the new rows (kept in memory, or the uploaded files read
    /// back), against the profiles of the partitions before this one when a check needs a
    /// baseline.
    async fn audit(
        &self,
        a: &Attempt<'_>,
        profile: crate::quality::Profile,
        kept: Option<KeptRows>,
        target: SchemaRef,
        adds: &[Add],
    ) -> Result<crate::quality::Quality, RunError> {
        let job = a.job;
        if job.checks.is_empty() {
            return Ok(crate::quality::Quality {
                profile: Some(profile),
                checks: Vec::new(),
            });
        }
        let depth = job.checks.iter().filter_map(|c| c.baseline()).max();
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
        let new = crate::quality::audit::NewRows { profile, table };
        crate::quality::audit::audit(&ctx, new, &job.checks, &baseline, end_us)
            .await
            .map_err(failed)
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
        a.handle.commit(item, self.still_leased(a)).await
    }

    /// Asked just before a commit of the run's output or dead letters: is the lease still
    /// ours? Renewed rather than only looked at: a lease whose heartbeat came late but that
    /// nobody took is still ours, and the commit that follows gets a whole TTL.
    fn still_leased(&self, a: &Attempt<'_>) -> StillLeased {
        let (catalog, clock) = (self.catalog.clone(), self.clock.clone());
        let (lease, lost) = (a.lease.clone(), a.lost.clone());
        let ttl_ms = self.lease_ttl.as_millis() as i64;
        std::sync::Arc::new(move || {
            let (catalog, clock, lease, lost) =
                (catalog.clone(), clock.clone(), lease.clone(), lost.clone());
            async move {
                if lost.load(Ordering::SeqCst) {
                    return LeaseCheck::TakenOver;
                }
                match catalog.renew_lease(&lease, ttl_ms, clock.now_ms()).await {
                    Ok(true) => LeaseCheck::Held,
                    Ok(false) => LeaseCheck::TakenOver,
                    Err(e) => LeaseCheck::Unconfirmed(crate::redact::redact_text(&e.to_string())),
                }
            }
            .boxed()
        })
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
        let reads_files = a
            .job
            .inputs
            .iter()
            .any(|i| matches!(i.source, InputSource::Files { .. }));
        if !reads_files && a.job.bad_rows == BadRows::Fail {
            return Ok(());
        }
        let url = crate::dead_letters::table_url(&self.project().settings.warehouse, &a.job.name);
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
        crate::dead_letters::replace(&url, &letters, self.still_leased(a)).await
    }
}

/// What to do about a column the SQL produces and the table lacks: apply the migration that
/// adds it, when one is pending; else change the SQL or add a migration.
fn unknown_column_hint(project: &crate::project::Project, job: &Job, column: &str) -> String {
    match crate::project::migration_files::file_adding_column(
        &project.migrations,
        job.table.as_str(),
        column,
    ) {
        Some(f) => format!(
            "it is added by migrations/{}, not applied: run `sluice migrate` first (schema changes deploy before the code that uses them)",
            f.name
        ),
        None => "remove it from the SELECT, or add the column to the table with a migration".into(),
    }
}

/// Sets an output row that does not fit the table aside (bad_rows = "skip"), with a log
/// line for the first ones.
fn set_aside(rejected: &mut BadRowLog, b: engine::BadRow) -> Result<(), engine::BadRowError> {
    if rejected.len() < crate::engine::bad_row_log::SHOWN as u64 {
        warn!(row = b.line, error = %b.error, raw = %b.raw, "leaving out an output row that does not fit the table (bad_rows = \"skip\")");
    }
    rejected.push(b)
}
