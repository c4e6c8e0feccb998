//! Read queries: partitions with their last run, runs, and the stored quality of content.
//! Quality is returned as the JSON the run stored (unpacked, `packed.rs`); `quality`
//! decodes it.

use super::folded::{self, Bind, Order};
use super::packed;
use super::{Backend, Catalog, CatalogError, DayCost, PartitionStatus, RunRow, query_err};
use super::{pg_rows, sqlite_file};
use crate::partition::{KEY_SEPARATOR, PartitionKey};
use std::sync::LazyLock;

/// The columns of a [`RunRow`], in its order.
const RUN_COLUMNS: &str = "run_id, job, table_name, table_version, partition_key, attempt, state, trigger_kind, fingerprint, lease_token, rows_written, delta_version, error, host, pid, started_at, finished_at, \
     cpu_us, bytes_read, bytes_written, requests, peak_memory_bytes";
static RUN_ONE: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"));
static RUNS_OF_PARTITION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE table_name = $1 AND table_version = $2 AND partition_key = $3 ORDER BY started_at, run_id"
    )
});
static RECENT_RUNS_OF_JOB: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE job = $1 ORDER BY started_at DESC, run_id DESC LIMIT $2"
    )
});

/// One partition with its last run, read through `conn` (also inside the claim
/// transaction).
pub(super) async fn partition_one(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    (table, version, partition): (&str, i64, &str),
) -> Result<Option<PartitionStatus>, CatalogError> {
    let filter = "WHERE p.table_name = $1 AND p.table_version = $2 AND p.partition_key = $3";
    let binds = [Bind::Text(table), Bind::Int(version), Bind::Text(partition)];
    let found = folded::read(conn, backend, (filter, Order::Key), &binds).await?;
    Ok(found.into_iter().next())
}

impl Catalog {
    /// The stored quality (JSON) of the `limit` complete partitions of a physical version
    /// before `partition` (of the same key, when `partition` has one), newest first: the
    /// baseline of checks that compare with the past. A small key is compared with its own
    /// past, never with a big key's.
    pub async fn quality_before(
        &self,
        table: &str,
        version: i64,
        partition: &PartitionKey,
        limit: u32,
    ) -> Result<Vec<String>, CatalogError> {
        // Keys are letters, digits, `_` and `-`: only `_` is special to LIKE.
        let same_key = match partition.key {
            Some(k) => format!("%{KEY_SEPARATOR}{}", k.as_str().replace('_', "\\_")),
            None => "%".to_string(),
        };
        let rows: Vec<(Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT r.quality_json, r.quality_packed FROM partitions p JOIN runs r ON r.run_id = p.content_run_id \
             WHERE p.table_name = $1 AND p.table_version = $2 AND p.partition_key < $3 AND p.content_run_id IS NOT NULL \
             AND p.partition_key LIKE $5 ESCAPE '\\' \
             ORDER BY p.partition_key DESC LIMIT $4",
        )
        .bind(table)
        .bind(version)
        .bind(partition.to_string())
        .bind(i64::from(limit))
        .bind(same_key)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read profiles"))?;
        let mut stored = Vec::with_capacity(rows.len());
        for (text, packed) in rows {
            stored.extend(packed::stored(text, packed)?);
        }
        Ok(stored)
    }

    /// Every partition of a physical version with the stored quality (JSON) of its current
    /// content, in partition order.
    pub async fn quality_history(
        &self,
        table: &str,
        version: i64,
    ) -> Result<Vec<(String, String)>, CatalogError> {
        let rows: Vec<(String, Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT p.partition_key, r.quality_json, r.quality_packed FROM partitions p JOIN runs r ON r.run_id = p.content_run_id \
             WHERE p.table_name = $1 AND p.table_version = $2 ORDER BY p.partition_key",
        )
        .bind(table)
        .bind(version)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read profiles"))?;
        let mut stored = Vec::with_capacity(rows.len());
        for (key, text, packed) in rows {
            if let Some(q) = packed::stored(text, packed)? {
                stored.push((key, q));
            }
        }
        Ok(stored)
    }

    /// The quality (JSON) a run stored: its profile and check results.
    pub async fn run_quality(&self, run_id: &str) -> Result<Option<String>, CatalogError> {
        let row: Option<(Option<String>, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT quality_json, quality_packed FROM runs WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_err("read run quality"))?;
        match row {
            Some((text, packed)) => packed::stored(text, packed),
            None => Ok(None),
        }
    }

