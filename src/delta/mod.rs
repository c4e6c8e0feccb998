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
//! (unpublished files, removed versions, vacuum, the atomic-commit probe); `expire` removes
//! files whose rows are all past a retention; `metered_store` counts what a run asks of
//! every object store (`cost`); `local_store` lists a local log folder by name, from the
//! names `folder_names` keeps current.

mod cause;
mod commit;
mod error;
mod evolve;
mod expire;
mod folder_names;
mod handle;
pub mod local_store;
pub mod metered_store;
mod readback;
pub mod store;
mod writer;

pub use cause::{StorageCause, storage_cause};
pub use commit::{
    CommitInfo, PartitionCommit, Scope, commit_partitions, landed_token, partition_rows,
};
pub(crate) use error::Doing;
pub use error::{Below, DeltaError, LocalFile, Said, below};
pub use evolve::{Evolved, evolve};
pub use expire::{Expired, expire_files};
pub use handle::{LeaseCheck, StillLeased, VersionHandle};
pub use metered_store::MeteredStore;
pub use readback::{snapshot_files, uploaded_files};
pub use writer::{PartitionWriter, WriterLayout, WriterTask};

use crate::schema::TableSchema;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use std::collections::HashMap;
use url::Url;

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
        std::fs::create_dir_all(&p).map_err(|e| DeltaError::below(Doing::Create, url, e))?;
    }
    let probe = DeltaTable::try_from_url(url.clone()).await.map_err(err)?;
    if probe.verify_deltatable_existence().await.map_err(err)? {
        let t = open(url).await?;
        check_schema(url, &t, schema)?;
        return Ok(t);
    }
    let kernel: StructType = schema
        .to_arrow()
        .try_into_kernel()
        .map_err(|e| DeltaError::below(Doing::Create, url, e))?;
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
    let snap = t.snapshot().map_err(|e| DeltaError::open(url, e))?;
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
