//! Promote and rollback: which alias flips a request means, and the flips recorded with
//! who asked and when, all or nothing (or partly, when asked).

use crate::catalog::{Catalog, CatalogError, Flip, FlipRefusal};
use crate::clock::SharedClock;
use crate::promote::{self, PromoteError};

/// Where the aliases go.
#[derive(Debug, Clone, Copy)]
pub enum FlipKind {
    /// To `version` (or the version each `TABLE@N` names); `expect`: the live version the
    /// caller saw, refused if it moved meanwhile.
    Promote {
        version: Option<i64>,
        expect: Option<i64>,
    },
    /// Back to the version live before the current one.
    Rollback,
}

impl FlipKind {
    pub fn verb(self) -> &'static str {
        match self {
            FlipKind::Promote { .. } => "promote",
            FlipKind::Rollback => "rollback",
        }
    }
}

/// The flips `kind` means for `tables` (`TABLE` or `TABLE@N`), checked against the
/// catalog: what a dry run prints and [`flip`] records.
pub async fn plan(
    catalog: &Catalog,
    tables: &[String],
    kind: FlipKind,
) -> Result<Vec<Flip>, PromoteError> {
    match kind {
        FlipKind::Promote { version, expect } => {
            promote::plan_promote(catalog, tables, version, expect).await
        }
        FlipKind::Rollback => promote::plan_rollback(catalog, tables).await,
    }
}

/// Records `flips` as this process's user, now, with `message`; nothing changes unless
/// every flip holds (or `partial`). The refusals, empty when the flips were made (or, for
/// a `dry_run`, would be: it checks all the flip checks and changes nothing).
pub async fn flip(
    catalog: &Catalog,
    clock: &SharedClock,
    flips: &[Flip],
    partial: bool,
    message: &str,
    dry_run: bool,
) -> Result<Vec<FlipRefusal>, CatalogError> {
    catalog
        .flip_aliases(
            flips,
            partial,
            &crate::actor::who(),
            message,
            clock.now_ms(),
            dry_run,
        )
        .await
}
