//! The publish step of a merge job (`[output] write = "merge"`): the partition's output,
//! uploaded as change files and audited like any output, is merged into the table by
//! `merge::resolve`, and the partitions it touches are rewritten in one Delta commit that
//! carries the partition's `txn`.
//!
//! Under the table's in-process commit lock, from its latest snapshot: the rows the table
//! holds in the partitions the changes touch (their partition columns are part of the key,
//! so a key's row is nowhere else) and their tombstones are read, each key's winner
//! written, the tombstones committed (a table of their own beside the table's files,
//! `_sluice_tombstones/`), then the table. A conflict (another process merged into those
//! partitions meanwhile) throws the new files away and merges again from the new snapshot:
//! files rebuilt over the other writer's would drop its changes. The change files are
//! scratch, deleted at the end whatever happens.

use super::claimed::Attempt;
use super::{RunError, RunReport, write::PartitionWrite};
use crate::delta::store::delete_unpublished;
use crate::delta::{
    CommitInfo, DeltaError, PartitionCommit, PartitionWriter, Scope, snapshot_files, uploaded_files,
};
use crate::job::WriteMode;
use crate::merge::{MergeError, MergeRule, Scd2Rule, scd2};
use crate::schema::TableSchema;
use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::kernel::Add;
use futures::StreamExt as _;
use std::collections::BTreeSet;
use std::sync::Arc;

/// How many times a merge is computed again after conflicting with another writer.
const ROUNDS: usize = 4;

/// Where a merge version's tombstones are kept: beside its files, gone with it (a folder
/// whose name starts with `_` is no data of the table's to Delta readers and vacuum).
pub(crate) const TOMBSTONES: &str = "_sluice_tombstones/";
/// Where an scd2 version's change log is kept, likewise.
pub(crate) const CHANGE_LOG: &str = "_sluice_changes/";

/// Every folder a version may keep a table of its own in, beside its files: what `gc`
/// vacuums with the version.
pub(crate) const SIDECARS: [&str; 2] = [TOMBSTONES, CHANGE_LOG];
/// The table's properties its sidecar takes when created: how long removed files and log
/// entries are kept, how often the log is checkpointed.
const SIDECAR_PROPERTIES: [&str; 3] = [
    "delta.deletedFileRetentionDuration",
    "delta.logRetentionDuration",
    "delta.checkpointInterval",
];

/// A partition's values in its table's partition columns (Delta's text), in their order.
pub(super) type Values = Vec<(String, String)>;

impl PartitionWrite<'_> {
    /// Merges the change files `changes` into the table and commits; returns the Delta
    /// version that holds the merge. The change files are deleted whatever the outcome.
    pub(super) async fn merge_commit(
        &self,
        a: &Attempt<'_>,
        changes: Vec<Add>,
        written_under: String,
        report: &mut RunReport,
    ) -> Result<u64, RunError> {
        let merged = self.merge_rounds(a, &changes, written_under, report).await;
        delete_unpublished(&a.handle.url, &changes).await;
        merged
    }

    async fn merge_rounds(
        &self,
        a: &Attempt<'_>,
        changes: &[Add],
        written_under: String,
        report: &mut RunReport,
    ) -> Result<u64, RunError> {
        let shape = Shape::of(a)?;
        let tomb_schema = shape.sidecar_schema(&a.schema);
        let tomb_url = a
            .handle
            .url
            .join(shape.sidecar())
            .map_err(|e| DeltaError::below(crate::delta::Doing::Create, &a.handle.url, e))?;
        let mut tombs = crate::delta::ensure_table(&tomb_url, &tomb_schema).await?;
        // No change touches nothing: an unpartitioned table's whole rewrite would empty it.
        let touched = match changes.is_empty() {
            true => Some(Vec::new()),
            false => touched(&a.schema, changes),
        };
        let info = CommitInfo {
            partition: a.key.to_string(),
            token: a.lease.token,
            run_id: a.run_id.clone(),
            fingerprint: a.fingerprint.clone(),
            job: a.job.name.to_string(),
        };
        let scope = Scope::Merged(touched.clone());
        let item = |adds: Vec<Add>, written_under: String| PartitionCommit {
            scope: scope.clone(),
            adds,
            info: info.clone(),
            written_under,
        };
        let mut round = 0;
        loop {
            round += 1;
            let mut table = a.handle.lock().await;
            let open = |e| DeltaError::open(&a.handle.url, e);
            table.update_state().await.map_err(open)?;
            tombs
                .update_state()
                .await
                .map_err(|e| DeltaError::open(&tomb_url, e))?;
            let tables = (&*table, &tombs, &tomb_url);
            // Each phase's time at debug level: where a slow merge spends it.
            let began = std::time::Instant::now();
            let ms = || began.elapsed().as_millis() as u64;
            // A merge proves its key unique as it writes; an scd2 history is read back.
            let (rows, dead, keys) = match shape {
                Shape::Merge(rule) => {
                    let w = self
                        .write_winners(a, rule, tables, changes, touched.as_deref())
                        .await?;
                    (w.rows, w.dead, Some(w.keys))
                }
                Shape::Scd2(rule) => {
                    let (rows, dead) = self
                        .write_history(a, rule, tables, changes, touched.as_deref())
                        .await?;
                    (rows, dead, None)
                }
            };
            tracing::debug!(elapsed_ms = ms(), round, "the merge's files are written");
            // Checked as published, before anything is: a failing check leaves both as
            // they were.
            let audited = self
                .audit_published(a, &table, changes, (&rows, keys), report)
                .await;
            tracing::debug!(elapsed_ms = ms(), round, "the merge's rows are audited");
            if let Err(e) = audited {
                drop(table);
                delete_unpublished(&a.handle.url, &rows).await;
                delete_unpublished(&tomb_url, &dead).await;
                return Err(e);
            }
            let still = || self.leases.still_leased(&a.lease, &a.lost);
            let sidecar = (&mut tombs, &tomb_url, item(dead, String::new()));
            let landed = commit_both(sidecar, &mut table, still, || {
                item(rows.clone(), written_under.clone())
            })
            .await;
            drop(table);
            tracing::debug!(elapsed_ms = ms(), round, "the merge's commits are done");
            match landed {
                Ok(v) => return Ok(v),
                Err(e) => {
                    delete_unpublished(&a.handle.url, &rows).await;
                    if !matches!(e, DeltaError::Conflict { .. }) || round == ROUNDS {
                        return Err(e.into());
                    }
                    tracing::info!(
                        round,
                        "the merge conflicted with another writer's commit; merging again from it"
                    );
                }
            }
        }
    }
}

