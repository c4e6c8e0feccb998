//! A partition's query output fitted to its table, batch by batch: the record id appended
//! when the job declares one, then conformed (`conform`) with the partition column filled.
//! Under `bad_rows = "skip"` an output row that does not fit is set aside as a dead letter
//! instead of failing the run. The runner writes what comes out; `sluice test` and the SQL
//! cases compare it.

use super::BadRow;
use super::conform::{ConformError, Conformer};
use crate::job::{BadRows, Job};
use crate::partition::PartitionKey;
use crate::schema::TableSchema;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;

pub struct Fitter<'a> {
    job: &'a Job,
    conformer: Conformer,
    /// Output rows seen so far: a dead letter's line is its row number in the output.
    rows_seen: u64,
}

/// One fitted batch, and the output rows left out of it.
pub struct Fitted {
    pub batch: RecordBatch,
    pub rejected: Vec<BadRow>,
}

impl<'a> Fitter<'a> {
    /// For the output of `job`'s SQL (`produced`) for partition `key` of `table`.
    /// `unknown_column_hint` says what to do about a column the table lacks.
    pub fn new(
        job: &'a Job,
        table: &TableSchema,
        key: &PartitionKey,
        produced: &SchemaRef,
        unknown_column_hint: impl Fn(&str) -> String,
    ) -> Result<Fitter<'a>, ConformError> {
        let pvalue = job
            .partition_values(table, key)
            .into_iter()
            .map(|v| (v.column, v.value, key.to_string()))
            .collect();
        let produced = match &job.record_id {
            Some(column) => super::record_id::schema_with(produced, column),
            None => produced.clone(),
        };
        Ok(Fitter {
            job,
            conformer: Conformer::new(table, &produced, pvalue, unknown_column_hint)?,
            rows_seen: 0,
        })
    }

    /// The table's Arrow schema: what every fitted batch has.
    pub fn target_schema(&self) -> SchemaRef {
        self.conformer.target_schema()
    }

    pub fn fit(&mut self, batch: &RecordBatch) -> Result<Fitted, ConformError> {
        let rows = batch.num_rows() as u64;
        let batch = match &self.job.record_id {
            Some(column) => super::record_id::append(batch, column, &self.job.key)?,
            None => batch.clone(),
        };
        let fitted = if self.job.bad_rows == BadRows::Skip {
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
            file: format!(
                "(output of jobs/{})",
                self.job
                    .sql_path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
            ),
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
