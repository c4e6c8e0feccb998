//! Deterministic record ids: a column holding a hash of the row's key values, equal for the
//! same key on every run and every machine (it depends on the values only: no run id, no
//! time, no order).

use super::conform::ConformError;
use crate::names::Name;
use deltalake::arrow::array::{ArrayRef, StringBuilder};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use std::sync::Arc;

/// The SQL output's schema with the record id column added (replacing one of that name).
pub fn schema_with(schema: &SchemaRef, column: &Name) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != column.as_str())
        .cloned()
        .collect();
    fields.push(Arc::new(Field::new(column.as_str(), DataType::Utf8, false)));
    Arc::new(Schema::new(fields))
}

/// `batch` with the record id column computed from the `key` columns.
pub fn append(
    batch: &RecordBatch,
    column: &Name,
    key: &[Name],
) -> Result<RecordBatch, ConformError> {
    let err = |message: String| ConformError::Cast {
        column: column.to_string(),
        message,
    };
    let opts = FormatOptions::default().with_null("");
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(key.len());
    for k in key {
        let a = batch.column_by_name(k.as_str()).ok_or_else(|| {
            err(format!(
                "the record id hashes key column `{k}`, which the SQL does not produce; select it"
            ))
        })?;
        arrays.push(a.clone());
    }
    let mut formatters = Vec::with_capacity(key.len());
    for a in &arrays {
        formatters
            .push(ArrayFormatter::try_new(a.as_ref(), &opts).map_err(|e| err(e.to_string()))?);
    }
    let mut out = StringBuilder::with_capacity(batch.num_rows(), batch.num_rows() * 32);
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        let mut h = blake3::Hasher::new();
        for (a, f) in arrays.iter().zip(&formatters) {
            // Length-prefixed, with a null marker, so that ("a", "bc") and ("ab", "c") differ.
            if a.is_null(row) {
                h.update(&[0]);
                continue;
            }
            text.clear();
            use std::fmt::Write as _;
            let _ = write!(text, "{}", f.value(row));
            h.update(&[1]);
            h.update(&(text.len() as u64).to_le_bytes());
            h.update(text.as_bytes());
        }
        let hex = h.finalize().to_hex();
        out.append_value(&hex.as_str()[..32]);
    }
    let ids: ArrayRef = Arc::new(out.finish());
    let schema = schema_with(&batch.schema(), column);
    let mut columns: Vec<ArrayRef> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| f.name() != column.as_str())
        .map(|(_, c)| c.clone())
        .collect();
    columns.push(ids);
    RecordBatch::try_new(schema, columns).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, StringArray};

    #[test]
    fn ids_depend_on_the_key_values_only() {
        let batch = |ids: Vec<i64>, other: Vec<&str>| {
            RecordBatch::try_from_iter([
                ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
                ("other", Arc::new(StringArray::from(other)) as ArrayRef),
            ])
            .unwrap()
        };
        let key = [Name::new("id").unwrap()];
        let col = Name::new("record_id").unwrap();
        let a = append(&batch(vec![1, 2], vec!["x", "y"]), &col, &key).unwrap();
        let b = append(&batch(vec![2, 1], vec!["z", "w"]), &col, &key).unwrap();
        let ids = |r: &RecordBatch| {
            r.column_by_name("record_id")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let (ia, ib) = (ids(&a), ids(&b));
        assert_eq!(ia[0], ib[1]);
        assert_eq!(ia[1], ib[0]);
        assert_ne!(ia[0], ia[1]);
        assert_eq!(ia[0].len(), 32);
    }
}
