//! A test's rows made into Arrow: inline TOML rows, inline CSV text, or a CSV or
//! newline-delimited JSON file, typed by a schema. A row may leave columns out; they are
//! NULL (TOML has no null). Values are parsed by Arrow's own JSON and CSV readers, the
//! ones a run's inputs go through.

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
    pub fn columns(&self) -> Result<Vec<String>, String> {
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

fn file_kind(p: &Path) -> Result<FileKind, String> {
    match p.extension().and_then(|x| x.to_str()) {
        Some("csv") => Ok(FileKind::Csv),
        Some("json" | "ndjson" | "jsonl") => Ok(FileKind::Ndjson),
        _ => Err(format!(
            "{}: rows are read from .csv or .json/.ndjson/.jsonl files",
            p.display()
        )),
    }
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}

fn csv_header(text: &str) -> Result<Vec<String>, String> {
    let mut r = csv::ReaderBuilder::new().from_reader(text.trim_start().as_bytes());
    let h = r.headers().map_err(|e| format!("CSV header: {e}"))?;
    Ok(h.iter().map(|c| c.trim().to_string()).collect())
}

/// Rows of a newline-delimited JSON text, as TOML tables (null values left out).
fn ndjson_rows(text: &str) -> Result<Vec<toml::Table>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let serde_json::Value::Object(map) = v else {
            return Err(format!("line {}: not a JSON object", i + 1));
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
pub fn columns_in(source: &Source, schema: &Schema) -> Result<Vec<String>, String> {
    let columns = source.columns()?;
    for c in &columns {
        if schema.field_with_name(c).is_err() {
            return Err(format!(
                "no column `{c}`; the columns are {}",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(columns)
}

/// The rows of `source` typed by `schema`, which must hold every column they name.
pub fn typed(source: &Source, schema: &SchemaRef) -> Result<RecordBatch, String> {
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

fn from_rows(rows: &[toml::Table], schema: &SchemaRef) -> Result<RecordBatch, String> {
    let mut decoder = deltalake::arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()
        .map_err(|e| e.to_string())?;
    for (i, row) in rows.iter().enumerate() {
        let json = serde_json::Value::Object(
            row.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        );
        decoder
            .serialize(&[json])
            .map_err(|e| format!("row {}: {}", i + 1, clean(&e.to_string())))?;
    }
    Ok(decoder
        .flush()
        .map_err(|e| clean(&e.to_string()))?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

fn from_csv(text: &str, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let text = text.trim_start();
    let header = csv_header(text)?;
    let given = Arc::new(Schema::new(
        header
            .iter()
            .map(|c| {
                schema
                    .field_with_name(c)
                    .cloned()
                    .map_err(|_| format!("no column `{c}` here"))
            })
            .collect::<Result<Vec<_>, _>>()?,
    ));
    let reader = deltalake::arrow::csv::ReaderBuilder::new(given.clone())
        .with_header(true)
        .build(std::io::Cursor::new(text.as_bytes()))
        .map_err(|e| e.to_string())?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| clean(&e.to_string()))?;
    let read =
        deltalake::arrow::compute::concat_batches(&given, &batches).map_err(|e| e.to_string())?;
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match read.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => new_null_array(f.data_type(), read.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// Arrow's messages start with the kind of error; the sentence after it is the news.
fn clean(m: &str) -> String {
    m.trim_start_matches("Json error: ")
        .trim_start_matches("Parser error: ")
        .to_string()
}
