//! Group commit for the catalog's per-partition writes: a run's claim (lease and run start)
//! and its finish (run end, partition state, lease release).
//!
//! On SQLite one connection writes, and a transaction costs the pool's acquire, BEGIN
//! IMMEDIATE, each statement, COMMIT and the pool's ping when the connection goes back:
//! each a round trip to the connection's thread. A backfill claims and finishes partitions
//! in bursts (one Delta commit ends several runs at once, and as many start after them),
//! and one transaction at a time made those writes the slowest step of a no-op partition.
//! Here the writes that queue while a transaction is under way go together in the next
//! one, in the order they arrived, as if written one after another. If a grouped
//! transaction fails, each of its writes is tried again alone, so that an error is only
//! the error of the write that caused it.
//!
//! PostgreSQL takes concurrent writers: there each write is its own transaction, as before.

use super::changes::{Followed, bump_each_in, bump_in};
use super::run_writes::{claim_in, finish_in};
use super::{Backend, Catalog, CatalogError, Claim, DoneIf, Lease, RunEnd, RunStart, query_err};
use tokio::sync::oneshot;

/// A write that can share a transaction with others.
pub(super) enum Write {
    Claim {
        start: RunStart,
        holder: String,
        now_ms: i64,
        ttl_ms: i64,
        done_if: Option<DoneIf>,
        /// The scope claiming: an environment, or production (`None`).
        env: Option<std::sync::Arc<str>>,
    },
    Finish {
        start: RunStart,
        end: RunEnd,
        now_ms: i64,
        release: Option<Lease>,
        measured: Box<super::RunMeasures>,
        events: super::FinishEvents,
    },
}

/// What a [`Write`] found.
pub(super) enum Written {
    Claim(Box<Claim>),
    Finish,
}

struct Queued {
    write: Write,
    reply: oneshot::Sender<Result<Written, CatalogError>>,
}

/// The writes waiting for the next transaction, and whose turn it is to write them.
#[derive(Default)]
pub(super) struct WriteGroup {
    queue: std::sync::Mutex<Vec<Queued>>,
    turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for WriteGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteGroup")
    }
}

impl Write {
    /// The table whose partition the write changes.
    fn table(&self) -> &str {
        match self {
            Write::Claim { start, .. } | Write::Finish { start, .. } => &start.table,
        }
    }

    async fn apply(&mut self, conn: &mut sqlx::AnyConnection) -> Result<Written, CatalogError> {
        match self {
            Write::Claim {
                start,
                holder,
                now_ms,
                ttl_ms,
                done_if,
                env,
            } => {
                let lease = (*now_ms, *ttl_ms);
                let (done_if, env) = (done_if.as_ref(), env.as_deref());
                let claim = claim_in(conn, start, (holder, env), lease, done_if).await?;
                Ok(Written::Claim(Box::new(claim)))
            }
            Write::Finish {
                start,
                end,
                now_ms,
                release,
                measured,
                events,
            } => {
                finish_in(
                    conn,
                    start,
                    end,
                    *now_ms,
                    release.as_ref(),
                    measured,
                    events,
                )
                .await?;
                Ok(Written::Finish)
            }
        }
    }
}

