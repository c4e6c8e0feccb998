//! A merge's proof that its key is unique over the rows it publishes, made as the rows are
//! written rather than by reading them back: the rows of a lane of partitions are written
//! in the key's order, so each key must be greater than the one before it. A key equal to
//! the one before is a repeated key; a smaller one breaks the order the proof stands on,
//! and counts against it too. What it checks is the rows handed to the writer, not the
//! winners' rule that made them: a rule that kept two rows of a key is caught here.

use super::MergeError;
use super::resolve::shown_row;
use crate::names::Name;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::row::{OwnedRow, RowConverter, SortField};

/// The rows of one lane, watched in the order they are written.
pub struct KeyOrder {
    /// Where the key's columns lie in the rows written.
    key: Vec<usize>,
    rows: RowConverter,
    last: Option<OwnedRow>,
    tally: KeyTally,
}

/// What a [`KeyOrder`] saw: rows, and those whose key was not greater than the one before.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct KeyTally {
    pub rows: u64,
    pub repeated: u64,
    /// The first such row's key, as `a=1, b=x`.
    pub first: Option<String>,
}

impl KeyTally {
    /// Both lanes' tallies: keys of different lanes lie in different partitions, whose
    /// columns are part of the key.
    pub fn add(&mut self, other: KeyTally) {
        self.rows += other.rows;
        self.repeated += other.repeated;
        self.first = self.first.take().or(other.first);
    }
}

impl KeyOrder {
    /// For rows of `schema` whose key is `key` (ascending, nulls first: the merge's sort).
    pub fn new(schema: &SchemaRef, key: &[Name]) -> Result<KeyOrder, MergeError> {
        let key = key
            .iter()
            .map(|k| schema.index_of(k.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let fields = key
            .iter()
            .map(|i| SortField::new(schema.field(*i).data_type().clone()))
            .collect();
        Ok(KeyOrder {
            key,
            rows: RowConverter::new(fields)?,
            last: None,
            tally: KeyTally::default(),
        })
    }

    /// Watches the next rows written.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<(), MergeError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let columns: Vec<_> = self.key.iter().map(|i| batch.column(*i).clone()).collect();
        let keys = self.rows.convert_columns(&columns)?;
        for i in 0..n {
            let before = match i {
                0 => self.last.as_ref().map(|l| l.row()),
                _ => Some(keys.row(i - 1)),
            };
            if before.is_some_and(|b| keys.row(i) <= b) {
                self.tally.repeated += 1;
                if self.tally.first.is_none() {
                    self.tally.first = Some(shown_row(batch, &self.key, i));
                }
            }
        }
        self.last = Some(keys.row(n - 1).owned());
        self.tally.rows += n as u64;
        Ok(())
    }

    pub fn tally(self) -> KeyTally {
        self.tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(ids: &[i64], names: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(names.to_vec())),
                Arc::new(Int64Array::from(ids.to_vec())),
            ],
        )
        .expect("batch")
    }

    fn watched(batches: &[RecordBatch]) -> KeyTally {
        let key = [Name::new("id").expect("name")];
        let mut order = KeyOrder::new(&batches[0].schema(), &key).expect("key");
        for b in batches {
            order.add(b).expect("add");
        }
        order.tally()
    }

    #[test]
    fn increasing_keys_across_batches_prove_the_key_unique() {
        let t = watched(&[batch(&[1, 2, 5], &["a", "b", "c"]), batch(&[6], &["d"])]);
        assert_eq!((t.rows, t.repeated, t.first), (4, 0, None));
    }

    #[test]
    fn a_key_repeated_across_a_batch_boundary_or_out_of_order_counts_against_it() {
        let t = watched(&[
            batch(&[1, 2], &["a", "b"]),
            batch(&[2, 3, 1], &["c", "d", "e"]),
        ]);
        assert_eq!(t.rows, 5);
        assert_eq!(t.repeated, 2);
        assert_eq!(t.first.as_deref(), Some("id=2"));
    }
}
