//! The object store behind tables in a local folder: object_store's `LocalFileSystem`, with a
//! listing after an offset that compares names before it looks at files.
//!
//! Delta lists its log after a version on every commit (the snapshot update that follows
//! it) and on every open. `LocalFileSystem` answers by walking the whole `_delta_log`
//! folder and turning each entry's path into a URL and back before comparing it with the
//! offset: a backfill of 87,600 hourly partitions leaves about 12,000 entries there, and
//! near its end half the process's time went to those conversions (measured with perf).
//! Here a flat folder's names are compared with the offset, and only the files after it
//! are looked at, each by a stat in the folder (a `head` per file, as first written here,
//! opened each one: Delta's kernel lists from the last checkpoint on every commit, so that
//! was some twenty opens a commit); anything else (a folder with sub-folders, a name that
//! needs escaping, an offset outside the prefix) goes to `LocalFileSystem` as before, so
//! the answer is always the same. The names come from memory, kept current by the
//! kernel's reports of changes (`folder_names`), where the folder can be watched;
//! otherwise from reading it.

use super::folder_names::{Entry, Names, plain, read_entries};
use async_trait::async_trait;
use bytes::Bytes;
use deltalake::logstore::object_store::local::LocalFileSystem;
use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::object_store::{
    CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use deltalake::logstore::{
    DeltaIOStorageBackend, ObjectStoreFactory, ObjectStoreRef, StorageConfig,
    object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use futures::stream::{self, BoxStream, StreamExt as _};
use std::ops::{ControlFlow, Range};
use std::sync::{Arc, Once};
use url::Url;

/// Makes `file://` tables use [`LocalStore`]. Idempotent; called before the first table is
/// opened (a table opened before it still works, with the slower listing).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(scheme) = Url::parse("file://") {
            object_store_factories().insert(scheme, Arc::new(LocalStoreFactory));
        }
    });
}

struct LocalStoreFactory;

impl ObjectStoreFactory for LocalStoreFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        // As deltalake's own factory for `file://`: the store is rooted at `/`, the path is
        // the table's.
        let path = Path::from_url_path(url.path())
            .map_err(|e| DeltaTableError::InvalidTableLocation(format!("{url}: {e}")))?;
        let store = LocalStore {
            inner: Arc::new(LocalFileSystem::new()),
        };
        let store: ObjectStoreRef = match &config.runtime {
            Some(rt) => Arc::new(DeltaIOStorageBackend::new(store, rt.clone())),
            None => Arc::new(store),
        };
        Ok((store, path))
    }
}

#[derive(Debug, Clone)]
pub struct LocalStore {
    inner: Arc<LocalFileSystem>,
}

impl std::fmt::Display for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalStore({})", self.inner)
    }
}

/// What a flat folder holds after an offset, by name.
enum Listing {
    /// The files after the offset, sorted by name.
    After(Vec<(String, std::fs::Metadata)>),
    /// The folder is not one this listing answers for; ask `LocalFileSystem`.
    NotFlat,
}

