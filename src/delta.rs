//! Physical table versions as Delta Lake tables: create, open, and replace one partition in
//! one commit. Only this module talks to deltalake's write path.
//!
//! A partition write is: upload new Parquet files (invisible until committed), then one
//! Delta commit that removes every file of the partition, adds the new ones, and records an
//! application transaction (`txn`) whose app id names the partition and whose version is
//! the writer's fencing token. Readers see the old files or the new ones, never a mix
//! (promise 1); a writer whose token is not above the one in the log is refused by the
//! table itself (promise 3), and after a crash the `txn` tells whether a commit landed.

use crate::schema::TableSchema;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::{
    CommitBuilder, CommitConflictError, CommitProperties, TransactionError,
};
use deltalake::kernel::{
    Action, Add, DataType as DeltaDataType, LogicalFileView, PrimitiveType, StructType, Transaction,
};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt as _;
use std::collections::HashMap;
use url::Url;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeltaError {
    #[error("cannot create Delta table at {url}: {message}")]
    Create { url: String, message: String },
    #[error("cannot open Delta table at {url}: {message}")]
    Open { url: String, message: String },
    #[error(
        "Delta table at {url} has schema that differs from table `{table}` in the catalog: {message}"
    )]
    SchemaDrift {
        url: String,
        table: String,
        message: String,
    },
    #[error("cannot write data files to {url}: {message}")]
    Write { url: String, message: String },
    #[error(
        "partition {partition}: this worker's lease (fencing token {ours}) was taken over by another worker; this run's output is discarded"
    )]
    Fenced { partition: String, ours: i64 },
    #[error("commit to {url} conflicted with a concurrent commit: {message}")]
    Conflict { url: String, message: String },
    #[error("commit to {url} failed: {message}")]
    Commit { url: String, message: String },
}

impl DeltaError {
    /// Storage hiccups are worth a retry; a fenced writer or a schema drift is not.
    pub fn is_transient(&self) -> bool {
        match self {
            DeltaError::Write { message, .. }
            | DeltaError::Commit { message, .. }
            | DeltaError::Open { message, .. } => {
                let m = message.to_ascii_lowercase();
                m.contains("timed out")
                    || m.contains("timeout")
                    || m.contains("connection")
                    || m.contains("temporarily")
                    || m.contains("io error")
                    || m.contains("generic")
            }
            DeltaError::Conflict { .. } => true,
            _ => false,
        }
    }
}

/// The application-transaction id of a partition: one per partition, so that commits of
/// different partitions never conflict on it, and two writers of one partition always do.
pub fn app_id(partition: &str) -> String {
    format!("sluice:{partition}")
}

/// Creates the Delta table for a physical version if it does not exist, and opens it.
/// Safe to race: the loser of a concurrent create finds the winner's table.
pub async fn ensure_table(url: &Url, schema: &TableSchema) -> Result<DeltaTable, DeltaError> {
    let err = |e: DeltaTableError| DeltaError::Create {
        url: crate::warehouse::display(url),
        message: e.to_string(),
    };
    if url.scheme() == "file" {
        if let Ok(p) = url.to_file_path() {
            std::fs::create_dir_all(&p).map_err(|e| DeltaError::Create {
                url: crate::warehouse::display(url),
                message: e.to_string(),
            })?;
        }
    }
    let probe = DeltaTable::try_from_url(url.clone()).await.map_err(err)?;
    if probe.verify_deltatable_existence().await.map_err(err)? {
        let t = open(url).await?;
        check_schema(url, &t, schema)?;
        return Ok(t);
    }
    let kernel: StructType =
        schema
            .to_arrow()
            .try_into_kernel()
            .map_err(|e| DeltaError::Create {
                url: crate::warehouse::display(url),
                message: e.to_string(),
            })?;
    let mut config: HashMap<String, Option<String>> = schema
        .properties
        .iter()
        .filter(|(k, _)| k.starts_with("delta."))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    // A checkpoint every 50 commits keeps opening the table fast through long backfills.
    config
        .entry("delta.checkpointInterval".into())
        .or_insert_with(|| Some("50".into()));
    let mut builder = probe
        .create()
        .with_columns(kernel.fields().cloned())
        .with_partition_columns(schema.partition_by.iter().map(|n| n.to_string()))
        .with_configuration(config)
        .with_table_name(schema.name.as_str())
        .with_save_mode(SaveMode::Ignore);
    if let Some(c) = &schema.comment {
        builder = builder.with_comment(c.clone());
    }
    match builder.await {
        Ok(t) => Ok(t),
        // Someone else created it between our open and our create.
        Err(e) => match open(url).await {
            Ok(t) => {
                check_schema(url, &t, schema)?;
                Ok(t)
            }
            Err(_) => Err(err(e)),
        },
    }
}

