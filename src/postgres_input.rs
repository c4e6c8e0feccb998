//! `[[inputs]] type = "postgres"`: the rows of a query on a PostgreSQL database, read once
//! per partition attempt. The partition's bounds are bound parameters (`$partition_start`,
//! `$partition_end`, `$partition`, `$key` in the query's text become `$1`..`$4`), never
//! pasted into the text. The rows stream from the server in batches, each cast to the
//! declared schema and appended to a scratch Arrow IPC file, which the query then reads as
//! a command's output is read: memory is one batch, whatever the partition's size.
//!
//! The connection string comes from the environment or a file the spec names, never from
//! the spec itself, and is never printed: errors say where it came from.

use crate::command_input::CommandOutput;
use crate::job::{ConnectionRef, PostgresInput};
use crate::names::Name;
use crate::partition::PartitionKey;
use crate::schema::ColumnType;
use deltalake::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array,
    Int64Array, StringArray,
};
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use futures::TryStreamExt as _;
use sha2::Digest as _;
use sqlx::{Connection as _, Row as _};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Rows a batch holds before it is written out.
const BATCH_ROWS: usize = 65_536;

/// Why a PostgreSQL input gave no rows.
#[derive(Debug, thiserror::Error)]
pub enum PostgresInputError {
    #[error("input `{input}`: no connection string: {what}")]
    NoConnection { input: String, what: String },
    #[error("input `{input}`: cannot connect to the database ({from}): {why}")]
    Connect {
        input: String,
        from: String,
        why: String,
        transient: bool,
    },
    #[error("input `{input}`: the query failed: {why}")]
    Query {
        input: String,
        why: String,
        transient: bool,
    },
    #[error("input `{input}`: `query`: {why}")]
    Spec { input: String, why: String },
    #[error("input `{input}`: could not keep its rows in a scratch file: {source}")]
    Spool {
        input: String,
        #[source]
        source: std::io::Error,
    },
}

impl PostgresInputError {
    /// A connection refused or lost, a server shutting down, a full scratch disk.
    pub fn is_transient(&self) -> bool {
        match self {
            PostgresInputError::Connect { transient, .. }
            | PostgresInputError::Query { transient, .. } => *transient,
            PostgresInputError::Spool { .. } => true,
            PostgresInputError::NoConnection { .. } | PostgresInputError::Spec { .. } => false,
        }
    }
}

/// What an input's rows came to: the file, and how many.
pub struct Read {
    pub output: CommandOutput,
    pub rows: u64,
}

/// Reads the partition's rows of `spec` into a scratch Arrow file.
pub async fn read(
    root: &Path,
    input: &Name,
    spec: &PostgresInput,
    key: &PartitionKey,
    zone: chrono_tz::Tz,
) -> Result<Read, PostgresInputError> {
    let url = connection_string(root, input, &spec.connection)?;
    let (sql, params) =
        bound(&spec.query, &spec.schema).map_err(|why| PostgresInputError::Spec {
            input: input.to_string(),
            why,
        })?;
    let mut conn = sqlx::postgres::PgConnection::connect(&url)
        .await
        .map_err(|e| PostgresInputError::Connect {
            input: input.to_string(),
            from: spec.connection.to_string(),
            why: said(&e, &url),
            transient: transient(&e),
        })?;
    let values = parameter_values(key, zone);
    // Built from the spec's query, with the partition's values bound, never spliced.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in &params {
        query = query.bind(values.get(p).cloned().flatten());
    }
    let spool_err = |source| PostgresInputError::Spool {
        input: input.to_string(),
        source,
    };
    let spool = tempfile::Builder::new()
        .prefix("sluice-postgres-")
        .suffix(".arrow")
        .tempfile()
        .map_err(spool_err)?;
    let arrow_err = |e: deltalake::arrow::error::ArrowError| spool_err(std::io::Error::other(e));
    let schema = crate::engine::columns_schema(&spec.schema);
    let sink = Hashing::new(spool.reopen().map_err(spool_err)?);
    let mut writer =
        deltalake::arrow::ipc::writer::StreamWriter::try_new(sink, &schema).map_err(arrow_err)?;
    let query_err = |e: sqlx::Error| PostgresInputError::Query {
        input: input.to_string(),
        why: said(&e, &url),
        transient: transient(&e),
    };
    let mut rows = query.fetch(&mut conn);
    let mut batch = Columns::new(&spec.schema);
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await.map_err(query_err)? {
        batch.push(&row).map_err(query_err)?;
        count += 1;
        if batch.len() == BATCH_ROWS {
            let b = batch.take(&schema).map_err(arrow_err)?;
            writer.write(&b).map_err(arrow_err)?;
        }
    }
    drop(rows);
    let last = batch.take(&schema).map_err(arrow_err)?;
    writer.write(&last).map_err(arrow_err)?;
    writer.finish().map_err(arrow_err)?;
    let sink = writer.into_inner().map_err(arrow_err)?;
    let (bytes, sha256) = sink.done().map_err(spool_err)?;
    let _ = conn.close().await;
    Ok(Read {
        output: CommandOutput {
            path: spool.into_temp_path(),
            shown: format!("the rows of input `{input}`'s query"),
            bytes,
            sha256,
        },
        rows: count,
    })
}

