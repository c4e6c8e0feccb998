//! A partition's query output fitted to its table, batch by batch: the record id appended
//! when the job declares one, then conformed (`conform`) with the partition column filled.
//! Under `bad_rows = "skip"` an output row that does not fit is set aside as a dead letter
//! instead of failing the run. The runner writes what comes out; `sluice test` and the SQL
//! cases compare it.

use super::BadRow;
use super::conform::{ConformError, Conformer, PartitionColumn};
use crate::job::{BadRows, Job};
use crate::names::Name;
use crate::partition::PartitionKey;
use crate::schema::TableSchema;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;

pub struct Fitter {
    rules: FitRules,
    conformer: Conformer,
    /// Output rows seen so far: a dead letter's line is its row number in the output.
    rows_seen: u64,
}

/// What fitting needs to know of the job and the partition: plain values, so that the
/// executors of a cluster fit as this process does (they receive them in the plan).
#[derive(Clone, Debug)]
pub struct FitRules {
    /// The record id column, when the job declares one, and the key columns it hashes.
    pub record_id: Option<Name>,
    pub key: Vec<Name>,
    /// `bad_rows = "skip"`: an output row that does not fit is set aside.
    pub skip_bad_rows: bool,
    /// How a dead letter names where its row came from.
    pub origin: String,
    /// The partition columns, and the value this partition holds in each.
    pub partition: Vec<PartitionColumn>,
}

impl FitRules {
    /// The rules of `job`'s partition `key` of `table`.
    pub fn of(job: &Job, table: &TableSchema, key: &PartitionKey) -> FitRules {
        FitRules {
            record_id: job.record_id.clone(),
            key: job.key.clone(),
            skip_bad_rows: job.bad_rows == BadRows::Skip,
            origin: format!(
                "(output of jobs/{})",
                job.sql_path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
            ),
            partition: job
                .partition_values(table, key)
                .into_iter()
                .map(|v| (v.column, v.value, key.to_string()))
                .collect(),
        }
    }
}

/// One fitted batch, and the output rows left out of it.
pub struct Fitted {
    pub batch: RecordBatch,
    pub rejected: Vec<BadRow>,
}

impl Fitter {
    /// For the output of `job`'s SQL (`produced`) for partition `key` of `table`.
    /// `unknown_column_hint` says what to do about a column the table lacks.
    pub fn new(
        job: &Job,
        table: &TableSchema,
        key: &PartitionKey,
        produced: &SchemaRef,
        unknown_column_hint: impl Fn(&str) -> String,
    ) -> Result<Fitter, ConformError> {
        Fitter::with_rules(
            FitRules::of(job, table, key),
            table,
            produced,
            unknown_column_hint,
        )
    }

    pub fn with_rules(
        rules: FitRules,
        table: &TableSchema,
        produced: &SchemaRef,
        unknown_column_hint: impl Fn(&str) -> String,
    ) -> Result<Fitter, ConformError> {
        let produced = match &rules.record_id {
            Some(column) => super::record_id::schema_with(produced, column),
            None => produced.clone(),
        };
        let conformer = Conformer::new(
            table,
            &produced,
            rules.partition.clone(),
            unknown_column_hint,
        )?;
        Ok(Fitter {
            rules,
            conformer,
            rows_seen: 0,
        })
    }

    /// The table's Arrow schema: what every fitted batch has.
    pub fn target_schema(&self) -> SchemaRef {
        self.conformer.target_schema()
    }

    pub fn fit(&mut self, batch: &RecordBatch) -> Result<Fitted, ConformError> {
        let rows = batch.num_rows() as u64;
        let batch = match &self.rules.record_id {
            Some(column) => super::record_id::append(batch, column, &self.rules.key)?,
            None => batch.clone(),
        };
        let fitted = if self.rules.skip_bad_rows {
            let (good, rejects) = self.conformer.apply_rejecting(&batch)?;
            let rejected = rejects
                .into_iter()
                .map(|(row, error)| self.dead_letter(&batch, row, error))
                .collect();
            Fitted {
                batch: good,
                rejected,
            }
        } else {
            Fitted {
                batch: self.conformer.apply(&batch)?,
                rejected: Vec::new(),
            }
        };
        self.rows_seen += rows;
        Ok(fitted)
    }

    /// A dead letter for output row `row` of `batch`, which does not fit the table.
    fn dead_letter(&self, batch: &RecordBatch, row: usize, error: String) -> BadRow {
        BadRow {
            input: "(output)".into(),
            file: self.rules.origin.clone(),
            line: self.rows_seen + row as u64 + 1,
            raw: row_json(batch, row),
            error,
        }
    }
}

/// One row of a batch as a JSON object: the raw record of a dead letter from the output.
fn row_json(batch: &RecordBatch, row: usize) -> String {
    let mut w = deltalake::arrow::json::LineDelimitedWriter::new(Vec::new());
    let one = batch.slice(row, 1);
    if w.write(&one).and_then(|_| w.finish()).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&w.into_inner())
        .trim_end()
        .to_string()
}