    pub async fn run(&self, run_id: &str) -> Result<Option<RunRow>, CatalogError> {
        sqlx::query_as::<_, RunRow>(RUN_ONE.as_str())
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("read run"))
    }

    /// Partitions with their last run, for `status`; all jobs when `job` is None.
    pub async fn partition_statuses(
        &self,
        job: Option<&str>,
    ) -> Result<Vec<PartitionStatus>, CatalogError> {
        // Two statements rather than `$1 IS NULL OR job = $1`, which no index serves.
        let (filter, binds) = match job {
            Some(j) => ("WHERE p.job = $1", vec![Bind::Text(j)]),
            None => ("", vec![]),
        };
        let order = match job {
            Some(_) => Order::InJob,
            None => Order::All,
        };
        self.many_partitions((filter, order), &binds).await
    }

    /// The partitions `filter` selects, in `order`: from a SQLite catalog's file directly,
    /// from PostgreSQL as rows of its own driver, else folded (see `sqlite_file.rs` and
    /// `pg_rows.rs` for why). For reads of many rows outside any transaction.
    async fn many_partitions(
        &self,
        read: (&str, Order),
        binds: &[Bind<'_>],
    ) -> Result<Vec<PartitionStatus>, CatalogError> {
        if let Some(file) = &self.file {
            let owned = binds.iter().map(|b| match *b {
                Bind::Text(t) => sqlite_file::Owned::Text(t.to_string()),
                Bind::Int(i) => sqlite_file::Owned::Int(i),
            });
            return sqlite_file::read(file, read, owned.collect()).await;
        }
        if let Some(pool) = &self.pg_rows {
            return pg_rows::read(pool, read, binds).await;
        }
        let mut conn = self.reader().await?;
        folded::read(&mut conn, self.backend, read, binds).await
    }

    /// The jobs that have partitions in the catalog (of any version), by name: a project's
    /// partitions can be read a job at a time.
    pub async fn jobs_with_partitions(&self) -> Result<Vec<String>, CatalogError> {
        // A walk from job to job down `partitions_by_job` (a seek each), not a scan of
        // every partition as DISTINCT would make.
        sqlx::query_scalar(
            "WITH RECURSIVE j(job) AS (SELECT MIN(job) FROM partitions \
             UNION ALL SELECT (SELECT MIN(p.job) FROM partitions p WHERE p.job > j.job) FROM j WHERE j.job IS NOT NULL) \
             SELECT job FROM j WHERE job IS NOT NULL",
        )
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list the jobs with partitions"))
    }

    /// Every partition of one physical version, with its last run.
    pub async fn partitions_of(
        &self,
        table: &str,
        version: i64,
    ) -> Result<Vec<PartitionStatus>, CatalogError> {
        let filter = "WHERE p.table_name = $1 AND p.table_version = $2";
        let binds = [Bind::Text(table), Bind::Int(version)];
        self.many_partitions((filter, Order::Key), &binds).await
    }

    /// The greatest partition key of one physical version (the newest time, as times
    /// sort as text), if any partition has run: where the grid's window ends by default.
    pub async fn newest_partition(
        &self,
        table: &str,
        version: i64,
    ) -> Result<Option<String>, CatalogError> {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT MAX(partition_key) FROM partitions WHERE table_name = $1 AND table_version = $2",
        )
        .bind(table)
        .bind(version)
        .fetch_one(&self.pool)
        .await
        .map_err(query_err("read the newest partition"))
    }

    pub async fn partition_status(
        &self,
        table: &str,
        version: i64,
        partition: &str,
    ) -> Result<Option<PartitionStatus>, CatalogError> {
        let mut conn = self.reader().await?;
        partition_one(&mut conn, self.backend, (table, version, partition)).await
    }

    /// What one run read (`runs.reads_json`).
    pub async fn run_reads(&self, run_id: &str) -> Result<Option<String>, CatalogError> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT reads_json FROM runs WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_err("read what a run read"))?;
        Ok(row.and_then(|(j,)| j))
    }

    /// The job's newest `limit` runs, newest first (any version): the job page's chart.
    pub async fn recent_runs_of_job(
        &self,
        job: &str,
        limit: i64,
    ) -> Result<Vec<RunRow>, CatalogError> {
        sqlx::query_as::<_, RunRow>(RECENT_RUNS_OF_JOB.as_str())
            .bind(job)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list a job's runs"))
    }

    pub async fn runs_of_partition(
        &self,
        table: &str,
        version: i64,
        partition: &str,
    ) -> Result<Vec<RunRow>, CatalogError> {
        sqlx::query_as::<_, RunRow>(RUNS_OF_PARTITION.as_str())
            .bind(table)
            .bind(version)
            .bind(partition)
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list runs"))
    }

    /// What the job's runs that started at or after `since_ms` used, summed per day (UTC)
    /// they started on, oldest first: the job page's chart. Read down `runs_by_job`.
    pub async fn cost_per_day(
        &self,
        job: &str,
        since_ms: i64,
    ) -> Result<Vec<DayCost>, CatalogError> {
        sqlx::query_as::<_, DayCost>(
            "SELECT started_at / 86400000 AS day, COUNT(*) AS runs, \
                    CAST(SUM(cpu_us) AS BIGINT) AS cpu_us, CAST(SUM(bytes_read) AS BIGINT) AS bytes_read, \
                    CAST(SUM(bytes_written) AS BIGINT) AS bytes_written, CAST(SUM(requests) AS BIGINT) AS requests, \
                    CAST(MAX(peak_memory_bytes) AS BIGINT) AS peak_memory_bytes \
             FROM runs WHERE job = $1 AND started_at >= $2 AND cpu_us IS NOT NULL \
             GROUP BY started_at / 86400000 ORDER BY day",
        )
        .bind(job)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("sum a job's costs per day"))
    }
}