fn list_flat(dir: &std::path::Path, after: &str) -> std::io::Result<Listing> {
    let names = match super::folder_names::after(dir, after) {
        None => return read_flat(dir, after),
        Some(Ok(Names::After(names))) => names,
        Some(Ok(Names::NotFlat)) => return Ok(Listing::NotFlat),
        Some(Err(e)) => return Err(e),
    };
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        // A stat by name in the folder (the file is not opened, as a `head` would).
        match std::fs::symlink_metadata(dir.join(&name)) {
            Ok(m) => files.push((name, m)),
            // Deleted since: LocalFileSystem leaves it out too.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Listing::After(files))
}

/// The folder read whole: what a folder that cannot be watched is listed by.
fn read_flat(dir: &std::path::Path, after: &str) -> std::io::Result<Listing> {
    let (mut names, mut flat) = (Vec::new(), true);
    read_entries(dir, |entry, kind| {
        let name = match kind {
            Entry::File(name) => name,
            Entry::Skipped => return Ok(ControlFlow::Continue(())),
            Entry::Odd => {
                flat = false;
                return Ok(ControlFlow::Break(()));
            }
        };
        if name.as_str() > after {
            // A stat by name in the folder (the file is not opened, as a `head` would).
            match entry.metadata() {
                Ok(m) => names.push((name, m)),
                // Deleted since the folder was read: LocalFileSystem leaves it out too.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if !flat {
        return Ok(Listing::NotFlat);
    }
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Listing::After(names))
}

/// A listed file as `LocalFileSystem` describes it: the same size, modification time and
/// entity tag (`inode-mtime-size`, in hex, mtime in microseconds), so that a reader
/// comparing tags across the two listings sees the same object.
fn object_meta(location: Path, m: &std::fs::Metadata) -> std::io::Result<ObjectMeta> {
    use std::os::unix::fs::MetadataExt as _;
    let modified = m.modified()?;
    let mtime_us = modified
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    Ok(ObjectMeta {
        location,
        last_modified: modified.into(),
        size: m.len(),
        e_tag: Some(format!("{:x}-{mtime_us:x}-{:x}", m.ino(), m.len())),
        version: None,
    })
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        // Answered here only for an offset directly inside the prefix, with a plain name:
        // then a name after the offset's is a path after the offset.
        let flat = prefix.filter(|p| {
            offset.prefix_match(p).is_some_and(|rest| rest.count() == 1)
                && offset.filename().is_some_and(plain)
        });
        let (Some(prefix), Some(after)) = (flat, offset.filename()) else {
            return self.inner.list_with_offset(prefix, offset);
        };
        let Ok(dir) = self.inner.path_to_filesystem(prefix) else {
            return self.inner.list_with_offset(Some(prefix), offset);
        };
        let (inner, prefix, offset, after) = (
            self.inner.clone(),
            prefix.clone(),
            offset.clone(),
            after.to_string(),
        );
        stream::once(async move {
            let listed = tokio::task::spawn_blocking(move || list_flat(&dir, &after))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()));
            match listed.and_then(|l| l) {
                Ok(Listing::After(files)) => {
                    stream::iter(files.into_iter().map(move |(name, m)| {
                        object_meta(prefix.clone().join(name), &m).map_err(|e| Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        })
                    }))
                    .boxed()
                }
                Ok(Listing::NotFlat) => inner.list_with_offset(Some(&prefix), &offset),
                Err(e) => stream::once(std::future::ready(Err(Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                })))
                .boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt as _;

    /// Everything a listing says of each object.
    type Listed = Vec<(String, u64, Option<String>, i64)>;

    async fn listed(store: &dyn ObjectStore, prefix: &Path, offset: &Path) -> Listed {
        let mut got: Listed = store
            .list_with_offset(Some(prefix), offset)
            .map_ok(|m| {
                let at = m.last_modified.timestamp_micros();
                (m.location.to_string(), m.size, m.e_tag, at)
            })
            .try_collect()
            .await
            .expect("listing");
        got.sort();
        got
    }

    /// Whatever the folder holds, the answer is LocalFileSystem's.
    #[tokio::test]
    async fn lists_after_an_offset_as_the_local_file_system_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("_delta_log");
        std::fs::create_dir(&log).expect("mkdir");
        for v in 0..30u64 {
            std::fs::write(log.join(format!("{v:020}.json")), vec![b'x'; v as usize])
                .expect("write");
        }
        std::fs::write(log.join(format!("{:020}.checkpoint.parquet", 9)), b"cp").expect("write");
        std::fs::write(log.join("_last_checkpoint"), b"{}").expect("write");
        std::fs::write(log.join("00000000000000000031.json#1"), b"upload").expect("write");
        let prefix = Path::from_absolute_path(&log).expect("path");
        let ours = LocalStore {
            inner: Arc::new(LocalFileSystem::new()),
        };
        let theirs = LocalFileSystem::new();
        let offsets = [
            format!("{:020}", 0),
            format!("{:020}", 9),
            format!("{:020}.json", 9),
            format!("{:020}", 29),
            format!("{:020}", 40),
            "_".to_string(),
        ];
        for o in &offsets {
            let offset = prefix.clone().join(o.as_str());
            let want = listed(&theirs, &prefix, &offset).await;
            assert_eq!(listed(&ours, &prefix, &offset).await, want, "offset {o}");
        }
        // The answer is not empty, nor everything.
        let after_9 = listed(
            &ours,
            &prefix,
            &prefix.clone().join(format!("{:020}", 9).as_str()),
        )
        .await;
        // 9 to 29 (21 commits), the checkpoint of 9, `_last_checkpoint`.
        assert_eq!(after_9.len(), 21 + 1 + 1, "{after_9:?}");

        assert!(
            matches!(list_flat(&log, "0"), Ok(Listing::After(_))),
            "read by name"
        );

        // A sub-folder and a name that needs escaping: LocalFileSystem answers.
        std::fs::create_dir(log.join("_sidecars")).expect("mkdir");
        std::fs::write(log.join("_sidecars").join("a.parquet"), b"s").expect("write");
        std::fs::write(log.join("a name.json"), b"n").expect("write");
        for o in &offsets {
            let offset = prefix.clone().join(o.as_str());
            let want = listed(&theirs, &prefix, &offset).await;
            assert_eq!(listed(&ours, &prefix, &offset).await, want, "offset {o}");
        }
        assert!(matches!(list_flat(&log, "0"), Ok(Listing::NotFlat)));
        // A missing folder lists nothing, as LocalFileSystem's does.
        let missing = Path::from_absolute_path(dir.path().join("nothing")).expect("path");
        let offset = missing.clone().join("0");
        assert_eq!(
            listed(&ours, &missing, &offset).await,
            listed(&theirs, &missing, &offset).await
        );
    }

    /// Changes made after a folder was first listed (files added, removed, renamed over
    /// others, unfinished uploads, a link, the folder removed and made again, a forgotten
    /// watch) show in the next listing as LocalFileSystem's shows them.
    #[tokio::test]
    async fn a_listing_after_changes_is_the_local_file_systems() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("_delta_log");
        std::fs::create_dir(&log).expect("mkdir");
        let commit = |v: u64| log.join(format!("{v:020}.json"));
        for v in 0..5u64 {
            std::fs::write(commit(v), b"c").expect("write");
        }
        let prefix = Path::from_absolute_path(&log).expect("path");
        let ours = LocalStore {
            inner: Arc::new(LocalFileSystem::new()),
        };
        let theirs = LocalFileSystem::new();
        let offset = prefix.clone().join(format!("{:020}", 2).as_str());
        let same = |step: &'static str| {
            let (ours, theirs, prefix, offset) = (&ours, &theirs, &prefix, &offset);
            async move {
                let want = listed(theirs, prefix, offset).await;
                assert_eq!(listed(ours, prefix, offset).await, want, "after {step}");
                want.len()
            }
        };
        assert_eq!(same("the first listing").await, 3);
        for v in 5..40u64 {
            std::fs::write(commit(v), vec![b'x'; v as usize]).expect("write");
        }
        assert_eq!(same("commits added").await, 38);
        std::fs::remove_file(commit(7)).expect("rm");
        std::fs::rename(commit(8), commit(39)).expect("rename over");
        std::fs::write(log.join(format!("{:020}.json#3", 40)), b"u").expect("write");
        std::fs::write(log.join(format!("{:020}.checkpoint.parquet", 30)), b"p").expect("write");
        std::fs::write(log.join("_last_checkpoint"), b"{}").expect("write");
        assert_eq!(same("files removed, renamed and added").await, 38);
        // The file is rewritten in place: its new size shows.
        std::fs::write(commit(20), vec![b'y'; 100]).expect("rewrite");
        same("a file rewritten").await;

        std::os::unix::fs::symlink(commit(20), log.join("link.json")).expect("symlink");
        assert!(
            matches!(list_flat(&log, "0"), Ok(Listing::NotFlat)),
            "a link"
        );
        same("a link made").await;
        std::fs::remove_file(log.join("link.json")).expect("rm link");
        assert!(matches!(list_flat(&log, "0"), Ok(Listing::After(_))));
        same("the link removed").await;

        super::super::folder_names::forget_all();
        std::fs::write(commit(41), b"c").expect("write");
        same("the watch forgotten").await;

        std::fs::remove_dir_all(&log).expect("rm folder");
        assert_eq!(same("the folder removed").await, 0);
        std::fs::create_dir(&log).expect("mkdir again");
        std::fs::write(commit(3), b"c").expect("write");
        assert_eq!(same("the folder made again").await, 1);
    }
}
