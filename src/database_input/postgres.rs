//! What is PostgreSQL's own in reading a database input: how a declared column is selected
//! and decoded, how the rows are fetched, which errors are worth a retry.

use super::batches::{Kind, Sink};
use super::{Fetched, Values};
use crate::schema::{Column, ColumnType};
use sqlx::Connection as _;

/// A declared column as the outer select reads it: cast to the PostgreSQL type its Arrow
/// type is built from (a date as days and a timestamp as microseconds since the epoch, a
/// decimal as its text).
pub fn read_as(c: &Column) -> String {
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

/// Runs `sql` with `values` bound (each as text its placeholder casts) into `sink`.
pub async fn fetch(url: &str, sql: String, values: Values, sink: &mut Sink) -> Fetched {
    let mut conn = sqlx::postgres::PgConnection::connect(url)
        .await
        .map_err(super::FetchError::Connect)?;
    // Built from the spec's query, with the partition's values bound, never spliced.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for v in values {
        query = query.bind(v);
    }
    sink.take_all(query.fetch(&mut conn)).await?;
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
