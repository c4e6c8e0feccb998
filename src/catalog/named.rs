//! Reads of some partitions of a physical version, named: what a window of the grid, or
//! the upstream partitions a job's runs read, need of a table of any length. Keys go in
//! `IN` lists (by the primary key's index), never in a range: keys sort as times in bytes,
//! but a PostgreSQL database's collation may order them otherwise.

use super::folded::{self, Bind, Order};
use super::sqlite_file;
use super::{Catalog, CatalogError, PartitionState, PartitionStatus, placeholders, query_err};
use std::collections::HashMap;

/// Keys per statement.
const KEYS_PER_STATEMENT: usize = 500;

/// Up to this many partitions of a version are read by name; past it, the whole version's
/// at once is quicker.
pub const NAMED_AT_MOST: usize = 2_000;

impl Catalog {
    /// The partitions among `keys` of one physical version that have a row, with their
    /// last run.
    pub async fn partitions_named(
        &self,
        table: &str,
        version: i64,
        keys: &[String],
    ) -> Result<Vec<PartitionStatus>, CatalogError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(keys.len());
        // One connection for every chunk: each statement is its own read all the same.
        let mut conn = self.reader().await?;
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let filter = format!(
                "WHERE p.table_name = $1 AND p.table_version = $2 AND p.partition_key IN ({})",
                placeholders(3, chunk.len())
            );
            let mut binds = vec![Bind::Text(table), Bind::Int(version)];
            binds.extend(chunk.iter().map(|k| Bind::Text(k)));
            let read = (filter.as_str(), Order::Key);
            out.extend(folded::read(&mut conn, self.backend, read, &binds).await?);
        }
        Ok(out)
    }

    /// The state of each of `keys` of one physical version that has a row (the row alone,
    /// without its runs): what the daemon's waits ask of upstream partitions at each pass.
    pub async fn states_named(
        &self,
        table: &str,
        version: i64,
        keys: &[String],
    ) -> Result<HashMap<String, PartitionState>, CatalogError> {
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let sql = format!(
                "SELECT partition_key, state FROM partitions WHERE table_name = $1 AND table_version = $2 AND partition_key IN ({})",
                placeholders(3, chunk.len())
            );
            // Only placeholders are written into the text; the keys are bound.
            let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql))
                .bind(table)
                .bind(version);
            for k in chunk {
                q = q.bind(k);
            }
            for (key, state) in q
                .fetch_all(&self.pool)
                .await
                .map_err(query_err("read partition states"))?
            {
                if let Ok(state) = state.parse() {
                    out.insert(key, state);
                }
            }
        }
        Ok(out)
    }

    /// Whether any partition of one physical version is complete.
    pub async fn any_complete(&self, table: &str, version: i64) -> Result<bool, CatalogError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM partitions WHERE table_name = $1 AND table_version = $2 AND state = $3 LIMIT 1",
        )
        .bind(table)
        .bind(version)
        .bind(PartitionState::Complete.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("read partition states"))?;
        Ok(found.is_some())
    }

    /// What the content of each of `keys` read (its run's `reads_json`, as copied), by partition; the
    /// whole version's when `keys` is `None`.
    pub async fn content_reads_named(
        &self,
        table: &str,
        version: i64,
        keys: Option<&[String]>,
    ) -> Result<HashMap<String, Option<String>>, CatalogError> {
        self.of_contents(
            table,
            version,
            keys,
            "p.content_reads_json",
            "list what partitions read",
        )
        .await
    }

    /// The data version of each of `keys`' content (of the whole version's when `keys` is
    /// `None`), by partition; a partition without content is left out.
    pub async fn content_versions(
        &self,
        table: &str,
        version: i64,
        keys: Option<&[String]>,
    ) -> Result<HashMap<String, String>, CatalogError> {
        let all = self
            .of_contents(
                table,
                version,
                keys,
                "p.content_version",
                "read the data versions of partitions",
            )
            .await?;
        Ok(all
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect())
    }

    /// One column of the content runs of some (or all) partitions of a version.
    async fn of_contents(
        &self,
        table: &str,
        version: i64,
        keys: Option<&[String]>,
        column: &'static str,
        op: &'static str,
    ) -> Result<HashMap<String, Option<String>>, CatalogError> {
        // The content run's columns are the partition row's copies (migration 0013).
        let base = format!(
            "SELECT p.partition_key, {column} FROM partitions p \
             WHERE p.table_name = $1 AND p.table_version = $2 AND p.content_run_id IS NOT NULL"
        );
        let Some(keys) = keys else {
            // A whole version: from a SQLite catalog's file directly (`sqlite_file`).
            if let Some(file) = &self.file {
                let binds = vec![
                    sqlite_file::Owned::Text(table.to_string()),
                    sqlite_file::Owned::Int(version),
                ];
                let rows = sqlite_file::pairs(file, (&base, op), binds).await?;
                return Ok(rows.into_iter().collect());
            }
            let rows: Vec<(String, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(base))
                .bind(table)
                .bind(version)
                .fetch_all(&self.pool)
                .await
                .map_err(query_err(op))?;
            return Ok(rows.into_iter().collect());
        };
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let sql = format!(
                "{base} AND p.partition_key IN ({})",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String, Option<String>)>(sqlx::AssertSqlSafe(sql))
                .bind(table)
                .bind(version);
            for k in chunk {
                q = q.bind(k);
            }
            out.extend(q.fetch_all(&self.pool).await.map_err(query_err(op))?);
        }
        Ok(out)
    }
}
