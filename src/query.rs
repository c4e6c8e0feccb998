//! `sluice query`: SQL over the tables' aliases with DataFusion, now or as of a time (each
//! alias as it pointed then, each Delta table as it was then) or a Delta version. Only the
//! tables the statement names are opened.

use crate::catalog::{Catalog, CatalogError};
use crate::engine::Engine;
use chrono::{DateTime, Utc};
use deltalake::arrow::array::RecordBatch;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AsOf {
    /// The Delta version of each table read (useful with one table).
    Version(u64),
    Time(DateTime<Utc>),
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "--as-of `{0}`: write a Delta version (e.g. 12) or a time (2024-05-01T10:00:00Z, or 2024-05-01)"
    )]
    AsOf(String),
    #[error("table `{table}` is not known; known tables: {known}")]
    UnknownTable { table: String, known: String },
    #[error("table `{table}` has no live version yet")]
    NoLive { table: String },
    #[error("table `{table}` did not exist at {at}")]
    NotYet { table: String, at: String },
    #[error("{table}: {message}")]
    Open { table: String, message: String },
    #[error("{0}")]
    Sql(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

pub fn parse_as_of(text: &str) -> Result<AsOf, QueryError> {
    let t = text.trim();
    if let Ok(v) = t.parse::<u64>() {
        return Ok(AsOf::Version(v));
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(AsOf::Time(d.with_timezone(&Utc)));
    }
    if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S") {
        return Ok(AsOf::Time(d.and_utc()));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(AsOf::Time(
            d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
        ));
    }
    Err(QueryError::AsOf(text.to_string()))
}

pub async fn query(
    catalog: &Catalog,
    engine: &Engine,
    sql: &str,
    as_of: Option<AsOf>,
) -> Result<Vec<RecordBatch>, QueryError> {
    let ctx = engine.session();
    let state = ctx.state();
    let sql_err = |e: deltalake::datafusion::error::DataFusionError| QueryError::Sql(e.to_string());
    let statement = state
        .sql_to_statement(sql, &state.config().options().sql_parser.dialect)
        .map_err(sql_err)?;
    let refs = state
        .resolve_table_references(&statement)
        .map_err(sql_err)?;
    let known: BTreeSet<String> = catalog
        .tables()
        .await?
        .into_iter()
        .map(|t| t.schema.name.to_string())
        .collect();
    let mut opened = BTreeSet::new();
    for r in refs {
        let name = r.table().to_string();
        if !opened.insert(name.clone()) {
            continue;
        }
        if !known.contains(&name) {
            return Err(QueryError::UnknownTable {
                table: name,
                known: known.iter().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        // Which physical version the alias pointed at.
        let version = match as_of {
            Some(AsOf::Time(t)) => catalog
                .alias_history(&name)
                .await?
                .iter()
                .rfind(|f| f.at <= t.timestamp_millis())
                .map(|f| f.to_version)
                .ok_or_else(|| QueryError::NotYet {
                    table: name.clone(),
                    at: t.to_rfc3339(),
                })?,
            _ => catalog
                .alias(&name)
                .await?
                .ok_or_else(|| QueryError::NoLive {
                    table: name.clone(),
                })?,
        };
        let tv = catalog
            .table_version(&name, version)
            .await?
            .ok_or_else(|| QueryError::NoLive {
                table: name.clone(),
            })?;
        let open_err = |m: String| QueryError::Open {
            table: name.clone(),
            message: m,
        };
        let url = url::Url::parse(&tv.uri).map_err(|e| open_err(e.to_string()))?;
        let table = match as_of {
            None => deltalake::open_table(url).await,
            Some(AsOf::Version(v)) => deltalake::open_table_with_version(url, v as _).await,
            Some(AsOf::Time(t)) => deltalake::open_table_with_ds(url, t.to_rfc3339()).await,
        }
        .map_err(|e| open_err(e.to_string()))?;
        let provider = table
            .table_provider()
            .await
            .map_err(|e| open_err(e.to_string()))?;
        ctx.register_table(name.as_str(), provider)
            .map_err(sql_err)?;
    }
    let df = ctx.sql(sql).await.map_err(sql_err)?;
    df.collect().await.map_err(sql_err)
}
