//! Dead letters: the input rows a job could not use, kept in a Delta table per job at
//! `<warehouse>/_dead_letters/<job>/`, partitioned like the job's runs. Each run of a
//! partition replaces that partition's dead letters (in one commit, fenced by the run's
//! lease token like its output), so a replay after the source is fixed clears them.

use crate::delta::{
    self, Below, CommitInfo, DeltaError, Doing, PartitionCommit, PartitionWriter, Scope,
    StillLeased, below,
};
use crate::engine::{BadRow, BadRowLog};
use crate::names::Name;
use crate::schema::{Column, ColumnType, TableSchema};
use deltalake::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::record_batch::RecordBatch;
use std::collections::BTreeMap;
use std::sync::Arc;
use url::Url;

/// Whether the table surely does not exist: a local folder that is not there (opening one
/// is an error, not "no table").
fn surely_missing(url: &Url) -> bool {
    url.scheme() == "file" && url.to_file_path().is_ok_and(|p| !p.exists())
}

/// The job's dead-letter table, if it was ever written.
async fn open_if_exists(url: &Url) -> Result<Option<deltalake::DeltaTable>, DeltaError> {
    if surely_missing(url) {
        return Ok(None);
    }
    let probe = deltalake::DeltaTable::try_from_url(url.clone())
        .await
        .map_err(|e| open_err(url, e))?;
    if !probe
        .verify_deltatable_existence()
        .await
        .map_err(|e| open_err(url, e))?
    {
        return Ok(None);
    }
    delta::open(url).await.map(Some)
}

/// The dead-letter table of `job`'s runs into physical `version`: one per job, and one per
/// version an environment builds (`<job>.v<N>`: no job name holds a dot), so that a build
/// in an environment never replaces production's letters.
pub fn table_url(warehouse: &Url, job: &Name, version: u32) -> Url {
    let mut u = warehouse.clone();
    let base = u.path().trim_end_matches('/').to_string();
    if i64::from(version) >= crate::catalog::FIRST_ENV_VERSION {
        u.set_path(&format!("{base}/_dead_letters/{job}.v{version}/"));
    } else {
        u.set_path(&format!("{base}/_dead_letters/{job}/"));
    }
    u
}

fn schema() -> TableSchema {
    let col = |name: &str, ty: ColumnType, nullable: bool, comment: &str| Column {
        name: Name::new(name).unwrap_or_else(|_| unreachable!("a fixed, valid name")),
        ty,
        nullable,
        default: None,
        comment: Some(comment.into()),
    };
    TableSchema {
        name: Name::new("dead_letters").unwrap_or_else(|_| unreachable!("a fixed, valid name")),
        columns: vec![
            col(
                "run_id",
                ColumnType::String,
                false,
                "the run that read the row",
            ),
            col("input", ColumnType::String, false, "the job's input"),
            col("file", ColumnType::String, false, "the source file"),
            col(
                "line",
                ColumnType::BigInt,
                false,
                "1-based line where the record starts",
            ),
            col("raw", ColumnType::String, false, "the record as read"),
            col(
                "error",
                ColumnType::String,
                false,
                "why it could not be used",
            ),
            col("recorded_at", ColumnType::Timestamp, false, "when"),
            col(
                "partition",
                ColumnType::String,
                false,
                "the partition being run",
            ),
        ],
        partition_by: vec![Name::new("partition").unwrap_or_else(|_| unreachable!())],
        comment: Some("Input rows sluice could not use".into()),
        properties: BTreeMap::new(),
    }
}

/// One partition's dead letters, as a run found them.
pub struct Letters<'a> {
    pub partition: String,
    pub run_id: String,
    pub token: i64,
    pub at_ms: i64,
    pub rows: &'a BadRowLog,
}

/// How many dead letters are written per batch: the rows are read back from the run's log a
/// batch at a time, so memory holds one batch whatever their number.
const BATCH: usize = 8192;

