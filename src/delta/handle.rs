//! One open Delta table per physical version per process, kept across runs so that a
//! backfill does not replay the log for every partition. Its mutex is the table's
//! in-process commit lock, and its queue groups the commits of partitions that finish
//! together into one Delta commit.

use super::{DeltaError, PartitionCommit, commit_partitions};
use deltalake::DeltaTable;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use url::Url;

/// Asked just before a queued partition is committed: is its writer's lease still
/// current? Given by the caller, so that this layer never sees the catalog.
pub type StillLeased = Arc<dyn Fn() -> BoxFuture<'static, LeaseCheck> + Send + Sync>;

/// The answer to [`StillLeased`].
#[derive(Debug, Clone)]
pub enum LeaseCheck {
    Held,
    /// Another worker holds the partition now: this writer is fenced.
    TakenOver,
    /// The catalog could not answer (why): nobody is known to have taken the partition, but
    /// committing unconfirmed could race a worker that did.
    Unconfirmed(String),
}

/// How long a commit waits for partitions of the same table that are on their way to a
/// commit, so that they join it. A Delta commit costs about the same whatever it holds
/// (the snapshot is rebuilt after it, reading every file's entry), so a backfill that
/// commits its partitions several at a time does a fraction of that work; a lone run (the
/// daemon's usual case) has no sibling and does not wait.
const COMMIT_LINGER: Duration = Duration::from_millis(50);

pub struct VersionHandle {
    pub url: Url,
    /// The schema the handle was opened with; a migration since then reopens it.
    schema_json: String,
    /// The table, behind the in-process commit lock: see [`VersionHandle::lock`].
    table: tokio::sync::Mutex<DeltaTable>,
    /// The table as it was when the lock was last let go after a change: what a
    /// partition's writer and audit read (schema, partition columns, store, files), without
    /// waiting for the lock, which a commit holds for milliseconds. Waiting there, with a
    /// compute slot held, left the compute idle behind every commit.
    latest: std::sync::RwLock<Arc<DeltaTable>>,
    /// Partition commits waiting for the commit lock (see [`VersionHandle::commit`]).
    queue: std::sync::Mutex<Vec<Queued>>,
    /// Runs of this version on their way to a commit (waiting for a compute slot, or
    /// computing): a commit waits a moment for them (see [`COMMIT_LINGER`]).
    pending: AtomicUsize,
    /// Told when a pending run leaves the count (to commit, or because it failed).
    changed: tokio::sync::Notify,
}

/// The table under the commit lock. Borrowed mutably, it copies itself into the handle's
/// `latest` when dropped.
pub struct TableGuard<'a> {
    table: tokio::sync::MutexGuard<'a, DeltaTable>,
    latest: &'a std::sync::RwLock<Arc<DeltaTable>>,
    changed: bool,
}

impl std::ops::Deref for TableGuard<'_> {
    type Target = DeltaTable;
    fn deref(&self) -> &DeltaTable {
        &self.table
    }
}

impl std::ops::DerefMut for TableGuard<'_> {
    fn deref_mut(&mut self) -> &mut DeltaTable {
        self.changed = true;
        &mut self.table
    }
}

impl Drop for TableGuard<'_> {
    fn drop(&mut self) {
        if self.changed {
            // A copy of the snapshot: its file list is shared, not copied.
            let copy = Arc::new(self.table.clone());
            *self.latest.write().unwrap_or_else(|e| e.into_inner()) = copy;
        }
    }
}

/// Counts a run among its version's pending ones while alive.
pub struct Pending<'a>(&'a VersionHandle);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

struct Queued {
    item: PartitionCommit,
    still_leased: StillLeased,
    reply: tokio::sync::oneshot::Sender<Result<u64, DeltaError>>,
}

impl VersionHandle {
    pub fn new(url: Url, schema_json: String, table: DeltaTable) -> Arc<VersionHandle> {
        Arc::new(VersionHandle {
            url,
            schema_json,
            latest: std::sync::RwLock::new(Arc::new(table.clone())),
            table: tokio::sync::Mutex::new(table),
            queue: std::sync::Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
            changed: tokio::sync::Notify::new(),
        })
    }

    pub fn schema_json(&self) -> &str {
        &self.schema_json
    }

    /// Takes the commit lock. A change made through the guard is what [`VersionHandle::latest`]
    /// answers once the guard drops.
    pub async fn lock(&self) -> TableGuard<'_> {
        TableGuard {
            table: self.table.lock().await,
            latest: &self.latest,
            changed: false,
        }
    }

    /// The table as of the last change made under the lock; never waits for a commit.
    pub fn latest(&self) -> Arc<DeltaTable> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts the caller among the runs on their way to a commit of this version until
    /// the guard drops.
    pub fn pending(&self) -> Pending<'_> {
        self.pending.fetch_add(1, Ordering::SeqCst);
        Pending(self)
    }

    /// Commits a partition's files: group commit. The request joins the table's queue;
    /// whoever takes the table's commit lock commits everything queued at that moment in
    /// one Delta commit, so partitions that finish while a commit is under way share the
    /// next one. Returns the Delta version that holds the partition.
    pub async fn commit(
        &self,
        item: PartitionCommit,
        still_leased: StillLeased,
    ) -> Result<u64, DeltaError> {
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Queued {
                item,
                still_leased,
                reply,
            });
        // Before taking the lock, which a computing run needs a moment of to start writing.
        let until = tokio::time::Instant::now() + COMMIT_LINGER;
        while self.pending.load(Ordering::SeqCst) > 0 {
            let changed = self.changed.notified();
            if tokio::time::timeout_at(until, changed).await.is_err() {
                break;
            }
        }
        let mut table = self.lock().await;
        // Committed by whoever held the lock before us?
        if let Ok(result) = answer.try_recv() {
            return result;
        }
        let queued = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let batch: Vec<PartitionCommit> = queued.iter().map(|q| q.item.clone()).collect();
        if batch.len() > 1 {
            tracing::debug!(partitions = batch.len(), "committing a batch of partitions");
        }
        let results = commit_partitions(&mut table, &batch, |i| (queued[i].still_leased)()).await;
        drop(table);
        for (q, r) in queued.into_iter().zip(results) {
            // A requester that went away (its run was aborted) is reconciled by the next run.
            let _ = q.reply.send(r);
        }
        answer.await.unwrap_or_else(|_| {
            Err(DeltaError::below(
                super::Doing::Commit,
                &self.url,
                super::Said("the commit request was lost (this is likely a bug)"),
            ))
        })
    }
}
