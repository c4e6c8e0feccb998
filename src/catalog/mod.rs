//! The catalog: sluice's state in SQL, through sqlx. Only this module speaks SQL to the
//! catalog; the rest of the program calls the typed functions here.
//!
//! The same SQL text runs on SQLite (the embedded default) and PostgreSQL through sqlx's
//! `Any` driver: `$N` placeholders, `ON CONFLICT`, `RETURNING`, BIGINT milliseconds for time.
//! On SQLite, writes that read first begin `IMMEDIATE` (a deferred read-then-write
//! transaction fails with "database is locked" under concurrent writers even with a busy
//! timeout), and every connection uses WAL and a busy timeout.

use crate::redact::{redact_text, redact_url};
use crate::schema::TableSchema;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./src/catalog/migrations");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot open the catalog {url}: {message}")]
    Connect { url: String, message: String },
    #[error("cannot bring the catalog schema up to date in {url}: {message}")]
    Migrate { url: String, message: String },
    #[error("catalog {op}: {message}")]
    Query { op: &'static str, message: String },
    #[error("catalog data is inconsistent: {0} (this is likely a bug)")]
    Corrupt(String),
}

impl CatalogError {
    /// A busy or locked database, or a lost connection: worth a retry.
    pub fn is_transient(&self) -> bool {
        match self {
            CatalogError::Query { message, .. } | CatalogError::Connect { message, .. } => {
                let m = message.to_ascii_lowercase();
                m.contains("database is locked")
                    || m.contains("busy")
                    || m.contains("pool timed out")
                    || m.contains("connection")
            }
            _ => false,
        }
    }
}

fn query_err(op: &'static str) -> impl Fn(sqlx::Error) -> CatalogError {
    move |e| CatalogError::Query {
        op,
        message: redact_text(&e.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
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
}

/// A lease on one (table version, partition): the right to write it until `expires_at_ms`,
/// proven at commit by `token` (the fencing token, which only grows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub table: String,
    pub version: i64,
    pub partition: String,
    pub token: i64,
    pub holder: String,
    pub run_id: String,
}

/// What [`Catalog::claim`] found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The lease is ours and the run is recorded as started.
    Started(Lease),
    /// The lease is ours, nothing started: the partition needs a look first.
    Look {
        lease: Lease,
        status: Box<PartitionStatus>,
    },
    Held {
        holder: String,
        run_id: Option<String>,
    },
}

/// One partition with its last run.
const PARTITION_STATUS_ONE: &str = "SELECT p.job, p.table_name, p.table_version, p.partition_key, p.state, p.content_rows, p.content_run_id, \
        p.content_fingerprint, p.content_delta_version, p.last_run_id, p.error, \
        r.started_at, r.finished_at, r.attempt \
 FROM partitions p LEFT JOIN runs r ON r.run_id = p.last_run_id \
 WHERE p.table_name = $1 AND p.table_version = $2 AND p.partition_key = $3";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppliedMigration {
    pub name: String,
    pub checksum: String,
    pub applied_at: i64,
    pub applied_by: String,
}

#[derive(Debug, Clone)]
pub struct TableRow {
    pub schema: TableSchema,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TableVersionRow {
    pub table_name: String,
    pub version: i64,
    pub uri: String,
    pub schema_json: String,
    pub created_at: i64,
}

/// One alias change asked of [`Catalog::flip_aliases`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flip {
    pub table: String,
    /// The version the alias must still point at.
    pub expect: i64,
    pub to: i64,
}

/// Why a flip was refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FlipRefusal {
    /// The alias no longer points where the caller expected (another flip won).
    Moved {
        table: String,
        expected: i64,
        actual: Option<i64>,
    },
    NoSuchVersion {
        table: String,
        version: i64,
    },
    /// Partitions the live version has and the new one lacks.
    Missing {
        table: String,
        live: i64,
        version: i64,
        partitions: Vec<String>,
    },
    /// Partitions of the new version whose last run failed or is still running.
    Unfinished {
        table: String,
        version: i64,
        partitions: Vec<(String, String)>,
    },
}