/// Replaces the partition's dead letters with `letters.rows`; none clears them.
pub async fn replace(
    url: &Url,
    letters: &Letters<'_>,
    still_leased: StillLeased,
) -> Result<(), DeltaError> {
    let scope = Scope::Partition(vec![("partition".into(), letters.partition.clone())]);
    let mut table = if letters.rows.is_empty() {
        let Some(t) = open_if_exists(url).await? else {
            return Ok(());
        };
        if delta::partition_rows(&t, &scope).await? == 0 {
            return Ok(());
        }
        t
    } else {
        delta::ensure_table(url, &schema()).await?
    };
    let write_err = |e: Below| DeltaError::below(Doing::Write, url, e);
    let mut adds = Vec::new();
    if !letters.rows.is_empty() {
        let mut w = PartitionWriter::new(url, &table)?;
        let mut rows = letters.rows.rows().map_err(|e| write_err(below(e)))?;
        loop {
            let chunk = rows.chunk(BATCH).map_err(|e| write_err(below(e)))?;
            if chunk.is_empty() {
                break;
            }
            w.write(batch(letters, &chunk).map_err(|e| write_err(below(e)))?)
                .await?;
        }
        adds = w.finish().await?;
    }
    let item = PartitionCommit {
        scope,
        adds,
        // The dead-letter table's schema never changes.
        written_under: String::new(),
        info: CommitInfo {
            partition: letters.partition.clone(),
            token: letters.token,
            run_id: letters.run_id.clone(),
            fingerprint: String::new(),
            job: "dead_letters".into(),
        },
    };
    let results = delta::commit_partitions(&mut table, &[item], |_| still_leased()).await;
    results.into_iter().next().unwrap_or(Ok(0)).map(|_| ())
}

/// Removes the dead letters recorded before `cutoff_ms` (`[catalog] retention`), whole
/// partitions at a time (a run records all of a partition's letters at once); `dry_run`
/// counts them. A run replacing one of those partitions meanwhile makes this commit conflict
/// and fail (a later prune tries again), never lose the run's letters.
pub async fn prune(url: &Url, cutoff_ms: i64, dry_run: bool) -> Result<u64, DeltaError> {
    let Some(mut table) = open_if_exists(url).await? else {
        return Ok(0);
    };
    let expired = delta::expire_files(&mut table, "recorded_at", cutoff_ms, dry_run).await?;
    Ok(expired.rows)
}

/// Dead letters as rows of the table.
fn batch(
    letters: &Letters<'_>,
    rows: &[BadRow],
) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
    let n = rows.len();
    let s = |f: &dyn Fn(&BadRow) -> String| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    RecordBatch::try_new(
        schema().to_arrow(),
        vec![
            Arc::new(StringArray::from(vec![letters.run_id.clone(); n])),
            s(&|b| b.input.clone()),
            s(&|b| b.file.clone()),
            Arc::new(Int64Array::from(
                rows.iter().map(|b| b.line as i64).collect::<Vec<_>>(),
            )),
            s(&|b| b.raw.clone()),
            s(&|b| b.error.clone()),
            Arc::new(
                TimestampMicrosecondArray::from(vec![letters.at_ms * 1000; n]).with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec![letters.partition.clone(); n])),
        ],
    )
}

fn open_err(url: &Url, e: deltalake::DeltaTableError) -> DeltaError {
    DeltaError::open(url, e)
}

/// One dead letter as `sluice dlq list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub partition: String,
    pub file: String,
    pub line: i64,
    pub error: String,
    pub raw: String,
    pub run_id: String,
}

/// The dead letters of a job (of one partition), in partition, file and line order.
pub async fn list(url: &Url, partition: Option<&str>) -> Result<Vec<DeadLetter>, DeltaError> {
    let Some(table) = open_if_exists(url).await? else {
        return Ok(Vec::new());
    };
    let read_err = |e: Below| DeltaError::below(Doing::Open, url, e);
    let provider = table
        .table_provider()
        .await
        .map_err(|e| read_err(below(e)))?;
    let ctx = crate::engine::Engine::table_session();
    ctx.register_table("letters", provider)
        .map_err(|e| read_err(below(e)))?;
    // The partition is a bound value, never text in the statement (promise 6).
    let filter = match partition {
        Some(_) => "WHERE \"partition\" = $1",
        None => "",
    };
    let mut letters = ctx
        .sql(&format!(
            "SELECT \"partition\", file, line, error, raw, run_id FROM letters {filter} ORDER BY \"partition\", file, line"
        ))
        .await
        .map_err(|e| read_err(below(e)))?;
    if let Some(p) = partition {
        letters = letters
            .with_param_values(vec![deltalake::datafusion::scalar::ScalarValue::from(p)])
            .map_err(|e| read_err(below(e)))?;
    }
    let batches = letters.collect().await.map_err(|e| read_err(below(e)))?;
    let mut out = Vec::new();
    for b in &batches {
        let text = |i: usize, row: usize| -> String {
            deltalake::arrow::util::display::array_value_to_string(b.column(i), row)
                .unwrap_or_default()
        };
        for row in 0..b.num_rows() {
            out.push(DeadLetter {
                partition: text(0, row),
                file: text(1, row),
                line: text(2, row).parse().unwrap_or(0),
                error: text(3, row),
                raw: text(4, row),
                run_id: text(5, row),
            });
        }
    }
    Ok(out)
}
