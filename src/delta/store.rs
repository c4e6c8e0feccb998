//! Every write or delete of objects that is not a Delta commit: uploaded files a run did
//! not publish, the files of a removed version, vacuum, and the atomic-commit probe.

use super::{Below, Said, below};
use crate::warehouse::display;
use deltalake::DeltaTable;
use deltalake::kernel::Add;
use futures::{StreamExt as _, TryStreamExt as _};
use url::Url;

/// An object store refused or failed an operation on `uri`. The store's error is kept;
/// its text is shown with credentials taken out.
#[derive(Debug, thiserror::Error)]
#[error("{uri}: {}", crate::redact::redact_text(&.source.to_string()))]
pub struct StoreError {
    pub uri: String,
    pub source: Below,
}

/// Deletes files uploaded for a commit that will not happen (an audit refused them).
/// Best effort: a file left behind is an orphan no reader sees, and vacuum removes it.
pub async fn delete_unpublished(url: &Url, adds: &[Add]) {
    let Ok(t) = DeltaTable::try_from_url(url.clone()).await else {
        return;
    };
    let os = t.log_store().object_store(None);
    let paths: Vec<_> = adds
        .iter()
        .filter_map(|a| deltalake::Path::from_url_path(&a.path).ok())
        .map(Ok)
        .collect();
    let mut deleted = os.delete_stream(futures::stream::iter(paths).boxed());
    while let Some(r) = deleted.next().await {
        if let Err(e) = r {
            tracing::debug!(error = %e, "could not delete an unpublished file");
        }
    }
}

/// Deletes every object of a physical version (its Delta log and data files).
pub async fn delete_version(uri: &str) -> Result<(), StoreError> {
    let storage = |e: Below| StoreError {
        uri: crate::warehouse::display_str(uri),
        source: e,
    };
    let url = Url::parse(uri).map_err(|e| storage(below(e)))?;
    if url.scheme() == "file" {
        let path = url
            .to_file_path()
            .map_err(|()| storage(below(Said("not a local path"))))?;
        return match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(storage(below(e))),
        };
    }
    let table = deltalake::open_table(url.clone())
        .await
        .map_err(|e| storage(below(e)))?;
    let os = table.log_store().object_store(None);
    let paths = os.list(None).map_ok(|m| m.location).boxed();
    let deleted: Vec<_> = os
        .delete_stream(paths)
        .try_collect()
        .await
        .map_err(|e| storage(below(e)))?;
    tracing::debug!(files = deleted.len(), "deleted the version's files");
    Ok(())
}

/// Vacuums a physical version with its own retention (`delta.deletedFileRetentionDuration`,
/// 7 days by default), enforced so that readers of recent versions keep their files.
/// Returns how many files were deleted; `None` when the version was never written.
pub async fn vacuum(uri: &str) -> Result<Option<usize>, StoreError> {
    let storage = |e: Below| StoreError {
        uri: crate::warehouse::display_str(uri),
        source: e,
    };
    let url = Url::parse(uri).map_err(|e| storage(below(e)))?;
    let Ok(table) = deltalake::open_table(url).await else {
        return Ok(None);
    };
    let (_, metrics) = table
        .vacuum()
        .with_enforce_retention_duration(true)
        .await
        .map_err(|e| storage(below(e)))?;
    Ok(Some(metrics.files_deleted.len()))
}

/// Why the warehouse cannot take writes safely.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error(
        "warehouse {url}: Delta commits would not be atomic: {why}. Two writers of one table could both think they committed the same log entry, and one partition's data would be lost. Fix: {fix}. If only one process ever writes this warehouse, opt out with `allow_unsafe_commits = true` under [warehouse] in sluice.toml (or SLUICE_ALLOW_UNSAFE_COMMITS=1)"
    )]
    UnsafeCommits {
        url: String,
        why: String,
        fix: &'static str,
    },
    #[error("warehouse {url}: no Delta commit could succeed: {why}. Fix: {fix}")]
    CannotCommit {
        url: String,
        why: String,
        fix: &'static str,
    },
    #[error("warehouse {url}: cannot use the object store: {}", crate::redact::redact_text(&.source.to_string()))]
    Store { url: String, source: Below },
}

