//! `[[inputs]] type = "postgres"` or `"mysql"`: the rows of a query on a database, read
//! once per partition attempt. The partition's bounds are bound parameters
//! (`$partition_start`, `$partition_end`, `$partition`, `$key` in the query's text become
//! the system's placeholders, see `query_text`), never pasted into the text. The rows
//! stream from the server, each batch cast to the declared schema and appended to a scratch
//! Arrow IPC file (`batches`), which the query then reads as a command's output is read:
//! memory is one batch, whatever the partition's size. What differs between the systems
//! (how a column is selected and decoded, which errors are worth a retry) is in `postgres`
//! and `mysql`.
//!
//! The connection string comes from the environment or a file the spec names, never from
//! the spec itself, and is never printed: errors say where it came from.

mod batches;
mod mysql;
mod pg_copy;
mod postgres;
mod query_text;

use crate::command_input::CommandOutput;
use crate::job::{ConnectionRef, DatabaseInput, DatabaseSystem};
use crate::names::Name;
use crate::partition::PartitionKey;
use batches::Sink;
use query_text::{Bound, Parameter};
use std::path::Path;

/// Why a database input gave no rows.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseInputError {
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

impl DatabaseInputError {
    /// A connection refused or lost, a server shutting down, a full scratch disk.
    pub fn is_transient(&self) -> bool {
        match self {
            DatabaseInputError::Connect { transient, .. }
            | DatabaseInputError::Query { transient, .. } => *transient,
            DatabaseInputError::Spool { .. } => true,
            DatabaseInputError::NoConnection { .. } | DatabaseInputError::Spec { .. } => false,
        }
    }
}

/// What an input's rows came to: the file, and how many.
pub struct Read {
    pub output: CommandOutput,
    pub rows: u64,
}

/// The values bound to a query's placeholders, in order, as text each placeholder casts.
type Values = Vec<Option<String>>;

/// Where fetching stopped: at the connection, in the query (or decoding its rows), or
/// writing them down.
enum FetchError {
    Connect(sqlx::Error),
    Query(sqlx::Error),
    /// A value the server sent that its declared column cannot take.
    Decode(String),
    Write(deltalake::arrow::error::ArrowError),
}

type Fetched = Result<(), FetchError>;

impl From<batches::Failure> for FetchError {
    fn from(f: batches::Failure) -> FetchError {
        match f {
            batches::Failure::Query(e) => FetchError::Query(e),
            batches::Failure::Decode(why) => FetchError::Decode(why),
            batches::Failure::Write(e) => FetchError::Write(e),
        }
    }
}

/// Reads the partition's rows of `spec` into a scratch Arrow file.
pub async fn read(
    root: &Path,
    input: &Name,
    spec: &DatabaseInput,
    key: &PartitionKey,
    zone: chrono_tz::Tz,
) -> Result<Read, DatabaseInputError> {
    let url = connection_string(root, input, spec)?;
    let bound = bound(spec).map_err(|why| DatabaseInputError::Spec {
        input: input.to_string(),
        why,
    })?;
    let values = parameter_values(spec.system, &bound.params, key, zone);
    let spool_err = |source| DatabaseInputError::Spool {
        input: input.to_string(),
        source,
    };
    let spool = tempfile::Builder::new()
        .prefix("sluice-database-")
        .suffix(".arrow")
        .tempfile()
        .map_err(spool_err)?;
    let arrow_err = |e: deltalake::arrow::error::ArrowError| spool_err(std::io::Error::other(e));
    let kind = match spec.system {
        DatabaseSystem::Postgres => postgres::kind,
        DatabaseSystem::MySql => mysql::kind,
    };
    let mut sink =
        Sink::new(spool.reopen().map_err(spool_err)?, &spec.schema, kind).map_err(arrow_err)?;
    let fetched = match spec.system {
        DatabaseSystem::Postgres => {
            let (params, schema) = (&bound.params, &spec.schema);
            postgres::fetch(&url, bound.sql, params, values, schema, &mut sink).await
        }
        DatabaseSystem::MySql => mysql::fetch(&url, bound.sql, values, &mut sink).await,
    };
    let transient = |e: &sqlx::Error| match spec.system {
        DatabaseSystem::Postgres => postgres::transient(e),
        DatabaseSystem::MySql => mysql::transient(e),
    };
    fetched.map_err(|e| match e {
        FetchError::Connect(e) => DatabaseInputError::Connect {
            input: input.to_string(),
            from: spec.connection.to_string(),
            why: said(&e, &url),
            transient: transient(&e),
        },
        FetchError::Query(e) => DatabaseInputError::Query {
            input: input.to_string(),
            why: said(&e, &url),
            transient: transient(&e),
        },
        FetchError::Decode(why) => DatabaseInputError::Query {
            input: input.to_string(),
            why,
            transient: false,
        },
        FetchError::Write(e) => arrow_err(e),
    })?;
    let rows = sink.rows;
    let (bytes, sha256) = sink.finish().map_err(arrow_err)?;
    Ok(Read {
        output: CommandOutput {
            path: spool.into_temp_path(),
            shown: format!("the rows of input `{input}`'s query"),
            bytes,
            sha256,
        },
        rows,
    })
}

