//! The catalog: sluice's state in SQL, through sqlx. Only this module speaks SQL to the
//! catalog; the rest of the program calls the typed functions here.
//!
//! The same SQL text runs on SQLite (the embedded default) and PostgreSQL through sqlx's
//! `Any` driver: `$N` placeholders, `ON CONFLICT`, `RETURNING`, BIGINT milliseconds for time.
//! Reads of many partition rows of a SQLite file go to the file directly (`sqlite_file`).
//! On SQLite, writes that read first begin `IMMEDIATE` (a deferred read-then-write
//! transaction fails with "database is locked" under concurrent writers even with a busy
//! timeout), and every connection uses WAL and a busy timeout.

mod aliases;
mod changes;
mod env_versions;
mod envs;
mod folded;
mod leases;
mod messages;
mod named;
mod outbox;
mod packed;
mod pg_rows;
mod reads;
mod retention;
mod rows;
mod run_writes;
mod sqlite_file;
mod synthetic;
mod tables;
mod write_group;

pub use aliases::{Flip, FlipRefusal};
pub use changes::TableChange;
pub use env_versions::{EnvBuild, FIRST_ENV_VERSION, NO_VERSION};
pub use envs::{EnvRow, NewEnv, NotCreated, PROD};
pub use messages::{Claimed, Settled, Window};
pub use named::NAMED_AT_MOST;
pub use outbox::{DeliveryRow, DeliveryState, EventRow, FinishEvents, NewEvent, TellOf};
pub use retention::{Batch, RunCursor};
pub use rows::{
    AliasFlip, AppliedMigration, Claim, DayCost, DoneIf, Lease, PartitionState, PartitionStatus,
    RunEnd, RunMeasures, RunRow, RunStart, RunState, StoredCost, TableRow, TableVersionRow,
    Trigger, VersionCoverage,
};
pub use synthetic::{HistoryPartition, HistoryRun};
pub use tables::MigrationTx;

use crate::redact::{redact_text, redact_url};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./src/catalog/migrations");

/// Set on every SQLite connection. WAL lets readers go on beside one writer; the busy
/// timeout makes a writer wait for another instead of failing at once, and comes first so
/// that the switch to WAL waits for others too.
const SQLITE_PRAGMAS: [&str; 4] = [
    "PRAGMA busy_timeout = 10000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
];

/// What to do about a failed connect, by the database's own code: SQLite's "cannot open"
/// (14) and "read-only" (8), PostgreSQL's bad password (28P01) or missing database (3D000).
fn connect_hint(e: &sqlx::Error, backend: Backend) -> String {
    let code = match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    };
    match (backend, code.as_deref()) {
        (Backend::Sqlite, Some("14" | "8")) => "; the catalog file or its folder is not writable (sluice writes the file and its -wal and -shm files beside it): give this user write access to both, or point --catalog or SLUICE_CATALOG at a writable place".into(),
        (Backend::Postgres, Some("28P01")) => "; the user or password is wrong (the password comes from the URL or PGPASSWORD)".into(),
        (Backend::Postgres, Some("3D000")) => "; the database does not exist: create it (CREATE DATABASE) or name another in the URL".into(),
        (Backend::Postgres, _) if matches!(e, sqlx::Error::Io(_)) => "; check that the server is up and that host and port in the URL are right".into(),
        _ => String::new(),
    }
}

