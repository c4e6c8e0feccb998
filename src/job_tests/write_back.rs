//! Writing tests: `--update` puts a test's actual output where its expected rows are
//! (inline rows, inline CSV or the file they name), and `--create` appends a new test made
//! from live rows. The test file is edited in place with toml_edit, so its comments and
//! layout stay as written.

use super::compare::{cell, compared_columns};
use super::error::JobTestError;
use super::fixture::Source;
use super::{TestCase, TestFile};
use crate::partition::PartitionKey;
use deltalake::arrow::array::{Array, ArrayRef, AsArray};
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::arrow::record_batch::RecordBatch;
use std::path::Path;
use toml_edit::{Array as TomlArray, DocumentMut, InlineTable, Item, Table, Value};

/// What to write into one test's `expect`.
pub struct Update<'a> {
    pub test: &'a TestCase,
    /// Its actual output, as the expected rows.
    pub output: Option<&'a RecordBatch>,
    /// Dead letters as (input, line), for a created test.
    pub dead_letters: Vec<(String, u64)>,
    pub failing_checks: Vec<String>,
    pub error: Option<String>,
}

/// Writes the updates into the file's tests, in one edit of the file.
pub fn update(file: &TestFile, updates: &[Update<'_>]) -> Result<(), JobTestError> {
    let mut doc = read_doc(&file.path)?;
    for u in updates {
        let test = u.test;
        let expect = doc
            .get_mut("test")
            .and_then(|t| t.as_array_of_tables_mut())
            .and_then(|a| a.get_mut(test.index))
            .ok_or_else(|| JobTestError::Gone {
                test: test.name.clone(),
                file: file.shown.clone(),
            })?
            .entry("expect")
            .or_insert(toml_edit::table());
        let Some(expect) = expect.as_table_like_mut() else {
            return Err(JobTestError::NotATable {
                path: file.path.clone(),
                what: format!("test `{}`'s `expect`", test.name),
            });
        };
        if let Some(output) = u.output {
            let columns = match &test.expect.rows {
                Some(rows) if !matches!(rows, Source::Rows(r) if r.is_empty()) => {
                    compared_columns(&test.expect, rows).map_err(JobTestError::Expected)?
                }
                _ => test.expect.columns.clone().unwrap_or_else(|| names(output)),
            };
            match &test.expect.rows {
                Some(Source::File(p)) => write_rows_file(p, output, &columns)?,
                Some(Source::Csv(_)) => {
                    let csv = toml_edit::value(csv_text(output, &columns)?);
                    set(expect, "csv", csv);
                }
                Some(Source::Rows(_)) | None => {
                    let rows = Item::Value(Value::Array(rows_array(output, &columns)));
                    set(expect, "rows", rows);
                }
            }
        }
        if !u.dead_letters.is_empty() {
            let mut a = TomlArray::new();
            for (input, line) in &u.dead_letters {
                let mut d = InlineTable::new();
                d.insert("input", input.as_str().into());
                d.insert("line", (*line as i64).into());
                a.push(d);
            }
            set(expect, "dead_letters", toml_edit::value(a));
        }
        if !u.failing_checks.is_empty() {
            let a: TomlArray = u.failing_checks.iter().map(String::as_str).collect();
            set(expect, "failing_checks", toml_edit::value(a));
        }
        if let Some(e) = &u.error {
            set(expect, "error", toml_edit::value(e.as_str()));
        }
    }
    write_doc(&file.path, &doc)
}

/// Appends a new test to `path` (created if absent) with the sampled input rows and no
/// expected rows yet: `update` writes those once the test has run.
pub fn append(
    path: &Path,
    name: &str,
    partition: &PartitionKey,
    inputs: &[(String, RecordBatch)],
) -> Result<(), JobTestError> {
    let mut doc = if path.exists() {
        read_doc(path)?
    } else {
        DocumentMut::new()
    };
    let mut test = Table::new();
    test.insert("name", toml_edit::value(name));
    test.insert("partition", toml_edit::value(partition.to_string()));
    let mut tables = Table::new();
    tables.set_implicit(true);
    for (input, rows) in inputs {
        let mut t = Table::new();
        t.insert(
            "rows",
            Item::Value(Value::Array(rows_array(rows, &names(rows)))),
        );
        tables.insert(input, Item::Table(t));
    }
    test.insert("inputs", Item::Table(tables));
    let mut expect = Table::new();
    expect.insert("rows", toml_edit::value(TomlArray::new()));
    test.insert("expect", Item::Table(expect));
    let tests = doc
        .entry("test")
        .or_insert(Item::ArrayOfTables(Default::default()));
    let Some(tests) = tests.as_array_of_tables_mut() else {
        return Err(JobTestError::NotATable {
            path: path.to_path_buf(),
            what: "`test` (an array of tables)".into(),
        });
    };
    tests.push(test);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| JobTestError::WriteFile {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    write_doc(path, &doc)
}

/// Sets `key` to `item`, keeping the comments written above an existing key.
fn set(table: &mut dyn toml_edit::TableLike, key: &str, item: Item) {
    match table.get_mut(key) {
        Some(old) => *old = item,
        None => {
            table.insert(key, item);
        }
    }
}

fn read_doc(path: &Path) -> Result<DocumentMut, JobTestError> {
    let text = std::fs::read_to_string(path).map_err(|source| JobTestError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<DocumentMut>()
        .map_err(|source| JobTestError::Toml {
            path: path.to_path_buf(),
            source,
        })
}

fn write_doc(path: &Path, doc: &DocumentMut) -> Result<(), JobTestError> {
    write_file(path, doc.to_string())
}

fn write_file(path: &Path, text: String) -> Result<(), JobTestError> {
    std::fs::write(path, text).map_err(|source| JobTestError::WriteFile {
        path: path.to_path_buf(),
        source,
    })
}

fn names(batch: &RecordBatch) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// The rows as an array of inline tables, one per line; a NULL is left out.
fn rows_array(batch: &RecordBatch, columns: &[String]) -> TomlArray {
    let mut a = TomlArray::new();
    let picked: Vec<(&String, &ArrayRef)> = columns
        .iter()
        .filter_map(|c| Some((c, batch.column_by_name(c)?)))
        .collect();
    for i in 0..batch.num_rows() {
        let mut row = InlineTable::new();
        for (name, column) in &picked {
            if let Some(v) = toml_value(column, i) {
                row.insert(name.as_str(), v);
            }
        }
        let mut v = Value::InlineTable(row);
        v.decor_mut().set_prefix("\n    ");
        a.push_formatted(v);
    }
    a.set_trailing("\n");
    a.set_trailing_comma(true);
    a
}

/// One value in the TOML type that reads back as the same Arrow value: integers, floats,
/// booleans and strings as themselves, everything else (decimals, dates, timestamps) as
/// the text Arrow parses it from.
fn toml_value(a: &ArrayRef, i: usize) -> Option<Value> {
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Boolean => a.as_boolean().value(i).into(),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => {
            let wide = deltalake::arrow::compute::cast(&a.slice(i, 1), &DataType::Int64).ok()?;
            wide.as_primitive::<Int64Type>().value(0).into()
        }
        DataType::Float32 | DataType::Float64 => {
            let wide = deltalake::arrow::compute::cast(&a.slice(i, 1), &DataType::Float64).ok()?;
            wide.as_primitive::<deltalake::arrow::datatypes::Float64Type>()
                .value(0)
                .into()
        }
        _ => cell(a, i).into(),
    })
}

fn csv_text(batch: &RecordBatch, columns: &[String]) -> Result<String, JobTestError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(columns)?;
    let picked: Vec<Option<&ArrayRef>> = columns.iter().map(|c| batch.column_by_name(c)).collect();
    for i in 0..batch.num_rows() {
        let record: Vec<String> = picked
            .iter()
            .map(|c| match c {
                Some(a) if !a.is_null(i) => cell(a, i),
                _ => String::new(),
            })
            .collect();
        w.write_record(&record)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| JobTestError::Csv(e.into_error().into()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn write_rows_file(
    path: &Path,
    batch: &RecordBatch,
    columns: &[String],
) -> Result<(), JobTestError> {
    let text = match path.extension().and_then(|x| x.to_str()) {
        Some("csv") => csv_text(batch, columns)?,
        _ => {
            let mut lines = String::new();
            for i in 0..batch.num_rows() {
                let mut row = serde_json::Map::new();
                for c in columns {
                    if let Some(a) = batch.column_by_name(c)
                        && let Some(v) = toml_value(a, i)
                    {
                        row.insert(c.clone(), json_of(&v));
                    }
                }
                lines.push_str(&serde_json::Value::Object(row).to_string());
                lines.push('\n');
            }
            lines
        }
    };
    write_file(path, text)
}

fn json_of(v: &Value) -> serde_json::Value {
    match v {
        Value::Integer(i) => serde_json::Value::from(*i.value()),
        Value::Float(f) => serde_json::Value::from(*f.value()),
        Value::Boolean(b) => serde_json::Value::Bool(*b.value()),
        other => serde_json::Value::String(other.as_str().unwrap_or_default().to_string()),
    }
}