/// Where the database is, as a URL without its user or password (for lineage); `None`
/// when the connection string cannot be read or is not a URL.
pub fn location(root: &Path, from: &ConnectionRef) -> Option<url::Url> {
    let text = connection_string(root, &Name::new("x").ok()?, from).ok()?;
    let mut u = url::Url::parse(&text).ok()?;
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    Some(u)
}

/// The connection string, from where the spec says; never shown.
fn connection_string(
    root: &Path,
    input: &Name,
    from: &ConnectionRef,
) -> Result<String, PostgresInputError> {
    let none = |what: String| PostgresInputError::NoConnection {
        input: input.to_string(),
        what,
    };
    match from {
        ConnectionRef::Env(var) => std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.trim().to_string())
            .ok_or_else(|| none(format!("environment variable {var} is not set; set it to the database's URL (postgres://USER:PASSWORD@HOST:PORT/DB)"))),
        ConnectionRef::File(rel) => std::fs::read_to_string(root.join(rel))
            .map(|v| v.trim().to_string())
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| none(format!("file {rel} is missing or empty; write the database's URL in it (postgres://USER:PASSWORD@HOST:PORT/DB)"))),
    }
}

/// What a database error says, free of the connection string and any secret in it.
fn said(e: &sqlx::Error, url: &str) -> String {
    let text = e.to_string().replace(url, "<connection string>");
    crate::redact::redact_text(&text)
}

fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        // 08: connection exceptions; 57P: the server shutting down; 53: out of resources;
        // 40001/40P01: serialization failure, deadlock.
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08")
                || c.starts_with("57P")
                || c.starts_with("53")
                || c == "40001"
                || c == "40P01"
        }),
        _ => false,
    }
}

/// The parameters a query may name, by name, as the text bound for them (the query casts
/// them: `$1::timestamptz`).
fn parameter_values(
    key: &PartitionKey,
    zone: chrono_tz::Tz,
) -> std::collections::HashMap<&'static str, Option<String>> {
    let rfc3339 =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let bounds = key.instant_bounds(zone);
    std::collections::HashMap::from([
        ("partition", Some(key.time.to_string())),
        ("partition_start", bounds.map(|(s, _)| rfc3339(s))),
        ("partition_end", bounds.map(|(_, e)| rfc3339(e))),
        ("key", key.key.as_ref().map(|k| k.to_string())),
    ])
}

/// The parameters' PostgreSQL types.
const PARAMETERS: [(&str, &str); 4] = [
    ("partition_start", "timestamptz"),
    ("partition_end", "timestamptz"),
    ("partition", "text"),
    ("key", "text"),
];

/// The query as sent: the user's, its named parameters made positional and typed, inside
/// a select that casts each declared column to what it is read as; and the parameters in
/// their order. Quoted strings, quoted names, dollar-quoted strings and comments are left
/// alone.
pub fn bound(
    query: &str,
    schema: &[crate::schema::Column],
) -> Result<(String, Vec<&'static str>), String> {
    let mut out = String::with_capacity(query.len());
    let mut params: Vec<&'static str> = Vec::new();
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let rest = &query[i..];
        let skip_to = |end: &str, from: usize| rest[from..].find(end).map(|e| from + e + end.len());
        let len = match c {
            b'\'' | b'"' => {
                // To the closing quote; a doubled one is part of the text.
                let mut j = 1;
                loop {
                    match rest[j..].find(c as char) {
                        None => return Err("a quote is not closed".into()),
                        Some(e) if rest[j + e + 1..].starts_with(c as char) => j += e + 2,
                        Some(e) => break j + e + 1,
                    }
                }
            }
            b'-' if rest.starts_with("--") => rest.find('\n').map_or(rest.len(), |e| e + 1),
            b'/' if rest.starts_with("/*") => skip_to("*/", 2).ok_or("a comment is not closed")?,
            b'$' => {
                let name: String = rest[1..]
                    .chars()
                    .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
                    .collect();
                if rest[1 + name.len()..].starts_with('$') {
                    // A dollar-quoted string: to the same tag.
                    let tag = &rest[..name.len() + 2];
                    skip_to(tag, tag.len()).ok_or("a dollar-quoted string is not closed")?
                } else if let Some((p, ty)) = PARAMETERS.iter().find(|(p, _)| *p == name) {
                    let n = match params.iter().position(|q| q == p) {
                        Some(n) => n + 1,
                        None => {
                            params.push(p);
                            params.len()
                        }
                    };
                    out.push_str(&format!("${n}::{ty}"));
                    i += 1 + name.len();
                    continue;
                } else {
                    return Err(format!(
                        "`${name}` is not a parameter sluice binds: use $partition_start, $partition_end, $partition or $key"
                    ));
                }
            }
            _ => rest.chars().next().map_or(1, char::len_utf8),
        };
        out.push_str(&rest[..len]);
        i += len;
    }
    let inner = out.trim().trim_end_matches(';');
    let columns: Vec<String> = schema.iter().map(read_as).collect();
    Ok((
        format!("SELECT {} FROM ({inner}) AS sluice_q", columns.join(", ")),
        params,
    ))
}

