//! A table's physical versions with what each holds, and which one readers see.

use crate::catalog::{Catalog, CatalogError, VersionCoverage};

pub struct TableCoverage {
    /// The version the alias points at, if any.
    pub live: Option<i64>,
    pub versions: Vec<VersionCoverage>,
}

pub async fn of_table(catalog: &Catalog, table: &str) -> Result<TableCoverage, CatalogError> {
    Ok(TableCoverage {
        live: catalog.alias(table).await?,
        versions: catalog.version_coverage(table).await?,
    })
}
