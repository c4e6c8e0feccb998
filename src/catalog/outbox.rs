//! The outbox of notifications (`events`, `deliveries`). An event is written by the
//! transaction that makes it true (a run's end: `record_in`, called by `finish_in`), with
//! a delivery row per target that wants it, so that an event is never lost to a crash
//! between the change and the message, and never recorded twice (`dedup_key`). How
//! deliveries become messages and are sent: `messages`.

use super::{Catalog, CatalogError, RunEnd, RunStart, query_err};
use crate::notify::EventKind;

crate::spelling::spelled_enum! {
    /// How a delivery stands (`deliveries.state`).
    pub enum DeliveryState {
        Pending => "pending",
        Delivered => "delivered",
        /// Given up: retried for longer than the retry window, or refused for good.
        Undelivered => "undelivered",
    }
}

/// What a run's end tells, decided by the runner from the project's `[[notify]]` targets:
/// recorded in the finish's own transaction.
#[derive(Debug, Clone, Default)]
pub struct FinishEvents {
    /// The events this end is (failed or check_failed; check_warned, dead_letters).
    pub events: Vec<TellOf>,
    /// The targets to tell if this success follows a failure that was told (`recovered`).
    pub recovered: Vec<String>,
}

/// One event of a run's end and the targets that want it.
#[derive(Debug, Clone)]
pub struct TellOf {
    pub kind: EventKind,
    /// What it says; none: the run's error.
    pub detail: Option<String>,
    pub to: Vec<String>,
}

/// One event, as a delivery reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub kind: EventKind,
    pub job: Option<String>,
    pub partition_key: Option<String>,
    pub run_id: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
}

/// One delivery as `notify list` shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct DeliveryRow {
    pub event_id: String,
    #[sqlx(try_from = "String")]
    pub kind: EventKind,
    pub job: Option<String>,
    pub partition_key: Option<String>,
    pub run_id: Option<String>,
    #[serde(serialize_with = "crate::clock::as_rfc3339")]
    pub created_at: i64,
    pub target: String,
    /// The message that carries it (several events of a job folded into a digest share
    /// one); none until it is formed.
    pub message_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub state: DeliveryState,
    pub attempts: i64,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::clock::as_rfc3339_opt")]
    pub delivered_at: Option<i64>,
}

/// Records the events of a run's end inside its finish transaction (see [`FinishEvents`]).
pub(super) async fn record_in(
    tx: &mut sqlx::AnyConnection,
    start: &RunStart,
    end: &RunEnd,
    now_ms: i64,
    events: &FinishEvents,
) -> Result<(), CatalogError> {
    let error = match end {
        RunEnd::Failed { error } => Some(crate::redact::redact_text(error)),
        RunEnd::Succeeded { .. } => None,
    };
    for t in &events.events {
        let said = t.detail.as_deref().or(error.as_deref());
        let ev = NewEvent::of_run(t.kind, start, said);
        insert_event(tx, &ev, now_ms, &t.to).await?;
    }
    if matches!(end, RunEnd::Succeeded { .. })
        && !events.recovered.is_empty()
        && last_told_was_a_failure(tx, start).await?
    {
        let ev = NewEvent::of_run(EventKind::Recovered, start, None);
        insert_event(tx, &ev, now_ms, &events.recovered).await?;
    }
    Ok(())
}

/// Whether the last thing told of the partition is a failure: then its success is news
/// (runs in between that told nothing, a backfill's, do not change that).
async fn last_told_was_a_failure(
    tx: &mut sqlx::AnyConnection,
    start: &RunStart,
) -> Result<bool, CatalogError> {
    let last: Option<String> = sqlx::query_scalar(
        "SELECT kind FROM events WHERE job = $1 AND partition_key = $2 AND kind IN ($3, $4, $5) \
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(&start.job)
    .bind(&start.partition)
    .bind(EventKind::Failed.as_str())
    .bind(EventKind::CheckFailed.as_str())
    .bind(EventKind::Recovered.as_str())
    .fetch_optional(&mut *tx)
    .await
    .map_err(query_err("read what was told of the partition"))?;
    Ok(last.is_some_and(|k| k != EventKind::Recovered.as_str()))
}

/// One event to record: what it is about, and the key that makes it one event however
/// often it is recorded.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub kind: EventKind,
    pub job: Option<&'a str>,
    pub partition: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub error: Option<&'a str>,
    /// `KIND:` and what makes it unique (a run id, a worker id).
    pub dedup_key: String,
}

