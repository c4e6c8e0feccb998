//! A partition's uploaded, uncommitted files read back as a DataFusion table: what the
//! audit's checks query when the new rows are more than the memory budget keeps. The
//! files are read through the table's own object store, under the engine's memory pool.

use super::DeltaError;
use crate::schema::TableSchema;
use deltalake::DeltaTable;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::datasource::file_format::parquet::ParquetFormat;
use deltalake::datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use deltalake::datafusion::prelude::{SessionContext, cast, ident, lit};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::kernel::Add;
use std::sync::Arc;

/// The files `adds` of `table` as one table with the table's columns, registering the
/// table's object store in `ctx`. Delta keeps the partition columns out of the files:
/// `partition` (their names and this partition's values) puts them back.
pub fn uploaded_files(
    ctx: &SessionContext,
    table: &DeltaTable,
    schema: &TableSchema,
    partition: &[(String, ScalarValue)],
    adds: &[Add],
) -> Result<Arc<dyn TableProvider>, DeltaError> {
    let err = |message: String| DeltaError::Write {
        url: table.table_url().to_string(),
        message: format!("reading back the uploaded files: {message}"),
    };
    let full = schema.to_arrow();
    if adds.is_empty() {
        let empty = deltalake::datafusion::datasource::MemTable::try_new(full, vec![vec![]])
            .map_err(|e| err(e.to_string()))?;
        return Ok(Arc::new(empty));
    }
    // Files by their full URL, through the store rooted where the URL's path starts (the
    // bucket, or the file system's root): the locations it reports then match the URLs.
    let root = table.table_url().clone();
    let paths = adds
        .iter()
        .map(|a| {
            let url = root.join(&a.path).map_err(|e| err(e.to_string()))?;
            ListingTableUrl::parse(url.as_str()).map_err(|e| err(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let store_url = paths[0].object_store();
    ctx.register_object_store(
        store_url.as_ref(),
        table.log_store().root_object_store(None),
    );
    let file_schema: SchemaRef = Arc::new(Schema::new(
        full.fields()
            .iter()
            .filter(|f| !partition.iter().any(|(n, _)| n == f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(paths)
        .with_listing_options(options)
        .with_schema(file_schema);
    let files = ListingTable::try_new(config).map_err(|e| err(e.to_string()))?;
    let mut df = ctx
        .read_table(Arc::new(files))
        .map_err(|e| err(e.to_string()))?;
    for (name, value) in partition {
        let target = full
            .field_with_name(name)
            .map_err(|e| err(e.to_string()))?
            .data_type()
            .clone();
        df = df
            .with_column(name, cast(lit(value.clone()), target))
            .map_err(|e| err(e.to_string()))?;
    }
    // The table's column order.
    let columns: Vec<_> = full.fields().iter().map(|f| ident(f.name())).collect();
    let df = df.select(columns).map_err(|e| err(e.to_string()))?;
    Ok(df.into_view())
}
