//! Fitting a job's output to its table: the output of the SQL is checked against the table
//! schema the catalog holds, column by column, and only then written.
//!
//! Runs never change a schema (promise 5): a column the table lacks, a NOT NULL column the
//! SQL leaves out, or a type that cannot be widened without loss is an error that names the
//! column and both types. Lossless widenings (INT to BIGINT, FLOAT to DOUBLE, string and
//! timestamp encodings) are applied, and a nullable column the SQL does not produce is null.

use crate::schema::TableSchema;
use crate::schema::types::{sql_name, widens_to};
use deltalake::arrow::array::{Array, ArrayRef, new_null_array};
use deltalake::arrow::compute::kernels::cast::{CastOptions, cast_with_options};
use deltalake::arrow::compute::kernels::cmp::distinct;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use deltalake::datafusion::scalar::ScalarValue;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConformError {
    #[error("the SQL produces column `{column}`, which table `{table}` does not have; {hint}")]
    UnknownColumn {
        table: String,
        column: String,
        hint: String,
    },
    #[error(
        "the SQL does not produce column `{column}` of table `{table}`, which is NOT NULL ({ty}); select it, or make it nullable by a migration"
    )]
    MissingColumn {
        table: String,
        column: String,
        ty: String,
    },
    #[error(
        "column `{column}`: the SQL produces {sql_type} but table `{table}` declares {table_type}; CAST it in the SQL, or change the table by a migration"
    )]
    TypeMismatch {
        table: String,
        column: String,
        sql_type: String,
        table_type: String,
    },
    #[error(
        "column `{column}` of table `{table}` is NOT NULL but the SQL produces {count} null value(s)"
    )]
    NullInNotNull {
        table: String,
        column: String,
        count: usize,
    },
    #[error(
        "{count} row(s) have partition column `{column}` = {found}, outside partition {partition} ({expected}); filter the SQL to the partition (use $partition_start and $partition_end), or leave `{column}` out and sluice fills it in"
    )]
    OutsidePartition {
        column: String,
        partition: String,
        expected: String,
        found: String,
        count: usize,
    },
    #[error("cannot convert column `{column}`: {message}")]
    Cast { column: String, message: String },
}

/// What a partition's output must look like; built once per run, applied to every batch.
pub struct Conformer {
    table: TableSchema,
    target: SchemaRef,
    /// For each table column: the index of the SQL column that feeds it, if any.
    sources: Vec<Option<usize>>,
    /// For each table column the SQL does not produce: its default, if it has one.
    defaults: Vec<Option<ScalarValue>>,
    /// Each partition column's name, the value every row must carry, and the partition.
    partition: Vec<PartitionColumn>,
}

/// A partition column, the value a partition holds in it, and the partition's text.
pub type PartitionColumn = (String, ScalarValue, String);

impl Conformer {
    /// `partition` holds the partition columns and the values that partition holds in
    /// them, for a partitioned table.
    pub fn new(
        table: &TableSchema,
        output: &SchemaRef,
        partition: Vec<PartitionColumn>,
        unknown_column_hint: impl Fn(&str) -> String,
    ) -> Result<Conformer, ConformError> {
        let tname = table.name.to_string();
        for f in output.fields() {
            if table.column(f.name()).is_none() {
                return Err(ConformError::UnknownColumn {
                    table: tname,
                    column: f.name().clone(),
                    hint: unknown_column_hint(f.name()),
                });
            }
        }
        let mut sources = Vec::with_capacity(table.columns.len());
        for c in &table.columns {
            let idx = output.index_of(c.name.as_str()).ok();
            match idx {
                Some(i) => {
                    let from = output.field(i).data_type();
                    let to = c.ty.to_arrow();
                    if !widens_to(from, &to) {
                        return Err(ConformError::TypeMismatch {
                            table: tname,
                            column: c.name.to_string(),
                            sql_type: sql_name(from),
                            table_type: c.ty.to_string(),
                        });
                    }
                }
                None => {
                    let is_partition = partition.iter().any(|(p, _, _)| p == c.name.as_str());
                    if !c.nullable && !is_partition && c.default.is_none() {
                        return Err(ConformError::MissingColumn {
                            table: tname,
                            column: c.name.to_string(),
                            ty: c.ty.to_string(),
                        });
                    }
                }
            }
            sources.push(idx);
        }
        // A column the SQL leaves out takes its default (null without one).
        let defaults = table
            .columns
            .iter()
            .zip(&sources)
            .map(|(c, src)| match (src, &c.default) {
                (None, Some(literal)) => crate::schema::default_value(c.ty, literal)
                    .map(Some)
                    .map_err(|message| ConformError::Cast {
                        column: c.name.to_string(),
                        message,
                    }),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Conformer {
            target: table.to_arrow(),
            table: table.clone(),
            sources,
            defaults,
            partition,
        })
    }

    pub fn target_schema(&self) -> SchemaRef {
        self.target.clone()
    }

    /// One output batch, in the table's column order and types.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, ConformError> {
        self.conform(batch, false).map(|(b, _)| b)
    }