impl Catalog {
    /// Writes `write` in a transaction, shared on SQLite with the writes queued beside it.
    pub(super) async fn write(&self, mut write: Write) -> Result<Written, CatalogError> {
        if self.backend != Backend::Sqlite {
            return self.write_alone(&mut write).await;
        }
        let (reply, mut answer) = oneshot::channel();
        self.group
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Queued { write, reply });
        let turn = self.group.turn.lock().await;
        // Written by whoever had the turn before us?
        if let Ok(result) = answer.try_recv() {
            return result;
        }
        let batch =
            std::mem::take(&mut *self.group.queue.lock().unwrap_or_else(|e| e.into_inner()));
        // In a task of its own: a caller cancelled while it writes (a daemon's shutdown)
        // does not take the other callers' writes with it.
        let catalog = self.clone();
        let _ = tokio::spawn(async move { catalog.write_batch(batch).await }).await;
        drop(turn);
        answer
            .await
            .unwrap_or(Err(CatalogError::Lost("its answer never came")))
    }

    async fn write_batch(&self, mut batch: Vec<Queued>) {
        if batch.len() > 1 {
            match self.write_together(&mut batch).await {
                Ok(written) => {
                    for (q, w) in batch.into_iter().zip(written) {
                        let _ = q.reply.send(Ok(w));
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, writes = batch.len(), "a grouped catalog write failed; writing each alone");
                }
            }
        }
        for mut q in batch {
            let result = self.write_alone(&mut q.write).await;
            let _ = q.reply.send(result);
        }
    }

    async fn write_together(&self, batch: &mut [Queued]) -> Result<Vec<Written>, CatalogError> {
        let mut tx = self.begin_write().await?;
        // One count per table for the whole transaction: its rows commit together.
        let tables = batch.iter().map(|q| q.write.table());
        bump_each_in(&mut tx, tables, Followed::ByPartition).await?;
        let mut written = Vec::with_capacity(batch.len());
        for q in batch.iter_mut() {
            written.push(q.write.apply(&mut tx).await?);
        }
        tx.commit().await.map_err(query_err("commit"))?;
        Ok(written)
    }

    async fn write_alone(&self, write: &mut Write) -> Result<Written, CatalogError> {
        let mut tx = self.begin_write().await?;
        bump_in(&mut tx, write.table(), Followed::ByPartition).await?;
        let written = write.apply(&mut tx).await?;
        tx.commit().await.map_err(query_err("commit"))?;
        Ok(written)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{Catalog, Claim, RunEnd, RunStart, Trigger};

    /// A run of partition `partition` of table `t` v1 by job `j`, started at `NOW_MS`.
    pub(in crate::catalog) fn start(partition: &str, run_id: &str) -> RunStart {
        RunStart {
            run_id: run_id.into(),
            job: "j".into(),
            table: "t".into(),
            version: 1,
            partition: partition.into(),
            attempt: 1,
            trigger: Trigger::Backfill,
            fingerprint: "f".into(),
            lease_token: 0,
            host: "h".into(),
            pid: 1,
            started_at: NOW_MS,
            reads_json: None,
            data_version: None,
        }
    }

    /// When the tests' runs start, and their leases are taken.
    const NOW_MS: i64 = 1_000;

    /// Claims and finishes made at once end as if made one by one, and a write that fails
    /// (a run id used twice) fails alone: the writes grouped with it land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_made_together_land_as_if_made_one_by_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let catalog = Catalog::connect(&url).await.expect("catalog");
        let claims = (0..40).map(|i| {
            let catalog = catalog.clone();
            tokio::spawn(async move {
                // Runs 0 and 1 share a run id: one of their claims fails.
                let run_id = format!("run-{}", i.max(1));
                let mut s = start(&format!("p{i}"), &run_id);
                let claim = catalog.claim(&mut s, "me", (NOW_MS, 60_000), None).await;
                (i, s, claim)
            })
        });
        let mut failed = 0;
        let mut started = Vec::new();
        for c in futures::future::join_all(claims).await {
            let (i, s, claim) = c.expect("task");
            match claim {
                Ok(Claim::Started(lease)) => {
                    assert_eq!(lease.token, 1, "partition p{i}");
                    assert_eq!(s.lease_token, 1);
                    started.push((s, lease));
                }
                Ok(other) => panic!("p{i}: {other:?}"),
                Err(e) => {
                    assert!(i <= 1, "p{i} failed: {e}");
                    failed += 1;
                }
            }
        }
        assert_eq!((failed, started.len()), (1, 39));
        // Held by us: a second claim of each is refused, all at once.
        let again = started.iter().map(|(s, _)| {
            let (catalog, mut s) = (catalog.clone(), s.clone());
            s.run_id.push_str("-again");
            tokio::spawn(
                async move { catalog.claim(&mut s, "other", (NOW_MS, 60_000), None).await },
            )
        });
        for c in futures::future::join_all(again).await {
            let claim = c.expect("task").expect("claim");
            assert!(
                matches!(claim, Claim::Held { ref holder, .. } if holder == "me"),
                "{claim:?}"
            );
        }
        let finishes = started.iter().map(|(s, lease)| {
            let (catalog, s, lease) = (catalog.clone(), s.clone(), lease.clone());
            tokio::spawn(async move {
                let end = RunEnd::Succeeded {
                    rows: 7,
                    delta_version: 3,
                };
                catalog
                    .finish_run(&s, &end, 2_000, Some(&lease), &Default::default())
                    .await
            })
        });
        for f in futures::future::join_all(finishes).await {
            f.expect("task").expect("finish");
        }
        for (s, _) in &started {
            let p = catalog
                .partition_status("t", 1, &s.partition)
                .await
                .expect("status")
                .expect("partition row");
            assert_eq!(p.state, crate::catalog::PartitionState::Complete);
            assert_eq!(p.content_rows, Some(7));
        }
        // Released: the next claim of a partition takes token 2.
        let mut s = start("p5", "run-next");
        match catalog.claim(&mut s, "other", (NOW_MS, 60_000), None).await {
            Ok(Claim::Started(lease)) => assert_eq!(lease.token, 2),
            other => panic!("{other:?}"),
        }
    }
}
