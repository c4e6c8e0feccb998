//! Tables that are not facts: a job's partition output upserted into its table by key
//! (`[output] write = "merge"`), rather than replacing a partition of it.
//!
//! The promise is the one every sluice table keeps: running any partition, in any order, any
//! number of times, leaves the table as if every partition had run once, in time order.
//! For a merge that is true because what the table holds for a key is a function of the set
//! of changes ever merged, not of their order: the change with the greatest `sequence_by`
//! value wins (a late partition, or a rerun of an old one, cannot move a row back in time),
//! and a delete is kept as a tombstone (its key and sequence) so that an older update
//! merged after it does not bring the row back. A rerun merges its changes again: each is
//! the key's winner already, or loses to a newer one: nothing moves.
//!
//! Two changes of one key with one sequence value are refused unless they are the same
//! change (a rerun, a duplicate row in an export): no order between them is known, and
//! picking one would make the table depend on the order the partitions ran in.
//!
//! `resolve` is the rule, as one DataFusion sort over three inputs read in one pass: the partition's
//! changes, the rows the table holds for the partitions those changes can touch, and the
//! tombstones there. Its output is the new content of those partitions, with each key's
//! winner marked as a row or a tombstone (`DELETED`); the caller writes the rows to the
//! table and the tombstones beside it.

mod key_order;
mod resolve;
pub mod scd2;
#[cfg(test)]
mod test_rng;

pub use key_order::{KeyOrder, KeyTally};
pub use resolve::{DELETED, MergeInputs, Winners, resolve, split_deleted};

pub use crate::job::{MergeRule, Scd2Rule};

use deltalake::arrow::datatypes::{Field, Schema};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use std::sync::Arc;

/// Why a merge could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(
        "{count} change(s) have no `{column}` value (the merge's sequence_by), the first of key {first}: a change without one cannot be ordered against the table; fill it in the job's SQL (e.g. COALESCE) or leave such rows out"
    )]
    NoSequence {
        column: String,
        count: u64,
        first: String,
    },
    #[error(
        "two different changes of key {key} have the same `{column}` value {value}: sluice cannot tell which is newer, and would otherwise make the table depend on the order partitions ran in; make `{column}` order every key's changes (a finer timestamp, or a change sequence number), or remove the duplicate from the export"
    )]
    SameSequence {
        key: String,
        column: String,
        value: String,
    },
    /// What the spec asks does not fit the table.
    #[error("{0}")]
    Spec(String),
    #[error("output.delete_when `{expr}`: {message}")]
    DeleteWhen { expr: String, message: String },
    #[error("the merge's query: {0}")]
    Engine(#[from] deltalake::datafusion::error::DataFusionError),
    #[error("the merge's rows: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    /// A lane of the merge's partitions ended without its outcome (it panicked).
    #[error("a lane of the merge's partitions stopped: {0} (this is likely a bug)")]
    Lane(String),
}

/// Whether `write`'s `delete_when` (if any) is a condition over the table's columns, as
/// `resolve` reads it: `validate` asks before anything runs.
pub fn check_delete_when(
    write: &crate::job::WriteMode,
    table: &crate::schema::TableSchema,
) -> Result<(), MergeError> {
    let rule = match write {
        crate::job::WriteMode::Merge(rule) => rule,
        crate::job::WriteMode::Scd2(rule) => &rule.changes,
        crate::job::WriteMode::Replace => return Ok(()),
    };
    let Some(expr) = &rule.delete_when else {
        return Ok(());
    };
    let ctx = crate::engine::Engine::table_session();
    let schema =
        deltalake::datafusion::common::DFSchema::try_from(table.to_arrow().as_ref().clone())?;
    resolve::delete_condition(&ctx, expr, &schema).map(|_| ())
}

/// The table after `changes` are merged into the rows `before` (an scd2 table's versions),
/// all in memory and with no tombstones or log beside them: what a `sluice test` of a
/// merging job compares with its expected rows. `None` for a job that replaces.
pub async fn merged_in_memory(
    ctx: &SessionContext,
    table: &crate::schema::TableSchema,
    write: &crate::job::WriteMode,
    before: RecordBatch,
    changes: RecordBatch,
) -> Result<Option<RecordBatch>, MergeError> {
    use crate::job::WriteMode;
    let (held, changes) = (ctx.read_batch(before)?, ctx.read_batch(changes)?);
    let batches = match write {
        WriteMode::Replace => return Ok(None),
        WriteMode::Merge(rule) => {
            let fields: Vec<Field> = rule
                .tombstone_columns(&table.columns)
                .into_iter()
                .map(|c| c.to_arrow())
                .collect();
            let empty = RecordBatch::new_empty(Arc::new(Schema::new(fields)));
            let inputs = MergeInputs {
                changes,
                held,
                tombstones: ctx.read_batch(empty)?,
            };
            let winners = resolve(ctx, &table.columns, rule, inputs).await?;
            let mut live = Vec::new();
            for batch in winners.collect().await? {
                live.push(split_deleted(&batch)?.0);
            }
            live
        }
        WriteMode::Scd2(rule) => {
            scd2::history_after(ctx, &table.columns, rule, held, changes)
                .await?
                .collect()
                .await?
        }
    };
    let Some(first) = batches.first() else {
        return Ok(Some(RecordBatch::new_empty(table.to_arrow())));
    };
    Ok(Some(deltalake::arrow::compute::concat_batches(
        &first.schema(),
        &batches,
    )?))
}