/// What went wrong talking to the catalog. The source error is kept (for its kind and
/// chain); what is shown passes through `redact` first, so that no password is printed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot open the catalog {url}: {}{hint}", redact_text(&.source.to_string()))]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
        /// What to do about it, when the cause is known (starts with "; ").
        hint: String,
    },
    #[error(
        "cannot open the catalog {url}: no answer within {seconds} s; check that the server is up and reachable from here"
    )]
    NoAnswer { url: String, seconds: u64 },
    #[error("cannot bring the catalog schema up to date in {url}: {}", redact_text(&.source.to_string()))]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("catalog {op}: {}", redact_text(&.source.to_string()))]
    Query {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "table {table} v{version} belongs to {owner}; {writer} may not write it (an environment writes only the versions `sluice apply --env` made for it, production only its own)"
    )]
    NotOwned {
        table: String,
        version: i64,
        /// `production` or `environment NAME`.
        owner: String,
        writer: String,
    },
    #[error("catalog data is inconsistent: {0} (this is likely a bug)")]
    Corrupt(String),
    #[error("catalog write: {0} (this is likely a bug)")]
    Lost(&'static str),
    /// A run's quality could not be packed or unpacked (`packed.rs`).
    #[error(transparent)]
    Packed(#[from] packed::PackedError),
    /// A read straight from a SQLite catalog's file (`sqlite_file.rs`).
    #[error("catalog {op}: {source}")]
    File {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create the catalog's folder {}: {source}", .path.display())]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The folder of a SQLite catalog file (`sqlite:///abs/path.db?...`), created on first
/// connect so that a new project's `.sluice/` appears when the catalog is first used.
fn create_sqlite_folder(url: &str) -> Result<(), CatalogError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = std::path::Path::new(rest.split('?').next().unwrap_or(rest));
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| CatalogError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}

impl CatalogError {
    /// A busy or locked database, a serialisation failure, or a lost connection: worth a
    /// retry. Decided by the error's kind and database code, never by its text.
    pub fn is_transient(&self) -> bool {
        match self {
            CatalogError::Query { source, .. } | CatalogError::Connect { source, .. } => {
                transient(source)
            }
            CatalogError::File { source, .. } => source.sqlite_error_code().is_some_and(|c| {
                matches!(
                    c,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
            }),
            _ => false,
        }
    }
}

fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| transient_code(&c)),
        _ => false,
    }
}

/// PostgreSQL's SQLSTATEs are five characters: class 40 (serialisation failure, deadlock),
/// 08 (connection), 53 (insufficient resources), 57P (server shutting down). SQLite's
/// extended result codes are numbers below 10,000: BUSY (5) and LOCKED (6) in the low byte.
fn transient_code(code: &str) -> bool {
    if code.len() == 5 {
        return ["40", "08", "53", "57P"]
            .iter()
            .any(|p| code.starts_with(p));
    }
    code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}