/// A declared column, as the outer select reads it: cast to the PostgreSQL type its Arrow
/// type is built from (a date as days and a timestamp as microseconds since the epoch, a
/// decimal as its text).
fn read_as(c: &crate::schema::Column) -> String {
    let q = format!("sluice_q.\"{}\"", c.name.as_str().replace('"', "\"\""));
    match c.ty {
        ColumnType::Boolean => format!("{q}::boolean"),
        ColumnType::TinyInt | ColumnType::SmallInt => format!("{q}::int2"),
        ColumnType::Int => format!("{q}::int4"),
        ColumnType::BigInt => format!("{q}::int8"),
        ColumnType::Float => format!("{q}::float4"),
        ColumnType::Double => format!("{q}::float8"),
        ColumnType::Decimal { .. } | ColumnType::String => format!("{q}::text"),
        ColumnType::Binary => format!("{q}::bytea"),
        ColumnType::Date => format!("({q}::date - DATE '1970-01-01')::int4"),
        ColumnType::Timestamp => {
            format!("(EXTRACT(EPOCH FROM {q}::timestamptz) * 1000000)::int8")
        }
        ColumnType::TimestampNtz => {
            format!("(EXTRACT(EPOCH FROM {q}::timestamp) * 1000000)::int8")
        }
    }
}

/// A batch being filled, one vector per declared column.
struct Columns(Vec<(ColumnType, Values)>);