impl std::fmt::Display for FlipRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn list(items: &[String]) -> String {
            let mut s = items
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if items.len() > 20 {
                s.push_str(&format!(" ... ({} more)", items.len() - 20));
            }
            s
        }
        match self {
            FlipRefusal::Moved {
                table,
                expected,
                actual,
            } => write!(
                f,
                "{table}: the alias points at {} now, not v{expected}: another promote or rollback changed it first; check `sluice history {table}` and try again",
                actual
                    .map(|v| format!("v{v}"))
                    .unwrap_or_else(|| "nothing".into())
            ),
            FlipRefusal::NoSuchVersion { table, version } => write!(
                f,
                "{table}: version v{version} does not exist; build it first (bump the job's `version` and backfill)"
            ),
            FlipRefusal::Missing {
                table,
                live,
                version,
                partitions,
            } => write!(
                f,
                "{table}: v{version} lacks {} partition(s) that v{live} has: {}; backfill them into v{version}, or pass --partial",
                partitions.len(),
                list(partitions)
            ),
            FlipRefusal::Unfinished {
                table,
                version,
                partitions,
            } => write!(
                f,
                "{table}: v{version} has {} partition(s) not complete: {}; rerun them (`sluice backfill --only-failed`), or pass --partial",
                partitions.len(),
                list(
                    &partitions
                        .iter()
                        .map(|(p, s)| format!("{p} ({s})"))
                        .collect::<Vec<_>>()
                )
            ),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AliasFlip {
    pub alias: String,
    pub from_version: Option<i64>,
    pub to_version: i64,
    pub at: i64,
    pub by_whom: String,
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunStart {
    pub run_id: String,
    pub job: String,
    pub table: String,
    pub version: i64,
    pub partition: String,
    pub attempt: i64,
    pub trigger: &'static str,
    pub fingerprint: String,
    pub lease_token: i64,
    pub host: String,
    pub pid: i64,
    pub started_at: i64,
}

#[derive(Debug, Clone)]
pub enum RunEnd {
    Succeeded { rows: i64, delta_version: i64 },
    Failed { error: String },
}

/// One partition of one physical version, with its last run.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct PartitionStatus {
    pub job: String,
    pub table_name: String,
    pub table_version: i64,
    pub partition_key: String,
    pub state: String,
    pub content_rows: Option<i64>,
    pub content_run_id: Option<String>,
    pub content_fingerprint: Option<String>,
    pub content_delta_version: Option<i64>,
    pub last_run_id: String,
    pub error: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub attempt: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub job: String,
    pub table_name: String,
    pub table_version: i64,
    pub partition_key: String,
    pub attempt: i64,
    pub state: String,
    pub trigger_kind: String,
    pub fingerprint: String,
    pub lease_token: i64,
    pub rows_written: Option<i64>,
    pub delta_version: Option<i64>,
    pub error: Option<String>,
    pub host: String,
    pub pid: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
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
                        message: redact_text(&e.to_string()),
                    });
                }
            }
        }
        Ok(Catalog {
            pool,
            writer,
            backend,
        })
    }

    async fn pool(url: &str, backend: Backend, size: u32) -> Result<AnyPool, CatalogError> {
        let mut options = AnyPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(Duration::from_secs(30));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers go on beside one writer; the busy timeout makes a
                    // writer wait for another instead of failing at once.
                    // The busy timeout first, so that the switch to WAL waits for others too.
                    for pragma in [
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA foreign_keys = ON",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        options
            .connect(url)
            .await
            .map_err(|e| CatalogError::Connect {
                url: redact_url(url),
                message: redact_text(&e.to_string()),
            })
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

    // ---- user migrations and tables -------------------------------------------------

    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>, CatalogError> {
        sqlx::query_as::<_, AppliedMigration>(
            "SELECT name, checksum, applied_at, applied_by FROM applied_migrations ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list applied migrations"))
    }

    /// Starts applying migration `name`: records it in the ledger inside a write
    /// transaction that stays open while the migration changes the tables, and commits with
    /// them. `None` when another process applied it first: the ledger row is the claim, so
    /// of two `migrate` processes exactly one applies each migration (the other waits for
    /// the first transaction to end, then finds the row).
    pub async fn begin_migration(
        &self,
        name: &str,
        checksum: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<Option<MigrationTx>, CatalogError> {
        // Another migrate may hold the write lock for as long as its rewrite takes.
        let mut waited = std::time::Duration::ZERO;
        let mut tx = loop {
            match self.begin_write().await {
                Ok(tx) => break tx,
                Err(e) if e.is_transient() && waited < std::time::Duration::from_secs(600) => {
                    tracing::info!(
                        migration = name,
                        "waiting for another writer of the catalog"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    waited += std::time::Duration::from_millis(200);
                }
                Err(e) => return Err(e),
            }
        };
        let inserted = sqlx::query(
            "INSERT INTO applied_migrations (name, checksum, applied_at, applied_by) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(checksum)
        .bind(now_ms)
        .bind(by)
        .execute(&mut *tx)
        .await
        .map_err(query_err("record migration"))?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await.map_err(query_err("rollback"))?;
            return Ok(None);
        }
        Ok(Some(MigrationTx { tx, now_ms }))
    }

    pub async fn table(&self, name: &str) -> Result<Option<TableRow>, CatalogError> {
        let row =
            sqlx::query("SELECT schema_json, created_at, updated_at FROM tables WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_err("read table"))?;
        row.map(|r| table_row(&r)).transpose()
    }

    pub async fn tables(&self) -> Result<Vec<TableRow>, CatalogError> {
        let rows =
            sqlx::query("SELECT schema_json, created_at, updated_at FROM tables ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(query_err("list tables"))?;
        rows.iter().map(table_row).collect()
    }

    pub async fn table_version(
        &self,
        table: &str,
        version: i64,
    ) -> Result<Option<TableVersionRow>, CatalogError> {
        sqlx::query_as::<_, TableVersionRow>(
            "SELECT table_name, version, uri, schema_json, created_at FROM table_versions WHERE table_name = $1 AND version = $2",
        )
        .bind(table)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("read table version"))
    }

    pub async fn table_versions(&self, table: &str) -> Result<Vec<TableVersionRow>, CatalogError> {
        sqlx::query_as::<_, TableVersionRow>(
            "SELECT table_name, version, uri, schema_json, created_at FROM table_versions WHERE table_name = $1 ORDER BY version",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list table versions"))
    }

    /// Registers a physical version (idempotent). The first version of a table also gets
    /// the table's alias, since there is nothing else for readers to see.
    pub async fn register_table_version(
        &self,
        table: &str,
        version: i64,
        uri: &str,
        schema_json: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<TableVersionRow, CatalogError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO table_versions (table_name, version, uri, schema_json, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (table_name, version) DO NOTHING",
        )
        .bind(table)
        .bind(version)
        .bind(uri)
        .bind(schema_json)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(query_err("register table version"))?;
        let aliased = sqlx::query(
            "INSERT INTO aliases (name, version, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(table)
        .bind(version)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(query_err("create alias"))?
        .rows_affected();
        if aliased == 1 {
            sqlx::query(
                "INSERT INTO alias_history (id, alias, from_version, to_version, at, by_whom, message) VALUES ($1, $2, NULL, $3, $4, $5, $6)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(table)
            .bind(version)
            .bind(now_ms)
            .bind(by)
            .bind("first version of the table")
            .execute(&mut *tx)
            .await
            .map_err(query_err("record alias history"))?;
        }
        let row = sqlx::query_as::<_, TableVersionRow>(
            "SELECT table_name, version, uri, schema_json, created_at FROM table_versions WHERE table_name = $1 AND version = $2",
        )
        .bind(table)
        .bind(version)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_err("read table version"))?;
        tx.commit()
            .await
            .map_err(query_err("commit table version"))?;
        Ok(row)
    }

    /// The version the alias `name` points at.
    pub async fn alias(&self, name: &str) -> Result<Option<i64>, CatalogError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT version FROM aliases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("read alias"))?;
        Ok(v)
    }

    /// Flips aliases, all or none, in one transaction: each alias must still point at the
    /// version the caller expects (compare-and-swap), the target version must exist, and
    /// unless `partial`, the target must hold every partition the version it replaces has,
    /// with no partition failed or running. Returns the refusals when any precondition
    /// fails; then nothing changed.
    pub async fn flip_aliases(
        &self,
        flips: &[Flip],
        partial: bool,
        by: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<Vec<FlipRefusal>, CatalogError> {
        let mut tx = self.begin_write().await?;
        let mut refusals = Vec::new();
        // SQLite's BEGIN IMMEDIATE already serialises writers; on PostgreSQL the alias rows
        // are locked as they are read, so that a racing flip waits and then sees ours.
        let read_alias = match self.backend {
            Backend::Sqlite => "SELECT version FROM aliases WHERE name = $1",
            Backend::Postgres => "SELECT version FROM aliases WHERE name = $1 FOR UPDATE",
        };
        for f in flips {
            let actual: Option<i64> = sqlx::query_scalar(read_alias)
                .bind(&f.table)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_err("read alias"))?;
            if actual != Some(f.expect) {
                refusals.push(FlipRefusal::Moved {
                    table: f.table.clone(),
                    expected: f.expect,
                    actual,
                });
                continue;
            }
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM table_versions WHERE table_name = $1 AND version = $2",
            )
            .bind(&f.table)
            .bind(f.to)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err("read table version"))?;
            if exists.is_none() {
                refusals.push(FlipRefusal::NoSuchVersion {
                    table: f.table.clone(),
                    version: f.to,
                });
                continue;
            }
            if partial {
                continue;
            }
            let missing: Vec<String> = sqlx::query_scalar(
                "SELECT partition_key FROM partitions WHERE table_name = $1 AND table_version = $2 AND content_run_id IS NOT NULL \
                 AND partition_key NOT IN (SELECT partition_key FROM partitions WHERE table_name = $1 AND table_version = $3 AND content_run_id IS NOT NULL) \
                 ORDER BY partition_key",
            )
            .bind(&f.table)
            .bind(f.expect)
            .bind(f.to)
            .fetch_all(&mut *tx)
            .await
            .map_err(query_err("compare partitions"))?;
            if !missing.is_empty() {
                refusals.push(FlipRefusal::Missing {
                    table: f.table.clone(),
                    live: f.expect,
                    version: f.to,
                    partitions: missing,
                });
            }
            let unfinished: Vec<(String, String)> = sqlx::query_as(
                "SELECT partition_key, state FROM partitions WHERE table_name = $1 AND table_version = $2 AND state <> 'complete' ORDER BY partition_key",
            )
            .bind(&f.table)
            .bind(f.to)
            .fetch_all(&mut *tx)
            .await
            .map_err(query_err("read partitions"))?;
            if !unfinished.is_empty() {
                refusals.push(FlipRefusal::Unfinished {
                    table: f.table.clone(),
                    version: f.to,
                    partitions: unfinished,
                });
            }
        }
        if !refusals.is_empty() {
            tx.rollback().await.map_err(query_err("rollback"))?;
            return Ok(refusals);
        }
        for f in flips {
            let flipped = sqlx::query(
                "UPDATE aliases SET version = $1, updated_at = $2 WHERE name = $3 AND version = $4",
            )
            .bind(f.to)
            .bind(now_ms)
            .bind(&f.table)
            .bind(f.expect)
            .execute(&mut *tx)
            .await
            .map_err(query_err("flip alias"))?
            .rows_affected();
            // The compare-and-swap itself: whatever was read above, only a row still at the
            // expected version changes.
            if flipped != 1 {
                tx.rollback().await.map_err(query_err("rollback"))?;
                let actual = self.alias(&f.table).await?;
                return Ok(vec![FlipRefusal::Moved {
                    table: f.table.clone(),
                    expected: f.expect,
                    actual,
                }]);
            }
            sqlx::query(
                "INSERT INTO alias_history (id, alias, from_version, to_version, at, by_whom, message) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(&f.table)
            .bind(f.expect)
            .bind(f.to)
            .bind(now_ms)
            .bind(by)
            .bind(message)
            .execute(&mut *tx)
            .await
            .map_err(query_err("record alias history"))?;
        }
        tx.commit().await.map_err(query_err("commit alias flip"))?;
        Ok(Vec::new())
    }

    /// Records the code that wrote `version` of `job`'s table (replacing what was there).
    pub async fn record_job_code(
        &self,
        job: &str,
        version: i64,
        fingerprint: &str,
        spec_text: &str,
        sql_text: &str,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO job_code (job, table_version, fingerprint, spec_text, sql_text, recorded_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (job, table_version) DO UPDATE SET fingerprint = excluded.fingerprint, spec_text = excluded.spec_text, \
             sql_text = excluded.sql_text, recorded_at = excluded.recorded_at",
        )
        .bind(job)
        .bind(version)
        .bind(fingerprint)
        .bind(spec_text)
        .bind(sql_text)
        .bind(now_ms)
        .execute(&self.writer)
        .await
        .map_err(query_err("record job code"))?;
        Ok(())
    }

    /// The spec and SQL text that last wrote `version` of `job`'s table.
    pub async fn job_code(
        &self,
        job: &str,
        version: i64,
    ) -> Result<Option<(String, String)>, CatalogError> {
        sqlx::query_as(
            "SELECT spec_text, sql_text FROM job_code WHERE job = $1 AND table_version = $2",
        )
        .bind(job)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("read job code"))
    }

    /// Forgets a physical version whose files were deleted: its partition states, leases
    /// and recorded code (run history stays). Refused, returning false, if an alias points
    /// at it (a promote or rollback raced the removal).
    pub async fn drop_table_version(
        &self,
        table: &str,
        version: i64,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.begin_write().await?;
        let live: Option<i64> = sqlx::query_scalar("SELECT version FROM aliases WHERE name = $1")
            .bind(table)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err("read alias"))?;
        if live == Some(version) {
            tx.rollback().await.map_err(query_err("rollback"))?;
            return Ok(false);
        }
        for sql in [
            "DELETE FROM partitions WHERE table_name = $1 AND table_version = $2",
            "DELETE FROM leases WHERE table_name = $1 AND table_version = $2",
            "DELETE FROM table_versions WHERE table_name = $1 AND version = $2",
        ] {
            sqlx::query(sql)
                .bind(table)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(query_err("drop table version"))?;
        }
        sqlx::query("DELETE FROM job_code WHERE table_version = $1 AND job IN (SELECT DISTINCT job FROM runs WHERE table_name = $2)")
            .bind(version)
            .bind(table)
            .execute(&mut *tx)
            .await
            .map_err(query_err("drop job code"))?;
        tx.commit().await.map_err(query_err("commit drop"))?;
        Ok(true)
    }

    /// Every flip of `alias`, oldest first.
    pub async fn alias_history(&self, alias: &str) -> Result<Vec<AliasFlip>, CatalogError> {
        sqlx::query_as::<_, AliasFlip>(
            "SELECT alias, from_version, to_version, at, by_whom, message FROM alias_history WHERE alias = $1 ORDER BY at, id",
        )
        .bind(alias)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read alias history"))
    }

    // ---- leases ----------------------------------------------------------------------

    /// Extends a lease still held with `lease.token`. False when it was lost (expired and
    /// taken by another worker).
    pub async fn renew_lease(
        &self,
        lease: &Lease,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<bool, CatalogError> {
        let n = sqlx::query(
            "UPDATE leases SET expires_at = $1 WHERE table_name = $2 AND table_version = $3 AND partition_key = $4 AND token = $5 AND holder = $6",
        )
        .bind(now_ms + ttl_ms)
        .bind(&lease.table)
        .bind(lease.version)
        .bind(&lease.partition)
        .bind(lease.token)
        .bind(&lease.holder)
        .execute(&self.writer)
        .await
        .map_err(query_err("renew lease"))?
        .rows_affected();
        Ok(n == 1)
    }

    /// Whether `lease` is still the current one (same token, same holder, not expired).
    pub async fn lease_is_current(&self, lease: &Lease, now_ms: i64) -> Result<bool, CatalogError> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT token FROM leases WHERE table_name = $1 AND table_version = $2 AND partition_key = $3 AND token = $4 AND holder = $5 AND expires_at > $6",
        )
        .bind(&lease.table)
        .bind(lease.version)
        .bind(&lease.partition)
        .bind(lease.token)
        .bind(&lease.holder)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("check lease"))?;
        Ok(n.is_some())
    }

    /// The unexpired leases `holder` holds: what a stopping daemon must settle.
    pub async fn leases_held_by(
        &self,
        holder: &str,
        now_ms: i64,
    ) -> Result<Vec<Lease>, CatalogError> {
        let rows: Vec<(String, i64, String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT table_name, table_version, partition_key, token, holder, run_id FROM leases WHERE holder = $1 AND expires_at > $2",
        )
        .bind(holder)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list leases"))?;
        Ok(rows
            .into_iter()
            .map(|(table, version, partition, token, holder, run_id)| Lease {
                table,
                version,
                partition,
                token,
                holder,
                run_id: run_id.unwrap_or_default(),
            })
            .collect())
    }

    pub async fn release_lease(&self, lease: &Lease) -> Result<(), CatalogError> {
        let mut conn = self
            .writer
            .acquire()
            .await
            .map_err(query_err("release lease"))?;
        release_lease_in(&mut conn, lease).await
    }

    // ---- runs and partitions -----------------------------------------------------------

    /// Takes the partition's lease and, in the same transaction, records the run as started,
    /// unless the partition needs a look first: left running by another run (a dead worker:
    /// reconcile it), or completed by a run that finished at or after `done_since_ms`. One
    /// catalog write for the common case. Sets `start.lease_token`.
    pub async fn claim(
        &self,
        start: &mut RunStart,
        holder: &str,
        ttl_ms: i64,
        done_since_ms: Option<i64>,
    ) -> Result<Claim, CatalogError> {
        let now_ms = start.started_at;
        let mut tx = self.begin_write().await?;
        let token: Option<i64> = sqlx::query_scalar(
            "INSERT INTO leases (table_name, table_version, partition_key, token, holder, run_id, expires_at) \
             VALUES ($1, $2, $3, 1, $4, $5, $6) \
             ON CONFLICT (table_name, table_version, partition_key) DO UPDATE \
               SET token = leases.token + 1, holder = excluded.holder, run_id = excluded.run_id, expires_at = excluded.expires_at \
               WHERE leases.holder IS NULL OR leases.expires_at <= $7 \
             RETURNING token",
        )
        .bind(&start.table)
        .bind(start.version)
        .bind(&start.partition)
        .bind(holder)
        .bind(&start.run_id)
        .bind(now_ms + ttl_ms)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_err("acquire lease"))?;
        let Some(token) = token else {
            let row = sqlx::query(
                "SELECT holder, run_id, expires_at FROM leases WHERE table_name = $1 AND table_version = $2 AND partition_key = $3",
            )
            .bind(&start.table)
            .bind(start.version)
            .bind(&start.partition)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err("read lease"))?;
            tx.rollback().await.map_err(query_err("rollback"))?;
            return Ok(Claim::Held {
                holder: row
                    .as_ref()
                    .and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
                    .unwrap_or_default(),
                run_id: row
                    .as_ref()
                    .and_then(|r| r.try_get::<Option<String>, _>(1).ok().flatten()),
            });
        };
        start.lease_token = token;
        let lease = Lease {
            table: start.table.clone(),
            version: start.version,
            partition: start.partition.clone(),
            token,
            holder: holder.to_string(),
            run_id: start.run_id.clone(),
        };
        let status = sqlx::query_as::<_, PartitionStatus>(PARTITION_STATUS_ONE)
            .bind(&start.table)
            .bind(start.version)
            .bind(&start.partition)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err("read partition"))?;
        if let Some(p) = status {
            let left_running = p.state == "running" && p.last_run_id != start.run_id;
            let done_since = done_since_ms
                .is_some_and(|since| p.state == "complete" && p.finished_at.unwrap_or(0) >= since);
            if left_running || done_since {
                tx.commit().await.map_err(query_err("commit lease"))?;
                return Ok(Claim::Look {
                    lease,
                    status: Box::new(p),
                });
            }
        }
        insert_run_start(&mut tx, start).await?;
        tx.commit().await.map_err(query_err("commit run start"))?;
        Ok(Claim::Started(lease))
    }

    /// Records a run as started and its partition as running, in one transaction.
    pub async fn start_run(&self, r: &RunStart) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        insert_run_start(&mut tx, r).await?;
        tx.commit().await.map_err(query_err("commit run start"))
    }

    /// Records how a run ended. The partition row changes only if this run is still its
    /// last run: a stale worker's late report cannot overwrite a newer run's state.
    pub async fn finish_run(
        &self,
        start: &RunStart,
        end: &RunEnd,
        now_ms: i64,
        release: Option<&Lease>,
        quality_json: Option<&str>,
    ) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        if let Some(lease) = release {
            // In the same transaction: one catalog write less per partition.
            release_lease_in(&mut tx, lease).await?;
        }
        let (state, rows, dv, error) = match end {
            RunEnd::Succeeded {
                rows,
                delta_version,
            } => ("succeeded", Some(*rows), Some(*delta_version), None),
            RunEnd::Failed { error } => ("failed", None, None, Some(redact_text(error))),
        };
        sqlx::query(
            "UPDATE runs SET state = $1, rows_written = $2, delta_version = $3, error = $4, finished_at = $5, quality_json = $6 WHERE run_id = $7",
        )
        .bind(state)
        .bind(rows)
        .bind(dv)
        .bind(error.clone())
        .bind(now_ms)
        .bind(quality_json)
        .bind(&start.run_id)
        .execute(&mut *tx)
        .await
        .map_err(query_err("record run end"))?;
        match end {
            RunEnd::Succeeded {
                rows,
                delta_version,
            } => {
                sqlx::query(
                    "UPDATE partitions SET state = 'complete', content_run_id = $1, content_fingerprint = $2, content_rows = $3, content_delta_version = $4, error = NULL, updated_at = $5 \
                     WHERE table_name = $6 AND table_version = $7 AND partition_key = $8 AND last_run_id = $1",
                )
                .bind(&start.run_id)
                .bind(&start.fingerprint)
                .bind(*rows)
                .bind(*delta_version)
                .bind(now_ms)
                .bind(&start.table)
                .bind(start.version)
                .bind(&start.partition)
                .execute(&mut *tx)
                .await
                .map_err(query_err("record partition complete"))?;
            }
            RunEnd::Failed { .. } => {
                sqlx::query(
                    "UPDATE partitions SET state = 'failed', error = $1, updated_at = $2 \
                     WHERE table_name = $3 AND table_version = $4 AND partition_key = $5 AND last_run_id = $6",
                )
                .bind(error)
                .bind(now_ms)
                .bind(&start.table)
                .bind(start.version)
                .bind(&start.partition)
                .bind(&start.run_id)
                .execute(&mut *tx)
                .await
                .map_err(query_err("record partition failed"))?;
            }
        }
        tx.commit().await.map_err(query_err("commit run end"))
    }

    /// The profiles of the `limit` complete partitions of a physical version before
    /// `partition` (newest first): the baseline of the checks that compare with the past.
    pub async fn profiles_before(
        &self,
        table: &str,
        version: i64,
        partition: &str,
        limit: u32,
    ) -> Result<Vec<crate::quality::Profile>, CatalogError> {
        let rows: Vec<(Option<String>,)> = sqlx::query_as(
            "SELECT r.quality_json FROM partitions p JOIN runs r ON r.run_id = p.content_run_id \
             WHERE p.table_name = $1 AND p.table_version = $2 AND p.partition_key < $3 AND p.content_run_id IS NOT NULL \
             ORDER BY p.partition_key DESC LIMIT $4",
        )
        .bind(table)
        .bind(version)
        .bind(partition)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read profiles"))?;
        Ok(rows
            .into_iter()
            .filter_map(|(j,)| j)
            .filter_map(|j| serde_json::from_str::<crate::quality::Quality>(&j).ok())
            .filter_map(|q| q.profile)
            .collect())
    }

    /// Every partition of a physical version with the profile of its current content, in
    /// partition order.
    pub async fn profile_history(
        &self,
        table: &str,
        version: i64,
    ) -> Result<Vec<(String, crate::quality::Quality)>, CatalogError> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT p.partition_key, r.quality_json FROM partitions p JOIN runs r ON r.run_id = p.content_run_id \
             WHERE p.table_name = $1 AND p.table_version = $2 ORDER BY p.partition_key",
        )
        .bind(table)
        .bind(version)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read profiles"))?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, j)| {
                let q = serde_json::from_str::<crate::quality::Quality>(&j?).ok()?;
                Some((k, q))
            })
            .collect())
    }

    /// A run that was left `running` by a process that died, found committed in the Delta
    /// log (its fencing token is there): record it as the success it was.
    pub async fn reconcile_landed_run(
        &self,
        run: &RunRow,
        rows: i64,
        delta_version: i64,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        let start = RunStart {
            run_id: run.run_id.clone(),
            job: run.job.clone(),
            table: run.table_name.clone(),
            version: run.table_version,
            partition: run.partition_key.clone(),
            attempt: run.attempt,
            trigger: "reconciled",
            fingerprint: run.fingerprint.clone(),
            lease_token: run.lease_token,
            host: run.host.clone(),
            pid: run.pid,
            started_at: run.started_at,
        };
        self.finish_run(
            &start,
            &RunEnd::Succeeded {
                rows,
                delta_version,
            },
            now_ms,
            None,
            None,
        )
        .await
    }

    /// Marks a run left `running` by a dead process as failed, if it is still running.
    pub async fn abandon_run(
        &self,
        run_id: &str,
        why: &str,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE runs SET state = 'abandoned', error = $1, finished_at = $2 WHERE run_id = $3 AND state = 'running'")
            .bind(why)
            .bind(now_ms)
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(query_err("abandon run"))?;
        sqlx::query("UPDATE partitions SET state = 'failed', error = $1, updated_at = $2 WHERE last_run_id = $3 AND state = 'running'")
            .bind(why)
            .bind(now_ms)
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(query_err("abandon partition"))?;
        tx.commit().await.map_err(query_err("commit abandon"))
    }

    pub async fn run(&self, run_id: &str) -> Result<Option<RunRow>, CatalogError> {
        sqlx::query_as::<_, RunRow>(
            "SELECT run_id, job, table_name, table_version, partition_key, attempt, state, trigger_kind, fingerprint, lease_token, rows_written, delta_version, error, host, pid, started_at, finished_at FROM runs WHERE run_id = $1",
        )
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("read run"))
    }

    /// Partitions with their last run, for `status`; all jobs when `job` is None.
    pub async fn partition_statuses(
        &self,
        job: Option<&str>,
    ) -> Result<Vec<PartitionStatus>, CatalogError> {
        sqlx::query_as::<_, PartitionStatus>(
            "SELECT p.job, p.table_name, p.table_version, p.partition_key, p.state, p.content_rows, p.content_run_id, \
                    p.content_fingerprint, p.content_delta_version, p.last_run_id, p.error, \
                    r.started_at, r.finished_at, r.attempt \
             FROM partitions p LEFT JOIN runs r ON r.run_id = p.last_run_id \
             WHERE ($1 IS NULL OR p.job = $1) \
             ORDER BY p.job, p.table_version, p.partition_key",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list partitions"))
    }

    /// Every partition of one physical version, with its last run.
    pub async fn partitions_of(
        &self,
        table: &str,
        version: i64,
    ) -> Result<Vec<PartitionStatus>, CatalogError> {
        sqlx::query_as::<_, PartitionStatus>(
            "SELECT p.job, p.table_name, p.table_version, p.partition_key, p.state, p.content_rows, p.content_run_id, \
                    p.content_fingerprint, p.content_delta_version, p.last_run_id, p.error, \
                    r.started_at, r.finished_at, r.attempt \
             FROM partitions p LEFT JOIN runs r ON r.run_id = p.last_run_id \
             WHERE p.table_name = $1 AND p.table_version = $2 \
             ORDER BY p.partition_key",
        )
        .bind(table)
        .bind(version)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list partitions"))
    }

    pub async fn partition_status(
        &self,
        table: &str,
        version: i64,
        partition: &str,
    ) -> Result<Option<PartitionStatus>, CatalogError> {
        sqlx::query_as::<_, PartitionStatus>(PARTITION_STATUS_ONE)
            .bind(table)
            .bind(version)
            .bind(partition)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("read partition"))
    }

    pub async fn runs_of_partition(
        &self,
        table: &str,
        version: i64,
        partition: &str,
    ) -> Result<Vec<RunRow>, CatalogError> {
        sqlx::query_as::<_, RunRow>(
            "SELECT run_id, job, table_name, table_version, partition_key, attempt, state, trigger_kind, fingerprint, lease_token, rows_written, delta_version, error, host, pid, started_at, finished_at \
             FROM runs WHERE table_name = $1 AND table_version = $2 AND partition_key = $3 ORDER BY started_at, run_id",
        )
        .bind(table)
        .bind(version)
        .bind(partition)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list runs"))
    }
}