/// `$1, $2, ...` from `from` on: the placeholders of an `IN` list of `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn query_err(op: &'static str) -> impl Fn(sqlx::Error) -> CatalogError {
    move |source| CatalogError::Query { op, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a connection speaks to.
    fn of(conn: &sqlx::AnyConnection) -> Backend {
        match conn.backend_name().eq_ignore_ascii_case("sqlite") {
            true => Backend::Sqlite,
            false => Backend::Postgres,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Catalog {
    /// Reads.
    pool: AnyPool,
    /// Writes. On SQLite a pool of one connection: writers of one process take turns here
    /// instead of meeting SQLITE_BUSY, whose busy handler sleeps in milliseconds-long steps.
    /// On PostgreSQL the same pool as reads.
    writer: AnyPool,
    backend: Backend,
    /// Claims and finishes waiting to be written together (see `write_group`).
    group: std::sync::Arc<write_group::WriteGroup>,
    /// Where it was opened, for [`Catalog::twin`]; shown only through `redact_url`.
    url: std::sync::Arc<str>,
    /// The environment alias reads are scoped to (`envs`); `None`: production's.
    env: Option<std::sync::Arc<str>>,
    /// A SQLite catalog's file, read directly by the reads of many partitions
    /// (`sqlite_file`); `None` on PostgreSQL and for a catalog in memory.
    file: Option<std::sync::Arc<std::path::Path>>,
    /// On PostgreSQL, the driver's own pool, for the reads of many partitions
    /// (`pg_rows`); `None` on SQLite and in a twin.
    pg_rows: Option<sqlx::PgPool>,
}

impl Catalog {
    /// Opens the catalog at `url` and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Catalog, CatalogError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite {
            create_sqlite_folder(url)?;
        }
        Self::probe(url, backend).await?;
        let pool = Self::pool(url, backend, if backend == Backend::Sqlite { 4 } else { 8 }).await?;
        let writer = match backend {
            Backend::Sqlite => Self::pool(url, backend, 1).await?,
            Backend::Postgres => pool.clone(),
        };
        // sqlx takes no lock for SQLite migrations: two processes opening a new catalog at
        // once can both try to create it. The loser's DDL fails once the winner commits; a
        // retry then finds the schema in place.
        let mut attempt = 0;
        loop {
            match MIGRATOR.run(&writer).await {
                Ok(()) => break,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    tracing::debug!(error = %redact_text(&e.to_string()), attempt, "catalog schema busy; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => {
                    return Err(CatalogError::Migrate {
                        url: redact_url(url),
                        source: e,
                    });
                }
            }
        }
        Ok(Catalog {
            pool,
            writer,
            backend,
            group: Default::default(),
            url: url.into(),
            env: None,
            file: match backend {
                Backend::Sqlite => sqlite_file::file_of(url).map(Into::into),
                Backend::Postgres => None,
            },
            pg_rows: match backend {
                Backend::Sqlite => None,
                Backend::Postgres => {
                    Some(pg_rows::pool(url).map_err(|source| CatalogError::Connect {
                        url: redact_url(url),
                        hint: connect_hint(&source, backend),
                        source,
                    })?)
                }
            },
        })
    }

    /// A connection of the read pool, for reads of several statements.
    async fn reader(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, CatalogError> {
        self.pool
            .acquire()
            .await
            .map_err(query_err("open a catalog connection"))
    }

    /// The same catalog through a connection of its own, opened when first used, on the
    /// runtime that uses it: for work that must not wait on the runtime that opened this
    /// one (a PostgreSQL connection is driven by the runtime that made it), such as the
    /// lease heartbeats. Connects nothing yet, so it does not wait on an outage.
    pub fn twin(&self) -> Result<Catalog, CatalogError> {
        let pool = Self::pool_options(self.backend, 1)
            .connect_lazy(&self.url)
            .map_err(|source| CatalogError::Connect {
                url: redact_url(&self.url),
                hint: connect_hint(&source, self.backend),
                source,
            })?;
        Ok(Catalog {
            pool: pool.clone(),
            writer: pool,
            backend: self.backend,
            group: Default::default(),
            url: self.url.clone(),
            env: self.env.clone(),
            file: self.file.clone(),
            // Its pool was made on the runtime that opened this catalog: a twin's large
            // reads go folded, on its own connection.
            pg_rows: None,
        })
    }

    /// One connection opened directly, before the pools: a pool retries a failing connect
    /// until its acquire timeout, which turns a read-only file, a refused connection or a
    /// wrong password into "pool timed out" after 30 s. This says the cause at once.
    async fn probe(url: &str, backend: Backend) -> Result<(), CatalogError> {
        use sqlx::Connection as _;
        const WAIT: Duration = Duration::from_secs(10);
        let connect = async {
            let mut conn = sqlx::AnyConnection::connect(url).await?;
            if backend == Backend::Sqlite {
                for pragma in SQLITE_PRAGMAS {
                    sqlx::query(pragma).execute(&mut conn).await?;
                }
            }
            conn.close().await
        };
        match tokio::time::timeout(WAIT, connect).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(CatalogError::Connect {
                url: redact_url(url),
                hint: connect_hint(&source, backend),
                source,
            }),
            Err(_) => Err(CatalogError::NoAnswer {
                url: redact_url(url),
                seconds: WAIT.as_secs(),
            }),
        }
    }

    async fn pool(url: &str, backend: Backend, size: u32) -> Result<AnyPool, CatalogError> {
        Self::pool_options(backend, size)
            .connect(url)
            .await
            .map_err(|source| CatalogError::Connect {
                url: redact_url(url),
                hint: connect_hint(&source, backend),
                source,
            })
    }

    fn pool_options(backend: Backend, size: u32) -> AnyPoolOptions {
        let mut options = AnyPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(Duration::from_secs(30));
        if backend == Backend::Sqlite {
            // A SQLite connection is a file handle, never dropped by a server: the ping the
            // pool sends before handing out a connection is a round trip to its worker
            // thread on every catalog call, for nothing.
            options = options.test_before_acquire(false);
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    for pragma in SQLITE_PRAGMAS {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        options
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// A transaction that will write: on SQLite it takes the write lock at BEGIN.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, CatalogError> {
        let stmt = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        self.writer
            .begin_with(stmt)
            .await
            .map_err(query_err("begin"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn busy_locked_and_lost_connections_are_transient_by_code() {
        for code in [
            "5", "517", "261", "6", "262", "40001", "40P01", "08006", "53300", "57P01",
        ] {
            assert!(super::transient_code(code), "{code}");
        }
        for code in ["19", "2067", "1", "23505", "42P01", "22003"] {
            assert!(!super::transient_code(code), "{code}");
        }
    }
}
