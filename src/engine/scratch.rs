//! Files a query reads that exist only for it: an input's copy without its bad rows, in
//! the temporary folder, and, for a query on a cluster, put under the warehouse's
//! `_sluice/scratch/` too, where executors on any host read it (their temporary folders
//! are not the client's).

use super::bad_rows::copy_without_bad_rows;
use super::{BadRowLog, EngineError, FilesAt, file_extension};
use crate::delta::store::ScratchObject;
use crate::job::{CsvOptions, FileFormat};
use crate::names::Name;
use deltalake::datafusion::datasource::listing::ListingTableUrl;
use deltalake::datafusion::prelude::SessionContext;
use std::path::Path;

/// Kept as long as the query runs; each file is deleted when this drops.
#[derive(Default)]
pub struct Scratch {
    local: Vec<tempfile::TempPath>,
    shared: Vec<ScratchObject>,
}

/// An input file whose bad rows are left out.
pub(super) struct Original<'a> {
    pub path: &'a Path,
    pub format: FileFormat,
    pub csv: &'a CsvOptions,
    pub input: &'a Name,
}

impl Scratch {
    /// Makes a copy of `original` without its `bad` rows, kept here, and says where the
    /// query reads it: the copy itself, or (`shared`, a query on a cluster) an object put
    /// under that warehouse's scratch prefix, whose store the session is given.
    pub(super) async fn without_bad_rows(
        &mut self,
        ctx: &SessionContext,
        shared: Option<&url::Url>,
        original: Original<'_>,
        bad: &BadRowLog,
    ) -> Result<FilesAt, EngineError> {
        let input = original.input;
        let copy = copy_without_bad_rows(original.path, original.format, original.csv, bad, input)
            .map_err(|source| EngineError::BadRowScan {
                input: input.to_string(),
                source,
            })?;
        let at = match shared {
            Some(warehouse) => {
                let object = share(ctx, warehouse, &copy, input).await?;
                let at = FilesAt {
                    location: object.url.to_string(),
                    extension: file_extension(&copy),
                };
                self.shared.push(object);
                at
            }
            None => FilesAt::path(&copy),
        };
        self.local.push(copy);
        Ok(at)
    }

    /// Deletes the files now, waiting for the objects put for a cluster to go.
    pub async fn release(self) {
        for shared in self.shared {
            shared.discard().await;
        }
    }
}

/// Puts an input's copy where a cluster's executors read it (the warehouse's scratch
/// prefix), and gives the session its store.
async fn share(
    ctx: &SessionContext,
    warehouse: &url::Url,
    copy: &Path,
    input: &Name,
) -> Result<ScratchObject, EngineError> {
    let failed = |source: crate::delta::Below| EngineError::NotShared {
        input: input.to_string(),
        source,
    };
    let shared = crate::delta::store::put_scratch(warehouse, copy, &file_extension(copy))
        .await
        .map_err(|e| failed(crate::delta::below(e)))?;
    let at =
        ListingTableUrl::parse(shared.url.as_str()).map_err(|e| failed(crate::delta::below(e)))?;
    ctx.register_object_store(at.object_store().as_ref(), shared.store());
    Ok(shared)
}
