//! A test's rows made into Arrow: inline TOML rows, inline CSV text, or a CSV or
//! newline-delimited JSON file, typed by a schema. A row may leave columns out; they are
//! NULL (TOML has no null). Values are parsed by Arrow's own JSON and CSV readers, the
//! ones a run's inputs go through.

use super::error::FixtureError;
use deltalake::arrow::array::{ArrayRef, new_null_array};
use deltalake::arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a test's rows are.
#[derive(Debug, Clone)]
pub enum Source {
    Rows(Vec<toml::Table>),
    Csv(String),
    /// A CSV (`.csv`) or newline-delimited JSON (`.json`, `.ndjson`, `.jsonl`) file.
    File(PathBuf),
}

impl Source {
    /// The columns the rows name, in first-seen order.
    pub fn columns(&self) -> Result<Vec<String>, FixtureError> {
        match self {
            Source::Rows(rows) => {
                let mut out: Vec<String> = Vec::new();
                for row in rows {
                    for k in row.keys() {
                        if !out.contains(k) {
                            out.push(k.clone());
                        }
                    }
                }
                Ok(out)
            }
            Source::Csv(text) => csv_header(text),
            Source::File(p) => match file_kind(p)? {
                FileKind::Csv => csv_header(&read(p)?),
                FileKind::Ndjson => Source::Rows(ndjson_rows(&read(p)?)?).columns(),
            },
        }
    }
}

enum FileKind {
    Csv,
    Ndjson,
}

fn file_kind(p: &Path) -> Result<FileKind, FixtureError> {
    match p.extension().and_then(|x| x.to_str()) {
        Some("csv") => Ok(FileKind::Csv),
        Some("json" | "ndjson" | "jsonl") => Ok(FileKind::Ndjson),
        _ => Err(FixtureError::FileKind(p.to_path_buf())),
    }
}

fn read(p: &Path) -> Result<String, FixtureError> {
    std::fs::read_to_string(p).map_err(|source| FixtureError::Read {
        path: p.to_path_buf(),
        source,
    })
}

fn csv_header(text: &str) -> Result<Vec<String>, FixtureError> {
    let mut r = csv::ReaderBuilder::new().from_reader(text.trim_start().as_bytes());
    let h = r.headers().map_err(FixtureError::CsvHeader)?;
    Ok(h.iter().map(|c| c.trim().to_string()).collect())
}

/// Rows of a newline-delimited JSON text, as TOML tables (null values left out).
fn ndjson_rows(text: &str) -> Result<Vec<toml::Table>, FixtureError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|source| FixtureError::JsonLine {
                line: i + 1,
                source,
            })?;
        let serde_json::Value::Object(map) = v else {
            return Err(FixtureError::NotAnObject(i + 1));
        };
        let mut row = toml::Table::new();
        for (k, v) in map {
            if let Some(t) = json_to_toml(v) {
                row.insert(k, t);
            }
        }
        out.push(row);
    }
    Ok(out)
}

fn json_to_toml(v: serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => toml::Value::Boolean(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        J::String(s) => toml::Value::String(s),
        J::Array(a) => toml::Value::Array(a.into_iter().filter_map(json_to_toml).collect()),
        J::Object(o) => toml::Value::Table(
            o.into_iter()
                .filter_map(|(k, v)| Some((k, json_to_toml(v)?)))
                .collect(),
        ),
    })
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        // A TOML date or date-time, as the text Arrow parses dates and timestamps from.
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// `schema` with every field nullable: a column the rows leave out is NULL.
pub fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// The columns `source` names, each checked to be in `schema`.
pub fn columns_in(source: &Source, schema: &Schema) -> Result<Vec<String>, FixtureError> {
    let columns = source.columns()?;
    for c in &columns {
        if schema.field_with_name(c).is_err() {
            return Err(FixtureError::NoColumn {
                column: c.clone(),
                columns: schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(columns)
}

/// The rows of `source` typed by `schema`, which must hold every column they name.
pub fn typed(source: &Source, schema: &SchemaRef) -> Result<RecordBatch, FixtureError> {
    let schema = nullable(schema);
    columns_in(source, &schema)?;
    match source {
        Source::Rows(rows) => from_rows(rows, &schema),
        Source::Csv(text) => from_csv(text, &schema),
        Source::File(p) => match file_kind(p)? {
            FileKind::Csv => from_csv(&read(p)?, &schema),
            FileKind::Ndjson => from_rows(&ndjson_rows(&read(p)?)?, &schema),
        },
    }
}

fn from_rows(rows: &[toml::Table], schema: &SchemaRef) -> Result<RecordBatch, FixtureError> {
    let mut decoder = deltalake::arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()
        .map_err(FixtureError::Arrow)?;
    for (i, row) in rows.iter().enumerate() {
        let json = serde_json::Value::Object(
            row.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        );
        decoder
            .serialize(&[json])
            .map_err(|source| FixtureError::Row { row: i + 1, source })?;
    }
    Ok(decoder
        .flush()
        .map_err(FixtureError::Arrow)?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

fn from_csv(text: &str, schema: &SchemaRef) -> Result<RecordBatch, FixtureError> {
    let text = text.trim_start();
    let header = csv_header(text)?;
    let given = Arc::new(Schema::new(
        header
            .iter()
            .map(|c| {
                schema
                    .field_with_name(c)
                    .cloned()
                    .map_err(|_| FixtureError::NotInSchema(c.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?,
    ));
    let reader = deltalake::arrow::csv::ReaderBuilder::new(given.clone())
        .with_header(true)
        .build(std::io::Cursor::new(text.as_bytes()))
        .map_err(FixtureError::Arrow)?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(FixtureError::Arrow)?;
    let read =
        deltalake::arrow::compute::concat_batches(&given, &batches).map_err(FixtureError::Arrow)?;
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match read.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => new_null_array(f.data_type(), read.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).map_err(FixtureError::Arrow)
}