pub async fn open(url: &Url) -> Result<DeltaTable, DeltaError> {
    deltalake::open_table(url.clone())
        .await
        .map_err(|e| DeltaError::Open {
            url: crate::warehouse::display(url),
            message: e.to_string(),
        })
}

fn check_schema(url: &Url, t: &DeltaTable, schema: &TableSchema) -> Result<(), DeltaError> {
    let drift = |message: String| DeltaError::SchemaDrift {
        url: crate::warehouse::display(url),
        table: schema.name.to_string(),
        message,
    };
    let snap = t.snapshot().map_err(|e| drift(e.to_string()))?;
    let parts: Vec<String> = snap.metadata().partition_columns().to_vec();
    let want: Vec<String> = schema.partition_by.iter().map(|n| n.to_string()).collect();
    if parts != want {
        return Err(drift(format!(
            "partitioned by ({}) but the catalog says ({})",
            parts.join(", "),
            want.join(", ")
        )));
    }
    let have: Vec<String> = snap
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect();
    for c in &schema.columns {
        if !have.iter().any(|h| h == c.name.as_str()) {
            return Err(drift(format!("column `{}` is missing", c.name)));
        }
    }
    Ok(())
}

/// Writes a partition's new files. Nothing is visible until [`commit_partition`].
pub struct PartitionWriter {
    url: Url,
    writer: RecordBatchWriter,
    rows: u64,
}

impl PartitionWriter {
    pub fn new(url: &Url, table: &DeltaTable) -> Result<PartitionWriter, DeltaError> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
            .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")));
        // Numbers, dates and times are written plain: ids, amounts and timestamps are mostly
        // distinct, and interning each value into a dictionary that zstd then makes
        // redundant was the larger part of writing a file. Text and booleans keep one.
        if let Ok(snapshot) = table.snapshot() {
            for field in snapshot.schema().fields() {
                let text = matches!(
                    field.data_type(),
                    DeltaDataType::Primitive(
                        PrimitiveType::String | PrimitiveType::Binary | PrimitiveType::Boolean
                    )
                );
                if matches!(field.data_type(), DeltaDataType::Primitive(_)) && !text {
                    props = props.set_column_dictionary_enabled(
                        ColumnPath::from(field.name().as_str()),
                        false,
                    );
                }
            }
        }
        let props = props.build();
        let writer = RecordBatchWriter::for_table(table)
            .map_err(|e| DeltaError::Write {
                url: crate::warehouse::display(url),
                message: e.to_string(),
            })?
            .with_writer_properties(props);
        Ok(PartitionWriter {
            url: url.clone(),
            writer,
            rows: 0,
        })
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), DeltaError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .await
            .map_err(|e| DeltaError::Write {
                url: crate::warehouse::display(&self.url),
                message: e.to_string(),
            })
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Finishes the files; returns their `add` actions.
    pub async fn finish(mut self) -> Result<Vec<Add>, DeltaError> {
        self.writer.flush().await.map_err(|e| DeltaError::Write {
            url: crate::warehouse::display(&self.url),
            message: e.to_string(),
        })
    }
}

/// What to replace: the partition's value in its partition column (Delta's string form),
/// or the whole table for an unpartitioned one.
#[derive(Debug, Clone)]
pub enum Scope {
    Partition { column: String, value: String },
    WholeTable,
}

/// The table's current files in `scope`. Filtered here from the snapshot's file list
/// rather than by a predicate given to deltalake: a predicate makes it replay the whole log
/// (parsing every file's statistics) on each call, and a commit asks once per partition.
async fn files_in_scope(
    table: &DeltaTable,
    scope: &Scope,
) -> Result<Vec<LogicalFileView>, DeltaTableError> {
    let files: Vec<LogicalFileView> = table
        .get_active_add_actions_by_partitions(&[])
        .try_collect()
        .await?;
    Ok(match scope {
        Scope::WholeTable => files,
        Scope::Partition { column, value } => files
            .into_iter()
            .filter(|f| {
                f.partition_values_map()
                    .get(column)
                    .is_some_and(|v| same_partition_value(v.as_deref(), value))
            })
            .collect(),
    })
}

