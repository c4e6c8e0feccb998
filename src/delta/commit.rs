//! One Delta commit per batch of partitions: remove the old files, add the new ones, and
//! record each partition's fencing token in a `txn`.

use super::{DeltaError, LeaseCheck, app_id};
use deltalake::kernel::transaction::{
    CommitBuilder, CommitConflictError, CommitProperties, TransactionError,
};
use deltalake::kernel::{Action, Add, LogicalFileView, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt as _;

/// What to replace: the partition's value in each of its partition columns (Delta's
/// string form), or the whole table for an unpartitioned one.
#[derive(Debug, Clone)]
pub enum Scope {
    Partition(Vec<(String, String)>),
    WholeTable,
    /// A merge's rewrite of the partitions its changes touch (each one's values; `None`:
    /// the whole of an unpartitioned table), computed from what they held as of the
    /// handle's snapshot. A conflict fails it, to be computed again: rebuilt over another
    /// writer's files, it would drop that writer's changes.
    Merged(Option<Vec<Vec<(String, String)>>>),
}

impl Scope {
    fn is_merged(&self) -> bool {
        matches!(self, Scope::Merged(_))
    }
}

/// The table's current files in `scope`. Filtered here from the snapshot's file list
/// rather than by a predicate given to deltalake: a predicate makes it replay the whole log
/// (parsing every file's statistics) on each call, and a commit asks once per partition.
async fn files_in_scope(
    table: &DeltaTable,
    scope: &Scope,
) -> Result<Vec<LogicalFileView>, DeltaTableError> {
    let files: Vec<LogicalFileView> = table
        .get_active_add_actions_by_partitions(&[])
        .try_collect()
        .await?;
    let within = |f: &LogicalFileView, values: &[(String, String)]| {
        let logged = f.partition_values_map();
        values.iter().all(|(column, value)| {
            logged
                .get(column)
                .is_some_and(|v| same_partition_value(v.as_deref(), value))
        })
    };
    Ok(match scope {
        Scope::WholeTable | Scope::Merged(None) => files,
        Scope::Partition(values) => files.into_iter().filter(|f| within(f, values)).collect(),
        Scope::Merged(Some(partitions)) => files
            .into_iter()
            .filter(|f| partitions.iter().any(|p| within(f, p)))
            .collect(),
    })
}

/// Whether a partition value as the log holds it (`None`: null) is `ours`. Equal text, or
/// the same date or time written another way (`2024-01-01 00:00:00` and
/// `2024-01-01 00:00:00.000000` name one hour partition).
pub(super) fn same_partition_value(logged: Option<&str>, ours: &str) -> bool {
    let Some(logged) = logged else {
        return false;
    };
    if logged == ours {
        return true;
    }
    let time = |s: &str| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
            .ok()
    };
    match (time(logged), time(ours)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Everything a partition commit records besides its files.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub partition: String,
    pub token: i64,
    pub run_id: String,
    pub fingerprint: String,
    pub job: String,
}

/// One partition's replacement, waiting for a commit.
#[derive(Debug, Clone)]
pub struct PartitionCommit {
    pub scope: Scope,
    pub adds: Vec<Add>,
    pub info: CommitInfo,
    /// The table's schema when the files were written (Delta JSON; empty: unknown). A
    /// migration committed since then refuses the commit: the files lack what it added
    /// (a column's default), and a rerun writes them under the new schema.
    pub written_under: String,
}

/// The `txn` version recorded for `partition`, as of the latest commit.
pub async fn landed_token(
    table: &mut DeltaTable,
    partition: &str,
) -> Result<Option<i64>, DeltaError> {
    let url = table.table_url().clone();
    let open_err = |e: DeltaTableError| DeltaError::open(&url, e);
    table.update_state().await.map_err(open_err)?;
    let snap = table.snapshot().map_err(open_err)?;
    snap.transaction_version(table.log_store().as_ref(), &app_id(partition))
        .await
        .map_err(open_err)
}

/// Rows in the partition's current files, from their statistics.
pub async fn partition_rows(table: &DeltaTable, scope: &Scope) -> Result<i64, DeltaError> {
    let files = files_in_scope(table, scope)
        .await
        .map_err(|e| DeltaError::open(table.table_url(), e))?;
    Ok(files
        .iter()
        .map(|f| f.num_records().unwrap_or(0) as i64)
        .sum())
}

/// Replaces the content of each partition in `batch` with its new files, all in one Delta
/// commit that carries each partition's `txn` (app id = partition, version = fencing
/// token). Returns one result per item, in order.
///
/// Batching is what makes a long backfill cheap: a Delta commit costs a few milliseconds
/// (the new snapshot is rebuilt after it), whatever it holds, and a thousand partitions in
/// a few dozen commits also keep the log short. Every partition is still replaced
/// atomically: readers see the commit or not.
///
/// The caller holds the table's in-process commit lock (the `&mut`, behind the runner's
/// per-table mutex). The commit is built on the handle's snapshot without refreshing it:
/// listing the log costs time proportional to its length and is not needed for safety.
/// Every commit made after that snapshot is checked by Delta's conflict checker against
/// ours (a commit touching one of these partitions, or carrying one of their `txn` app ids,
/// conflicts); every commit made before it was made under a lease taken before ours or after
/// ours was lost, which `still_leased` (asked before each attempt) reveals. On a conflict
/// the snapshot is refreshed and the commit rebuilt for the items still leased: the
/// conflicting writer was an earlier holder. If conflicts persist, items are committed one
/// by one so that one partition's trouble does not fail the others.
pub async fn commit_partitions<F, Fut>(
    table: &mut DeltaTable,
    batch: &[PartitionCommit],
    still_leased: F,
) -> Vec<Result<u64, DeltaError>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = LeaseCheck>,
{
    let mut results: Vec<Option<Result<u64, DeltaError>>> = vec![None; batch.len()];
    let all: Vec<usize> = (0..batch.len()).collect();
    let unresolved = commit_rounds(table, batch, &all, &still_leased, &mut results).await;
    if unresolved.len() > 1 {
        // Isolate: whichever partition keeps failing fails alone.
        for i in unresolved {
            commit_rounds(table, batch, &[i], &still_leased, &mut results).await;
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(DeltaError::below(
                    super::Doing::Commit,
                    table.table_url(),
                    super::Said("the commit was never attempted (this is likely a bug)"),
                ))
            })
        })
        .collect()
}