/// The `merge_after_another_commit` fault point: the process's first merge, its files
/// written, waits until another writer has committed to its table (a minute at most), so
/// that its own commit meets that one: a test of merges racing needs a race that happened.
async fn wait_for_another_commit(url: &url::Url, read: Option<u64>) {
    tracing::warn!(
        failpoint = "merge_after_another_commit",
        "waiting for another writer's commit"
    );
    for _ in 0..600 {
        let latest = crate::delta::open(url).await.ok().and_then(|t| t.version());
        if latest > read {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

impl PartitionWrite<'_> {
    /// The new change log of the touched partitions and the history derived from it,
    /// written (not committed) to the log and to the table; returns both sets of files.
    async fn write_history(
        &self,
        a: &Attempt<'_>,
        rule: &Scd2Rule,
        (table, log, log_url): (&DeltaTable, &DeltaTable, &url::Url),
        changes: &[Add],
        touched: Option<&[Values]>,
    ) -> Result<(Vec<Add>, Vec<Add>), RunError> {
        let ctx = self.engine.session();
        let schema = &a.schema;
        let log_schema = Shape::Scd2(rule).sidecar_schema(schema);
        let read = |e| merge_err(a, MergeError::Engine(e));
        let held = read_touched(&ctx, (log, &log_schema), touched)
            .await?
            .map_err(read)?;
        let changed = ctx
            .read_table(changed_files(&ctx, table, schema, changes)?)
            .map_err(read)?;
        let new_log = scd2::log(&ctx, &schema.columns, rule, changed, held)
            .await
            .map_err(|e| merge_err(a, e))?;
        let mut writer = PartitionWriter::new(log_url, log)?;
        write_all(a, new_log, &log_schema, &mut writer).await?;
        let logged = writer.finish().await?;
        // The history is derived from the new log as written: one plan of it, read back.
        let ctx = self.engine.session();
        let log_rows = changed_files(&ctx, log, &log_schema, &logged)?;
        let history = scd2::history(
            &ctx,
            &schema.columns,
            rule,
            ctx.read_table(log_rows).map_err(read)?,
        )
        .await
        .map_err(|e| merge_err(a, e))?;
        let mut writer = PartitionWriter::new(&a.handle.url, table)?;
        let rows = match write_all(a, history, schema, &mut writer).await {
            Ok(()) => writer.finish().await.map_err(RunError::from),
            Err(e) => Err(e),
        };
        match rows {
            Ok(rows) => Ok((rows, logged)),
            Err(e) => {
                delete_unpublished(log_url, &logged).await;
                Err(e)
            }
        }
    }
}

/// Streams `df` into `writer`, each batch fitted to `to`'s columns.
async fn write_all(
    a: &Attempt<'_>,
    df: deltalake::datafusion::prelude::DataFrame,
    to: &TableSchema,
    writer: &mut PartitionWriter,
) -> Result<(), RunError> {
    let target = to.to_arrow();
    let engine = |e| merge_err(a, MergeError::Engine(e));
    let mut stream = df.execute_stream().await.map_err(engine)?;
    while let Some(batch) = stream.next().await {
        let b = fit(&batch.map_err(engine)?, &target).map_err(|e| merge_err(a, e))?;
        writer.write(b).await?;
    }
    Ok(())
}

/// A batch with `to`'s columns, taken by name, in `to`'s order, types and nullability (a
/// window's output may carry another unit of time than the table).
pub(super) fn fit(
    b: &RecordBatch,
    to: &deltalake::arrow::datatypes::SchemaRef,
) -> Result<RecordBatch, MergeError> {
    let mut columns = Vec::with_capacity(to.fields().len());
    for f in to.fields() {
        let c = b.column_by_name(f.name()).ok_or_else(|| {
            MergeError::Spec(format!("a merged batch lacks column `{}`", f.name()))
        })?;
        columns.push(match c.data_type() == f.data_type() {
            true => c.clone(),
            false => deltalake::arrow::compute::cast(c, f.data_type())?,
        });
    }
    RecordBatch::try_new(to.clone(), columns).map_err(MergeError::Arrow)
}

pub(super) fn merge_err(a: &Attempt<'_>, source: MergeError) -> RunError {
    RunError::Merge {
        table: a.job.table.to_string(),
        source,
    }
}

/// What `table` (of `schema`) holds in the touched partitions, as of its snapshot: nothing
/// when nothing changed (the commit then carries the `txn` alone). A table of several
/// partition columns is read by each column's values, then cut to exactly the touched
/// partitions: what is read is what the commit replaces.
pub(super) async fn read_touched(
    ctx: &SessionContext,
    (table, schema): (&DeltaTable, &TableSchema),
    touched: Option<&[Values]>,
) -> Result<Result<DataFrame, DataFusionError>, RunError> {
    let filter = touched.map(|t| column_filter(schema, t));
    let provider: Arc<dyn TableProvider> = match &filter {
        Some(f) if f.first().is_none_or(|(_, v)| v.is_empty()) => Arc::new(
            deltalake::datafusion::datasource::empty::EmptyTable::new(schema.to_arrow()),
        ),
        f => snapshot_files(ctx, table, f.as_deref()).await?,
    };
    Ok(ctx.read_table(provider).and_then(|df| match touched {
        Some(exact) if schema.partition_by.len() > 1 => df.filter(exact_partitions(schema, exact)),
        _ => Ok(df),
    }))
}

/// Commits the sidecar's item, then (once it landed) the table's: the sidecar first, so
/// that a crash between them leaves the table as it was and the next run finishes the
/// merge. The sidecar's files are deleted when its commit fails.
async fn commit_both(
    (sidecar, sidecar_url, dead): (&mut DeltaTable, &url::Url, PartitionCommit),
    table: &mut DeltaTable,
    still: impl Fn() -> crate::delta::StillLeased,
    rows: impl FnOnce() -> PartitionCommit,
) -> Result<u64, DeltaError> {
    if crate::failpoint::fail_once("merge_after_another_commit") {
        wait_for_another_commit(table.table_url(), table.version()).await;
    }
    let dead_files = dead.adds.clone();
    match commit_one(sidecar, dead, still()).await {
        Ok(_) => {
            crate::failpoint::pause_if_set("merge_between_commits").await;
            commit_one(table, rows(), still()).await
        }
        Err(e) => {
            delete_unpublished(sidecar_url, &dead_files).await;
            Err(e)
        }
    }
}

/// Commits one item on `table`, through the same path as a partition's replacement.
async fn commit_one(
    table: &mut DeltaTable,
    item: PartitionCommit,
    still: crate::delta::StillLeased,
) -> Result<u64, DeltaError> {
    let mut results = crate::delta::commit_partitions(table, &[item], |_| still()).await;
    results.pop().unwrap_or_else(|| {
        Err(DeltaError::below(
            crate::delta::Doing::Commit,
            table.table_url(),
            crate::delta::Said("the merge's commit was never attempted (this is likely a bug)"),
        ))
    })
}

/// What a merge keeps beside its table, and how it is computed.
#[derive(Clone, Copy)]
pub(super) enum Shape<'j> {
    /// Tombstones: the key and sequence of each deleted key.
    Merge(&'j MergeRule),
    /// The change log: every distinct change, with the change's columns.
    Scd2(&'j Scd2Rule),
}

impl<'j> Shape<'j> {
    /// The job's, once its table is seen to fit it.
    fn of(a: &'j Attempt<'_>) -> Result<Shape<'j>, RunError> {
        let spec = |m: String| merge_err(a, MergeError::Spec(m));
        let shape = match &a.job.write {
            WriteMode::Merge(rule) => Shape::Merge(rule),
            WriteMode::Scd2(rule) => Shape::Scd2(rule),
            WriteMode::Replace => return Err(spec("the job does not merge".into())),
        };
        a.job.write.check_table(&a.schema).map_err(spec)?;
        Ok(shape)
    }

    /// The folder of the table kept beside the version's files (gone with them).
    fn sidecar(&self) -> &'static str {
        match self {
            Shape::Merge(_) => TOMBSTONES,
            Shape::Scd2(_) => CHANGE_LOG,
        }
    }

    /// Its schema: partitioned as the table is (its partition columns are in the key).
    pub(super) fn sidecar_schema(&self, schema: &TableSchema) -> TableSchema {
        let columns = match self {
            Shape::Merge(rule) => rule
                .tombstone_columns(&schema.columns)
                .into_iter()
                .cloned()
                .collect(),
            Shape::Scd2(rule) => rule
                .change_columns(&schema.columns)
                .into_iter()
                .cloned()
                .collect(),
        };
        TableSchema {
            name: schema.name.clone(),
            columns,
            partition_by: schema.partition_by.clone(),
            comment: None,
            // Kept as long as the table's own files are, and vacuumed as they are.
            properties: schema
                .properties
                .iter()
                .filter(|(k, _)| SIDECAR_PROPERTIES.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// The partitions the change files lie in (`None`: an unpartitioned table, all of it).
fn touched(schema: &TableSchema, changes: &[Add]) -> Option<Vec<Values>> {
    if schema.partition_by.is_empty() {
        return None;
    }
    let set: BTreeSet<Values> = changes.iter().map(|a| values_of(schema, a)).collect();
    Some(set.into_iter().collect())
}

pub(super) fn values_of(schema: &TableSchema, add: &Add) -> Values {
    schema
        .partition_by
        .iter()
        .map(|c| {
            let v = add.partition_values.get(c.as_str()).cloned().flatten();
            (c.to_string(), v.unwrap_or_default())
        })
        .collect()
}

/// Each partition column with the values the touched partitions have in it.
fn column_filter(schema: &TableSchema, touched: &[Values]) -> Vec<(String, Vec<ScalarValue>)> {
    schema
        .partition_by
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let values: BTreeSet<&String> = touched.iter().map(|t| &t[i].1).collect();
            (
                c.to_string(),
                values
                    .into_iter()
                    .map(|v| ScalarValue::Utf8(Some(v.clone())))
                    .collect(),
            )
        })
        .collect()
}

/// Rows of exactly the touched partitions, for a table of several partition columns (the
/// per-column filter reads a few more).
fn exact_partitions(
    schema: &TableSchema,
    touched: &[Values],
) -> deltalake::datafusion::prelude::Expr {
    use deltalake::datafusion::prelude::{cast, col, lit};
    let mut any = lit(false);
    for t in touched {
        let mut all = lit(true);
        for (c, v) in t {
            let ty = schema
                .column(c)
                .map(|c| c.ty.to_arrow())
                .unwrap_or(deltalake::arrow::datatypes::DataType::Utf8);
            all = all
                .and(col(format!("\"{}\"", c.replace('"', "\"\""))).eq(cast(lit(v.clone()), ty)));
        }
        any = any.or(all);
    }
    any
}

/// The change files as one table: each partition's files with its values put back.
pub(super) fn changed_files(
    ctx: &SessionContext,
    table: &DeltaTable,
    schema: &TableSchema,
    changes: &[Add],
) -> Result<Arc<dyn TableProvider>, RunError> {
    let mut groups: std::collections::BTreeMap<Values, Vec<Add>> = Default::default();
    for add in changes {
        groups
            .entry(values_of(schema, add))
            .or_default()
            .push(add.clone());
    }
    if groups.len() <= 1 {
        let (values, adds) = groups.into_iter().next().unwrap_or_default();
        return Ok(uploaded_files(
            ctx,
            table,
            schema,
            &scalars(&values),
            &adds,
        )?);
    }
    let mut union: Option<deltalake::datafusion::prelude::DataFrame> = None;
    for (values, adds) in groups {
        let t = uploaded_files(ctx, table, schema, &scalars(&values), &adds)?;
        let df = ctx
            .read_table(t)
            .map_err(|e| RunError::Engine(crate::engine::execution_error(e)))?;
        union = Some(match union {
            None => df,
            Some(u) => u
                .union(df)
                .map_err(|e| RunError::Engine(crate::engine::execution_error(e)))?,
        });
    }
    let df = union.ok_or(RunError::NotRunnable("no change files".into()))?;
    Ok(df.into_view())
}

fn scalars(values: &Values) -> Vec<(String, ScalarValue)> {
    values
        .iter()
        .map(|(c, v)| (c.clone(), ScalarValue::Utf8(Some(v.clone()))))
        .collect()
}