/// A file that a query on a cluster reads and that exists only for it (an input's copy
/// without its bad rows), put under the warehouse's `_sluice/scratch/`: executors on any
/// host read it where they read the tables, not in the temporary folder of the process
/// that made it. Deleted (best effort) when dropped; one left by a killed process is an
/// object no table names.
pub struct ScratchObject {
    pub url: Url,
    store: std::sync::Arc<dyn deltalake::logstore::object_store::ObjectStore>,
    /// `None` once deleted.
    path: Option<deltalake::Path>,
}

impl ScratchObject {
    /// Deletes it now (best effort, as when dropped).
    pub async fn discard(mut self) {
        if let Some(path) = self.path.take()
            && let Err(e) = deltalake::logstore::object_store::ObjectStoreExt::delete(
                self.store.as_ref(),
                &path,
            )
            .await
        {
            tracing::debug!(error = %e, "a scratch object stays behind");
        }
    }

    /// The store that holds it, rooted where its URL's path starts (the bucket, or the
    /// file system's root), for a session that reads it by URL.
    pub fn store(&self) -> std::sync::Arc<dyn deltalake::logstore::object_store::ObjectStore> {
        self.store.clone()
    }
}

impl Drop for ScratchObject {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let store = self.store.clone();
            rt.spawn(async move {
                if let Err(e) =
                    deltalake::logstore::object_store::ObjectStoreExt::delete(store.as_ref(), &path)
                        .await
                {
                    tracing::debug!(error = %e, "a scratch object stays behind");
                }
            });
        }
    }
}

/// Copies the local file `local` to a new object under `<warehouse>/_sluice/scratch/`,
/// streaming (a part at a time), named with `extension` (`.csv`).
pub async fn put_scratch(
    warehouse: &Url,
    local: &std::path::Path,
    extension: &str,
) -> Result<ScratchObject, StoreError> {
    use tokio::io::AsyncWriteExt as _;
    let shown = display(warehouse);
    let err = |e: Below| StoreError {
        uri: shown.clone(),
        source: e,
    };
    let mut root = warehouse.clone();
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    let url = root
        .join(&format!(
            "_sluice/scratch/{}{extension}",
            uuid::Uuid::now_v7().simple()
        ))
        .map_err(|e| err(below(e)))?;
    let table = DeltaTable::try_from_url(root)
        .await
        .map_err(|e| err(below(e)))?;
    let store = table.log_store().root_object_store(None);
    let path = deltalake::Path::from_url_path(url.path()).map_err(|e| err(below(e)))?;
    let mut file = tokio::fs::File::open(local).await.map_err(|e| {
        err(below(super::LocalFile {
            path: local.to_path_buf(),
            source: e,
        }))
    })?;
    let mut upload =
        deltalake::logstore::object_store::buffered::BufWriter::new(store.clone(), path.clone());
    tokio::io::copy(&mut file, &mut upload)
        .await
        .map_err(|e| err(below(e)))?;
    upload.shutdown().await.map_err(|e| err(below(e)))?;
    Ok(ScratchObject {
        url,
        store,
        path: Some(path),
    })
}

