//! What is PostgreSQL's own in reading a database input: how a declared column is selected
//! and decoded, how the rows are fetched, which errors are worth a retry.

use super::batches::{Kind, Sink};
use super::pg_copy::CopyDecoder;
use super::query_text::Parameter;
use super::{FetchError, Fetched, Values};
use crate::schema::{Column, ColumnType};
use futures::TryStreamExt as _;
use sqlx::Connection as _;

/// A declared column as the outer select reads it: cast to the PostgreSQL type its Arrow
/// type is built from, which the binary COPY then sends in its own form (`pg_copy`); a
/// decimal as its text.
pub fn read_as(c: &Column) -> String {
    let q = format!("sluice_q.\"{}\"", c.name.as_str().replace('"', "\"\""));
    let ty = match c.ty {
        ColumnType::Boolean => "boolean",
        ColumnType::TinyInt | ColumnType::SmallInt => "int2",
        ColumnType::Int => "int4",
        ColumnType::BigInt => "int8",
        ColumnType::Float => "float4",
        ColumnType::Double => "float8",
        ColumnType::Decimal { .. } | ColumnType::String => "text",
        ColumnType::Binary => "bytea",
        ColumnType::Date => "date",
        ColumnType::Timestamp => "timestamptz",
        ColumnType::TimestampNtz => "timestamp",
    };
    format!("{q}::{ty}")
}

/// What `read_as` gives, as decoded.
pub fn kind(c: &Column) -> Kind {
    match c.ty {
        ColumnType::Boolean => Kind::Bool,
        ColumnType::TinyInt | ColumnType::SmallInt => Kind::I16,
        ColumnType::Int | ColumnType::Date => Kind::I32,
        ColumnType::BigInt | ColumnType::Timestamp | ColumnType::TimestampNtz => Kind::I64,
        ColumnType::Float => Kind::F32,
        ColumnType::Double => Kind::F64,
        ColumnType::Decimal { .. } | ColumnType::String => Kind::Text,
        ColumnType::Binary => Kind::Bytes,
    }
}

/// Runs `sql` as a binary COPY into `sink`, its rows of the `declared` columns. A COPY
/// takes no parameters: the partition's values are bound as the parameters of a
/// `set_config` for each, which the query's placeholders read back (`query_text`), so they
/// are never pasted into its text either.
pub async fn fetch(
    url: &str,
    sql: String,
    params: &[Parameter],
    values: Values,
    declared: &[Column],
    sink: &mut Sink,
) -> Fetched {
    let mut conn = sqlx::postgres::PgConnection::connect(url)
        .await
        .map_err(FetchError::Connect)?;
    if !params.is_empty() {
        let sets: Vec<String> = params
            .iter()
            .enumerate()
            .map(|(n, p)| format!("set_config('{}', ${}, false)", p.setting(), n + 1))
            .collect();
        let mut set = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {}", sets.join(", "))));
        for v in values {
            // A value there is none of (a partition without a time, or without a key) is
            // the empty text, which the placeholder reads back as NULL.
            set = set.bind(v.unwrap_or_default());
        }
        set.execute(&mut conn).await.map_err(FetchError::Query)?;
    }
    let mut decoder = CopyDecoder::new(declared.iter().map(|c| c.ty).collect());
    {
        let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
        let mut stream = conn.copy_out_raw(&copy).await.map_err(FetchError::Query)?;
        while let Some(chunk) = stream.try_next().await.map_err(FetchError::Query)? {
            decoder.feed(&chunk, sink)?;
        }
    }
    decoder.finish()?;
    let _ = conn.close().await;
    Ok(())
}

/// A connection refused or lost, the server shutting down or out of resources, a
/// serialization failure or deadlock.
pub fn transient(e: &sqlx::Error) -> bool {
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