/// Commits `items` of `batch` together, refreshing and retrying on conflicts. Fills in
/// `results`; returns the items left unresolved by a persistent failure when there was more
/// than one (for the caller to try one by one), else settles them with the error.
async fn commit_rounds<F, Fut>(
    table: &mut DeltaTable,
    batch: &[PartitionCommit],
    items: &[usize],
    still_leased: &F,
    results: &mut [Option<Result<u64, DeltaError>>],
) -> Vec<usize>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = LeaseCheck>,
{
    const ROUNDS: usize = 3;
    let mut last_error: Option<(DeltaError, bool)> = None;
    for round in 1..=ROUNDS {
        let live = ready_to_commit(table, batch, items, still_leased, results).await;
        if live.is_empty() {
            return Vec::new();
        }
        let base = table.version();
        let failure = match commit_once(table, batch, &live).await {
            Ok(v) => {
                for i in live {
                    results[i] = Some(Ok(v));
                }
                return Vec::new();
            }
            Err(failure) => failure,
        };
        // Whatever the failure says, the commit may have landed: an answer lost after the
        // store wrote the log entry reads as an error (the connection broke) or as a
        // conflict (the store's retry of the create found our own entry there, and the
        // conflict checker took it for another writer's). The log is the truth: refresh
        // and look for each partition's `txn` before anything is retried, or the rebuilt
        // commit would remove the files the landed one added.
        let refreshed = table.update_state().await;
        if refreshed.is_ok() {
            settle_landed(table, batch, &live, base, results).await;
        }
        match failure {
            CommitFailure::Conflict {
                error,
                concurrent_txn,
            } => {
                last_error = Some((error, concurrent_txn));
                if let Err(e) = refreshed {
                    last_error = Some((DeltaError::commit(table.table_url(), e), false));
                    break;
                }
                // A merge's files were computed from what its partitions held: computed
                // again by the caller, not rebuilt here.
                if round == ROUNDS || live.iter().any(|i| batch[*i].scope.is_merged()) {
                    break;
                }
                tracing::debug!(round, "commit conflicted; refreshed, retrying");
            }
            CommitFailure::Other(e) => {
                last_error = Some((e, false));
                break;
            }
        }
    }
    let pending: Vec<usize> = items
        .iter()
        .copied()
        .filter(|i| results[*i].is_none())
        .collect();
    if pending.len() > 1 {
        return pending;
    }
    for i in pending {
        results[i] = Some(Err(match &last_error {
            // Another writer of this very partition committed: ours is the stale one.
            Some((_, true)) | None => fenced(&batch[i].info),
            Some((e, false)) => e.clone(),
        }));
    }
    Vec::new()
}