impl<'a> NewEvent<'a> {
    /// The event `kind` of run `start` (or of a run with these names).
    fn of_run(kind: EventKind, start: &'a RunStart, error: Option<&'a str>) -> NewEvent<'a> {
        NewEvent {
            kind,
            job: Some(&start.job),
            partition: Some(&start.partition),
            run_id: Some(&start.run_id),
            error,
            dedup_key: format!("{}:{}", kind.as_str(), start.run_id),
        }
    }
}

/// Records `ev` with a delivery per target, unless it is recorded already.
pub(super) async fn insert_event(
    tx: &mut sqlx::AnyConnection,
    ev: &NewEvent<'_>,
    now_ms: i64,
    targets: &[String],
) -> Result<(), CatalogError> {
    if targets.is_empty() {
        return Ok(());
    }
    let id = uuid::Uuid::now_v7().to_string();
    let inserted = sqlx::query(
        "INSERT INTO events (id, dedup_key, kind, job, partition_key, run_id, error, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(&id)
    .bind(&ev.dedup_key)
    .bind(ev.kind.as_str())
    .bind(ev.job)
    .bind(ev.partition)
    .bind(ev.run_id)
    .bind(ev.error)
    .bind(now_ms)
    .execute(&mut *tx)
    .await
    .map_err(query_err("record an event"))?
    .rows_affected();
    if inserted == 0 {
        return Ok(());
    }
    for t in targets {
        sqlx::query(
            "INSERT INTO deliveries (event_id, target, state, attempts) VALUES ($1, $2, $3, 0)",
        )
        .bind(&id)
        .bind(t)
        .bind(DeliveryState::Pending.as_str())
        .execute(&mut *tx)
        .await
        .map_err(query_err("record a delivery"))?;
    }
    Ok(())
}

impl Catalog {
    /// Records `ev` for `targets` in a transaction of its own: an event no other change
    /// causes (a daemon started or stopped).
    pub async fn record_event(
        &self,
        ev: &NewEvent<'_>,
        now_ms: i64,
        targets: &[String],
    ) -> Result<(), CatalogError> {
        if targets.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        insert_event(&mut tx, ev, now_ms, targets).await?;
        tx.commit().await.map_err(query_err("commit an event"))?;
        Ok(())
    }

    /// The newest `limit` events' deliveries, newest first.
    pub async fn recent_deliveries(&self, limit: i64) -> Result<Vec<DeliveryRow>, CatalogError> {
        sqlx::query_as(
            "SELECT e.id AS event_id, e.kind, e.job, e.partition_key, e.run_id, e.created_at, d.target, d.message_id, d.state, d.attempts, d.last_error, d.delivered_at \
             FROM events e JOIN deliveries d ON d.event_id = e.id \
             WHERE e.id IN (SELECT id FROM events ORDER BY created_at DESC, id DESC LIMIT $1) \
             ORDER BY e.created_at DESC, e.id DESC, d.target",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list deliveries"))
    }

    /// Whether any delivery waits to be sent (a cheap look before a delivery pass).
    pub async fn has_undelivered(&self) -> Result<bool, CatalogError> {
        let one: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM deliveries WHERE state = $1 LIMIT 1")
                .bind(DeliveryState::Pending.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(query_err("look for deliveries"))?;
        Ok(one.is_some())
    }

    /// How many deliveries were given up, for `/metrics`.
    pub async fn undelivered_count(&self) -> Result<i64, CatalogError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE state = $1")
            .bind(DeliveryState::Undelivered.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(query_err("count undelivered"))
    }
}