/// Whether a partition value as the log holds it (`None`: null) is `ours`. Equal text, or
/// the same date or time written another way (`2024-01-01 00:00:00` and
/// `2024-01-01 00:00:00.000000` name one hour partition).
fn same_partition_value(logged: Option<&str>, ours: &str) -> bool {
    let Some(logged) = logged else {
        return false;
    };
    if logged == ours {
        return true;
    }
    let time = |s: &str| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
            .ok()
    };
    match (time(logged), time(ours)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Everything a partition commit records besides its files.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub partition: String,
    pub token: i64,
    pub run_id: String,
    pub fingerprint: String,
    pub job: String,
}

/// One partition's replacement, waiting for a commit.
#[derive(Debug, Clone)]
pub struct PartitionCommit {
    pub scope: Scope,
    pub adds: Vec<Add>,
    pub info: CommitInfo,
}

/// The `txn` version recorded for `partition`, as of the latest commit.
pub async fn landed_token(
    table: &mut DeltaTable,
    partition: &str,
) -> Result<Option<i64>, DeltaError> {
    let url = table.table_url().clone();
    let open_err = |e: DeltaTableError| DeltaError::Open {
        url: crate::warehouse::display(&url),
        message: e.to_string(),
    };
    table.update_state().await.map_err(open_err)?;
    let snap = table.snapshot().map_err(open_err)?;
    snap.transaction_version(table.log_store().as_ref(), &app_id(partition))
        .await
        .map_err(open_err)
}

/// Rows in the partition's current files, from their statistics.
pub async fn partition_rows(table: &DeltaTable, scope: &Scope) -> Result<i64, DeltaError> {
    let files = files_in_scope(table, scope)
        .await
        .map_err(|e| DeltaError::Open {
            url: crate::warehouse::display(table.table_url()),
            message: e.to_string(),
        })?;
    Ok(files
        .iter()
        .map(|f| f.num_records().unwrap_or(0) as i64)
        .sum())
}

/// Replaces the content of each partition in `batch` with its new files, all in one Delta
/// commit that carries each partition's `txn` (app id = partition, version = fencing
/// token). Returns one result per item, in order.
///
/// Batching is what makes a long backfill cheap: a Delta commit costs a few milliseconds
/// (the new snapshot is rebuilt after it), whatever it holds, and a thousand partitions in
/// a few dozen commits also keep the log short. Every partition is still replaced
/// atomically: readers see the commit or not.
///
/// The caller holds the table's in-process commit lock (the `&mut`, behind the runner's
/// per-table mutex). The commit is built on the handle's snapshot without refreshing it:
/// listing the log costs time proportional to its length and is not needed for safety.
/// Every commit made after that snapshot is checked by Delta's conflict checker against
/// ours (a commit touching one of these partitions, or carrying one of their `txn` app ids,
/// conflicts); every commit made before it was made under a lease taken before ours or after
/// ours was lost, which `still_leased` (asked before each attempt) reveals. On a conflict
/// the snapshot is refreshed and the commit rebuilt for the items still leased: the
/// conflicting writer was an earlier holder. If conflicts persist, items are committed one
/// by one so that one partition's trouble does not fail the others.
pub async fn commit_partitions<F, Fut>(
    table: &mut DeltaTable,
    batch: &[PartitionCommit],
    still_leased: F,
) -> Vec<Result<u64, DeltaError>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut results: Vec<Option<Result<u64, DeltaError>>> = vec![None; batch.len()];
    let all: Vec<usize> = (0..batch.len()).collect();
    let unresolved = commit_rounds(table, batch, &all, &still_leased, &mut results).await;
    if unresolved.len() > 1 {
        // Isolate: whichever partition keeps failing fails alone.
        for i in unresolved {
            commit_rounds(table, batch, &[i], &still_leased, &mut results).await;
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(DeltaError::Commit {
                    url: crate::warehouse::display(table.table_url()),
                    message: "the commit was never attempted (this is likely a bug)".into(),
                })
            })
        })
        .collect()
}