/// The unsettled items of `items` that may commit now: written under the table's current
/// schema, and still leased. Settles the others (schema changed, fenced, or the lease
/// unconfirmed).
async fn ready_to_commit<F, Fut>(
    table: &DeltaTable,
    batch: &[PartitionCommit],
    items: &[usize],
    still_leased: &F,
    results: &mut [Option<Result<u64, DeltaError>>],
) -> Vec<usize>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = LeaseCheck>,
{
    let mut asked = Vec::new();
    let current = table
        .snapshot()
        .ok()
        .and_then(|s| serde_json::to_string(s.schema().as_ref()).ok());
    for &i in items {
        if results[i].is_some() {
            continue;
        }
        let written = &batch[i].written_under;
        if !written.is_empty() && current.as_ref().is_some_and(|c| c != written) {
            results[i] = Some(Err(DeltaError::SchemaChanged {
                url: crate::warehouse::display(table.table_url()),
                partition: batch[i].info.partition.clone(),
            }));
            continue;
        }
        asked.push(i);
    }
    // All at once: the table's commit lock is held meanwhile.
    let answers = futures::future::join_all(asked.iter().map(|&i| still_leased(i))).await;
    let mut live = Vec::new();
    for (i, leased) in asked.into_iter().zip(answers) {
        let info = &batch[i].info;
        match leased {
            LeaseCheck::Held => live.push(i),
            LeaseCheck::TakenOver => results[i] = Some(Err(fenced(info))),
            LeaseCheck::Unconfirmed(why) => {
                results[i] = Some(Err(DeltaError::LeaseUnconfirmed {
                    partition: info.partition.clone(),
                    ours: info.token,
                    why,
                }))
            }
        }
    }
    live
}

fn fenced(info: &CommitInfo) -> DeltaError {
    DeltaError::Fenced {
        partition: info.partition.clone(),
        ours: info.token,
    }
}

/// Settles the items of `live` whose commit the log holds after version `base`: the
/// partition's `txn` carries this writer's token, so the commit landed though its answer
/// was lost (done, at the version that holds it); a higher token means another writer
/// took the partition over and committed (fenced). The others stay unsettled.
async fn settle_landed(
    table: &DeltaTable,
    batch: &[PartitionCommit],
    live: &[usize],
    base: Option<u64>,
    results: &mut [Option<Result<u64, DeltaError>>],
) {
    let Ok(snapshot) = table.snapshot() else {
        return;
    };
    for &i in live {
        let info = &batch[i].info;
        let app = app_id(&info.partition);
        let Ok(logged) = snapshot
            .transaction_version(table.log_store().as_ref(), &app)
            .await
        else {
            continue;
        };
        match logged {
            Some(t) if t == info.token => {
                let at = landed_at(table, base, &app, info.token).await;
                let v = at.or(table.version());
                tracing::warn!(
                    partition = %info.partition,
                    delta_version = v,
                    "a commit's answer was lost, but the commit landed; taking it as done"
                );
                results[i] = Some(v.ok_or_else(|| {
                    DeltaError::below(
                        super::Doing::Commit,
                        table.table_url(),
                        super::Said("the table has no version"),
                    )
                }));
            }
            Some(t) if t > info.token => results[i] = Some(Err(fenced(info))),
            _ => {}
        }
    }
}

/// The version after `base` whose commit carries `txn(app, token)`, read from the log
/// entries themselves (a few, newest first: those made since the commit was attempted).
async fn landed_at(table: &DeltaTable, base: Option<u64>, app: &str, token: i64) -> Option<u64> {
    let first = base.map_or(0, |b| b + 1);
    let latest = table.version()?;
    for v in (first..=latest).rev() {
        let entry = table.log_store().read_commit_entry(v).await.ok().flatten();
        if let Some(bytes) = entry
            && carries_txn(&bytes, app, token)
        {
            return Some(v);
        }
    }
    None
}

/// Whether a log entry (newline-delimited JSON actions) holds `txn(app, token)`.
fn carries_txn(entry: &[u8], app: &str, token: i64) -> bool {
    entry.split(|b| *b == b'\n').any(|line| {
        serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|action| {
            action["txn"]["appId"].as_str() == Some(app)
                && action["txn"]["version"].as_i64() == Some(token)
        })
    })
}

