//! Object stores that count what a run's work asks of them (see `cost`): every store
//! deltalake makes for a table (`meter_object_stores` wraps its factories), and the
//! engine's store of local input files. They only pass each call on, and count it.

use crate::cost::{RunMeter, current};
use async_trait::async_trait;
use bytes::Bytes;
use deltalake::DeltaResult;
use deltalake::logstore::object_store::path::Path;
use deltalake::logstore::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};
use deltalake::logstore::{
    ObjectStoreFactory, ObjectStoreRef, StorageConfig, object_store_factories,
};
use futures::stream::BoxStream;
use std::ops::Range;
use std::sync::{Arc, Once};
use url::Url;

/// Wraps the object store factories registered so far (deltalake's, for each scheme, and
/// sluice's for local folders) so that every table's store is metered. Idempotent; call
/// it after the factories are registered, before the first table is opened.
pub fn meter_object_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let factories = object_store_factories();
        let schemes: Vec<Url> = factories.iter().map(|e| e.key().clone()).collect();
        for scheme in schemes {
            if let Some(inner) = factories.get(&scheme).map(|f| f.value().clone()) {
                factories.insert(scheme, Arc::new(MeteredFactory { inner }));
            }
        }
    });
}

struct MeteredFactory {
    inner: Arc<dyn ObjectStoreFactory>,
}

impl ObjectStoreFactory for MeteredFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = self.inner.parse_url_opts(url, config)?;
        Ok((Arc::new(MeteredStore::new(store)), path))
    }
}

/// An object store that counts each call, and the bytes it moves, against the run whose
/// work makes it (none outside a run: nothing is counted).
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> MeteredStore {
        MeteredStore { inner }
    }
}

impl std::fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

fn count(read: u64, written: u64) {
    if let Some(m) = current() {
        m.request(read, written);
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        count(0, payload.content_length() as u64);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let meter = current();
        if let Some(m) = &meter {
            m.request(0, 0);
        }
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(match meter {
            Some(meter) => Box::new(MeteredUpload { upload, meter }),
            None => upload,
        })
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let meter = current();
        let head = options.head;
        let got = self.inner.get_opts(location, options).await?;
        if let Some(m) = meter {
            let bytes = if head {
                0
            } else {
                got.range.end - got.range.start
            };
            m.request(bytes, 0);
        }
        Ok(got)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let meter = current();
        let got = self.inner.get_ranges(location, ranges).await?;
        if let Some(m) = meter {
            m.request(got.iter().map(|b| b.len() as u64).sum(), 0);
        }
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        count(0, 0);
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        count(0, 0);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        count(0, 0);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        count(0, 0);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        count(0, 0);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        count(0, 0);
        self.inner.rename_opts(from, to, options).await
    }
}

/// An upload whose parts are counted against the run that began it.
#[derive(Debug)]
struct MeteredUpload {
    upload: Box<dyn MultipartUpload>,
    meter: Arc<RunMeter>,
}

#[async_trait]
impl MultipartUpload for MeteredUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.meter.request(0, data.content_length() as u64);
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.meter.request(0, 0);
        self.upload.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.meter.request(0, 0);
        self.upload.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{RunMeter, measure};
    use deltalake::logstore::object_store::ObjectStoreExt as _;
    use deltalake::logstore::object_store::memory::InMemory;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_s_calls_and_bytes_are_counted_and_no_one_else_s() {
        let store = MeteredStore::new(Arc::new(InMemory::new()));
        let at = Path::from("a/b.parquet");
        // Outside a run: counted against nobody.
        store.put(&at, vec![0u8; 10].into()).await.expect("put");
        let meter = RunMeter::new();
        measure(&meter, true, async {
            store.put(&at, vec![1u8; 100].into()).await.expect("put");
            let got = store
                .get(&at)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            assert_eq!(got.len(), 100);
            store.get_range(&at, 10..30).await.expect("range");
            store.head(&at).await.expect("head");
            let mut up = store.put_multipart(&at).await.expect("multipart");
            up.put_part(vec![2u8; 7].into()).await.expect("part");
            up.complete().await.expect("complete");
        })
        .await;
        let c = meter.cost();
        assert_eq!((c.bytes_written, c.bytes_read), (107, 120), "{c:?}");
        // put, get, get_range, head, multipart start, part, complete.
        assert_eq!(c.requests, 7, "{c:?}");
    }
}
