//! A table's Parquet files read as a DataFusion table without deltalake's scan: a
//! partition's uploaded, uncommitted files (what the audit's checks query when the new rows
//! are more than the memory budget keeps), and a snapshot's files of some partitions (an
//! upstream input of a query that runs on a Ballista cluster). The files are read through
//! the table's own object store, under the engine's memory pool.

use super::{Below, DeltaError, Doing, below};
use crate::schema::TableSchema;
use crate::warehouse::display;
use deltalake::DeltaTable;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::datasource::empty::EmptyTable;
use deltalake::datafusion::datasource::file_format::parquet::ParquetFormat;
use deltalake::datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use deltalake::datafusion::prelude::{DataFrame, Expr, SessionContext, cast, ident, lit};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow as _;
use deltalake::kernel::{Add, LogicalFileView};
use futures::TryStreamExt as _;
use std::collections::BTreeMap;
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
    // Reading back what this run uploaded is part of writing it.
    let err = |e: Below| DeltaError::below_shown(Doing::Write, display(table.table_url()), e);
    let full = schema.to_arrow();
    if adds.is_empty() {
        let empty = deltalake::datafusion::datasource::MemTable::try_new(full, vec![vec![]])
            .map_err(|e| err(below(e)))?;
        return Ok(Arc::new(empty));
    }
    let paths: Vec<&str> = adds.iter().map(|a| a.path.as_str()).collect();
    let values: Vec<(String, Expr)> = partition
        .iter()
        .map(|(n, v)| (n.clone(), lit(v.clone())))
        .collect();
    let df = files_as_table(ctx, table, &full, &values, &paths).map_err(err)?;
    Ok(df.into_view())
}

/// The snapshot's files of the partitions `filter` keeps (every file without one), as one
/// table with the table's columns: each partition's files with its values put back, one
/// partition after another. A plan of Parquet files only, which a Ballista cluster can
/// carry (deltalake's scan it cannot). A table whose files need more than their Parquet
/// to be read right (deletion vectors, column mapping) is refused by name.
pub async fn snapshot_files(
    ctx: &SessionContext,
    table: &DeltaTable,
    filter: Option<&[(String, Vec<ScalarValue>)]>,
) -> Result<Arc<dyn TableProvider>, DeltaError> {
    let url = display(table.table_url());
    let err = |e: Below| DeltaError::below_shown(Doing::Open, url.clone(), e);
    let snapshot = table.snapshot().map_err(|e| err(below(e)))?;
    let features: Vec<String> = snapshot
        .protocol()
        .reader_features()
        .into_iter()
        .flatten()
        .map(|f| f.to_string())
        .filter(|f| f == "deletionVectors" || f == "columnMapping")
        .collect();
    if !features.is_empty() {
        return Err(DeltaError::NeedsDeltaReader {
            url,
            features: features.join(" and "),
        });
    }
    let full: SchemaRef = Arc::new(
        snapshot
            .schema()
            .as_ref()
            .try_into_arrow()
            .map_err(|e: deltalake::arrow::error::ArrowError| err(below(e)))?,
    );
    let files: Vec<LogicalFileView> = table
        .get_active_add_actions_by_partitions(&[])
        .try_collect()
        .await
        .map_err(|e| err(below(e)))?;
    // Files by their partition's values (Delta's text), the partitions in order.
    let mut partitions: BTreeMap<Vec<(String, Option<String>)>, Vec<String>> = BTreeMap::new();
    for f in &files {
        let values: Vec<(String, Option<String>)> = f.partition_values_map().into_iter().collect();
        let kept = filter.is_none_or(|filter| {
            filter.iter().all(|(column, wanted)| {
                values.iter().any(|(c, v)| {
                    c == column
                        && wanted.iter().any(|w| {
                            super::commit::same_partition_value(v.as_deref(), &w.to_string())
                        })
                })
            })
        });
        if kept {
            partitions
                .entry(values)
                .or_default()
                .push(f.path().to_string());
        }
    }
    let mut union: Option<DataFrame> = None;
    for (values, paths) in &partitions {
        let mut exprs = Vec::new();
        for (name, text) in values {
            let target = full
                .field_with_name(name)
                .map_err(|e| err(below(e)))?
                .data_type()
                .clone();
            let value = match text {
                Some(t) => lit(t.clone()),
                None => lit(ScalarValue::Utf8(None)),
            };
            exprs.push((name.clone(), cast(value, target)));
        }
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let df = files_as_table(ctx, table, &full, &exprs, &paths).map_err(&err)?;
        union = Some(match union {
            None => df,
            Some(u) => u.union(df).map_err(|e| err(below(e)))?,
        });
    }
    Ok(match union {
        Some(df) => df.into_view(),
        None => Arc::new(EmptyTable::new(full)),
    })
}

/// Files of one partition of `table` (paths relative to the table) as a frame with the
/// table's columns (`full`), in its order: `partition` gives each partition column's value.
fn files_as_table(
    ctx: &SessionContext,
    table: &DeltaTable,
    full: &SchemaRef,
    partition: &[(String, Expr)],
    paths: &[&str],
) -> Result<DataFrame, Below> {
    // Files by their full URL, through the store rooted where the URL's path starts (the
    // bucket, or the file system's root): the locations it reports then match the URLs.
    let root = table.table_url().clone();
    let paths = paths
        .iter()
        .map(|p| {
            let url = root.join(p).map_err(below)?;
            ListingTableUrl::parse(url.as_str()).map_err(below)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(first) = paths.first() {
        ctx.register_object_store(
            first.object_store().as_ref(),
            table.log_store().root_object_store(None),
        );
    }
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
    let files = ListingTable::try_new(config).map_err(below)?;
    let mut df = ctx.read_table(Arc::new(files)).map_err(below)?;
    for (name, value) in partition {
        let target = full
            .field_with_name(name)
            .map_err(below)?
            .data_type()
            .clone();
        df = df
            .with_column(name, cast(value.clone(), target))
            .map_err(below)?;
    }
    // The table's column order.
    let columns: Vec<_> = full.fields().iter().map(|f| ident(f.name())).collect();
    df.select(columns).map_err(below)
}
