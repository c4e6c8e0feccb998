//! Upstream table inputs of a partition's query: where their rows come from, which of
//! their partitions the partition reads (the filter pushed into the Delta scan), and their
//! registration in the partition's session.

use super::{EngineError, input_err};
use crate::names::Name;
use crate::schema::TableSchema;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::{SessionContext, col};
use deltalake::datafusion::scalar::ScalarValue;
use std::sync::Arc;

/// An upstream table input, resolved by the runner (or given by a job test): what it
/// reads, and which of its partitions this partition reads (`None` for all).
#[derive(Debug, Clone)]
pub struct UpstreamInput {
    pub name: Name,
    pub data: UpstreamData,
    pub filter: Option<PartitionFilter>,
}

/// Where an upstream table's rows come from.
#[derive(Debug, Clone)]
pub enum UpstreamData {
    /// A snapshot of the physical version its alias points at.
    Delta(deltalake::DeltaTable),
    /// A job test's rows, typed by the table's schema. The partition filter applies to
    /// them as it does to a snapshot, so a test reads what a run would.
    Rows(Arc<MemTable>),
}

/// The partition filter of an upstream table input: for each of the upstream's partition
/// columns, the values of the partitions `read` names (`Project::upstream_reads`; they are
/// every time of a set of times with every key of a set of keys, so one list per column is
/// exact). `None` reads the whole table (`partitions = "all"`, an unpartitioned upstream,
/// or no job writes it).
pub fn upstream_filter(
    read: &crate::project::UpstreamRead<'_>,
    upstream: &TableSchema,
) -> Option<PartitionFilter> {
    let (keys, w) = (read.keys.as_ref()?, read.writer?);
    let mut columns: Vec<(String, Vec<ScalarValue>)> = Vec::new();
    for k in keys {
        for v in w.partition_values(upstream, k) {
            let i = match columns.iter().position(|(c, _)| *c == v.column) {
                Some(i) => i,
                None => {
                    columns.push((v.column.clone(), Vec::new()));
                    columns.len() - 1
                }
            };
            if !columns[i].1.contains(&v.value) {
                columns[i].1.push(v.value);
            }
        }
    }
    if keys.is_empty() {
        // Nothing of the upstream is read (all before its start): an empty list on one of
        // its partition columns keeps no row.
        let c = w.time_column(upstream).map(|c| c.name.to_string());
        return c
            .or(w.key_column().map(|c| c.to_string()))
            .map(|c| vec![(c, Vec::new())]);
    }
    (!columns.is_empty()).then_some(columns)
}

/// Per partition column, the values a read keeps.
pub type PartitionFilter = Vec<(String, Vec<ScalarValue>)>;

/// Registers an upstream input in `ctx`: through deltalake's scan, or, for a query that
/// runs on a cluster (`on_cluster`), as the snapshot's Parquet files of the partitions it
/// reads (a plan a cluster can carry).
pub(super) async fn register_upstream(
    ctx: &SessionContext,
    up: &UpstreamInput,
    on_cluster: bool,
) -> Result<(), EngineError> {
    let provider: Arc<dyn deltalake::datafusion::catalog::TableProvider> = match &up.data {
        UpstreamData::Delta(table) if on_cluster => {
            let files = crate::delta::snapshot_files(ctx, table, up.filter.as_deref())
                .await
                .map_err(|e| EngineError::Input {
                    input: up.name.to_string(),
                    message: e.to_string(),
                })?;
            ctx.register_table(up.name.as_str(), files)
                .map_err(|e| input_err(&up.name, e))?;
            return Ok(());
        }
        UpstreamData::Delta(table) => {
            table
                .table_provider()
                .await
                .map_err(|e| EngineError::Input {
                    input: up.name.to_string(),
                    message: e.to_string(),
                })?
        }
        UpstreamData::Rows(rows) => rows.clone(),
    };
    let mut df = ctx
        .read_table(provider)
        .map_err(|e| input_err(&up.name, e))?;
    for (column, values) in up.filter.iter().flatten() {
        // Filters on partition columns only: pushed into the scan, which then reads only
        // those partitions' files.
        let list = values
            .iter()
            .map(|v| deltalake::datafusion::prelude::lit(v.clone()))
            .collect();
        df = df
            .filter(col(column.as_str()).in_list(list, false))
            .map_err(|e| input_err(&up.name, e))?;
    }
    ctx.register_table(up.name.as_str(), df.into_view())
        .map_err(|e| input_err(&up.name, e))?;
    Ok(())
}