/// Commits `items` of `batch` together, refreshing and retrying on conflicts. Fills in
/// `results`; returns the items left unresolved by a persistent failure when there was more
/// than one (for the caller to try one by one), else settles them with the error.
async fn commit_rounds<F, Fut>(
    table: &mut DeltaTable,
    batch: &[PartitionCommit],
    items: &[usize],
    still_leased: &F,
    results: &mut [Option<Result<u64, DeltaError>>],
) -> Vec<usize>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let fenced = |item: &PartitionCommit| DeltaError::Fenced {
        partition: item.info.partition.clone(),
        ours: item.info.token,
    };
    const ROUNDS: usize = 3;
    let mut last_error: Option<(DeltaError, bool)> = None;
    for round in 1..=ROUNDS {
        let mut live = Vec::new();
        for &i in items {
            if results[i].is_some() {
                continue;
            }
            if still_leased(i).await {
                live.push(i);
            } else {
                results[i] = Some(Err(fenced(&batch[i])));
            }
        }
        if live.is_empty() {
            return Vec::new();
        }
        match commit_once(table, batch, &live).await {
            Ok(v) => {
                for i in live {
                    results[i] = Some(Ok(v));
                }
                return Vec::new();
            }
            Err(CommitFailure::Conflict {
                error,
                concurrent_txn,
            }) => {
                last_error = Some((error, concurrent_txn));
                if round == ROUNDS {
                    break;
                }
                tracing::debug!(round, "commit conflicted; refreshing and retrying");
                if let Err(e) = table.update_state().await {
                    last_error = Some((
                        DeltaError::Commit {
                            url: crate::warehouse::display(table.table_url()),
                            message: e.to_string(),
                        },
                        false,
                    ));
                    break;
                }
            }
            Err(CommitFailure::Other(e)) => {
                last_error = Some((e, false));
                break;
            }
        }
    }
    let pending: Vec<usize> = items
        .iter()
        .copied()
        .filter(|i| results[*i].is_none())
        .collect();
    if pending.len() > 1 {
        return pending;
    }
    for i in pending {
        results[i] = Some(Err(match &last_error {
            // Another writer of this very partition committed: ours is the stale one.
            Some((_, true)) | None => fenced(&batch[i]),
            Some((e, false)) => e.clone(),
        }));
    }
    Vec::new()
}

enum CommitFailure {
    /// `concurrent_txn`: the other commit carried one of our partitions' `txn` app ids,
    /// i.e. another writer of the same partition got there first.
    Conflict {
        error: DeltaError,
        concurrent_txn: bool,
    },
    Other(DeltaError),
}

