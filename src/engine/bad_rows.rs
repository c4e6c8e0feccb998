//! Finding the input rows that cannot be used, with file and line, and reading a file
//! without them.
//!
//! DataFusion reads CSV fast but stops at the first bad row with a line number relative to
//! a batch. When a read fails, this module reads the file again, record by record, and
//! checks every value against the declared schema with Arrow's own casts, so the verdict
//! is the same as the reader's. Only the error path pays for this.

use crate::job::CsvOptions;
use crate::names::Name;
use deltalake::arrow::array::{Array, StringArray};
use deltalake::arrow::compute::kernels::cast::{CastOptions, cast_with_options};
use deltalake::arrow::csv::ReaderBuilder;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

/// One input row that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadRow {
    pub input: String,
    /// The file, relative to the project root.
    pub file: String,
    /// 1-based line of the file where the record starts.
    pub line: u64,
    pub raw: String,
    pub error: String,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.error)
    }
}

struct Record {
    line: u64,
    start: usize,
    end: usize,
    fields: Vec<String>,
}

fn read_records(bytes: &[u8], opts: &CsvOptions) -> Result<Vec<Record>, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(opts.header)
        .delimiter(opts.delimiter)
        .flexible(true)
        .from_reader(bytes);
    let mut out: Vec<Record> = Vec::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let pos = rec.position().cloned().unwrap_or_else(csv::Position::new);
                if let Some(prev) = out.last_mut() {
                    prev.end = pos.byte() as usize;
                }
                out.push(Record {
                    line: pos.line(),
                    start: pos.byte() as usize,
                    end: bytes.len(),
                    fields: rec
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect(),
                });
            }
            Err(e) => return Err(format!("cannot read as CSV: {e}")),
        }
    }
    Ok(out)
}

fn raw_text(bytes: &[u8], r: &Record) -> String {
    String::from_utf8_lossy(&bytes[r.start.min(bytes.len())..r.end.min(bytes.len())])
        .trim_end_matches(['\r', '\n'])
        .to_string()
}

/// Checks each record of `path` against `schema`; returns the bad ones.
pub fn scan(
    path: &Path,
    shown: &str,
    input: &Name,
    schema: &SchemaRef,
    opts: &CsvOptions,
) -> Result<Vec<BadRow>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let records = read_records(&bytes, opts)?;
    let n = schema.fields().len();
    let mut errors: Vec<Option<String>> = vec![None; records.len()];
    for (i, r) in records.iter().enumerate() {
        if r.fields.len() != n {
            errors[i] = Some(format!("expected {n} fields, found {}", r.fields.len()));
        }
    }
    let lenient = CastOptions {
        safe: true,
        ..Default::default()
    };
    for (c, field) in schema.fields().iter().enumerate() {
        // Empty fields are nulls to the CSV reader, so they are nulls here too.
        let values: StringArray = records
            .iter()
            .map(|r| {
                r.fields
                    .get(c)
                    .filter(|v| !v.is_empty())
                    .map(String::as_str)
            })
            .collect();
        let cast = cast_with_options(&values, field.data_type(), &lenient)
            .map_err(|e| format!("column `{}`: {e}", field.name()))?;
        for (i, error) in errors.iter_mut().enumerate() {
            if error.is_some() {
                continue;
            }
            if values.is_valid(i) && cast.is_null(i) {
                *error = Some(format!(
                    "column `{}`: `{}` is not a valid {}",
                    field.name(),
                    values.value(i),
                    crate::schema::types::sql_name(field.data_type())
                ));
            } else if values.is_null(i) && !field.is_nullable() {
                *error = Some(format!(
                    "column `{}` is empty but declared NOT NULL",
                    field.name()
                ));
            }
        }
    }
    Ok(records
        .iter()
        .zip(errors)
        .filter_map(|(r, e)| {
            e.map(|error| BadRow {
                input: input.to_string(),
                file: shown.to_string(),
                line: r.line,
                raw: raw_text(&bytes, r),
                error,
            })
        })
        .collect())
}

/// Reads `path` into batches, leaving out the records on the lines of `bad`.
/// How many records a CSV file holds (header excluded).
pub fn count_records(bytes: &[u8], opts: &CsvOptions) -> Result<u64, String> {
    Ok(read_records(bytes, opts)?.len() as u64)
}

pub fn read_without(
    path: &Path,
    schema: &SchemaRef,
    opts: &CsvOptions,
    bad: &[BadRow],
) -> Result<Vec<RecordBatch>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let records = read_records(&bytes, opts)?;
    let skip: BTreeSet<u64> = bad.iter().map(|b| b.line).collect();
    let mut good = Vec::with_capacity(bytes.len());
    for r in records.iter().filter(|r| !skip.contains(&r.line)) {
        good.extend_from_slice(&bytes[r.start.min(bytes.len())..r.end.min(bytes.len())]);
        if !good.ends_with(b"\n") {
            good.push(b'\n');
        }
    }
    let reader = ReaderBuilder::new(schema.clone())
        .with_header(false)
        .with_delimiter(opts.delimiter)
        .build(std::io::Cursor::new(good))
        .map_err(|e| e.to_string())?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("after leaving out {} bad row(s): {e}", bad.len()))
}
