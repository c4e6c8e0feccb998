//! The inputs that are extracts, run once per partition attempt rather than read from
//! files or tables: a program's output (`type = "command"`) and a database query
//! (`type = "postgres"` or `"mysql"`); and what either gives the engine to read.

use super::{CsvOptions, FileFormat, InputSource};
use crate::schema::Column;

/// What an extract (a command or a database input) gives: its declared columns, and how its
/// rows are written for the query to read.
pub struct Extract<'a> {
    pub schema: &'a [Column],
    pub format: FileFormat,
    pub csv: CsvOptions,
}

impl InputSource {
    /// An extract's columns and format; `None` for files and upstream tables.
    pub fn extract(&self) -> Option<Extract<'_>> {
        match self {
            InputSource::Command(c) => Some(Extract {
                schema: &c.schema,
                format: c.format,
                csv: c.csv.clone(),
            }),
            // Its rows are kept as Arrow IPC (see `database_input`).
            InputSource::Database(db) => Some(Extract {
                schema: &db.schema,
                format: FileFormat::Arrow,
                csv: CsvOptions {
                    header: true,
                    delimiter: b',',
                },
            }),
            InputSource::Files { .. } | InputSource::Table { .. } => None,
        }
    }
}

/// `[[inputs]] type = "postgres"` or `"mysql"`: which database system, where the connection
/// string is, the query, its columns.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseInput {
    pub system: DatabaseSystem,
    pub connection: ConnectionRef,
    pub query: String,
    pub schema: Vec<Column>,
}

/// The database systems a database input reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseSystem {
    Postgres,
    MySql,
}

impl DatabaseSystem {
    /// As the spec's `type` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseSystem::Postgres => "postgres",
            DatabaseSystem::MySql => "mysql",
        }
    }

    /// What its connection string looks like, for messages.
    pub fn url_shape(self) -> &'static str {
        match self {
            DatabaseSystem::Postgres => "postgres://USER:PASSWORD@HOST:PORT/DB",
            DatabaseSystem::MySql => "mysql://USER:PASSWORD@HOST:PORT/DB",
        }
    }

    /// The port a URL without one means.
    pub fn default_port(self) -> u16 {
        match self {
            DatabaseSystem::Postgres => 5432,
            DatabaseSystem::MySql => 3306,
        }
    }
}

/// Where a database's connection string is kept: never in the spec.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionRef {
    /// `env:NAME`: an environment variable.
    Env(String),
    /// `file:PATH`: a file, relative to the project.
    File(String),
}

impl std::fmt::Display for ConnectionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionRef::Env(v) => write!(f, "environment variable {v}"),
            ConnectionRef::File(p) => write!(f, "file {p}"),
        }
    }
}

/// `[[inputs]] type = "command"`: an argv (never a shell line), run in the project's
/// folder with the partition in its environment; what it writes to its standard output, in
/// `format`, is read with the declared `schema`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandInput {
    pub argv: Vec<String>,
    pub format: FileFormat,
    pub schema: Vec<Column>,
    pub csv: CsvOptions,
    /// Killed (with every process it started) past this.
    pub timeout: Option<std::time::Duration>,
}