/// One attempt at committing the items `live` of `batch`.
async fn commit_once(
    table: &mut DeltaTable,
    batch: &[PartitionCommit],
    live: &[usize],
) -> Result<u64, CommitFailure> {
    let shown = crate::warehouse::display(table.table_url());
    let other = |e: DeltaTableError| {
        CommitFailure::Other(DeltaError::Commit {
            url: shown.clone(),
            message: e.to_string(),
        })
    };
    let mut actions: Vec<Action> = Vec::new();
    let mut txns = Vec::new();
    let mut values: Vec<String> = Vec::new();
    let mut column: Option<String> = None;
    let mut whole_table = false;
    let mut runs = Vec::new();
    for &i in live {
        let item = &batch[i];
        let removes = files_in_scope(table, &item.scope).await.map_err(other)?;
        actions.extend(
            removes
                .iter()
                .map(|f| Action::Remove(f.remove_action(true))),
        );
        actions.extend(item.adds.iter().cloned().map(Action::Add));
        txns.push(Transaction::new(
            app_id(&item.info.partition),
            item.info.token,
        ));
        match &item.scope {
            Scope::Partition { column: c, value } => {
                column = Some(c.clone());
                values.push(format!("'{}'", value.replace('\'', "''")));
            }
            Scope::WholeTable => whole_table = true,
        }
        runs.push(serde_json::json!({
            "run_id": item.info.run_id,
            "job": item.info.job,
            "partition": item.info.partition,
            "token": item.info.token,
            "fingerprint": item.info.fingerprint,
        }));
    }
    // The predicate is what the conflict checker reads as this commit's read set: the
    // replaced partitions only, so commits of other partitions do not conflict with it.
    let (partition_by, predicate) = match (&column, whole_table) {
        (Some(c), false) => (
            Some(vec![c.clone()]),
            Some(if values.len() == 1 {
                format!("{c} = {}", values[0])
            } else {
                format!("{c} IN ({})", values.join(", "))
            }),
        ),
        _ => (None, None),
    };
    let op = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by,
        predicate,
    };
    let props = CommitProperties::default()
        .with_application_transactions(txns)
        // Rebasing over commits of other partitions reads one small file each.
        .with_max_retries(1000)
        // Log cleanup lists the whole log on every commit; it runs after checkpoints.
        .with_cleanup_expired_logs(Some(false))
        .with_metadata([("sluice.runs".to_string(), serde_json::json!(runs))]);
    let snapshot = table.snapshot().map_err(other)?;
    let result = CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), op)
        .await;
    match result {
        Ok(done) => {
            let v = done.version();
            let checkpointed = done.metrics.new_checkpoint_created;
            table.state = Some(done.snapshot());
            if checkpointed {
                cleanup_logs(table, v).await;
                // The snapshot a commit hands back carries every commit since the handle
                // was opened, and each commit makes the next one replay them: reopening
                // from the new checkpoint keeps a commit's cost flat through long
                // backfills. If the reopen fails, the old snapshot is still right.
                if let Ok(fresh) = deltalake::open_table(table.table_url().clone()).await {
                    if fresh.version().is_some_and(|f| f >= v) {
                        *table = fresh;
                    }
                }
            }
            Ok(v)
        }
        Err(DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(c),
        }) => Err(CommitFailure::Conflict {
            concurrent_txn: matches!(c, CommitConflictError::ConcurrentTransaction),
            error: DeltaError::Conflict {
                url: shown.clone(),
                message: c.to_string(),
            },
        }),
        Err(e) => Err(other(e)),
    }
}

/// Removes log entries past the table's log retention that the new checkpoint makes
/// unnecessary. Best effort: a failure only leaves more log behind.
async fn cleanup_logs(table: &DeltaTable, version: u64) {
    use deltalake::table::config::TablePropertiesExt as _;
    let Ok(snapshot) = table.snapshot() else {
        return;
    };
    if !snapshot.table_config().enable_expired_log_cleanup() {
        return;
    }
    let retention = snapshot.table_config().log_retention_duration().as_millis() as i64;
    let cutoff = chrono::Utc::now().timestamp_millis() - retention;
    if let Err(e) = deltalake::checkpoints::cleanup_expired_logs_for(
        version,
        table.log_store().as_ref(),
        cutoff,
        None,
    )
    .await
    {
        tracing::warn!(error = %e, "Delta log cleanup failed; old log entries stay");
    }
}

/// What [`evolve`] did to one physical version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evolved {
    /// The Delta table already had the target schema (a re-run, or a change that only the
    /// catalog keeps, such as a column default).
    Unchanged,
    /// One commit of new metadata; no data file was touched.
    Metadata,
    /// Every data file was rewritten to the new schema, in one commit.
    Rewritten,
    /// The physical version has no Delta table (yet).
    Missing,
}

