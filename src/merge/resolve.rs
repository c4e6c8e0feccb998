//! The merge's rule (see the module's page): every key's candidates (the row the table
//! holds, its tombstone, the partition's changes) sorted by DataFusion, newest first, and
//! the first of each key kept as the sorted batches stream by. The sort spills past the
//! engine's memory pool, and the pass over its output keeps one row, so a merge's memory
//! is bounded by configuration, not by the size of the partitions it touches.

use super::{MergeError, MergeRule};
use crate::schema::Column;
use deltalake::arrow::array::{Array, BooleanArray, BooleanBufferBuilder};
use deltalake::arrow::compute::{filter_record_batch, not};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::common::{DFSchema, ScalarValue};
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::logical_expr::SortExpr;
use deltalake::datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit, when};
use futures::StreamExt as _;

/// The column marking a key's winner as a tombstone (a delete) rather than a row.
pub const DELETED: &str = "__sluice_deleted";
/// 0 for what the table holds (its row or tombstone), 1 for a change: on one sequence
/// value the table's wins, so that a rerun's identical change rewrites nothing.
const SOURCE: &str = "__sluice_source";

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
/// Refuses changes without a sequence value, and (as the winners are read) two different
/// changes of a key with one sequence value (see [`MergeError`]).
pub async fn resolve(
    ctx: &SessionContext,
    columns: &[Column],
    rule: &MergeRule,
    inputs: MergeInputs,
) -> Result<Winners, MergeError> {
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
    // Each key's candidates together, newest first; on one sequence value the table's
    // first. Sorts spill past the engine's memory pool.
    let mut order: Vec<SortExpr> = rule
        .key
        .iter()
        .map(|k| col(quote(k.as_str())).sort(true, true))
        .collect();
    order.push(col(quote(rule.sequence_by.as_str())).sort(false, false));
    order.push(col(SOURCE).sort(true, true));
    let stream = candidates.sort(order)?.execute_stream().await?;
    Winners::new(stream, columns, rule)
}

/// The sorted candidates' first row of each key, batch by batch: a stream of winners, with
/// the table's columns and [`DELETED`]. Reading them in order also finds two different
/// changes of one key with one sequence value: they lie next to each other.
pub struct Winners {
    stream: SendableRecordBatchStream,
    /// Where the key's columns, the sequence, and what a change is (every column but
    /// [`SOURCE`]) lie in the candidates; `output` the columns a winner keeps.
    key: Vec<usize>,
    seq: usize,
    content: Vec<usize>,
    output: Vec<usize>,
    key_rows: RowConverter,
    seq_rows: RowConverter,
    content_rows: RowConverter,
    /// The previous batch's last candidate: a key's candidates may straddle two batches.
    last: Option<Last>,
    sequence_by: String,
}

struct Last {
    key: OwnedRow,
    seq: OwnedRow,
    content: OwnedRow,
}

impl Winners {
    fn new(
        stream: SendableRecordBatchStream,
        columns: &[Column],
        rule: &MergeRule,
    ) -> Result<Winners, MergeError> {
        let schema = stream.schema();
        let at = |name: &str| -> Result<usize, MergeError> { Ok(schema.index_of(name)?) };
        let key = rule
            .key
            .iter()
            .map(|k| at(k.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let seq = at(rule.sequence_by.as_str())?;
        let mut output = columns
            .iter()
            .map(|c| at(c.name.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        output.push(at(DELETED)?);
        let sorted = |idx: &[usize]| -> Result<RowConverter, MergeError> {
            let fields = idx
                .iter()
                .map(|i| SortField::new(schema.field(*i).data_type().clone()))
                .collect();
            Ok(RowConverter::new(fields)?)
        };
        Ok(Winners {
            key_rows: sorted(&key)?,
            seq_rows: sorted(&[seq])?,
            content_rows: sorted(&output)?,
            content: output.clone(),
            stream,
            key,
            seq,
            output,
            last: None,
            sequence_by: rule.sequence_by.to_string(),
        })
    }

    /// The next batch of winners, `None` once the candidates are read.
    pub async fn next(&mut self) -> Option<Result<RecordBatch, MergeError>> {
        let batch = match self.stream.next().await? {
            Ok(b) => b,
            Err(e) => return Some(Err(e.into())),
        };
        Some(self.winners_of(&batch))
    }

    /// Every winner, in memory (a `sluice test`'s few rows).
    pub async fn collect(mut self) -> Result<Vec<RecordBatch>, MergeError> {
        let mut all = Vec::new();
        while let Some(b) = self.next().await {
            all.push(b?);
        }
        Ok(all)
    }

    fn winners_of(&mut self, batch: &RecordBatch) -> Result<RecordBatch, MergeError> {
        let n = batch.num_rows();
        let out = batch.project(&self.output)?;
        if n == 0 {
            return Ok(out);
        }
        let of = |idx: &[usize]| {
            idx.iter()
                .map(|i| batch.column(*i).clone())
                .collect::<Vec<_>>()
        };
        let keys = self.key_rows.convert_columns(&of(&self.key))?;
        let seqs = self.seq_rows.convert_columns(&of(&[self.seq]))?;
        let mut content: Option<Rows> = None;
        let mut keep = BooleanBufferBuilder::new(n);
        for i in 0..n {
            let (same_key, same_seq) = match (i, &self.last) {
                (0, None) => (false, false),
                (0, Some(l)) => (l.key.row() == keys.row(0), l.seq.row() == seqs.row(0)),
                _ => (
                    keys.row(i) == keys.row(i - 1),
                    seqs.row(i) == seqs.row(i - 1),
                ),
            };
            keep.append(!same_key);
            if !(same_key && same_seq) {
                continue;
            }
            if content.is_none() {
                content = Some(self.content_rows.convert_columns(&of(&self.content))?);
            }
            let Some(c) = &content else { continue };
            let before = match (i, &self.last) {
                (0, Some(l)) => l.content.row(),
                _ => c.row(i - 1),
            };
            if before != c.row(i) {
                return Err(MergeError::SameSequence {
                    key: shown_row(batch, &self.key, i),
                    column: self.sequence_by.clone(),
                    value: shown(batch.column(self.seq).slice(i, 1).as_ref()),
                });
            }
        }
        let content = match content {
            Some(c) => c.row(n - 1).owned(),
            None => {
                let last: Vec<_> = of(&self.content)
                    .iter()
                    .map(|c| c.slice(n - 1, 1))
                    .collect();
                self.content_rows.convert_columns(&last)?.row(0).owned()
            }
        };
        self.last = Some(Last {
            key: keys.row(n - 1).owned(),
            seq: seqs.row(n - 1).owned(),
            content,
        });
        let keep = BooleanArray::new(keep.finish(), None);
        Ok(filter_record_batch(&out, &keep)?)
    }
}

/// Row `i`'s columns `idx` of `batch`, as `a=1, b=x`.
pub(super) fn shown_row(batch: &RecordBatch, idx: &[usize], i: usize) -> String {
    let schema = batch.schema();
    idx.iter()
        .map(|c| {
            let value = batch.column(*c).slice(i, 1);
            format!("{}={}", schema.field(*c).name(), shown(value.as_ref()))
        })
        .collect::<Vec<_>>()
        .join(", ")
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
    // A column the table declares NOT NULL holds none: its rows were fitted to it.
    let nullable = changes
        .schema()
        .field_with_unqualified_name(rule.sequence_by.as_str())
        .map_or(true, |f| f.is_nullable());
    if !nullable {
        return Ok(());
    }
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