/// Refuses an object-store warehouse whose Delta commits would not be atomic under
/// concurrent writers, unless `allow_unsafe_commits` is set.
///
/// A Delta commit is "create `_delta_log/N.json` if it does not exist"; on an object store
/// that is a conditional put (`If-None-Match: *`). Some S3-compatible servers ignore the
/// header and overwrite silently, and delta-rs's `AWS_S3_ALLOW_UNSAFE_RENAME` or
/// `AWS_CONDITIONAL_PUT=disabled` turn it off; so the setting is checked and then the store
/// itself is asked: the same probe object is created twice, and the second create must be
/// refused. A local folder needs no probe: the commit is a hard link, which refuses an
/// existing name.
pub async fn check_atomic_commits(
    settings: &crate::config::Settings,
) -> Result<(), WarehouseError> {
    let url = &settings.warehouse;
    if url.scheme() == "file" {
        return Ok(());
    }
    let shown = display(url);
    let unsafe_env = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_ascii_lowercase());
    if url.scheme() == "s3" && unsafe_env("AWS_CONDITIONAL_PUT").is_some_and(|v| v == "disabled") {
        // Not even one writer can commit then: every Delta commit is a create-if-absent,
        // which this setting makes the S3 client refuse. Said here, before any work.
        return Err(WarehouseError::CannotCommit {
            url: shown,
            why: "AWS_CONDITIONAL_PUT=disabled leaves the S3 client no way to create an object only if it is absent, which every Delta commit does (`allow_unsafe_commits` cannot change that)".into(),
            fix: "unset AWS_CONDITIONAL_PUT (the default, `etag`, uses If-None-Match)",
        });
    }
    if settings.allow_unsafe_commits {
        return Ok(());
    }
    if unsafe_env("AWS_S3_ALLOW_UNSAFE_RENAME").is_some_and(|v| v == "true" || v == "1") {
        return Err(WarehouseError::UnsafeCommits {
            url: shown,
            why: "AWS_S3_ALLOW_UNSAFE_RENAME is set, which makes commits plain overwrites".into(),
            fix: "unset AWS_S3_ALLOW_UNSAFE_RENAME",
        });
    }
    // A broken connection or a busy store must not fail a whole command at its first
    // request: the probe is tried again (with a fresh object) on the store's errors, a
    // few times over some seconds; its verdict on the store's behaviour is final.
    let mut wait = std::time::Duration::from_millis(500);
    for _ in 1..PROBE_TRIES {
        match probe_conditional_put(url).await {
            Err(e @ WarehouseError::Store { .. }) => {
                tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "the object store's probe failed; trying again");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            verdict => return verdict,
        }
    }
    probe_conditional_put(url).await
}

/// How often the atomic-commit probe is tried before the store's error is final.
const PROBE_TRIES: u32 = 5;

async fn probe_conditional_put(url: &Url) -> Result<(), WarehouseError> {
    use deltalake::logstore::object_store::{Error as StoreError, PutMode, PutOptions, PutPayload};
    let shown = display(url);
    let store_err = |e: Below| WarehouseError::Store {
        url: shown.clone(),
        source: e,
    };
    let table = deltalake::DeltaTable::try_from_url(url.clone())
        .await
        .map_err(|e| store_err(below(e)))?;
    let store = table.log_store().object_store(None);
    let path = deltalake::Path::from(format!("_sluice/commit-probe/{}", uuid::Uuid::now_v7()));
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let first = store
        .put_opts(&path, PutPayload::from_static(b"1"), create())
        .await;
    let verdict = match first {
        // Already there: the object has a fresh name, so only this create's own retry
        // (after its first answer was lost) can have made it.
        Ok(_) | Err(StoreError::AlreadyExists { .. }) | Err(StoreError::Precondition { .. }) => match store
            .put_opts(&path, PutPayload::from_static(b"2"), create())
            .await
        {
            Err(StoreError::AlreadyExists { .. }) | Err(StoreError::Precondition { .. }) => Ok(()),
            Ok(_) => Err(WarehouseError::UnsafeCommits {
                url: shown.clone(),
                why: "the object store accepted a second create of the same object (it ignores If-None-Match)".into(),
                fix: "use a store that supports conditional writes (AWS S3, MinIO, Cloudflare R2, GCS, Azure do)",
            }),
            Err(e) => Err(store_err(below(e))),
        },
        Err(StoreError::NotImplemented { .. }) => Err(WarehouseError::UnsafeCommits {
            url: shown.clone(),
            why: "the object store client has conditional put turned off".into(),
            fix: "unset AWS_CONDITIONAL_PUT, or set it to `etag`",
        }),
        Err(e) => Err(store_err(below(e))),
    };
    // The probe object is ours alone (a fresh id); leaving it behind would be harmless.
    {
        let one = futures::stream::iter([Ok(path.clone())]).boxed();
        let _ = store.delete_stream(one).try_collect::<Vec<_>>().await;
    }
    verdict
}
