//! The open Delta tables of this process: one [`VersionHandle`] per physical version,
//! created and registered on first write, refreshed for reads only when needed.

use super::RunError;
use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::delta::{self, DeltaError, VersionHandle};
use crate::job::Job;
use crate::schema::TableSchema;
use crate::warehouse;
use std::collections::HashMap;
use std::sync::Arc;

/// The open tables, by (table, version).
pub(super) struct Tables {
    catalog: Catalog,
    clock: SharedClock,
    open: tokio::sync::Mutex<HashMap<(String, u32), Arc<VersionHandle>>>,
}

impl Tables {
    pub(super) fn new(catalog: Catalog, clock: SharedClock) -> Tables {
        Tables {
            catalog,
            clock,
            open: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The handle of a physical version this process writes: created in the warehouse
    /// (`warehouse`) and registered in the catalog on first use.
    pub(super) async fn output(
        &self,
        warehouse: &url::Url,
        job: &Job,
        schema: &TableSchema,
    ) -> Result<Arc<VersionHandle>, RunError> {
        let key = (job.table.to_string(), job.version);
        let schema_json = schema.to_json();
        let mut handles = self.open.lock().await;
        if let Some(h) = handles.get(&key)
            && h.schema_json() == schema_json
        {
            return Ok(h.clone());
        }
        let url = warehouse::version_url(warehouse, &job.table, job.version);
        let table = delta::ensure_table(&url, schema).await?;
        self.catalog
            .register_table_version(
                job.table.as_str(),
                i64::from(job.version),
                url.as_str(),
                &schema_json,
                &crate::actor::who(),
                self.clock.now_ms(),
            )
            .await?;
        let h = VersionHandle::new(url, schema_json, table);
        handles.insert(key, h.clone());
        Ok(h)
    }

    /// A snapshot of a physical version this process reads: at least at Delta version
    /// `at_least` when given (what the catalog says holds the partitions read), else the
    /// latest. Listing the log is skipped when the handle is recent enough, which it is
    /// whenever this process wrote the partitions itself.
    pub(super) async fn snapshot(
        &self,
        table: &str,
        version: u32,
        url: &url::Url,
        schema_json: &str,
        at_least: Option<i64>,
    ) -> Result<deltalake::DeltaTable, RunError> {
        let key = (table.to_string(), version);
        let handle = {
            let mut handles = self.open.lock().await;
            match handles.get(&key) {
                Some(h) => h.clone(),
                None => {
                    let h = VersionHandle::new(
                        url.clone(),
                        schema_json.to_string(),
                        delta::open(url).await?,
                    );
                    handles.insert(key, h.clone());
                    h
                }
            }
        };
        let mut t = handle.lock().await;
        let recent =
            matches!((at_least, t.version()), (Some(need), Some(have)) if have as i64 >= need);
        if !recent {
            // Commits by other processes since the handle last looked.
            t.update_state()
                .await
                .map_err(|e| DeltaError::open(url, e))?;
        }
        Ok(t.clone())
    }
}