enum CommitFailure {
    /// `concurrent_txn`: the other commit carried one of our partitions' `txn` app ids,
    /// i.e. another writer of the same partition got there first.
    Conflict {
        error: DeltaError,
        concurrent_txn: bool,
    },
    Other(DeltaError),
}

/// One attempt at committing the items `live` of `batch`.
async fn commit_once(
    table: &mut DeltaTable,
    batch: &[PartitionCommit],
    live: &[usize],
) -> Result<u64, CommitFailure> {
    let shown = crate::warehouse::display(table.table_url());
    let other = |e: DeltaTableError| CommitFailure::Other(DeltaError::commit(table.table_url(), e));
    let mut actions: Vec<Action> = Vec::new();
    let mut txns = Vec::new();
    let mut replaced: Vec<&[(String, String)]> = Vec::new();
    let mut whole_table = false;
    let mut runs = Vec::new();
    for &i in live {
        let item = &batch[i];
        let removes = files_in_scope(table, &item.scope).await.map_err(other)?;
        // A commit never removes what it adds: had an earlier attempt of this very commit
        // landed unseen, removing its files would empty the partition (adding them again
        // changes nothing).
        let ours: std::collections::HashSet<&str> =
            item.adds.iter().map(|a| file_name(&a.path)).collect();
        actions.extend(
            removes
                .iter()
                .filter(|f| !ours.contains(file_name(&f.path())))
                .map(|f| Action::Remove(f.remove_action(true))),
        );
        actions.extend(item.adds.iter().cloned().map(Action::Add));
        txns.push(Transaction::new(
            app_id(&item.info.partition),
            item.info.token,
        ));
        match &item.scope {
            Scope::Partition(values) => replaced.push(values),
            Scope::Merged(Some(partitions)) => {
                replaced.extend(partitions.iter().map(|p| p.as_slice()));
            }
            Scope::WholeTable | Scope::Merged(None) => whole_table = true,
        }
        runs.push(serde_json::json!({
            "run_id": item.info.run_id,
            "job": item.info.job,
            "partition": item.info.partition,
            "token": item.info.token,
            "fingerprint": item.info.fingerprint,
        }));
    }
    let (partition_by, predicate) = write_predicate(&replaced, whole_table);
    let op = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by,
        predicate,
    };
    let props = CommitProperties::default()
        .with_application_transactions(txns)
        // Rebasing over commits of other partitions reads one small file each.
        .with_max_retries(1000)
        // Log cleanup lists the whole log on every commit; it runs after checkpoints.
        .with_cleanup_expired_logs(Some(false))
        .with_metadata([("sluice.runs".to_string(), serde_json::json!(runs))]);
    let snapshot = table.snapshot().map_err(other)?;
    let result = CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), op)
        .await;
    match result {
        Ok(done) => {
            let v = done.version();
            let checkpointed = done.metrics.new_checkpoint_created;
            table.state = Some(done.snapshot());
            if checkpointed {
                after_checkpoint(table, v).await;
            }
            Ok(v)
        }
        Err(DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(c),
        }) => Err(CommitFailure::Conflict {
            concurrent_txn: matches!(c, CommitConflictError::ConcurrentTransaction),
            error: DeltaError::Conflict {
                url: shown.clone(),
                source: super::below(c),
            },
        }),
        Err(e) => Err(other(e)),
    }
}

/// A data file's name, the last part of its path: unique (it holds a UUID), and the same
/// whether the path is percent-encoded (an `add` as written) or not (a file as listed).
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The predicate is what the conflict checker reads as a commit's read set: the replaced
/// partitions only (their values in their partition columns), so that commits of other
/// partitions do not conflict with it; the whole table when one item replaces it.
pub(super) fn write_predicate(
    replaced: &[&[(String, String)]],
    whole_table: bool,
) -> (Option<Vec<String>>, Option<String>) {
    let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let columns: Vec<String> = match replaced.first() {
        Some(first) if !whole_table => first.iter().map(|(c, _)| c.clone()).collect(),
        _ => return (None, None),
    };
    let predicate = match columns.as_slice() {
        [c] => {
            let values: Vec<String> = replaced.iter().map(|p| quote(&p[0].1)).collect();
            if values.len() == 1 {
                format!("{c} = {}", values[0])
            } else {
                format!("{c} IN ({})", values.join(", "))
            }
        }
        _ => replaced
            .iter()
            .map(|p| {
                let terms: Vec<String> = p
                    .iter()
                    .map(|(c, v)| format!("{c} = {}", quote(v)))
                    .collect();
                format!("({})", terms.join(" AND "))
            })
            .collect::<Vec<_>>()
            .join(" OR "),
    };
    (Some(columns), Some(predicate))
}

