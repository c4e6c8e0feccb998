//! A run's claim and finish as statements inside the caller's transaction: what `leases`
//! runs alone and `write_group` runs in a group with others.

use super::changes::STAMP;
use super::reads::partition_one;
use super::{
    CatalogError, Claim, DoneIf, Lease, PartitionState, RunEnd, RunStart, RunState, query_err,
};
use crate::redact::redact_text;
use sqlx::Row as _;

/// Records a run's start and its partition as running. The caller's transaction has
/// counted a change of the table first (`changes::bump_in`): the partition takes its count.
pub(super) async fn insert_run_start(
    conn: &mut sqlx::AnyConnection,
    r: &RunStart,
) -> Result<(), CatalogError> {
    sqlx::query(
        "INSERT INTO runs (run_id, job, table_name, table_version, partition_key, attempt, state, trigger_kind, fingerprint, lease_token, host, pid, started_at, reads_json, data_version) \
         VALUES ($1, $2, $3, $4, $5, $6, $13, $7, $8, $9, $10, $11, $12, $14, $15)",
    )
    .bind(&r.run_id)
    .bind(&r.job)
    .bind(&r.table)
    .bind(r.version)
    .bind(&r.partition)
    .bind(r.attempt)
    .bind(r.trigger.as_str())
    .bind(&r.fingerprint)
    .bind(r.lease_token)
    .bind(&r.host)
    .bind(r.pid)
    .bind(r.started_at)
    .bind(RunState::Running.as_str())
    .bind(r.reads_json.as_deref())
    .bind(r.data_version.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(query_err("record run start"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO partitions (table_name, table_version, partition_key, job, state, last_run_id, error, updated_at, change_seq, \
           last_started_at, last_attempt, last_run_state) \
         VALUES ($1, $2, $3, $4, $7, $5, NULL, $6, (SELECT seq FROM table_changes WHERE table_name = $1), $6, $8, $9) \
         ON CONFLICT (table_name, table_version, partition_key) DO UPDATE \
           SET job = excluded.job, state = excluded.state, last_run_id = excluded.last_run_id, error = NULL, updated_at = excluded.updated_at, \
           change_seq = excluded.change_seq, last_started_at = excluded.last_started_at, last_finished_at = NULL, \
           last_attempt = excluded.last_attempt, last_run_state = excluded.last_run_state, {NO_COST}",
    )))
    .bind(&r.table)
    .bind(r.version)
    .bind(&r.partition)
    .bind(&r.job)
    .bind(&r.run_id)
    .bind(r.started_at)
    .bind(PartitionState::Running.as_str())
    .bind(r.attempt)
    .bind(RunState::Running.as_str())
    .execute(&mut *conn)
    .await
    .map_err(query_err("record partition running"))?;
    Ok(())
}

pub(super) async fn release_lease_in(
    conn: &mut sqlx::AnyConnection,
    lease: &Lease,
) -> Result<(), CatalogError> {
    sqlx::query(
        "UPDATE leases SET holder = NULL, run_id = NULL, expires_at = 0 WHERE table_name = $1 AND table_version = $2 AND partition_key = $3 AND token = $4 AND holder = $5",
    )
    .bind(&lease.table)
    .bind(lease.version)
    .bind(&lease.partition)
    .bind(lease.token)
    .bind(&lease.holder)
    .execute(&mut *conn)
    .await
    .map_err(query_err("release lease"))?;
    Ok(())
}

/// [`Catalog::claim`] inside the caller's transaction, by `holder` for the scope `env`
/// (production: `None`). Nothing is written when the lease is held by another worker; a
/// version the scope does not own is refused (`CatalogError::NotOwned`).
pub(super) async fn claim_in(
    tx: &mut sqlx::AnyConnection,
    start: &mut RunStart,
    (holder, env): (&str, Option<&str>),
    (now_ms, ttl_ms): (i64, i64),
    done_if: Option<&DoneIf>,
) -> Result<Claim, CatalogError> {
    super::env_versions::check_owner(tx, &start.table, start.version, env).await?;
    let token: Option<i64> = sqlx::query_scalar(
        "INSERT INTO leases (table_name, table_version, partition_key, token, holder, run_id, expires_at) \
         VALUES ($1, $2, $3, 1, $4, $5, $6) \
         ON CONFLICT (table_name, table_version, partition_key) DO UPDATE \
           SET token = leases.token + 1, holder = excluded.holder, run_id = excluded.run_id, expires_at = excluded.expires_at \
           WHERE leases.holder IS NULL OR leases.expires_at <= $7 \
         RETURNING token",
    )
    .bind(&start.table)
    .bind(start.version)
    .bind(&start.partition)
    .bind(holder)
    .bind(&start.run_id)
    .bind(now_ms + ttl_ms)
    .bind(now_ms)
    .fetch_optional(&mut *tx)
    .await
    .map_err(query_err("acquire lease"))?;
    let Some(token) = token else {
        let row = sqlx::query(
            "SELECT holder, run_id, expires_at FROM leases WHERE table_name = $1 AND table_version = $2 AND partition_key = $3",
        )
        .bind(&start.table)
        .bind(start.version)
        .bind(&start.partition)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_err("read lease"))?;
        return Ok(Claim::Held {
            holder: row
                .as_ref()
                .and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
                .unwrap_or_default(),
            run_id: row
                .as_ref()
                .and_then(|r| r.try_get::<Option<String>, _>(1).ok().flatten()),
        });
    };
    start.lease_token = token;
    let lease = Lease {
        table: start.table.clone(),
        version: start.version,
        partition: start.partition.clone(),
        token,
        holder: holder.to_string(),
        run_id: start.run_id.clone(),
    };
    let backend = super::Backend::of(tx);
    let key = (
        start.table.as_str(),
        start.version,
        start.partition.as_str(),
    );
    let status = partition_one(&mut *tx, backend, key).await?;
    if let Some(p) = status {
        let left_running = p.state == PartitionState::Running && p.last_run_id != start.run_id;
        let done_since = done_if.is_some_and(|d| d.holds(&p));
        if left_running || done_since {
            return Ok(Claim::Look {
                lease,
                status: Box::new(p),
            });
        }
    }
    insert_run_start(&mut *tx, start).await?;
    Ok(Claim::Started(lease))
}