    /// Like [`Conformer::apply`], but a row that does not fit the table (a null in a NOT
    /// NULL column, a value its column's type cannot hold, a partition value outside the
    /// partition) is left out and returned, by its index in `batch`, with the reason,
    /// instead of failing the batch.
    pub fn apply_rejecting(
        &self,
        batch: &RecordBatch,
    ) -> Result<(RecordBatch, Vec<(usize, String)>), ConformError> {
        self.conform(batch, true)
    }

    fn conform(
        &self,
        batch: &RecordBatch,
        reject: bool,
    ) -> Result<(RecordBatch, Vec<(usize, String)>), ConformError> {
        let rows = batch.num_rows();
        let mut rejected = Rejections(vec![None; if reject { rows } else { 0 }]);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.sources.len());
        for k in 0..self.table.columns.len() {
            let array = self.column_values(batch, k, &mut rejected)?;
            self.check_not_null(k, &array, &mut rejected)?;
            self.check_partition(k, &array, &mut rejected)?;
            columns.push(array);
        }
        let rejects: Vec<(usize, String)> = rejected
            .0
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i, r)))
            .collect();
        let out = self.assemble(columns, &rejects, rows)?;
        Ok((out, rejects))
    }

    /// Table column `k`'s values for `batch`: the SQL's column cast to the table's type,
    /// the partition's value, the column's default, or nulls.
    fn column_values(
        &self,
        batch: &RecordBatch,
        k: usize,
        rejected: &mut Rejections,
    ) -> Result<ArrayRef, ConformError> {
        let (c, src, default) = (&self.table.columns[k], self.sources[k], &self.defaults[k]);
        let rows = batch.num_rows();
        let to = c.ty.to_arrow();
        let cast_err = |e: deltalake::arrow::error::ArrowError| ConformError::Cast {
            column: c.name.to_string(),
            message: e.to_string(),
        };
        let fill = |v: &ScalarValue| {
            v.to_array_of_size(rows).map_err(|e| ConformError::Cast {
                column: c.name.to_string(),
                message: e.to_string(),
            })
        };
        let Some(i) = src else {
            return match (self.partition_of(k), default) {
                (Some((_, value, _)), _) => fill(value),
                (None, Some(v)) => fill(v),
                (None, None) => Ok(new_null_array(&to, rows)),
            };
        };
        let a = batch.column(i);
        if a.data_type() == &to {
            return Ok(a.clone());
        }
        let reject = rejected.active();
        let opts = CastOptions {
            // Rejecting: a value that does not fit becomes null and is reported here.
            safe: reject,
            ..Default::default()
        };
        let cast = cast_with_options(a, &to, &opts).map_err(cast_err)?;
        if reject {
            for row in 0..rows {
                if cast.is_null(row) && !a.is_null(row) {
                    let v = ScalarValue::try_from_array(a, row)
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    rejected.mark(
                        row,
                        format!("column `{}`: {v} does not fit {}", c.name, c.ty),
                    );
                }
            }
        }
        Ok(cast)
    }

    /// The partition column's name, value and partition, when column `k` is it.
    fn partition_of(&self, k: usize) -> Option<&PartitionColumn> {
        let name = self.table.columns[k].name.as_str();
        self.partition.iter().find(|(p, _, _)| p == name)
    }

    /// Nulls in a NOT NULL column fail the batch, or reject their rows.
    fn check_not_null(
        &self,
        k: usize,
        array: &ArrayRef,
        rejected: &mut Rejections,
    ) -> Result<(), ConformError> {
        let c = &self.table.columns[k];
        if c.nullable || array.null_count() == 0 {
            return Ok(());
        }
        if !rejected.active() {
            return Err(ConformError::NullInNotNull {
                table: self.table.name.to_string(),
                column: c.name.to_string(),
                count: array.null_count(),
            });
        }
        for row in 0..array.len() {
            if array.is_null(row) {
                rejected.mark(
                    row,
                    format!(
                        "column `{}` of table `{}` is NOT NULL but the row has null",
                        c.name, self.table.name
                    ),
                );
            }
        }
        Ok(())
    }

    /// A partition column the SQL produces must hold the partition's value in every row;
    /// one that does not fails the batch, or rejects its rows.
    fn check_partition(
        &self,
        k: usize,
        array: &ArrayRef,
        rejected: &mut Rejections,
    ) -> Result<(), ConformError> {
        let (Some(_), Some((name, value, partition))) = (self.sources[k], self.partition_of(k))
        else {
            return Ok(());
        };
        let Err(e) = check_partition_values(name, value, partition, array) else {
            return Ok(());
        };
        if !rejected.active() {
            return Err(e);
        }
        let cast_err = |e: deltalake::arrow::error::ArrowError| ConformError::Cast {
            column: name.clone(),
            message: e.to_string(),
        };
        let expected = value.to_array_of_size(1).map_err(|e| ConformError::Cast {
            column: name.clone(),
            message: e.to_string(),
        })?;
        let scalar = deltalake::arrow::array::Scalar::new(expected);
        let differs = distinct(array, &scalar).map_err(cast_err)?;
        for row in 0..array.len() {
            if differs.value(row) {
                rejected.mark(
                    row,
                    format!("partition column `{name}` is outside partition {partition}"),
                );
            }
        }
        Ok(())
    }

    /// The conformed columns as one batch, without the rejected rows.
    fn assemble(
        &self,
        columns: Vec<ArrayRef>,
        rejects: &[(usize, String)],
        rows: usize,
    ) -> Result<RecordBatch, ConformError> {
        let batch_err = |e: deltalake::arrow::error::ArrowError| ConformError::Cast {
            column: "(batch)".into(),
            message: e.to_string(),
        };
        let (columns, rows) = if rejects.is_empty() {
            (columns, rows)
        } else {
            let keep: deltalake::arrow::array::BooleanArray = (0..rows)
                .map(|i| Some(rejects.binary_search_by_key(&i, |(r, _)| *r).is_err()))
                .collect();
            let kept = columns
                .iter()
                .map(|c| deltalake::arrow::compute::filter(c.as_ref(), &keep))
                .collect::<Result<Vec<_>, _>>()
                .map_err(batch_err)?;
            (kept, keep.true_count())
        };
        RecordBatch::try_new_with_options(
            self.target.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(batch_err)
    }
}

/// Why each row of a batch is rejected (the first reason found); empty when not rejecting.
struct Rejections(Vec<Option<String>>);

impl Rejections {
    fn active(&self) -> bool {
        !self.0.is_empty()
    }

    fn mark(&mut self, row: usize, why: String) {
        if self.0[row].is_none() {
            self.0[row] = Some(why);
        }
    }
}

fn check_partition_values(
    column: &str,
    value: &ScalarValue,
    partition: &str,
    array: &ArrayRef,
) -> Result<(), ConformError> {
    let expected = value.to_array_of_size(1).map_err(|e| ConformError::Cast {
        column: column.into(),
        message: e.to_string(),
    })?;
    let scalar = deltalake::arrow::array::Scalar::new(expected);
    let differs = distinct(array, &scalar).map_err(|e| ConformError::Cast {
        column: column.into(),
        message: e.to_string(),
    })?;
    let count = differs.true_count();
    if count == 0 {
        return Ok(());
    }
    let first = differs.iter().position(|d| d == Some(true)).unwrap_or(0);
    let found = ScalarValue::try_from_array(array, first)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "?".into());
    Err(ConformError::OutsidePartition {
        column: column.into(),
        partition: partition.into(),
        expected: value.to_string(),
        found,
        count,
    })
}
