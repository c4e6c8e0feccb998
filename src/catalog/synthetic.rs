//! A history written in bulk, for the scale benchmark's catalog generator
//! (`examples/gen_catalog.rs`): runs and partitions copied from one real run of each job,
//! many rows to a statement, so that ten million runs take minutes rather than the days the
//! run path (a claim and a finish per run) would. Nothing else writes through here.

use super::rows::RunRow;
use super::{Catalog, CatalogError, PartitionState, query_err};
use sqlx::Row as _;
use std::collections::HashMap;

/// A run with everything the catalog holds of it: the row, and what it found and read.
#[derive(Debug, Clone)]
pub struct HistoryRun {
    pub row: RunRow,
    pub quality_json: Option<String>,
    pub reads_json: Option<String>,
    pub data_version: Option<String>,
}

/// A partition's row, with its lease's token (the lease row outlives the lease).
#[derive(Debug, Clone)]
pub struct HistoryPartition {
    pub table_name: String,
    pub table_version: i64,
    pub partition_key: String,
    pub job: String,
    pub state: PartitionState,
    pub last_run_id: String,
    pub content_run_id: Option<String>,
    pub content_fingerprint: Option<String>,
    pub content_rows: Option<i64>,
    pub content_delta_version: Option<i64>,
    pub error: Option<String>,
    pub updated_at: i64,
    pub lease_token: i64,
}

/// Rows per statement. SQLite finds a numbered parameter by a walk over the statement's
/// parameters, so a statement's cost grows with the square of its size: a few hundred
/// values to a statement, prepared once and reused, is fastest.
const ROWS_PER_STATEMENT: usize = 32;

/// `($1, $2, ...), (...)`: `rows` groups of `width` placeholders.
fn values(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Catalog {
    /// One run whole, as a template for a synthetic history.
    pub async fn history_run(&self, run_id: &str) -> Result<Option<HistoryRun>, CatalogError> {
        let Some(row) = self.run(run_id).await? else {
            return Ok(None);
        };
        let extra = sqlx::query(
            "SELECT quality_json, quality_packed, reads_json, data_version FROM runs WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_one(&self.pool)
        .await
        .map_err(query_err("read a run"))?;
        let get = |i: usize| -> Result<Option<String>, CatalogError> {
            extra.try_get(i).map_err(query_err("read a run"))
        };
        let packed: Option<Vec<u8>> = extra.try_get(1).map_err(query_err("read a run"))?;
        Ok(Some(HistoryRun {
            quality_json: super::packed::stored(get(0)?, packed)?,
            reads_json: get(2)?,
            data_version: get(3)?,
            row,
        }))
    }

    /// Writes `runs` and `partitions` (new keys: none may exist yet), with a lease row per
    /// partition, in one transaction.
    pub async fn insert_history(
        &self,
        runs: &[HistoryRun],
        partitions: &[HistoryPartition],
    ) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        for chunk in runs.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO runs (run_id, job, table_name, table_version, partition_key, attempt, \
                 state, trigger_kind, fingerprint, lease_token, rows_written, delta_version, error, \
                 host, pid, started_at, finished_at, quality_packed, reads_json, data_version, \
                 cpu_us, bytes_read, bytes_written, requests, peak_memory_bytes) VALUES {}",
                values(chunk.len(), 25)
            );
            // Only placeholders are written into the text; the values are bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for h in chunk {
                let quality = h
                    .quality_json
                    .as_deref()
                    .map(super::packed::pack)
                    .transpose()?;
                let r = &h.row;
                q = q
                    .bind(r.run_id.clone())
                    .bind(r.job.clone())
                    .bind(r.table_name.clone())
                    .bind(r.table_version)
                    .bind(r.partition_key.clone())
                    .bind(r.attempt)
                    .bind(r.state.as_str())
                    .bind(r.trigger_kind.as_str())
                    .bind(r.fingerprint.clone())
                    .bind(r.lease_token)
                    .bind(r.rows_written)
                    .bind(r.delta_version)
                    .bind(r.error.clone())
                    .bind(r.host.clone())
                    .bind(r.pid)
                    .bind(r.started_at)
                    .bind(r.finished_at)
                    .bind(quality)
                    .bind(h.reads_json.clone())
                    .bind(h.data_version.clone())
                    .bind(r.cost.cpu_us)
                    .bind(r.cost.bytes_read)
                    .bind(r.cost.bytes_written)
                    .bind(r.cost.requests)
                    .bind(r.cost.peak_memory_bytes);
            }
            q.execute(&mut *tx)
                .await
                .map_err(query_err("write a synthetic history's runs"))?;
        }
        let by_id: HashMap<&str, &HistoryRun> =
            runs.iter().map(|h| (h.row.run_id.as_str(), h)).collect();
        for chunk in partitions.chunks(ROWS_PER_STATEMENT) {
            insert_partitions_in(&mut tx, chunk, &by_id).await?;
        }
        // Written without their counts: what reads these tables reads them whole again.
        let tables = partitions.iter().map(|p| p.table_name.as_str());
        super::changes::bump_each_in(&mut tx, tables, super::changes::Followed::Reset).await?;
        tx.commit()
            .await
            .map_err(query_err("commit a synthetic history"))
    }
}