async fn insert_run_start(
    conn: &mut sqlx::AnyConnection,
    r: &RunStart,
) -> Result<(), CatalogError> {
    sqlx::query(
        "INSERT INTO runs (run_id, job, table_name, table_version, partition_key, attempt, state, trigger_kind, fingerprint, lease_token, host, pid, started_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8, $9, $10, $11, $12)",
    )
    .bind(&r.run_id)
    .bind(&r.job)
    .bind(&r.table)
    .bind(r.version)
    .bind(&r.partition)
    .bind(r.attempt)
    .bind(r.trigger)
    .bind(&r.fingerprint)
    .bind(r.lease_token)
    .bind(&r.host)
    .bind(r.pid)
    .bind(r.started_at)
    .execute(&mut *conn)
    .await
    .map_err(query_err("record run start"))?;
    sqlx::query(
        "INSERT INTO partitions (table_name, table_version, partition_key, job, state, last_run_id, error, updated_at) \
         VALUES ($1, $2, $3, $4, 'running', $5, NULL, $6) \
         ON CONFLICT (table_name, table_version, partition_key) DO UPDATE \
           SET job = excluded.job, state = 'running', last_run_id = excluded.last_run_id, error = NULL, updated_at = excluded.updated_at",
    )
    .bind(&r.table)
    .bind(r.version)
    .bind(&r.partition)
    .bind(&r.job)
    .bind(&r.run_id)
    .bind(r.started_at)
    .execute(&mut *conn)
    .await
    .map_err(query_err("record partition running"))?;
    Ok(())
}