enum Values {
    Bool(Vec<Option<bool>>),
    I16(Vec<Option<i16>>),
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    F32(Vec<Option<f32>>),
    F64(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Columns {
    fn new(schema: &[crate::schema::Column]) -> Columns {
        Columns(
            schema
                .iter()
                .map(|c| {
                    let v = match c.ty {
                        ColumnType::Boolean => Values::Bool(Vec::new()),
                        ColumnType::TinyInt | ColumnType::SmallInt => Values::I16(Vec::new()),
                        ColumnType::Int | ColumnType::Date => Values::I32(Vec::new()),
                        ColumnType::BigInt | ColumnType::Timestamp | ColumnType::TimestampNtz => {
                            Values::I64(Vec::new())
                        }
                        ColumnType::Float => Values::F32(Vec::new()),
                        ColumnType::Double => Values::F64(Vec::new()),
                        ColumnType::Decimal { .. } | ColumnType::String => Values::Text(Vec::new()),
                        ColumnType::Binary => Values::Bytes(Vec::new()),
                    };
                    (c.ty, v)
                })
                .collect(),
        )
    }

    fn len(&self) -> usize {
        self.0.first().map_or(0, |(_, v)| match v {
            Values::Bool(v) => v.len(),
            Values::I16(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
            Values::Text(v) => v.len(),
            Values::Bytes(v) => v.len(),
        })
    }

    fn push(&mut self, row: &sqlx::postgres::PgRow) -> Result<(), sqlx::Error> {
        for (i, (_, v)) in self.0.iter_mut().enumerate() {
            match v {
                Values::Bool(v) => v.push(row.try_get(i)?),
                Values::I16(v) => v.push(row.try_get(i)?),
                Values::I32(v) => v.push(row.try_get(i)?),
                Values::I64(v) => v.push(row.try_get(i)?),
                Values::F32(v) => v.push(row.try_get(i)?),
                Values::F64(v) => v.push(row.try_get(i)?),
                Values::Text(v) => v.push(row.try_get(i)?),
                Values::Bytes(v) => v.push(row.try_get(i)?),
            }
        }
        Ok(())
    }

    /// The rows so far as a batch of `schema`; the vectors start again empty.
    fn take(
        &mut self,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
        let mut arrays = Vec::with_capacity(self.0.len());
        for ((_, v), field) in self.0.iter_mut().zip(schema.fields()) {
            let a: ArrayRef = match v {
                Values::Bool(v) => Arc::new(BooleanArray::from(std::mem::take(v))),
                Values::I16(v) => Arc::new(Int16Array::from(std::mem::take(v))),
                Values::I32(v) => Arc::new(Int32Array::from(std::mem::take(v))),
                Values::I64(v) => Arc::new(Int64Array::from(std::mem::take(v))),
                Values::F32(v) => Arc::new(Float32Array::from(std::mem::take(v))),
                Values::F64(v) => Arc::new(Float64Array::from(std::mem::take(v))),
                Values::Text(v) => Arc::new(StringArray::from(std::mem::take(v))),
                Values::Bytes(v) => {
                    let v = std::mem::take(v);
                    Arc::new(BinaryArray::from_iter(v.iter().map(|b| b.as_deref())))
                }
            };
            arrays.push(as_declared(a, field.data_type())?);
        }
        RecordBatch::try_new(schema.clone(), arrays)
    }
}

/// An array as read (days, microseconds, decimal text) in its declared type.
fn as_declared(
    a: ArrayRef,
    to: &DataType,
) -> Result<ArrayRef, deltalake::arrow::error::ArrowError> {
    use deltalake::arrow::array::Array as _;
    use deltalake::arrow::datatypes::{Date32Type, TimestampMicrosecondType};
    match to {
        DataType::Date32 => match a.as_any().downcast_ref::<Int32Array>() {
            Some(days) => Ok(Arc::new(days.reinterpret_cast::<Date32Type>())),
            None => strict_cast(&a, to),
        },
        DataType::Timestamp(_, zone) => match a.as_any().downcast_ref::<Int64Array>() {
            Some(micros) => {
                let ts = micros
                    .reinterpret_cast::<TimestampMicrosecondType>()
                    .with_timezone_opt(zone.clone());
                strict_cast(&ts, to)
            }
            None => strict_cast(&a, to),
        },
        other if a.data_type() == other => Ok(a),
        other => strict_cast(&a, other),
    }
}

/// A cast that fails on a value it cannot carry (an int2 past TINYINT, text that is no
/// decimal) rather than making it NULL: a row read must be the row the server holds.
fn strict_cast(
    a: &dyn deltalake::arrow::array::Array,
    to: &DataType,
) -> Result<ArrayRef, deltalake::arrow::error::ArrowError> {
    let strict = deltalake::arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    deltalake::arrow::compute::cast_with_options(a, to, &strict)
}

/// A file writer that hashes what it writes and counts it.
struct Hashing {
    file: std::io::BufWriter<std::fs::File>,
    hash: sha2::Sha256,
    bytes: u64,
}

impl Hashing {
    fn new(file: std::fs::File) -> Hashing {
        Hashing {
            file: std::io::BufWriter::new(file),
            hash: sha2::Sha256::new(),
            bytes: 0,
        }
    }

    fn done(mut self) -> std::io::Result<(u64, String)> {
        self.file.flush()?;
        let hex = self
            .hash
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((self.bytes, hex))
    }
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: ColumnType) -> crate::schema::Column {
        crate::schema::Column {
            name: Name::new(name).unwrap(),
            ty,
            nullable: true,
            default: None,
            comment: None,
        }
    }

    #[test]
    fn named_parameters_become_typed_positional_ones_and_text_is_left_alone() {
        let (sql, params) = bound(
            "SELECT id, '$partition' AS t, \"$key\" FROM o -- $partition\nWHERE at >= $partition_start AND at < $partition_end AND day = $partition AND $partition_start < now() AND x = $$ $key $$;",
            &[col("id", ColumnType::BigInt)],
        )
        .unwrap();
        assert_eq!(params, ["partition_start", "partition_end", "partition"]);
        assert_eq!(
            sql,
            "SELECT sluice_q.\"id\"::int8 FROM (SELECT id, '$partition' AS t, \"$key\" FROM o -- $partition\nWHERE at >= $1::timestamptz AND at < $2::timestamptz AND day = $3::text AND $1::timestamptz < now() AND x = $$ $key $$) AS sluice_q"
        );
        let e = bound("SELECT 1 WHERE a = $1", &[]).unwrap_err();
        assert!(e.contains("`$1` is not a parameter"), "{e}");
        let e = bound("SELECT 'open", &[]).unwrap_err();
        assert!(e.contains("not closed"), "{e}");
    }

    #[test]
    fn a_value_the_declared_type_cannot_carry_fails_rather_than_turning_null() {
        let big: ArrayRef = Arc::new(Int16Array::from(vec![Some(300)]));
        assert!(as_declared(big, &DataType::Int8).is_err());
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("12.5x")]));
        assert!(as_declared(text, &DataType::Decimal128(12, 2)).is_err());
        let fine: ArrayRef = Arc::new(StringArray::from(vec![Some("12.50"), None]));
        let d = as_declared(fine, &DataType::Decimal128(12, 2)).unwrap();
        assert_eq!(d.null_count(), 1);
    }
}