/// One statement's worth of synthetic partitions, with a lease row each.
/// The partitions' copies of their last and content runs are taken from `runs`, which
/// must hold them (a history is written with its partitions' runs).
async fn insert_partitions_in(
    tx: &mut sqlx::AnyConnection,
    chunk: &[HistoryPartition],
    runs: &HashMap<&str, &HistoryRun>,
) -> Result<(), CatalogError> {
    let sql = format!(
        "INSERT INTO partitions (table_name, table_version, partition_key, job, state, \
             last_run_id, content_run_id, content_fingerprint, content_rows, \
             content_delta_version, error, updated_at, last_started_at, last_finished_at, \
             last_attempt, last_run_state, last_cpu_us, last_bytes_read, last_bytes_written, \
             last_requests, last_peak_memory_bytes, content_version, content_reads_json) VALUES {}",
        values(chunk.len(), 23)
    );
    let run_of = |id: &str| {
        runs.get(id).copied().ok_or_else(|| {
            CatalogError::Corrupt(format!(
                "a synthetic partition names run {id}, which its history does not hold"
            ))
        })
    };
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in chunk {
        let last = &run_of(&p.last_run_id)?.row;
        let content = p.content_run_id.as_deref().map(run_of).transpose()?;
        q = q
            .bind(p.table_name.clone())
            .bind(p.table_version)
            .bind(p.partition_key.clone())
            .bind(p.job.clone())
            .bind(p.state.as_str())
            .bind(p.last_run_id.clone())
            .bind(p.content_run_id.clone())
            .bind(p.content_fingerprint.clone())
            .bind(p.content_rows)
            .bind(p.content_delta_version)
            .bind(p.error.clone())
            .bind(p.updated_at)
            .bind(last.started_at)
            .bind(last.finished_at)
            .bind(last.attempt)
            .bind(last.state.as_str())
            .bind(last.cost.cpu_us)
            .bind(last.cost.bytes_read)
            .bind(last.cost.bytes_written)
            .bind(last.cost.requests)
            .bind(last.cost.peak_memory_bytes)
            .bind(content.and_then(|c| c.data_version.clone()))
            .bind(content.and_then(|c| c.reads_json.clone()));
    }
    q.execute(&mut *tx)
        .await
        .map_err(query_err("write a synthetic history's partitions"))?;
    let sql = format!(
        "INSERT INTO leases (table_name, table_version, partition_key, token, holder, \
             run_id, expires_at) VALUES {}",
        values(chunk.len(), 7)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in chunk {
        q = q
            .bind(p.table_name.clone())
            .bind(p.table_version)
            .bind(p.partition_key.clone())
            .bind(p.lease_token)
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(p.updated_at);
    }
    q.execute(&mut *tx)
        .await
        .map_err(query_err("write a synthetic history's leases"))?;
    Ok(())
}