async fn release_lease_in(
    conn: &mut sqlx::AnyConnection,
    lease: &Lease,
) -> Result<(), CatalogError> {
    sqlx::query(
        "UPDATE leases SET holder = NULL, run_id = NULL, expires_at = 0 WHERE table_name = $1 AND table_version = $2 AND partition_key = $3 AND token = $4 AND holder = $5",
    )
    .bind(&lease.table)
    .bind(lease.version)
    .bind(&lease.partition)
    .bind(lease.token)
    .bind(&lease.holder)
    .execute(&mut *conn)
    .await
    .map_err(query_err("release lease"))?;
    Ok(())
}

fn table_row(r: &AnyRow) -> Result<TableRow, CatalogError> {
    let json: String = r.try_get(0).map_err(query_err("read table"))?;
    let schema: TableSchema = serde_json::from_str(&json)
        .map_err(|e| CatalogError::Corrupt(format!("stored table schema does not parse: {e}")))?;
    Ok(TableRow {
        schema,
        created_at: r.try_get(1).map_err(query_err("read table"))?,
        updated_at: r.try_get(2).map_err(query_err("read table"))?,
    })
}

/// One migration being applied: its ledger row and its catalog changes, committed together.
pub struct MigrationTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    now_ms: i64,
}

impl MigrationTx {
    pub async fn create_table(&mut self, schema: &TableSchema) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO tables (name, schema_json, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(schema.name.as_str())
        .bind(schema.to_json())
        .bind(self.now_ms)
        .execute(&mut *self.tx)
        .await
        .map_err(query_err("create table"))?;
        Ok(())
    }