/// After a commit that wrote checkpoint `v`: old log entries go, and the handle reopens
/// from the checkpoint. The snapshot a commit hands back carries every commit since the
/// handle was opened, and each commit makes the next one replay them: reopening keeps a
/// commit's cost flat through long backfills. If the reopen fails, the old snapshot is
/// still right.
async fn after_checkpoint(table: &mut DeltaTable, v: u64) {
    let url = table.table_url().to_string();
    let due = CLEANED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .due(&url, std::time::Instant::now());
    if due {
        cleanup_logs(table, v).await;
    }
    if let Ok(fresh) = deltalake::open_table(table.table_url().clone()).await
        && fresh.version().is_some_and(|f| f >= v)
    {
        *table = fresh;
    }
}

/// When each table's log was last cleaned by this process.
static CLEANED: std::sync::Mutex<Cleaned> = std::sync::Mutex::new(Cleaned {
    last: std::collections::BTreeMap::new(),
});

/// How often a table's log is cleaned. The cleanup lists the whole log with a stat per
/// entry (an entry's time decides whether it has passed the retention): at every
/// checkpoint, every 50 commits, that walk grew with the log and was most of what a long
/// backfill still spent listing (83,580 stats for 76 commits of a 12,800-entry log).
/// Entries expire over days, so once an hour per table loses nothing.
const CLEAN_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// When each table's log was last cleaned; the time is given, for tests.
struct Cleaned {
    last: std::collections::BTreeMap<String, std::time::Instant>,
}

impl Cleaned {
    /// Whether `table`'s log is due a cleaning at `now`; if so, it counts as cleaned then.
    fn due(&mut self, table: &str, now: std::time::Instant) -> bool {
        let due = self
            .last
            .get(table)
            .is_none_or(|at| now.saturating_duration_since(*at) >= CLEAN_EVERY);
        if due {
            self.last.insert(table.to_string(), now);
        }
        due
    }
}

/// Removes log entries past the table's log retention that the new checkpoint makes
/// unnecessary. Best effort: a failure only leaves more log behind.
async fn cleanup_logs(table: &DeltaTable, version: u64) {
    use deltalake::table::config::TablePropertiesExt as _;
    let Ok(snapshot) = table.snapshot() else {
        return;
    };
    if !snapshot.table_config().enable_expired_log_cleanup() {
        return;
    }
    let retention = snapshot.table_config().log_retention_duration().as_millis() as i64;
    let cutoff = chrono::Utc::now().timestamp_millis() - retention;
    if let Err(e) = deltalake::checkpoints::cleanup_expired_logs_for(
        version,
        table.log_store().as_ref(),
        cutoff,
        None,
    )
    .await
    {
        tracing::warn!(error = %e, "Delta log cleanup failed; old log entries stay");
    }
}

#[cfg(test)]
mod tests {
    use super::{CLEAN_EVERY, Cleaned};
    use std::time::{Duration, Instant};

    #[test]
    fn a_table_s_log_is_cleaned_at_its_first_checkpoint_then_once_an_hour() {
        let mut cleaned = Cleaned {
            last: Default::default(),
        };
        let t0 = Instant::now();
        let (a, b) = ("file:///w/a/", "file:///w/b/");
        assert!(cleaned.due(a, t0), "a table's first checkpoint cleans");
        assert!(!cleaned.due(a, t0 + Duration::from_secs(2)));
        assert!(
            cleaned.due(b, t0 + Duration::from_secs(2)),
            "each table has its own"
        );
        assert!(!cleaned.due(a, t0 + CLEAN_EVERY - Duration::from_millis(1)));
        assert!(cleaned.due(a, t0 + CLEAN_EVERY));
        assert!(!cleaned.due(a, t0 + CLEAN_EVERY + Duration::from_secs(60)));
        assert!(!cleaned.due(b, t0 + CLEAN_EVERY), "b was cleaned later");
    }
}