/// The query as sent: the user's, its parameters made the system's placeholders, inside a
/// select that reads each declared column as its Arrow type is built from.
pub fn bound(spec: &DatabaseInput) -> Result<Bound, String> {
    let inner = query_text::bind(&spec.query, spec.system)?;
    let read_as = match spec.system {
        DatabaseSystem::Postgres => postgres::read_as,
        DatabaseSystem::MySql => mysql::read_as,
    };
    let columns: Vec<String> = spec.schema.iter().map(read_as).collect();
    // The newline ends a comment the query may end with.
    Ok(Bound {
        sql: format!(
            "SELECT {} FROM ({}\n) AS sluice_q",
            columns.join(", "),
            inner.sql
        ),
        params: inner.params,
    })
}

/// Where the database is, as a URL without its user or password (for lineage); `None`
/// when the connection string cannot be read or is not a URL.
pub fn location(root: &Path, spec: &DatabaseInput) -> Option<url::Url> {
    let text = connection_string(root, &Name::new("x").ok()?, spec).ok()?;
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
    spec: &DatabaseInput,
) -> Result<String, DatabaseInputError> {
    let none = |what: String| DatabaseInputError::NoConnection {
        input: input.to_string(),
        what,
    };
    let shape = spec.system.url_shape();
    let url = match &spec.connection {
        ConnectionRef::Env(var) => std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.trim().to_string())
            .ok_or_else(|| {
                none(format!(
                    "environment variable {var} is not set; set it to the database's URL ({shape})"
                ))
            })?,
        ConnectionRef::File(rel) => std::fs::read_to_string(root.join(rel))
            .map(|v| v.trim().to_string())
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                none(format!(
                    "file {rel} is missing or empty; write the database's URL in it ({shape})"
                ))
            })?,
    };
    let scheme = url.split("://").next().unwrap_or_default();
    let fits = match spec.system {
        DatabaseSystem::Postgres => matches!(scheme, "postgres" | "postgresql"),
        DatabaseSystem::MySql => matches!(scheme, "mysql" | "mariadb"),
    };
    if !fits {
        return Err(none(format!(
            "the {} does not hold a {} URL ({shape}); its input is of type \"{}\"",
            spec.connection,
            spec.system.as_str(),
            spec.system.as_str()
        )));
    }
    Ok(url)
}

/// What a database error says, free of the connection string and any secret in it.
fn said(e: &sqlx::Error, url: &str) -> String {
    let text = e.to_string().replace(url, "<connection string>");
    crate::redact::redact_text(&text)
}

/// The values of `params` for the partition `key`: its bounds as instants (text the
/// placeholder casts), the partition and its key as text.
fn parameter_values(
    system: DatabaseSystem,
    params: &[Parameter],
    key: &PartitionKey,
    zone: chrono_tz::Tz,
) -> Values {
    let instant = |t: chrono::DateTime<chrono::Utc>| match system {
        DatabaseSystem::Postgres => t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        DatabaseSystem::MySql => mysql::instant(t),
    };
    let bounds = key.instant_bounds(zone);
    params
        .iter()
        .map(|p| match p {
            Parameter::Partition => Some(key.time.to_string()),
            Parameter::PartitionStart => bounds.map(|(s, _)| instant(s)),
            Parameter::PartitionEnd => bounds.map(|(_, e)| instant(e)),
            Parameter::Key => key.key.as_ref().map(|k| k.to_string()),
        })
        .collect()
}
