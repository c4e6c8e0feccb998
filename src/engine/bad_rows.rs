//! Finding the input rows that cannot be used (CSV and newline-delimited JSON), with file
//! and line, and reading a file without them.
//!
//! DataFusion reads CSV fast but stops at the first bad row with a line number relative to
//! a batch. When a read fails, this module reads the file again, record by record, and
//! checks every value against the declared schema with Arrow's own casts, so the verdict
//! is the same as the reader's. Only the error path pays for this.

use crate::job::{CsvOptions, FileFormat};
use crate::names::Name;
use deltalake::arrow::array::{Array, StringArray};
use deltalake::arrow::compute::kernels::cast::{CastOptions, cast_with_options};
use deltalake::arrow::csv::ReaderBuilder;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::json::ReaderBuilder as JsonReaderBuilder;
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
    /// The first field (0-based) whose bytes are not UTF-8, which the CSV reader refuses.
    not_utf8: Option<usize>,
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
                    not_utf8: rec.iter().position(|f| std::str::from_utf8(f).is_err()),
                });
            }
            Err(e) => return Err(format!("cannot read as CSV: {e}")),
        }
    }
    Ok(out)
}

/// The record as it is in the file (see [`escaped`]).
fn raw_text(bytes: &[u8], r: &Record) -> String {
    escaped(&bytes[r.start.min(bytes.len())..r.end.min(bytes.len())])
}

/// A record's bytes as text, each byte that is not UTF-8 written `\xNN`, so that the dead
/// letter keeps every byte; without the line break.
fn escaped(raw: &[u8]) -> String {
    let mut out = String::new();
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out.trim_end_matches(['\r', '\n']).to_string()
}

/// One line of a newline-delimited JSON file that holds a record.
struct JsonLine<'a> {
    /// 1-based.
    line: u64,
    bytes: &'a [u8],
}

/// The lines of a JSON file that hold records (blank lines hold none, as for the reader).
fn json_lines(bytes: &[u8]) -> impl Iterator<Item = JsonLine<'_>> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, l)| JsonLine {
            line: i as u64 + 1,
            bytes: l.strip_suffix(b"\r").unwrap_or(l),
        })
        .filter(|l| !l.bytes.iter().all(u8::is_ascii_whitespace))
}

/// Why one JSON line cannot be read under `schema`, or `None`. The types are checked by
/// Arrow's own JSON reader on the line alone, so the verdict is the reader's.
fn json_problem(line: &[u8], schema: &SchemaRef) -> Option<String> {
    let Ok(text) = std::str::from_utf8(line) else {
        return Some(NOT_UTF8.trim_start_matches("the ").to_string());
    };
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Some(format!("not valid JSON: {e}")),
    };
    let Some(object) = value.as_object() else {
        return Some("not a JSON object".into());
    };
    for f in schema.fields() {
        if !f.is_nullable() && object.get(f.name()).is_none_or(serde_json::Value::is_null) {
            return Some(format!(
                "field `{}` is missing or null but declared NOT NULL",
                f.name()
            ));
        }
    }
    let decoded = JsonReaderBuilder::new(schema.clone())
        .build(std::io::Cursor::new(line))
        .and_then(|mut r| r.next().transpose());
    match decoded {
        Ok(_) => None,
        Err(e) => Some(e.to_string().trim_start_matches("Json error: ").to_string()),
    }
}

const NOT_UTF8: &str =
    "the bytes are not UTF-8 text (the file may be in another encoding: convert it to UTF-8)";

/// Checks each record of `path` (CSV or newline-delimited JSON) against `schema`; returns
/// the bad ones.
pub fn scan(
    path: &Path,
    shown: &str,
    input: &Name,
    schema: &SchemaRef,
    format: FileFormat,
    opts: &CsvOptions,
) -> Result<Vec<BadRow>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let bad = match format {
        FileFormat::Json => json_lines(&bytes)
            .filter_map(|l| json_problem(l.bytes, schema).map(|e| (l.line, l.bytes, e)))
            .map(|(line, raw, error)| BadRow {
                input: input.to_string(),
                file: shown.to_string(),
                line,
                raw: escaped(raw),
                error,
            })
            .collect(),
        _ => scan_csv(&bytes, shown, input, schema, opts)?,
    };
    Ok(bad)
}

fn scan_csv(
    bytes: &[u8],
    shown: &str,
    input: &Name,
    schema: &SchemaRef,
    opts: &CsvOptions,
) -> Result<Vec<BadRow>, String> {
    let records = read_records(bytes, opts)?;
    let n = schema.fields().len();
    let mut errors: Vec<Option<String>> = vec![None; records.len()];
    for (i, r) in records.iter().enumerate() {
        if r.fields.len() != n {
            errors[i] = Some(format!("expected {n} fields, found {}", r.fields.len()));
        } else if let Some(f) = r.not_utf8 {
            let column = schema.fields()[f].name();
            errors[i] = Some(format!("column `{column}`: {NOT_UTF8}"));
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
                raw: raw_text(bytes, r),
                error,
            })
        })
        .collect())
}

/// How many records a CSV (header excluded) or JSON file holds.
pub fn count_records(bytes: &[u8], format: FileFormat, opts: &CsvOptions) -> Result<u64, String> {
    match format {
        FileFormat::Json => Ok(json_lines(bytes).count() as u64),
        _ => Ok(read_records(bytes, opts)?.len() as u64),
    }
}

/// Reads `path` into batches, leaving out the records on the lines of `bad`.
pub fn read_without(
    path: &Path,
    schema: &SchemaRef,
    format: FileFormat,
    opts: &CsvOptions,
    bad: &[BadRow],
) -> Result<Vec<RecordBatch>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let skip: BTreeSet<u64> = bad.iter().map(|b| b.line).collect();
    if format == FileFormat::Json {
        let mut good = Vec::with_capacity(bytes.len());
        for l in json_lines(&bytes).filter(|l| !skip.contains(&l.line)) {
            good.extend_from_slice(l.bytes);
            good.push(b'\n');
        }
        return JsonReaderBuilder::new(schema.clone())
            .build(std::io::Cursor::new(good))
            .map_err(|e| e.to_string())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("after leaving out {} bad row(s): {e}", bad.len()));
    }
    let records = read_records(&bytes, opts)?;
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

/// The message when more rows cannot be used than the job's `max_bad_rows` allows.
pub fn too_many(
    job: &crate::job::Job,
    key: &crate::partition::PartitionKey,
    bad: &[BadRow],
    read: u64,
    limit: crate::job::BadRowLimit,
    what: &str,
) -> String {
    format!(
        "{} of {read} {what} cannot be used, more than `max_bad_rows` allows ({limit}); first: {}; see `sluice dlq list {} --partition {key}`",
        bad.len(),
        bad.iter()
            .take(3)
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join("; "),
        job.name
    )
}
