//! Physical table versions as Delta Lake tables: create, open, and replace one partition in
//! one commit. Only this module talks to deltalake's write path.
//!
//! A partition write is: upload new Parquet files (invisible until committed), then one
//! Delta commit that removes every file of the partition, adds the new ones, and records an
//! application transaction (`txn`) whose app id names the partition and whose version is
//! the writer's fencing token. Readers see the old files or the new ones, never a mix
//! (promise 1); a writer whose token is not above the one in the log is refused by the
//! table itself (promise 3), and after a crash the `txn` tells whether a commit landed.

//!
//! Rooms: `writer` uploads a partition's files; `commit` makes them visible with the
//! fencing `txn`; `handle` keeps one open table per physical version with its group-commit
//! queue; `evolve` applies migrations; `store` is every other write or delete of objects
//! (unpublished files, removed versions, vacuum, the atomic-commit probe).

mod cause;
mod commit;
mod evolve;
mod handle;
pub mod local_store;
mod readback;
pub mod store;
mod writer;

pub use cause::{StorageCause, storage_cause};
pub use commit::{
    CommitInfo, PartitionCommit, Scope, commit_partitions, landed_token, partition_rows,
};
pub use evolve::{Evolved, evolve};
pub use handle::{LeaseCheck, StillLeased, VersionHandle};
pub use readback::{snapshot_files, uploaded_files};
pub use writer::{PartitionWriter, WriterLayout};

use crate::schema::TableSchema;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use std::collections::HashMap;
use url::Url;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeltaError {
    #[error("cannot create Delta table at {url}: {message}")]
    Create { url: String, message: String },
    #[error("cannot open Delta table at {url}: {message}")]
    Open { url: String, message: String },
    #[error(
        "Delta table at {url} has schema that differs from table `{table}` in the catalog: {message}"
    )]
    SchemaDrift {
        url: String,
        table: String,
        message: String,
    },
    #[error("cannot write data files to {url}: {message}")]
    Write { url: String, message: String },
    /// A write that failed for a known storage cause (see [`StorageCause`]).
    #[error("cannot {doing} {url}: {}: {message}; {}", .cause.as_str(), .cause.hint())]
    Storage {
        /// What was being done: "write data files to", "commit to".
        doing: &'static str,
        url: String,
        cause: StorageCause,
        message: String,
    },
    #[error(
        "partition {partition}: this worker's lease (fencing token {ours}) was taken over by another worker; this run's output is discarded"
    )]
    Fenced { partition: String, ours: i64 },
    #[error(
        "partition {partition}: the catalog could not be reached to confirm this worker's lease (fencing token {ours}) before the commit, and the lease may have lapsed meanwhile: {why}; nothing was committed, and the run is retried once the catalog answers"
    )]
    LeaseUnconfirmed {
        partition: String,
        ours: i64,
        why: String,
    },
    #[error(
        "partition {partition}: the schema of {url} changed since this run wrote its files (a migration was applied meanwhile); nothing was committed, and a retry writes under the new schema"
    )]
    SchemaChanged { url: String, partition: String },
    #[error("commit to {url} conflicted with a concurrent commit: {message}")]
    Conflict { url: String, message: String },
    #[error("commit to {url} failed: {message}")]
    Commit { url: String, message: String },
}

impl DeltaError {
    /// A commit that failed with `e`: by its storage cause when the error chain holds a
    /// known one (a broken connection is worth a retry), else as deltalake says it.
    pub(crate) fn commit(url: &Url, e: DeltaTableError) -> DeltaError {
        DeltaError::by_cause(url, "commit to", &e).unwrap_or_else(|| DeltaError::Commit {
            url: crate::warehouse::display(url),
            message: e.to_string(),
        })
    }

    /// Creating or opening a table that failed with `e`, by its storage cause when known
    /// (a listing cut short is worth a retry).
    pub(crate) fn create(url: &Url, e: DeltaTableError) -> DeltaError {
        DeltaError::by_cause(url, "create the Delta table at", &e).unwrap_or_else(|| {
            DeltaError::Create {
                url: crate::warehouse::display(url),
                message: e.to_string(),
            }
        })
    }

    pub(crate) fn open(url: &Url, e: DeltaTableError) -> DeltaError {
        DeltaError::by_cause(url, "open the Delta table at", &e).unwrap_or_else(|| {
            DeltaError::Open {
                url: crate::warehouse::display(url),
                message: e.to_string(),
            }
        })
    }

    fn by_cause(url: &Url, doing: &'static str, e: &DeltaTableError) -> Option<DeltaError> {
        storage_cause(e).map(|(cause, message)| DeltaError::Storage {
            doing,
            url: crate::warehouse::display(url),
            cause,
            message,
        })
    }

