//! Rows past a retention removed from a table whose files each hold one moment (the dead
//! letters: one run's rows, all recorded at once), file by file: a file goes when the
//! latest time its statistics give for the column is before the cut-off. One Delta commit
//! removes them all, its read set the partitions it touches, so that a run replacing one
//! of those partitions meanwhile makes it conflict (and it is tried again later) rather
//! than remove what the run just wrote.

use super::commit::write_predicate;
use super::{DeltaError, Doing};
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, LogicalFileView};
use deltalake::protocol::DeltaOperation;
use futures::TryStreamExt as _;

/// What an expiry removed (or, dry, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub files: u64,
    pub rows: u64,
}

/// The latest value of `column` in the file, in milliseconds, from its statistics; none
/// when they do not say (the file is then kept).
fn latest_ms(file: &LogicalFileView, column: &str) -> Option<i64> {
    let stats: serde_json::Value = serde_json::from_str(&file.stats()?).ok()?;
    let max = stats.get("maxValues")?.get(column)?.as_str()?;
    let at = chrono::DateTime::parse_from_rfc3339(max).ok()?;
    Some(at.timestamp_millis())
}

/// Removes the files of `table` whose rows are all older than `cutoff_ms` in `column` (a
/// timestamp), in one commit (`dry_run`: counts them only).
pub async fn expire_files(
    table: &mut DeltaTable,
    column: &str,
    cutoff_ms: i64,
    dry_run: bool,
) -> Result<Expired, DeltaError> {
    let url = table.table_url().clone();
    let files: Vec<LogicalFileView> = table
        .get_active_add_actions_by_partitions(&[])
        .try_collect()
        .await
        .map_err(|e| DeltaError::open(&url, e))?;
    let old: Vec<&LogicalFileView> = files
        .iter()
        .filter(|f| latest_ms(f, column).is_some_and(|t| t < cutoff_ms))
        .collect();
    let expired = Expired {
        files: old.len() as u64,
        rows: old
            .iter()
            .map(|f| f.num_records().unwrap_or(0) as u64)
            .sum(),
    };
    if dry_run || old.is_empty() {
        return Ok(expired);
    }
    let mut touched: Vec<Vec<(String, String)>> = Vec::new();
    for f in &old {
        let mut values: Vec<(String, String)> = f
            .partition_values_map()
            .into_iter()
            .filter_map(|(c, v)| Some((c, v?)))
            .collect();
        values.sort();
        if !touched.contains(&values) {
            touched.push(values);
        }
    }
    let replaced: Vec<&[(String, String)]> = touched.iter().map(Vec::as_slice).collect();
    let whole_table = replaced.iter().any(|p| p.is_empty());
    let (_, predicate) = write_predicate(&replaced, whole_table);
    let actions: Vec<Action> = old
        .iter()
        .map(|f| Action::Remove(f.remove_action(true)))
        .collect();
    let props = CommitProperties::default().with_cleanup_expired_logs(Some(false));
    let snapshot = table.snapshot().map_err(|e| DeltaError::open(&url, e))?;
    let done = CommitBuilder::from(props)
        .with_actions(actions)
        .build(
            Some(snapshot),
            table.log_store(),
            DeltaOperation::Delete { predicate },
        )
        .await
        .map_err(|e| DeltaError::below(Doing::Commit, &url, e))?;
    table.state = Some(done.snapshot());
    Ok(expired)
}
