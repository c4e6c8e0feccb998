//! From deliveries to messages: what a target is actually sent. Each target hears of a job
//! at most once per window (`at_most_every`): what waits when the job's window is open goes
//! at once (alone, or together if several came at once); what comes while it is shut, or while the job's last message to the target is
//! still being retried, waits, and goes as one digest when it opens (`form_messages`). The
//! window's row (`notify_windows`) is a compare-and-set, so of several daemons exactly one
//! opens it. A message is claimed for a while by one daemon (`claim_messages`), which then
//! records how it went (`settle_message`); a claim that lapses (the daemon died
//! mid-delivery) is claimed again by another and sent with the same id.

use super::outbox::{DeliveryState, EventRow};
use super::{Catalog, CatalogError, query_err};

/// The most events one digest carries; more wait for the next window.
const MOST_PER_DIGEST: i64 = 1_000;

/// A target's window, from its `at_most_every`.
#[derive(Debug, Clone)]
pub struct Window {
    pub target: String,
    /// Zero: every event is a message of its own.
    pub every_ms: i64,
}

/// A message claimed by this process: its target and its events.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The same on every try: a digest's payload id.
    pub message_id: String,
    pub target: String,
    /// The job its events are of (none: an event of no job, such as a daemon's start).
    pub job: Option<String>,
    /// This try's number, from 1.
    pub attempt: i64,
    /// When it was formed: its retries are counted from then (its events may have waited
    /// for the window before).
    pub formed_at: i64,
    /// One event, or a digest's, oldest first.
    pub events: Vec<EventRow>,
}

/// How a message went, for [`Catalog::settle_message`].
#[derive(Debug, Clone)]
pub enum Settled {
    Delivered,
    /// Try again at this time, saying why it failed.
    RetryAt(i64, String),
    /// Give up, saying why.
    GiveUp(String),
}

/// Claims due messages: pending, never tried or due for a retry, and not claimed by another
/// whose claim holds. A first try is due at once, whatever the claimer's clock says (a
/// replay's is in the past). The conditions are repeated outside the subquery: on
/// PostgreSQL a second claimer waiting on the row re-checks them on the row as committed.
static CLAIM: &str = "UPDATE messages SET claimed_by = $1, claimed_until = $2, attempts = attempts + 1 \
     WHERE state = $3 AND (attempts = 0 OR next_at <= $4) AND (claimed_until IS NULL OR claimed_until < $4) \
     AND id IN (SELECT id FROM messages \
     WHERE state = $3 AND (attempts = 0 OR next_at <= $4) AND (claimed_until IS NULL OR claimed_until < $4) ORDER BY next_at LIMIT $5) \
     RETURNING id, target, job, attempts, created_at";

impl Catalog {
    /// Folds the deliveries no message carries yet into messages, as each target's window
    /// allows; returns how many messages it formed. `windows` are the targets of the
    /// project now (a target no longer there sends each event alone, to be given up).
    pub async fn form_messages(
        &self,
        windows: &[Window],
        now_ms: i64,
    ) -> Result<usize, CatalogError> {
        let waiting: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT DISTINCT d.target, e.job FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.state = $1 AND d.message_id IS NULL",
        )
        .bind(DeliveryState::Pending.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read the deliveries waiting"))?;
        let mut formed = 0;
        for (target, job) in waiting {
            let every_ms = windows
                .iter()
                .find(|w| w.target == target)
                .map_or(0, |w| w.every_ms);
            formed += match job {
                Some(job) if every_ms > 0 => {
                    self.form_digest(&target, &job, every_ms, now_ms).await? as usize
                }
                job => self.form_each(&target, job.as_deref(), now_ms).await?,
            };
        }
        Ok(formed)
    }

