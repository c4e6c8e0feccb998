//! The compute step of a run: the partition's query run and its output fitted and
//! uploaded as new files, nothing committed. Two implementations of one step: the embedded
//! engine in this process, and a Ballista cluster whose executors compute and upload.

use super::RunError;
use super::claimed::Attempt;
use crate::delta::store::delete_unpublished;
use crate::delta::{PartitionWriter, WriterLayout, WriterTask};
use crate::engine::{self, AuditReservation, BadRowLog, PartitionQuery};
use crate::job::Job;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Add;
use tracing::warn;

/// A partition's new files, uploaded but not committed, and the rows they hold.
pub(super) struct WrittenFiles {
    pub adds: Vec<Add>,
    /// The table's schema the files were written under.
    pub written_under: String,
    pub rows: u64,
    /// The rows' profile, built as they streamed.
    pub profile: crate::quality::Profile,
    /// The conformed rows, kept for the audit while the engine's memory pool has room for
    /// them; `None`: the audit reads the uploaded files back.
    pub kept: Option<KeptRows>,
    pub target: SchemaRef,
    /// Output rows left out because they do not fit the table.
    pub rejected: BadRowLog,
    /// The text files read (the denominator of a `max_bad_rows` fraction).
    pub text_files: Vec<engine::TextFile>,
}

/// New rows kept for the audit, and the room they take in the engine's memory pool (given
/// back when dropped).
pub(super) struct KeptRows {
    pub batches: Vec<RecordBatch>,
    _room: AuditReservation,
}

/// A failed write, with the CSV files it read (for the bad-row scan).
pub(super) type WriteFailure = (RunError, Vec<engine::TextFile>);

/// What a compute reads: the project as the run started (for hints about columns the
/// table lacks) and the engine.
pub(super) struct ComputeOn<'r> {
    pub project: &'r crate::project::Project,
    pub engine: &'r crate::engine::Engine,
    pub cluster: &'r crate::cluster::Cluster,
}

/// Where a partition's new files are computed.
pub(super) trait Compute {
    /// Runs the query and uploads its output as new files; returns their `add` actions.
    /// On failure, also returns the CSV files read, for the bad-row scan.
    async fn files(
        &self,
        w: &ComputeOn<'_>,
        a: &Attempt<'_>,
        query: &PartitionQuery<'_>,
    ) -> Result<WrittenFiles, WriteFailure>;
}

/// The embedded engine: the query runs in this process, its output is fitted and uploaded
/// batch by batch, and the rows are kept for the audit while the memory pool has room.
pub(super) struct Embedded;

/// A Ballista cluster: the executors compute, fit and upload; the new rows are then
/// profiled from the uploaded files, which the audit reads too.
pub(super) struct OnCluster;

impl Compute for Embedded {
    /// Runs the query and uploads its output as new files; returns their `add` actions.
    /// On failure, also returns the CSV files read, for the bad-row scan.
    async fn files(
        &self,
        w: &ComputeOn<'_>,
        a: &Attempt<'_>,
        query: &PartitionQuery<'_>,
    ) -> Result<WrittenFiles, WriteFailure> {
        let job = a.job;
        let project = w.project;
        let mut output = w
            .engine
            .output(query, &a.schema, |column| {
                unknown_column_hint(project, job, column)
            })
            .await
            .map_err(|(e, files)| (e.into(), files))?;
        let text_files = output.text_files.clone();
        let fail = |e: RunError| (e, text_files.clone());
        // The table as of the last commit: a commit under way does not hold up the compute.
        let latest = a.handle.latest();
        let layout = layout(job, &latest);
        let written_under = layout.schema_json.clone();
        let writer = PartitionWriter::with_layout(&a.handle.url, &latest, layout)
            .map_err(|e| fail(e.into()))?;
        // The files are encoded and uploaded on a task of their own, beside the query.
        let measure = w.engine.settings().measure_cost;
        let mut writer = WriterTask::spawn(writer, a.meter.clone(), measure);
        let mut rows = 0u64;
        // The audit reads the new rows again: they are kept while the engine's memory
        // pool has room for them, and profiled as they pass.
        let mut profiler = crate::quality::profiler::Profiler::new(output.target_schema());
        let room = w
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
            rows += fitted.batch.num_rows() as u64;
            writer
                .write(fitted.batch)
                .await
                .map_err(|e| fail(e.into()))?;
        }
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
}

impl Compute for OnCluster {
    async fn files(
        &self,
        w: &ComputeOn<'_>,
        a: &Attempt<'_>,
        query: &PartitionQuery<'_>,
    ) -> Result<WrittenFiles, WriteFailure> {
        let project = w.project;
        let latest = a.handle.latest();
        let layout = layout(a.job, &latest);
        let written_under = layout.schema_json.clone();
        let mut rejected = BadRowLog::default();
        let written = w
            .cluster
            .write(
                w.engine,
                query,
                &a.schema,
                (&a.handle.url, layout),
                |column| unknown_column_hint(project, a.job, column),
                |b| set_aside(&mut rejected, b),
            )
            .await
            .map_err(|(e, files)| (e.into(), files))?;
        let profile = profile_uploaded(w, a, &written.adds).await;
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
}

/// The profile of a partition's uploaded files, read back as they stream.
async fn profile_uploaded(
    w: &ComputeOn<'_>,
    a: &Attempt<'_>,
    adds: &[Add],
) -> Result<crate::quality::Profile, RunError> {
    let ctx = w.engine.session();
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

/// How a run's new files are laid out: the table's way, except a merge's changes, which
/// its merge reads once and deletes.
fn layout(job: &Job, table: &deltalake::DeltaTable) -> WriterLayout {
    let layout = WriterLayout::of(table);
    match job.write.merges() {
        true => layout.scratch(),
        false => layout,
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