/// Brings a physical version's Delta table in line with `actions` (one migration's changes
/// to its table), in one commit. Additive changes are metadata only: a new column is added
/// nullable in Delta whatever the catalog says, because the rows already written have no
/// value for it, and readers see them as null. Destructive ones (drop, rename, narrowing,
/// NOT NULL) rewrite every file and check every value on the way: a value that does not fit
/// fails the whole change and nothing is committed.
///
/// Idempotent: an action already reflected in the table is skipped, so re-running a
/// migration that stopped half-way completes it.
pub async fn evolve(
    url: &Url,
    actions: &[crate::schema::ddl::AlterAction],
    properties: &std::collections::BTreeMap<String, String>,
) -> Result<Evolved, DeltaError> {
    use crate::schema::ddl::AlterAction;
    use deltalake::arrow::datatypes::{Field, Schema};
    use deltalake::kernel::MetadataExt as _;
    let shown = crate::warehouse::display(url);
    let fail = |message: String| DeltaError::Commit {
        url: shown.clone(),
        message,
    };
    let probe = DeltaTable::try_from_url(url.clone())
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !probe
        .verify_deltatable_existence()
        .await
        .map_err(|e| fail(e.to_string()))?
    {
        return Ok(Evolved::Missing);
    }
    let table = open(url).await?;
    let snapshot = table.snapshot().map_err(|e| fail(e.to_string()))?;
    let metadata = snapshot.metadata().clone();
    let current: Schema = snapshot.snapshot().arrow_schema().as_ref().clone();
    // (field, the current column it is read from)
    let mut fields: Vec<(Field, Option<String>)> = current
        .fields()
        .iter()
        .map(|f| (f.as_ref().clone(), Some(f.name().clone())))
        .collect();
    let mut rewrite = false;
    let find = |fields: &Vec<(Field, Option<String>)>, name: &str| {
        fields.iter().position(|(f, _)| f.name() == name)
    };
    let with_comment = |f: Field, comment: &str| {
        let mut m = f.metadata().clone();
        m.insert("comment".into(), comment.to_string());
        f.with_metadata(m)
    };
    let mut description = metadata.description().map(str::to_string);
    for action in actions {
        match action {
            AlterAction::AddColumn { column } => {
                if find(&fields, column.name.as_str()).is_none() {
                    let mut f = Field::new(column.name.as_str(), column.ty.to_arrow(), true);
                    if let Some(c) = &column.comment {
                        f = with_comment(f, c);
                    }
                    fields.push((f, None));
                }
            }
            AlterAction::SetType { column, ty } => {
                if let Some(i) = find(&fields, column.as_str()) {
                    let to = ty.to_arrow();
                    let from = fields[i].0.data_type().clone();
                    if from != to {
                        if !crate::engine::conform::widens_to(&from, &to) {
                            rewrite = true;
                        }
                        fields[i].0 = fields[i].0.clone().with_data_type(to);
                    }
                }
            }
            AlterAction::SetNotNull { column } => {
                if let Some(i) = find(&fields, column.as_str()) {
                    if fields[i].0.is_nullable() {
                        // Every value is checked on the rewrite.
                        rewrite = true;
                        fields[i].0 = fields[i].0.clone().with_nullable(false);
                    }
                }
            }
            AlterAction::DropNotNull { column } => {
                if let Some(i) = find(&fields, column.as_str()) {
                    fields[i].0 = fields[i].0.clone().with_nullable(true);
                }
            }
            AlterAction::SetColumnComment { column, comment } => {
                if let Some(i) = find(&fields, column.as_str()) {
                    fields[i].0 = with_comment(fields[i].0.clone(), comment);
                }
            }
            AlterAction::DropColumn { column } => {
                if let Some(i) = find(&fields, column.as_str()) {
                    fields.remove(i);
                    rewrite = true;
                }
            }
            AlterAction::RenameColumn { from, to } => {
                if let Some(i) = find(&fields, from.as_str()) {
                    fields[i].0 = fields[i].0.clone().with_name(to.as_str());
                    rewrite = true;
                }
            }
            AlterAction::SetProperties { .. } => {}
            AlterAction::SetComment { comment } => description = Some(comment.clone()),
        }
    }
    let target = Schema::new(fields.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>());
    let config = metadata.configuration();
    let new_config: Vec<(&String, &String)> = properties
        .iter()
        .filter(|(k, v)| k.starts_with("delta.") && config.get(*k) != Some(*v))
        .collect();
    if target == current
        && new_config.is_empty()
        && description.as_deref() == metadata.description()
    {
        return Ok(Evolved::Unchanged);
    }
    let kernel: StructType = (&target)
        .try_into_kernel()
        .map_err(|e| fail(e.to_string()))?;
    let mut new_metadata = metadata
        .clone()
        .with_schema(&kernel)
        .map_err(|e| fail(e.to_string()))?;
    if let Some(d) = &description {
        new_metadata = new_metadata
            .with_description(d.clone())
            .map_err(|e| fail(e.to_string()))?;
    }
    for (k, v) in &new_config {
        new_metadata = new_metadata
            .add_config_key((*k).clone(), (*v).clone())
            .map_err(|e| fail(e.to_string()))?;
    }
    let mut actions: Vec<Action> = vec![Action::Metadata(new_metadata)];
    let partition_by = metadata.partition_columns().to_vec();
    let op = if rewrite {
        let sources: Vec<Option<String>> = fields.iter().map(|(_, s)| s.clone()).collect();
        let adds = rewrite_files(&table, &target, &sources, &partition_by).await?;
        let removes: Vec<Action> = table
            .get_active_add_actions_by_partitions(&[])
            .map_ok(|f| Action::Remove(f.remove_action(true)))
            .try_collect()
            .await
            .map_err(|e| fail(e.to_string()))?;
        actions.extend(removes);
        actions.extend(adds.into_iter().map(Action::Add));
        DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(partition_by),
            predicate: None,
        }
    } else {
        DeltaOperation::SetTableProperties {
            properties: new_config
                .iter()
                .map(|(k, v)| ((*k).clone(), (*v).clone()))
                .collect(),
        }
    };
    CommitBuilder::from(CommitProperties::default().with_max_retries(3))
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), op)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(if rewrite {
        Evolved::Rewritten
    } else {
        Evolved::Metadata
    })
}