    /// A message per waiting event of `job` (none: of no job) to `target`.
    async fn form_each(
        &self,
        target: &str,
        job: Option<&str>,
        now_ms: i64,
    ) -> Result<usize, CatalogError> {
        // (Two statements rather than `$3 IS NULL`: PostgreSQL cannot type a bare NULL.)
        let sql = match job {
            Some(_) => {
                "SELECT d.event_id FROM deliveries d JOIN events e ON e.id = d.event_id \
                 WHERE d.target = $1 AND d.state = $2 AND d.message_id IS NULL AND e.job = $3"
            }
            None => {
                "SELECT d.event_id FROM deliveries d JOIN events e ON e.id = d.event_id \
                 WHERE d.target = $1 AND d.state = $2 AND d.message_id IS NULL AND e.job IS NULL"
            }
        };
        let mut q = sqlx::query_scalar(sql)
            .bind(target)
            .bind(DeliveryState::Pending.as_str());
        if let Some(j) = job {
            q = q.bind(j);
        }
        let events: Vec<String> = q
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("read the deliveries waiting"))?;
        let mut formed = 0;
        let mut tx = self.begin_write().await?;
        for event_id in events {
            // The message's id is its event's and target's, so two daemons forming it at
            // once form one.
            let id = format!("{event_id}/{target}");
            let taken = sqlx::query(
                "UPDATE deliveries SET message_id = $1 WHERE event_id = $2 AND target = $3 AND message_id IS NULL",
            )
            .bind(&id)
            .bind(&event_id)
            .bind(target)
            .execute(&mut *tx)
            .await
            .map_err(query_err("form a message"))?
            .rows_affected();
            if taken == 1 {
                insert_message(&mut tx, &id, target, job, now_ms).await?;
                formed += 1;
            }
        }
        tx.commit().await.map_err(query_err("commit messages"))?;
        Ok(formed)
    }

    /// One message of every waiting event of `job` to `target`, if its window is open and
    /// its last message is not still being tried: whether it formed one.
    async fn form_digest(
        &self,
        target: &str,
        job: &str,
        every_ms: i64,
        now_ms: i64,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO notify_windows (target, job, last_sent_at) VALUES ($1, $2, 0) \
             ON CONFLICT (target, job) DO NOTHING",
        )
        .bind(target)
        .bind(job)
        .execute(&mut *tx)
        .await
        .map_err(query_err("open a notification window"))?;
        // A window from the future is another clock's (a replay's, a clock set back): open.
        let opened = sqlx::query(
            "UPDATE notify_windows SET last_sent_at = $1 WHERE target = $2 AND job = $3 \
             AND (last_sent_at <= $4 OR last_sent_at > $1) \
             AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.target = $2 AND m.job = $3 AND m.state = $5)",
        )
        .bind(now_ms)
        .bind(target)
        .bind(job)
        .bind(now_ms - every_ms)
        .bind(DeliveryState::Pending.as_str())
        .execute(&mut *tx)
        .await
        .map_err(query_err("open a notification window"))?
        .rows_affected();
        if opened == 0 {
            return Ok(false);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let taken = sqlx::query(
            "UPDATE deliveries SET message_id = $1 WHERE target = $2 AND message_id IS NULL AND state = $3 \
             AND event_id IN (SELECT d.event_id FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.target = $2 AND d.message_id IS NULL AND d.state = $3 AND e.job = $4 \
             ORDER BY e.created_at, e.id LIMIT $5)",
        )
        .bind(&id)
        .bind(target)
        .bind(DeliveryState::Pending.as_str())
        .bind(job)
        .bind(MOST_PER_DIGEST)
        .execute(&mut *tx)
        .await
        .map_err(query_err("form a digest"))?
        .rows_affected();
        if taken == 0 {
            // Nothing waits after all: leave the window as it was.
            return Ok(false);
        }
        insert_message(&mut tx, &id, target, Some(job), now_ms).await?;
        tx.commit().await.map_err(query_err("commit a digest"))?;
        Ok(true)
    }

    /// Claims up to `limit` messages due at `now_ms` for `holder` until `until_ms`.
    pub async fn claim_messages(
        &self,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, CatalogError> {
        let rows: Vec<(String, String, Option<String>, i64, i64)> = sqlx::query_as(CLAIM)
            .bind(holder)
            .bind(until_ms)
            .bind(DeliveryState::Pending.as_str())
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.writer)
            .await
            .map_err(query_err("claim messages"))?;
        let mut out = Vec::new();
        for (message_id, target, job, attempt, formed_at) in rows {
            let events: Vec<EventRow> = sqlx::query_as(
                "SELECT e.id, e.kind, e.job, e.partition_key, e.run_id, e.error, e.created_at \
                 FROM events e JOIN deliveries d ON d.event_id = e.id \
                 WHERE d.message_id = $1 ORDER BY e.created_at, e.id",
            )
            .bind(&message_id)
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("read a message's events"))?;
            out.push(Claimed {
                message_id,
                target,
                job,
                attempt,
                formed_at,
                events,
            });
        }
        Ok(out)
    }

    /// Records how a message `holder` claimed went, on it and on each delivery it carries;
    /// a claim another took over meanwhile is left to that one.
    pub async fn settle_message(
        &self,
        claimed: &Claimed,
        holder: &str,
        now_ms: i64,
        how: &Settled,
    ) -> Result<(), CatalogError> {
        let (state, next_at, error, delivered_at) = match how {
            Settled::Delivered => (DeliveryState::Delivered, None, None, Some(now_ms)),
            Settled::RetryAt(at, why) => {
                (DeliveryState::Pending, Some(*at), Some(why.as_str()), None)
            }
            Settled::GiveUp(why) => (DeliveryState::Undelivered, None, Some(why.as_str()), None),
        };
        let mut tx = self.begin_write().await?;
        let ours = sqlx::query(
            "UPDATE messages SET state = $1, next_at = COALESCE($2, next_at), last_error = $3, delivered_at = $4, \
             claimed_by = NULL, claimed_until = NULL WHERE id = $5 AND claimed_by = $6",
        )
        .bind(state.as_str())
        .bind(next_at)
        .bind(error)
        .bind(delivered_at)
        .bind(&claimed.message_id)
        .bind(holder)
        .execute(&mut *tx)
        .await
        .map_err(query_err("record a message"))?
        .rows_affected();
        if ours == 1 {
            sqlx::query(
                "UPDATE deliveries SET state = $1, attempts = $2, last_error = $3, delivered_at = $4 WHERE message_id = $5",
            )
            .bind(state.as_str())
            .bind(claimed.attempt)
            .bind(error)
            .bind(delivered_at)
            .bind(&claimed.message_id)
            .execute(&mut *tx)
            .await
            .map_err(query_err("record a delivery"))?;
        }
        tx.commit().await.map_err(query_err("commit a message"))?;
        Ok(())
    }
}

async fn insert_message(
    tx: &mut sqlx::AnyConnection,
    id: &str,
    target: &str,
    job: Option<&str>,
    now_ms: i64,
) -> Result<(), CatalogError> {
    sqlx::query(
        "INSERT INTO messages (id, target, job, created_at, state, attempts, next_at) VALUES ($1, $2, $3, $4, $5, 0, $4)",
    )
    .bind(id)
    .bind(target)
    .bind(job)
    .bind(now_ms)
    .bind(DeliveryState::Pending.as_str())
    .execute(&mut *tx)
    .await
    .map_err(query_err("form a message"))?;
    Ok(())
}
