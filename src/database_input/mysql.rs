//! What is MySQL's (and MariaDB's) own in reading a database input: how a declared column
//! is selected and decoded, how the rows are fetched, which errors are worth a retry.
//!
//! The session's time zone is UTC, so a TIMESTAMP column reads as the instant it holds and
//! the partition's bounds bind as UTC text; a DATETIME column (no zone) reads as UTC.

use super::batches::{Kind, Sink};
use super::{Fetched, Values};
use crate::schema::{Column, ColumnType};
use sqlx::ConnectOptions as _;

/// A declared column as the outer select reads it. MySQL's CAST has no small integer or
/// boolean target: every integer and boolean reads as a signed BIGINT, every float as a
/// DOUBLE, and the declared type is reached by a cast that refuses what does not fit.
pub fn read_as(c: &Column) -> String {
    let q = format!("sluice_q.`{}`", c.name.as_str().replace('`', "``"));
    match c.ty {
        ColumnType::Boolean
        | ColumnType::TinyInt
        | ColumnType::SmallInt
        | ColumnType::Int
        | ColumnType::BigInt => format!("CAST({q} AS SIGNED)"),
        ColumnType::Float | ColumnType::Double => format!("CAST({q} AS DOUBLE)"),
        ColumnType::Decimal { .. } | ColumnType::String => format!("CAST({q} AS CHAR)"),
        ColumnType::Binary => format!("CAST({q} AS BINARY)"),
        ColumnType::Date => format!("CAST(DATEDIFF({q}, DATE '1970-01-01') AS SIGNED)"),
        ColumnType::Timestamp | ColumnType::TimestampNtz => {
            format!("TIMESTAMPDIFF(MICROSECOND, TIMESTAMP '1970-01-01 00:00:00', {q})")
        }
    }
}

/// What `read_as` gives, as decoded.
pub fn kind(c: &Column) -> Kind {
    match c.ty {
        ColumnType::Float | ColumnType::Double => Kind::F64,
        ColumnType::Decimal { .. } | ColumnType::String => Kind::Text,
        ColumnType::Binary => Kind::Bytes,
        ColumnType::Boolean
        | ColumnType::TinyInt
        | ColumnType::SmallInt
        | ColumnType::Int
        | ColumnType::BigInt
        | ColumnType::Date
        | ColumnType::Timestamp
        | ColumnType::TimestampNtz => Kind::I64,
    }
}

/// An instant as MySQL's DATETIME(6) reads it: UTC, without a zone.
pub fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Runs `sql` with `values` bound into `sink`.
pub async fn fetch(url: &str, sql: String, values: Values, sink: &mut Sink) -> Fetched {
    let options: sqlx::mysql::MySqlConnectOptions =
        url.parse().map_err(super::FetchError::Connect)?;
    // UTC (see above); and `||` keeps the meaning the server gives it (OR, unless the
    // server's own sql_mode says otherwise), not the driver's default of concatenation.
    let options = options
        .timezone(Some("+00:00".to_string()))
        .pipes_as_concat(false);
    let mut conn = options
        .connect()
        .await
        .map_err(super::FetchError::Connect)?;
    // Built from the spec's query, with the partition's values bound, never spliced.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for v in values {
        query = query.bind(v);
    }
    sink.take_all(query.fetch(&mut conn)).await?;
    let _ = sqlx::Connection::close(conn).await;
    Ok(())
}

/// A connection refused or lost, too many connections, a deadlock or lock wait.
pub fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        // SQLSTATE 08: connection exceptions (1040, too many connections, among them);
        // 40001: deadlock. By number: 1205, lock wait timeout; 1053, server shutdown.
        sqlx::Error::Database(d) => {
            d.code()
                .is_some_and(|c| c.starts_with("08") || c == "40001")
                || d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .is_some_and(|m| matches!(m.number(), 1205 | 1053))
        }
        _ => false,
    }
}