    pub(crate) fn commit_text(url: &Url, message: &str) -> DeltaError {
        DeltaError::Commit {
            url: crate::warehouse::display(url),
            message: message.to_string(),
        }
    }

    /// Storage hiccups are worth a retry; a fenced writer or a schema drift is not.
    pub fn is_transient(&self) -> bool {
        match self {
            DeltaError::Write { message, .. }
            | DeltaError::Commit { message, .. }
            | DeltaError::Open { message, .. } => {
                let m = message.to_ascii_lowercase();
                m.contains("timed out")
                    || m.contains("timeout")
                    || m.contains("connection")
                    || m.contains("temporarily")
                    || m.contains("io error")
                    || m.contains("generic")
            }
            DeltaError::Storage { cause, .. } => cause.is_transient(),
            DeltaError::Conflict { .. }
            | DeltaError::SchemaChanged { .. }
            | DeltaError::LeaseUnconfirmed { .. } => true,
            _ => false,
        }
    }
}

/// The application-transaction id of a partition: one per partition, so that commits of
/// different partitions never conflict on it, and two writers of one partition always do.
pub fn app_id(partition: &str) -> String {
    format!("sluice:{partition}")
}

/// Creates the Delta table for a physical version if it does not exist, and opens it.
/// Safe to race: the loser of a concurrent create finds the winner's table.
pub async fn ensure_table(url: &Url, schema: &TableSchema) -> Result<DeltaTable, DeltaError> {
    let err = |e: DeltaTableError| DeltaError::create(url, e);
    if url.scheme() == "file"
        && let Ok(p) = url.to_file_path()
    {
        std::fs::create_dir_all(&p).map_err(|e| DeltaError::Create {
            url: crate::warehouse::display(url),
            message: e.to_string(),
        })?;
    }
    let probe = DeltaTable::try_from_url(url.clone()).await.map_err(err)?;
    if probe.verify_deltatable_existence().await.map_err(err)? {
        let t = open(url).await?;
        check_schema(url, &t, schema)?;
        return Ok(t);
    }
    let kernel: StructType =
        schema
            .to_arrow()
            .try_into_kernel()
            .map_err(|e| DeltaError::Create {
                url: crate::warehouse::display(url),
                message: e.to_string(),
            })?;
    let mut config: HashMap<String, Option<String>> = schema
        .properties
        .iter()
        .filter(|(k, _)| k.starts_with("delta."))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    // A checkpoint every 50 commits keeps opening the table fast through long backfills.
    config
        .entry("delta.checkpointInterval".into())
        .or_insert_with(|| Some("50".into()));
    let mut builder = probe
        .create()
        .with_columns(kernel.fields().cloned())
        .with_partition_columns(schema.partition_by.iter().map(|n| n.to_string()))
        .with_configuration(config)
        .with_table_name(schema.name.as_str())
        .with_save_mode(SaveMode::Ignore);
    if let Some(c) = &schema.comment {
        builder = builder.with_comment(c.clone());
    }
    match builder.await {
        Ok(t) => Ok(t),
        // Someone else created it between our open and our create.
        Err(e) => match open(url).await {
            Ok(t) => {
                check_schema(url, &t, schema)?;
                Ok(t)
            }
            Err(_) => Err(err(e)),
        },
    }
}

pub async fn open(url: &Url) -> Result<DeltaTable, DeltaError> {
    deltalake::open_table(url.clone())
        .await
        .map_err(|e| DeltaError::open(url, e))
}

fn check_schema(url: &Url, t: &DeltaTable, schema: &TableSchema) -> Result<(), DeltaError> {
    let drift = |message: String| DeltaError::SchemaDrift {
        url: crate::warehouse::display(url),
        table: schema.name.to_string(),
        message,
    };
    let snap = t.snapshot().map_err(|e| drift(e.to_string()))?;
    let parts: Vec<String> = snap.metadata().partition_columns().to_vec();
    let want: Vec<String> = schema.partition_by.iter().map(|n| n.to_string()).collect();
    if parts != want {
        return Err(drift(format!(
            "partitioned by ({}) but the catalog says ({})",
            parts.join(", "),
            want.join(", ")
        )));
    }
    let have: Vec<String> = snap
        .schema()
        .fields()
        .map(|f| f.name().to_string())
        .collect();
    for c in &schema.columns {
        if !have.iter().any(|h| h == c.name.as_str()) {
            return Err(drift(format!("column `{}` is missing", c.name)));
        }
    }
    Ok(())
}
