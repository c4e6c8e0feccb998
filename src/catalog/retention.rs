//! Retention (`[catalog] retention`): beyond an age the catalog keeps only what it needs to
//! be correct. A run is kept while a partition points at it (the run whose content is there,
//! with its fingerprint, reads and profile; the partition's last run, so an unresolved
//! failure keeps its error); every other run that finished before the cut-off goes, with
//! its profile and check results (they are columns of its row). Events go once no delivery
//! of theirs waits, and messages once settled. Aliases, their history, the migrations
//! ledger, leases (their tokens only grow) and the partitions' rows are never pruned.
//!
//! Work is done in batches, each its own short transaction, walking old runs in the order
//! they finished from a cursor the caller keeps, so that a prune never holds the write lock
//! for long and a daemon can spread one over its polls.

use super::outbox::DeliveryState;
use super::{Catalog, CatalogError, placeholders, query_err};
use std::time::Instant;

/// Where a walk over old runs has got to: the last run looked at (finished at, run id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCursor {
    pub finished_at: i64,
    pub run_id: String,
}

/// What one batch did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Runs removed (or removable).
    pub removed: u64,
    /// Old runs kept because a partition points at them.
    pub kept: u64,
    /// Where the next batch starts; none: the walk is over.
    pub next: Option<RunCursor>,
    /// How long its write transaction held the lock, in milliseconds.
    pub held_ms: f64,
}

/// Runs that finished before `$1`, after the cursor (`$2`, `$3`), in the order they
/// finished, each with whether a partition points at it.
static OLD_RUNS: &str = "SELECT r.run_id, r.finished_at, \
     CAST(CASE WHEN EXISTS (SELECT 1 FROM partitions p WHERE p.content_run_id = r.run_id) \
       OR EXISTS (SELECT 1 FROM partitions p WHERE p.last_run_id = r.run_id) THEN 1 ELSE 0 END AS BIGINT) AS needed \
     FROM runs r WHERE r.finished_at IS NOT NULL AND r.finished_at < $1 \
     AND (r.finished_at > $2 OR (r.finished_at = $2 AND r.run_id > $3)) \
     ORDER BY r.finished_at, r.run_id LIMIT $4";

impl Catalog {
    /// Looks at up to `size` runs that finished before `cutoff_ms`, from `after`, and
    /// removes those no partition points at (unless `dry_run`).
    pub async fn prune_runs(
        &self,
        cutoff_ms: i64,
        after: &RunCursor,
        size: i64,
        dry_run: bool,
    ) -> Result<Batch, CatalogError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(OLD_RUNS)
            .bind(cutoff_ms)
            .bind(after.finished_at)
            .bind(&after.run_id)
            .bind(size)
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("read old runs"))?;
        let next = match rows.last() {
            Some((id, at, _)) if rows.len() as i64 == size => Some(RunCursor {
                finished_at: *at,
                run_id: id.clone(),
            }),
            _ => None,
        };
        let gone: Vec<&String> = rows
            .iter()
            .filter(|(_, _, needed)| *needed == 0)
            .map(|(id, _, _)| id)
            .collect();
        let mut batch = Batch {
            removed: gone.len() as u64,
            kept: (rows.len() - gone.len()) as u64,
            next,
            held_ms: 0.0,
        };
        if dry_run || gone.is_empty() {
            return Ok(batch);
        }
        // Checked again under the lock: a partition that came to point at one meanwhile
        // keeps it.
        let sql = format!(
            "DELETE FROM runs WHERE run_id IN ({}) \
             AND NOT EXISTS (SELECT 1 FROM partitions p WHERE p.content_run_id = runs.run_id) \
             AND NOT EXISTS (SELECT 1 FROM partitions p WHERE p.last_run_id = runs.run_id)",
            placeholders(1, gone.len())
        );
        let started = Instant::now();
        let mut tx = self.begin_write().await?;
        // Only placeholders are written into the text; the ids are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &gone {
            q = q.bind(*id);
        }
        batch.removed = q
            .execute(&mut *tx)
            .await
            .map_err(query_err("remove old runs"))?
            .rows_affected();
        tx.commit().await.map_err(query_err("commit a prune"))?;
        batch.held_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(batch)
    }

    /// Removes up to `size` events recorded before `cutoff_ms` that no delivery waits to
    /// send, with their deliveries, and up to `size` settled messages formed before it.
    /// Returns how many events and messages went (or would go), and how long the lock was
    /// held.
    pub async fn prune_notifications(
        &self,
        cutoff_ms: i64,
        size: i64,
        dry_run: bool,
    ) -> Result<(u64, u64, f64), CatalogError> {
        let pending = DeliveryState::Pending.as_str();
        if dry_run {
            return self.count_old_notifications(cutoff_ms).await;
        }
        let events: Vec<String> = sqlx::query_scalar(
            "SELECT e.id FROM events e WHERE e.created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = $2) LIMIT $3",
        )
        .bind(cutoff_ms)
        .bind(pending)
        .bind(size)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read old events"))?;
        let messages: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE created_at < $1 AND state != $2 LIMIT $3",
        )
        .bind(cutoff_ms)
        .bind(pending)
        .bind(size)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read old messages"))?;
        let counts = (events.len() as u64, messages.len() as u64);
        if events.is_empty() && messages.is_empty() {
            return Ok((counts.0, counts.1, 0.0));
        }
        let started = Instant::now();
        let mut tx = self.begin_write().await?;
        for (sql, ids) in [
            ("DELETE FROM deliveries WHERE event_id IN", &events),
            ("DELETE FROM events WHERE id IN", &events),
            ("DELETE FROM messages WHERE id IN", &messages),
        ] {
            if ids.is_empty() {
                continue;
            }
            let sql = format!("{sql} ({})", placeholders(1, ids.len()));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in ids {
                q = q.bind(id);
            }
            q.execute(&mut *tx)
                .await
                .map_err(query_err("remove old notifications"))?;
        }
        tx.commit().await.map_err(query_err("commit a prune"))?;
        Ok((counts.0, counts.1, started.elapsed().as_secs_f64() * 1000.0))
    }

    /// What [`Catalog::prune_notifications`] would remove in all: events, messages.
    async fn count_old_notifications(
        &self,
        cutoff_ms: i64,
    ) -> Result<(u64, u64, f64), CatalogError> {
        let pending = DeliveryState::Pending.as_str();
        let events: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM events e WHERE e.created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = $2)",
        )
        .bind(cutoff_ms)
        .bind(pending)
        .fetch_one(&self.pool)
        .await
        .map_err(query_err("count old events"))?;
        let messages: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE created_at < $1 AND state != $2",
        )
        .bind(cutoff_ms)
        .bind(pending)
        .fetch_one(&self.pool)
        .await
        .map_err(query_err("count old messages"))?;
        Ok((events as u64, messages as u64, 0.0))
    }
}