/// [`Catalog::finish_run`] inside the caller's transaction, which has counted a change of
/// the table first (`changes::bump_in`).
pub(super) async fn finish_in(
    tx: &mut sqlx::AnyConnection,
    start: &RunStart,
    end: &RunEnd,
    now_ms: i64,
    release: Option<&Lease>,
    measured: &super::RunMeasures,
    events: &super::FinishEvents,
) -> Result<(), CatalogError> {
    if let Some(lease) = release {
        // In the same transaction: one catalog write less per partition.
        release_lease_in(&mut *tx, lease).await?;
    }
    let (state, rows, dv, error) = match end {
        RunEnd::Succeeded {
            rows,
            delta_version,
        } => (RunState::Succeeded, Some(*rows), Some(*delta_version), None),
        RunEnd::Failed { error } => (RunState::Failed, None, None, Some(redact_text(error))),
    };
    let cost = measured.cost;
    let quality = measured
        .quality_json
        .as_deref()
        .map(super::packed::pack)
        .transpose()?;
    sqlx::query(
        "UPDATE runs SET state = $1, rows_written = $2, delta_version = $3, error = $4, finished_at = $5, quality_packed = $6, \
         cpu_us = $8, bytes_read = $9, bytes_written = $10, requests = $11, peak_memory_bytes = $12, \
         reads_json = COALESCE($13, reads_json), data_version = COALESCE($14, data_version) WHERE run_id = $7",
    )
    .bind(state.as_str())
    .bind(rows)
    .bind(dv)
    .bind(error.clone())
    .bind(now_ms)
    .bind(quality)
    .bind(&start.run_id)
    .bind(cost.map(|c| as_i64(c.cpu_us)))
    .bind(cost.map(|c| as_i64(c.bytes_read)))
    .bind(cost.map(|c| as_i64(c.bytes_written)))
    .bind(cost.map(|c| as_i64(c.requests)))
    .bind(cost.map(|c| as_i64(c.peak_memory_bytes)))
    // A command input's output is known only at the end (see `Reads::commands`); a run
    // recorded from the Delta log by another process (`reconcile_landed_run`) knows none,
    // and keeps what its claim recorded.
    .bind(start.reads_json.as_deref())
    .bind(start.data_version.as_deref())
    .execute(&mut *tx)
    .await
    .map_err(query_err("record run end"))?;
    match end {
        RunEnd::Succeeded {
            rows,
            delta_version,
        } => {
            let end = last_run_end("$1");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE partitions SET state = $9, content_run_id = $1, content_fingerprint = $2, content_rows = $3, content_delta_version = $4, error = NULL, updated_at = $5, \
                 change_seq = {STAMP}, {end}, \
                 (content_version, content_reads_json) = (SELECT data_version, reads_json FROM runs WHERE run_id = $1) \
                 WHERE table_name = $6 AND table_version = $7 AND partition_key = $8 AND last_run_id = $1"
            )))
            .bind(&start.run_id)
            .bind(&start.fingerprint)
            .bind(*rows)
            .bind(*delta_version)
            .bind(now_ms)
            .bind(&start.table)
            .bind(start.version)
            .bind(&start.partition)
            .bind(PartitionState::Complete.as_str())
            .execute(&mut *tx)
            .await
            .map_err(query_err("record partition complete"))?;
        }
        RunEnd::Failed { .. } => {
            let end = last_run_end("$6");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE partitions SET state = $7, error = $1, updated_at = $2, change_seq = {STAMP}, {end} \
                 WHERE table_name = $3 AND table_version = $4 AND partition_key = $5 AND last_run_id = $6"
            )))
            .bind(error)
            .bind(now_ms)
            .bind(&start.table)
            .bind(start.version)
            .bind(&start.partition)
            .bind(&start.run_id)
            .bind(PartitionState::Failed.as_str())
            .execute(&mut *tx)
            .await
            .map_err(query_err("record partition failed"))?;
        }
    }
    super::outbox::record_in(&mut *tx, start, end, now_ms, events).await?;
    Ok(())
}

/// A partition row's copy of its last run as it starts: no end, no cost yet.
const NO_COST: &str = "last_cpu_us = NULL, last_bytes_read = NULL, last_bytes_written = NULL, \
    last_requests = NULL, last_peak_memory_bytes = NULL";

/// The SET of a partition row's copy of its last run's end, read from the run's row that
/// the same transaction has just written (`run` is the placeholder of its id).
pub(super) fn last_run_end(run: &str) -> String {
    format!(
        "(last_finished_at, last_run_state, last_cpu_us, last_bytes_read, last_bytes_written, \
          last_requests, last_peak_memory_bytes) = \
         (SELECT finished_at, state, cpu_us, bytes_read, bytes_written, requests, peak_memory_bytes \
          FROM runs WHERE run_id = {run})"
    )
}

/// A count as the catalog's BIGINT holds it (a count past 2^63 is held at the top).
fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
