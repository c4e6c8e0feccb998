//! The merge's rule as one DataFusion plan (see the module's page): every key's candidates
//! (the row the table holds, its tombstone, the partition's changes), ranked by sequence,
//! the first kept. Sorts and windows spill past the engine's memory pool, so a merge's
//! memory is bounded by configuration, not by the size of the partitions it touches.

use super::{MergeError, MergeRule};
use crate::schema::Column;
use deltalake::arrow::array::{Array, BooleanArray};
use deltalake::arrow::compute::{filter_record_batch, not};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::common::{DFSchema, ScalarValue};
use deltalake::datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit, when};

/// The column marking a key's winner as a tombstone (a delete) rather than a row.
pub const DELETED: &str = "__sluice_deleted";
/// 0 for what the table holds (its row or tombstone), 1 for a change: on one sequence
/// value the table's wins, so that a rerun's identical change rewrites nothing.
const SOURCE: &str = "__sluice_source";
const RANK: &str = "__sluice_rank";
const CANDIDATES: &str = "__sluice_merge_candidates";

/// What a merge reads, each with the table's columns (`tombstones`: the key and sequence
/// columns only).
pub struct MergeInputs {
    /// The partition's output.
    pub changes: DataFrame,
    /// The table's rows in the partitions the changes can touch.
    pub held: DataFrame,
    /// The tombstones in those partitions.
    pub tombstones: DataFrame,
}

pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The key's columns, quoted, as a SQL list.
pub(super) fn key_list(rule: &MergeRule) -> String {
    rule.key
        .iter()
        .map(|k| quote(k.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each key's winner: the table's columns and [`DELETED`], one row per key the inputs name.
/// Refuses changes without a sequence value, and two different changes of a key with one
/// sequence value (see [`MergeError`]).
pub async fn resolve(
    ctx: &SessionContext,
    columns: &[Column],
    rule: &MergeRule,
    inputs: MergeInputs,
) -> Result<DataFrame, MergeError> {
    let kept = |c: &Column| rule.key.contains(&c.name) || c.name == rule.sequence_by;
    let null_of = |c: &Column| -> Result<Expr, MergeError> {
        Ok(lit(ScalarValue::try_from(&c.ty.to_arrow())?))
    };
    refuse_missing_sequence(&inputs.changes, rule).await?;

    // A delete's other columns are of no account: it equals its tombstone.
    let deleted = match &rule.delete_when {
        None => lit(false),
        Some(expr) => {
            let schema = DFSchema::try_from(inputs.changes.schema().as_arrow().clone())?;
            delete_condition(ctx, expr, &schema)?
        }
    };
    let changes = inputs.changes.with_column(DELETED, deleted)?;
    let mut change_cols = Vec::new();
    for c in columns {
        let name = c.name.as_str();
        change_cols.push(if kept(c) {
            col(quote(name))
        } else {
            when(col(DELETED), null_of(c)?)
                .otherwise(col(quote(name)))?
                .alias(name)
        });
    }
    change_cols.push(col(DELETED));
    change_cols.push(lit(1i32).alias(SOURCE));
    let changes = changes.select(change_cols)?;

    let mut held_cols: Vec<Expr> = columns
        .iter()
        .map(|c| col(quote(c.name.as_str())))
        .collect();
    held_cols.push(lit(false).alias(DELETED));
    held_cols.push(lit(0i32).alias(SOURCE));
    let held = inputs.held.select(held_cols)?;

    let mut tomb_cols = Vec::new();
    for c in columns {
        tomb_cols.push(if kept(c) {
            col(quote(c.name.as_str()))
        } else {
            null_of(c)?.alias(c.name.as_str())
        });
    }
    tomb_cols.push(lit(true).alias(DELETED));
    tomb_cols.push(lit(0i32).alias(SOURCE));
    let tombstones = inputs.tombstones.select(tomb_cols)?;

    let candidates = held.union(tombstones)?.union(changes)?;
    ctx.register_table(CANDIDATES, candidates.into_view())?;

    let key = key_list(rule);
    let seq = quote(rule.sequence_by.as_str());
    let all = columns
        .iter()
        .map(|c| quote(c.name.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let distinct = format!(
        "SELECT DISTINCT {all}, {} FROM {CANDIDATES}",
        quote(DELETED)
    );
    refuse_repeated(ctx, rule, &distinct, &key, &seq).await?;
    let winners = ctx
        .sql(&format!(
            "SELECT {all}, {del} FROM (\
               SELECT *, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {seq} DESC, {src} ASC) AS {rank} \
               FROM {CANDIDATES}) \
             WHERE {rank} = 1",
            del = quote(DELETED),
            src = quote(SOURCE),
            rank = quote(RANK),
        ))
        .await?;
    Ok(winners)
}

/// `delete_when` as a condition over `schema`'s columns: NULL counts as not deleted.
pub(super) fn delete_condition(
    ctx: &SessionContext,
    expr: &str,
    schema: &DFSchema,
) -> Result<Expr, MergeError> {
    let parsed = ctx
        .parse_sql_expr(expr, schema)
        .map_err(|e| MergeError::DeleteWhen {
            expr: expr.to_string(),
            message: crate::engine::clean_message(&e),
        })?;
    Ok(deltalake::datafusion::functions::expr_fn::coalesce(vec![
        parsed,
        lit(false),
    ]))
}

pub(super) async fn refuse_missing_sequence(
    changes: &DataFrame,
    rule: &MergeRule,
) -> Result<(), MergeError> {
    let seq = col(quote(rule.sequence_by.as_str()));
    let missing = changes.clone().filter(seq.is_null())?;
    let count = missing.clone().count().await? as u64;
    if count == 0 {
        return Ok(());
    }
    let keys: Vec<Expr> = rule.key.iter().map(|k| col(quote(k.as_str()))).collect();
    let first = missing.select(keys)?.limit(0, Some(1))?.collect().await?;
    Err(MergeError::NoSequence {
        column: rule.sequence_by.to_string(),
        count,
        first: first_row(&first, None).unwrap_or_default(),
    })
}

/// Two different rows of one key with one sequence value among `distinct` (a query of
/// distinct rows): told apart by content, a rerun's change equals what it wrote (and a
/// delete equals its tombstone).
pub(super) async fn refuse_repeated(
    ctx: &SessionContext,
    rule: &MergeRule,
    distinct: &str,
    key: &str,
    seq: &str,
) -> Result<(), MergeError> {
    let found = ctx
        .sql(&format!(
            "SELECT {key}, {seq} FROM ({distinct}) GROUP BY {key}, {seq} HAVING COUNT(*) > 1 LIMIT 1"
        ))
        .await?
        .collect()
        .await?;
    let n = rule.key.len();
    match first_row(&found, Some(n)) {
        None => Ok(()),
        Some(key) => Err(MergeError::SameSequence {
            key,
            column: rule.sequence_by.to_string(),
            value: first_value(&found, n).unwrap_or_default(),
        }),
    }
}

/// The first row's first `n` columns (all when none), as `a=1, b=x`.
fn first_row(batches: &[RecordBatch], n: Option<usize>) -> Option<String> {
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    let n = n.unwrap_or(b.num_columns());
    let shown: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{}={}",
                b.schema().field(i).name(),
                shown(b.column(i).as_ref())
            )
        })
        .collect();
    Some(shown.join(", "))
}

fn first_value(batches: &[RecordBatch], i: usize) -> Option<String> {
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    Some(shown(b.column(i).as_ref()))
}

fn shown(a: &dyn Array) -> String {
    let opts = FormatOptions::default().with_null("NULL");
    match ArrayFormatter::try_new(a, &opts) {
        Ok(f) => f.value(0).to_string(),
        Err(_) => "?".into(),
    }
}

/// A batch of winners split into the table's rows and the tombstones, each without the
/// [`DELETED`] column.
pub fn split_deleted(batch: &RecordBatch) -> Result<(RecordBatch, RecordBatch), MergeError> {
    let schema = batch.schema();
    let Ok(at) = schema.index_of(DELETED) else {
        return Ok((batch.clone(), batch.slice(0, 0)));
    };
    let deleted = batch
        .column(at)
        .as_any()
        .downcast_ref::<BooleanArray>()
        .cloned()
        .unwrap_or_else(|| BooleanArray::from(vec![false; batch.num_rows()]));
    let keep: Vec<usize> = (0..batch.num_columns()).filter(|i| *i != at).collect();
    let without = batch.project(&keep)?;
    let rows = filter_record_batch(&without, &not(&deleted)?)?;
    let tombs = filter_record_batch(&without, &deleted)?;
    Ok((rows, tombs))
}

#[cfg(test)]
mod tests;