    /// The physical versions of `table` as of now (no version can be registered while the
    /// transaction holds the write lock on SQLite, or the table row on PostgreSQL).
    pub async fn table_versions(
        &mut self,
        table: &str,
    ) -> Result<Vec<TableVersionRow>, CatalogError> {
        sqlx::query_as::<_, TableVersionRow>(
            "SELECT table_name, version, uri, schema_json, created_at FROM table_versions WHERE table_name = $1 ORDER BY version",
        )
        .bind(table)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(query_err("list table versions"))
    }

    /// The table's new schema, for the table and every physical version of it.
    pub async fn set_schema(&mut self, schema: &TableSchema) -> Result<(), CatalogError> {
        let json = schema.to_json();
        sqlx::query("UPDATE tables SET schema_json = $1, updated_at = $2 WHERE name = $3")
            .bind(&json)
            .bind(self.now_ms)
            .bind(schema.name.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(query_err("update table schema"))?;
        sqlx::query("UPDATE table_versions SET schema_json = $1 WHERE table_name = $2")
            .bind(&json)
            .bind(schema.name.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(query_err("update table version schema"))?;
        Ok(())
    }

    /// Removes the table, its alias and its versions from the catalog. Run history stays.
    pub async fn drop_table(&mut self, table: &str) -> Result<(), CatalogError> {
        for sql in [
            "DELETE FROM aliases WHERE name = $1",
            "DELETE FROM alias_history WHERE alias = $1",
            "DELETE FROM partitions WHERE table_name = $1",
            "DELETE FROM leases WHERE table_name = $1",
            "DELETE FROM table_versions WHERE table_name = $1",
            "DELETE FROM tables WHERE name = $1",
        ] {
            sqlx::query(sql)
                .bind(table)
                .execute(&mut *self.tx)
                .await
                .map_err(query_err("drop table"))?;
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), CatalogError> {
        self.tx
            .commit()
            .await
            .map_err(query_err("commit migration"))
    }
}
