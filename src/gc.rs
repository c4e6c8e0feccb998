//! `sluice gc`: removes physical versions no reader or rollback can need, and vacuums the
//! Delta tables that stay. The plan (`--dry-run` prints it) is computed first; removal
//! re-checks under a catalog transaction that no alias moved onto a version being removed.

use crate::catalog::{Catalog, CatalogError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("{uri}: {message}")]
    Storage { uri: String, message: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionFate {
    pub table: String,
    pub version: i64,
    pub uri: String,
    /// Why it stays, or why it goes.
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct GcPlan {
    pub keep: Vec<VersionFate>,
    pub remove: Vec<VersionFate>,
}

/// Which versions go: per table, every version older than the live one, except the one the
/// last flip replaced (what `rollback` returns to) and the `keep` newest others. The live
/// version and newer ones (being built) always stay.
pub async fn plan(catalog: &Catalog, keep: usize) -> Result<GcPlan, GcError> {
    let mut plan = GcPlan::default();
    for t in catalog.tables().await? {
        let table = t.schema.name.to_string();
        let live = catalog.alias(&table).await?;
        let previous = catalog
            .alias_history(&table)
            .await?
            .iter()
            .rev()
            .find(|h| Some(h.to_version) == live)
            .and_then(|h| h.from_version);
        let mut versions = catalog.table_versions(&table).await?;
        versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        let mut kept_old = 0;
        for v in versions {
            let fate = |why: &str| VersionFate {
                table: table.clone(),
                version: v.version,
                uri: v.uri.clone(),
                why: why.to_string(),
            };
            match live {
                Some(l) if v.version == l => plan.keep.push(fate("live")),
                Some(l) if v.version > l => plan.keep.push(fate("newer than live: being built")),
                None => plan.keep.push(fate("no live version yet")),
                _ if Some(v.version) == previous => {
                    plan.keep.push(fate("previous: what rollback returns to"))
                }
                _ if kept_old < keep => {
                    kept_old += 1;
                    plan.keep.push(fate("within --keep"))
                }
                _ => plan
                    .remove
                    .push(fate("older than live, not the previous one, beyond --keep")),
            }
        }
    }
    Ok(plan)
}

/// What `execute` did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct GcReport {
    pub removed: Vec<VersionFate>,
    /// Removals refused because an alias now points at the version.
    pub refused: Vec<VersionFate>,
    /// Files vacuumed from kept versions (older than the table's retention and no longer
    /// referenced: replaced partitions, files of runs that died before committing).
    pub vacuumed_files: usize,
}

pub async fn execute(catalog: &Catalog, plan: &GcPlan) -> Result<GcReport, GcError> {
    let mut report = GcReport::default();
    for f in &plan.remove {
        // The catalog first: once it forgets the version, nothing resolves to it.
        if !catalog.drop_table_version(&f.table, f.version).await? {
            report.refused.push(f.clone());
            continue;
        }
        delete_files(&f.uri).await?;
        tracing::info!(table = %f.table, version = f.version, "removed");
        report.removed.push(f.clone());
    }
    for f in &plan.keep {
        let storage = |message: String| GcError::Storage {
            uri: crate::warehouse::display_str(&f.uri),
            message,
        };
        let url = url::Url::parse(&f.uri).map_err(|e| storage(e.to_string()))?;
        let Ok(table) = deltalake::open_table(url).await else {
            continue; // never written: nothing to vacuum
        };
        // The table's own retention (delta.deletedFileRetentionDuration, 7 days by
        // default), enforced: readers of recent versions keep their files.
        let (_, metrics) = table
            .vacuum()
            .with_enforce_retention_duration(true)
            .await
            .map_err(|e| storage(e.to_string()))?;
        report.vacuumed_files += metrics.files_deleted.len();
    }
    Ok(report)
}

pub(crate) async fn delete_files(uri: &str) -> Result<(), GcError> {
    use futures::{StreamExt as _, TryStreamExt as _};
    let storage = |message: String| GcError::Storage {
        uri: crate::warehouse::display_str(uri),
        message,
    };
    let url = url::Url::parse(uri).map_err(|e| storage(e.to_string()))?;
    if url.scheme() == "file" {
        let path = url
            .to_file_path()
            .map_err(|_| storage("not a local path".into()))?;
        return match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(storage(e.to_string())),
        };
    }
    let table = deltalake::open_table(url.clone())
        .await
        .map_err(|e| storage(e.to_string()))?;
    let os = table.log_store().object_store(None);
    let paths = os.list(None).map_ok(|m| m.location).boxed();
    let deleted: Vec<_> = os
        .delete_stream(paths)
        .try_collect()
        .await
        .map_err(|e| storage(e.to_string()))?;
    tracing::debug!(files = deleted.len(), "deleted the version's files");
    Ok(())
}
