//! Files a query reads that exist only for it: an input's copy without its bad rows, in
//! the temporary folder, and, for a query on a cluster, put under the warehouse's
//! `_sluice/scratch/` too, where executors on any host read it (their temporary folders
//! are not the client's).

use super::EngineError;
use crate::delta::store::ScratchObject;
use crate::names::Name;
use deltalake::datafusion::datasource::listing::ListingTableUrl;
use deltalake::datafusion::prelude::SessionContext;
use std::path::Path;

/// Kept as long as the query runs; each file is deleted when this drops.
#[derive(Default)]
pub struct Scratch {
    pub(super) local: Vec<tempfile::TempPath>,
    pub(super) shared: Vec<ScratchObject>,
}

impl Scratch {
    /// Deletes the files now, waiting for the objects put for a cluster to go.
    pub async fn release(self) {
        for shared in self.shared {
            shared.delete().await;
        }
    }
}

/// Puts an input's copy where a cluster's executors read it (the warehouse's scratch
/// prefix), and gives the session its store.
pub(super) async fn share(
    ctx: &SessionContext,
    warehouse: &url::Url,
    copy: &Path,
    input: &Name,
) -> Result<crate::delta::store::ScratchObject, EngineError> {
    let failed = |message: String| EngineError::Input {
        input: input.to_string(),
        message: format!(
            "the copy without its bad rows could not be put where the executors read it: {message}"
        ),
    };
    let shared = crate::delta::store::put_scratch(warehouse, copy, &super::file_extension(copy))
        .await
        .map_err(|e| failed(e.message))?;
    let at = ListingTableUrl::parse(shared.url.as_str()).map_err(|e| failed(e.to_string()))?;
    ctx.register_object_store(at.object_store().as_ref(), shared.store());
    Ok(shared)
}
