//! Partitions read as JSON the database folds, a thousand rows to a text: every read of
//! [`PartitionStatus`] rows goes through here.
//!
//! Why: the driver's cost is per value, not per byte. Each value of each row is copied out
//! of SQLite, handed across a channel from its worker thread, converted to the `Any`
//! driver's value and decoded again: about 8 µs per partition row of 22 columns, where
//! SQLite itself takes under 1 µs. At a million partitions that was 9 of the whole
//! `status`'s 16 s. Folded, the database writes each row as a JSON array (SQLite's
//! `json_array`, PostgreSQL's `json_build_array`), a thousand to one text, and one parse
//! here reads them: about 2 µs per row in all.

use super::rows::{LastRunState, StoredCost};
use super::{Backend, CatalogError, PartitionState, PartitionStatus, query_err};

/// The partition row's columns, in [`Folded`]'s order.
const COLUMNS: &str = "p.job, p.table_name, p.table_version, p.partition_key, p.state, \
    p.content_rows, p.content_run_id, p.content_fingerprint, p.content_delta_version, \
    p.last_run_id, p.error, p.last_started_at, p.last_finished_at, p.last_attempt, \
    p.content_version, p.last_run_state, p.last_cpu_us, p.last_bytes_read, \
    p.last_bytes_written, p.last_requests, p.last_peak_memory_bytes, p.content_reads_json";

/// Rows per text: a text of about 250 KB, a statement's memory bounded whatever it reads.
const ROWS_PER_TEXT: i64 = 1_000;

/// A value bound to a statement's placeholder.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// The partitions `filter` selects (`WHERE ...` over `partitions p`, its placeholders
/// numbered from `$1` and given by `binds`), ordered by `order`.
pub(super) async fn read<'e, E>(
    executor: E,
    backend: Backend,
    (filter, order): (&str, &str),
    binds: &[Bind<'_>],
) -> Result<Vec<PartitionStatus>, CatalogError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (fold, array) = match backend {
        Backend::Sqlite => ("json_group_array", "json_array"),
        Backend::Postgres => ("json_agg", "json_build_array"),
    };
    // The texts come in order, and so do the rows in each (an aggregate's ORDER BY).
    let sql = format!(
        "SELECT CAST({fold}({array}({COLUMNS}) ORDER BY {order}) AS TEXT) \
         FROM (SELECT p.*, (ROW_NUMBER() OVER (ORDER BY {order}) - 1) / {ROWS_PER_TEXT} AS fold \
               FROM partitions p {filter}) p \
         GROUP BY p.fold ORDER BY p.fold"
    );
    // Only the caller's fixed text and placeholders are written into it; values are bound.
    let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = match *b {
            Bind::Text(t) => q.bind(t.to_string()),
            Bind::Int(i) => q.bind(i),
        };
    }
    let texts = q
        .fetch_all(executor)
        .await
        .map_err(query_err("list partitions"))?;
    let mut out = Vec::new();
    for text in texts {
        let rows: Vec<Folded> = serde_json::from_str(&text).map_err(|e| {
            CatalogError::Corrupt(format!("partition rows read as JSON do not parse: {e}"))
        })?;
        out.reserve(rows.len());
        for row in rows {
            out.push(row.into_status()?);
        }
    }
    Ok(out)
}

/// One partition row as the database wrote it: [`COLUMNS`], in order.
#[derive(serde::Deserialize)]
struct Folded(
    String,
    String,
    i64,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

impl Folded {
    fn into_status(self) -> Result<PartitionStatus, CatalogError> {
        let corrupt = |what: &str, text: &str| {
            CatalogError::Corrupt(format!(
                "partition {} of {} has {what} `{text}`",
                self.3, self.1
            ))
        };
        let state: PartitionState = self.4.parse().map_err(|_| corrupt("state", &self.4))?;
        let last_run_state = LastRunState::try_from(self.15.clone())
            .map_err(|_| corrupt("last run state", self.15.as_deref().unwrap_or_default()))?;
        Ok(PartitionStatus {
            job: self.0,
            table_name: self.1,
            table_version: self.2,
            partition_key: self.3,
            state,
            content_rows: self.5,
            content_run_id: self.6,
            content_fingerprint: self.7,
            content_delta_version: self.8,
            last_run_id: self.9,
            error: self.10,
            started_at: self.11,
            finished_at: self.12,
            attempt: self.13,
            content_version: self.14,
            last_run_state,
            last_run_cost: StoredCost {
                cpu_us: self.16,
                bytes_read: self.17,
                bytes_written: self.18,
                requests: self.19,
                peak_memory_bytes: self.20,
            },
            content_reads_json: self.21,
        })
    }
}