/// Reads every row of `table` and writes it again in `target`'s shape: each target column
/// from the current column named in `sources` (none: null), cast without loss.
async fn rewrite_files(
    table: &DeltaTable,
    target: &deltalake::arrow::datatypes::Schema,
    sources: &[Option<String>],
    partition_by: &[String],
) -> Result<Vec<Add>, DeltaError> {
    use deltalake::arrow::array::{ArrayRef, new_null_array};
    use deltalake::arrow::compute::kernels::cast::{CastOptions, cast_with_options};
    use deltalake::datafusion::prelude::SessionContext;
    let url = table.table_url().clone();
    let shown = crate::warehouse::display(&url);
    let fail = |message: String| DeltaError::Write {
        url: shown.clone(),
        message,
    };
    let target = std::sync::Arc::new(target.clone());
    let provider = table
        .table_provider()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let ctx = SessionContext::new();
    let mut stream = ctx
        .read_table(provider)
        .map_err(|e| fail(e.to_string()))?
        .execute_stream()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut writer = RecordBatchWriter::try_new(
        url.clone(),
        target.clone(),
        Some(partition_by.to_vec()),
        None,
    )
    .map_err(|e| fail(e.to_string()))?;
    let opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    use futures::StreamExt as _;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| fail(e.to_string()))?;
        let rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
        for (field, source) in target.fields().iter().zip(sources) {
            let array = match source.as_deref().and_then(|s| batch.column_by_name(s)) {
                Some(a) if a.data_type() == field.data_type() => a.clone(),
                Some(a) => cast_with_options(a, field.data_type(), &opts).map_err(|e| {
                    fail(format!(
                        "column `{}` has a value that does not fit {}: {e}",
                        field.name(),
                        crate::engine::conform::sql_name(field.data_type())
                    ))
                })?,
                None => new_null_array(field.data_type(), rows),
            };
            if !field.is_nullable() && array.null_count() > 0 {
                return Err(fail(format!(
                    "column `{}` holds null values in the rows already written ({} in one batch read); NOT NULL cannot apply until they are filled in",
                    field.name(),
                    array.null_count()
                )));
            }
            columns.push(array);
        }
        let batch =
            RecordBatch::try_new(target.clone(), columns).map_err(|e| fail(e.to_string()))?;
        writer.write(batch).await.map_err(|e| fail(e.to_string()))?;
    }
    writer.flush().await.map_err(|e| fail(e.to_string()))
}

/// Deletes files uploaded for a commit that will not happen (an audit refused them).
/// Best effort: a file left behind is an orphan no reader sees, and vacuum removes it.
pub async fn delete_unpublished(url: &Url, adds: &[Add]) {
    let Ok(t) = DeltaTable::try_from_url(url.clone()).await else {
        return;
    };
    let os = t.log_store().object_store(None);
    use futures::StreamExt as _;
    let paths: Vec<_> = adds
        .iter()
        .filter_map(|a| deltalake::Path::from_url_path(&a.path).ok())
        .map(Ok)
        .collect();
    let mut deleted = os.delete_stream(futures::stream::iter(paths).boxed());
    while let Some(r) = deleted.next().await {
        if let Err(e) = r {
            tracing::debug!(error = %e, "could not delete an unpublished file");
        }
    }
}
