//! `sluice diff`: how two physical versions of a table differ, before a promote. Schema,
//! rows per partition, a key-based row diff (added, removed, changed, with samples) and
//! per-column aggregates side by side. Both versions are read with DataFusion from their
//! Delta tables; only validated names (columns, keys) appear in the SQL text, and the
//! partitions to compare are typed literals.

use crate::catalog::{Catalog, CatalogError};
use crate::delta::{self, DeltaError};
use crate::engine::Engine;
use crate::partition::KEY_SEPARATOR;
use crate::schema::{ColumnType, TableSchema};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::prelude::{DataFrame, SessionContext, cast, col, lit};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{table} has no version v{version}; see `sluice tables`")]
    NoVersion { table: String, version: i64 },
    #[error("stored schema of {table} v{version} does not parse: {message}")]
    Schema {
        table: String,
        version: i64,
        message: String,
    },
    #[error("reading {what}: {message}")]
    Query { what: String, message: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Delta(#[from] DeltaError),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnChange {
    pub column: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PartitionRows {
    pub partition: String,
    pub from: u64,
    pub to: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnStats {
    pub column: String,
    pub from_sum: Option<f64>,
    pub to_sum: Option<f64>,
    pub from_mean: Option<f64>,
    pub to_mean: Option<f64>,
    pub from_null_fraction: f64,
    pub to_null_fraction: f64,
}

impl ColumnStats {
    /// The row people read (`sluice diff`, the web view): column, sums, means and null
    /// fractions of both sides, to 4 decimals, `-` where there is none.
    pub fn shown(&self) -> Vec<String> {
        let num = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
        vec![
            self.column.clone(),
            num(self.from_sum),
            num(self.to_sum),
            num(self.from_mean),
            num(self.to_mean),
            format!("{:.4}", self.from_null_fraction),
            format!("{:.4}", self.to_null_fraction),
        ]
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RowDiff {
    pub key: Vec<String>,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    /// Up to five rows of each kind: key values, and for changed rows the columns that
    /// differ as `column: from -> to`.
    pub samples: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub table: String,
    pub from: i64,
    pub to: i64,
    pub partitions: Option<Vec<String>>,
    pub schema: Vec<ColumnChange>,
    pub rows_from: u64,
    pub rows_to: u64,
    pub rows_per_partition: Vec<PartitionRows>,
    /// `None` when the table has no key columns to match rows by.
    pub rows: Option<RowDiff>,
    pub columns: Vec<ColumnStats>,
}

impl Diff {
    /// Rows added, removed or changed, as a fraction of the larger side.
    pub fn changed_fraction(&self) -> f64 {
        let total = self.rows_from.max(self.rows_to).max(1) as f64;
        match &self.rows {
            Some(r) => (r.added + r.removed + r.changed) as f64 / total,
            None => self.rows_from.abs_diff(self.rows_to) as f64 / total,
        }
    }
}

fn qerr(what: &str) -> impl Fn(deltalake::datafusion::error::DataFusionError) -> DiffError + '_ {
    move |e| DiffError::Query {
        what: what.to_string(),
        message: e.to_string(),
    }
}

async fn side(
    catalog: &Catalog,
    ctx: &SessionContext,
    table: &str,
    version: i64,
    filter: &[(String, Vec<String>)],
) -> Result<(TableSchema, DataFrame), DiffError> {
    let tv = catalog
        .table_version(table, version)
        .await?
        .ok_or_else(|| DiffError::NoVersion {
            table: table.to_string(),
            version,
        })?;
    let schema: TableSchema =
        serde_json::from_str(&tv.schema_json).map_err(|e| DiffError::Schema {
            table: table.to_string(),
            version,
            message: e.to_string(),
        })?;
    let url = url::Url::parse(&tv.uri).map_err(|e| DiffError::Query {
        what: tv.uri.clone(),
        message: e.to_string(),
    })?;
    let t = delta::open(&url).await?;
    let provider = t.table_provider().await.map_err(|e| DiffError::Query {
        what: tv.uri.clone(),
        message: e.to_string(),
    })?;
    let mut df = ctx.read_table(provider).map_err(qerr(&tv.uri))?;
    for (column, values) in filter {
        let values = values.iter().map(|p| lit(p.clone())).collect();
        df = df
            .filter(cast(col(column.as_str()), DataType::Utf8).in_list(values, false))
            .map_err(qerr(&tv.uri))?;
    }
    Ok((schema, df))
}

fn cells(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let fmt = FormatOptions::default().with_null("null");
    let mut out = Vec::new();
    for b in batches {
        let f: Vec<_> = b
            .columns()
            .iter()
            .filter_map(|c| ArrayFormatter::try_new(c.as_ref(), &fmt).ok())
            .collect();
        for r in 0..b.num_rows() {
            out.push(f.iter().map(|c| c.value(r).to_string()).collect());
        }
    }
    out
}

async fn rows(ctx: &SessionContext, sql: &str, what: &str) -> Result<Vec<Vec<String>>, DiffError> {
    let df = ctx.sql(sql).await.map_err(qerr(what))?;
    Ok(cells(&df.collect().await.map_err(qerr(what))?))
}

fn numeric(t: ColumnType) -> bool {
    matches!(
        t,
        ColumnType::TinyInt
            | ColumnType::SmallInt
            | ColumnType::Int
            | ColumnType::BigInt
            | ColumnType::Float
            | ColumnType::Double
            | ColumnType::Decimal { .. }
    )
}

/// Compares `from` and `to` of `table`, on `partitions` only when given. `key` are the
/// columns that identify a row (the job's `output.key`).
pub async fn diff(
    catalog: &Catalog,
    engine: &Engine,
    table: &str,
    from: i64,
    to: i64,
    partitions: Option<Selected>,
    key: &[String],
) -> Result<Diff, DiffError> {
    let ctx = engine.session();
    let (shown, filter) = partitions
        .map(|s| (Some(s.shown), s.filter))
        .unwrap_or_default();
    let (sa, a) = side(catalog, &ctx, table, from, &filter).await?;
    let (sb, b) = side(catalog, &ctx, table, to, &filter).await?;
    ctx.register_table("a", a.into_view()).map_err(qerr("a"))?;
    ctx.register_table("b", b.into_view()).map_err(qerr("b"))?;

    let schema = schema_changes(&sa, &sb);
    let common: Vec<&crate::schema::Column> = sa
        .columns
        .iter()
        .filter(|c| sb.column(c.name.as_str()).is_some())
        .collect();

    let count = |t: &str| format!("SELECT count(*) FROM {t}");
    let n = |v: &[Vec<String>]| -> u64 {
        v.first()
            .and_then(|r| r.first())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let rows_from = n(&rows(&ctx, &count("a"), "row count").await?);
    let rows_to = n(&rows(&ctx, &count("b"), "row count").await?);

    let rows_per_partition = rows_per_partition(&ctx, &sa, &sb).await?;

    let key: Vec<String> = key
        .iter()
        .filter(|k| sa.column(k).is_some() && sb.column(k).is_some())
        .cloned()
        .collect();
    let row_diff = if key.is_empty() {
        None
    } else {
        Some(row_diff(&ctx, &key, &common).await?)
    };

    let columns = column_stats(&ctx, &common).await?;
    Ok(Diff {
        table: table.to_string(),
        from,
        to,
        partitions: shown,
        schema,
        rows_from,
        rows_to,
        rows_per_partition,
        rows: row_diff,
        columns,
    })
}

/// Columns dropped, added, or changed in type or nullability from `sa` to `sb`.
fn schema_changes(sa: &TableSchema, sb: &TableSchema) -> Vec<ColumnChange> {
    let mut schema = Vec::new();
    for c in &sa.columns {
        match sb.column(c.name.as_str()) {
            None => schema.push(ColumnChange {
                column: c.name.to_string(),
                from: Some(c.ty.to_string()),
                to: None,
            }),
            Some(d) if d.ty != c.ty || d.nullable != c.nullable => schema.push(ColumnChange {
                column: c.name.to_string(),
                from: Some(format!(
                    "{}{}",
                    c.ty,
                    if c.nullable { "" } else { " NOT NULL" }
                )),
                to: Some(format!(
                    "{}{}",
                    d.ty,
                    if d.nullable { "" } else { " NOT NULL" }
                )),
            }),
            Some(_) => {}
        }
    }
    for d in &sb.columns {
        if sa.column(d.name.as_str()).is_none() {
            schema.push(ColumnChange {
                column: d.name.to_string(),
                from: None,
                to: Some(d.ty.to_string()),
            });
        }
    }
    schema
}

/// Rows per partition on each side, when both are partitioned.
async fn rows_per_partition(
    ctx: &SessionContext,
    sa: &TableSchema,
    sb: &TableSchema,
) -> Result<Vec<PartitionRows>, DiffError> {
    let mut rows_per_partition = Vec::new();
    // A partition as its values in the partition columns, in PARTITIONED BY order, joined
    // by `:` (a day and a region: `2024-01-05:emea`).
    let label = |s: &TableSchema| -> Option<String> {
        let cols: Vec<String> = s
            .partition_by
            .iter()
            .map(|c| format!("CAST({c} AS VARCHAR)"))
            .collect();
        (!cols.is_empty()).then(|| cols.join(&format!(" || '{KEY_SEPARATOR}' || ")))
    };
    if let (Some(pa), Some(pb)) = (label(sa), label(sb)) {
        let per = |t: &str, c: &str| format!("SELECT {c} AS p, count(*) FROM {t} GROUP BY 1");
        let mut m: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for r in rows(ctx, &per("a", &pa), "rows per partition").await? {
            m.entry(r[0].clone()).or_default().0 = r[1].parse().unwrap_or(0);
        }
        for r in rows(ctx, &per("b", &pb), "rows per partition").await? {
            m.entry(r[0].clone()).or_default().1 = r[1].parse().unwrap_or(0);
        }
        rows_per_partition = m
            .into_iter()
            .map(|(partition, (from, to))| PartitionRows {
                partition,
                from,
                to,
            })
            .collect();
    }
    Ok(rows_per_partition)
}

/// Rows added, removed and changed by `key`, with a few samples of each.
async fn row_diff(
    ctx: &SessionContext,
    key: &[String],
    common: &[&crate::schema::Column],
) -> Result<RowDiff, DiffError> {
    let on = key
        .iter()
        .map(|k| format!("a.{k} = b.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let k0 = &key[0];
    let values: Vec<&str> = common
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| !key.iter().any(|k| k == c))
        .collect();
    let differs = if values.is_empty() {
        "false".to_string()
    } else {
        values
            .iter()
            .map(|c| format!("(a.{c} IS DISTINCT FROM (b.{c}))"))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    let keys_out = key
        .iter()
        .map(|k| format!("CAST(COALESCE(a.{k}, b.{k}) AS VARCHAR) AS {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let pairs = values
        .iter()
        .map(|c| format!("CAST(a.{c} AS VARCHAR) AS from_{c}, CAST(b.{c} AS VARCHAR) AS to_{c}"))
        .collect::<Vec<_>>();
    let changes = format!(
        "SELECT CASE WHEN a.{k0} IS NULL THEN 'added' WHEN b.{k0} IS NULL THEN 'removed' ELSE 'changed' END AS change, {keys_out}{}{} \
         FROM a FULL OUTER JOIN b ON {on} \
         WHERE a.{k0} IS NULL OR b.{k0} IS NULL OR {differs}",
        if pairs.is_empty() { "" } else { ", " },
        pairs.join(", ")
    );
    let df = ctx.sql(&changes).await.map_err(qerr("row diff"))?;
    ctx.register_table("changes", df.into_view())
        .map_err(qerr("row diff"))?;
    let mut d = RowDiff {
        key: key.to_vec(),
        ..Default::default()
    };
    for r in rows(
        ctx,
        "SELECT change, count(*) FROM changes GROUP BY change",
        "row diff",
    )
    .await?
    {
        let c: u64 = r[1].parse().unwrap_or(0);
        match r[0].as_str() {
            "added" => d.added = c,
            "removed" => d.removed = c,
            _ => d.changed = c,
        }
    }
    let order = key.join(", ");
    // The first five of each kind in one pass.
    let sql = format!(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY change ORDER BY {order}) AS sample_rank FROM changes) WHERE sample_rank <= 5 ORDER BY change, sample_rank"
    );
    for r in rows(ctx, &sql, "row diff samples").await? {
        let kind = r[0].clone();
        let mut text = key
            .iter()
            .zip(&r[1..])
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        if kind == "changed" {
            let rest = &r[1 + key.len()..r.len() - 1];
            let diffs: Vec<String> = values
                .iter()
                .zip(rest.chunks(2))
                .filter(|(_, p)| p.len() == 2 && p[0] != p[1])
                .map(|(c, p)| format!("{c}: {} -> {}", p[0], p[1]))
                .collect();
            text = format!("{text}: {}", diffs.join("; "));
        }
        d.samples.entry(kind).or_default().push(text);
    }
    Ok(d)
}

/// Sum, mean and null fraction of each common column on each side.
async fn column_stats(
    ctx: &SessionContext,
    common: &[&crate::schema::Column],
) -> Result<Vec<ColumnStats>, DiffError> {
    let mut columns = Vec::new();
    for c in common {
        let name = c.name.as_str();
        let num = numeric(c.ty);
        let stats = |t: &str| {
            if num {
                format!(
                    "SELECT CAST(sum({name}) AS DOUBLE), CAST(avg({name}) AS DOUBLE), CAST(sum(CASE WHEN {name} IS NULL THEN 1 ELSE 0 END) AS DOUBLE) / greatest(count(*), 1) FROM {t}"
                )
            } else {
                format!(
                    "SELECT NULL AS s, NULL AS m, CAST(sum(CASE WHEN {name} IS NULL THEN 1 ELSE 0 END) AS DOUBLE) / greatest(count(*), 1) AS n FROM {t}"
                )
            }
        };
        let f = |v: &Vec<Vec<String>>, i: usize| -> Option<f64> {
            v.first()
                .and_then(|r| r.get(i))
                .and_then(|s| s.parse().ok())
        };
        let ra = rows(ctx, &stats("a"), "column aggregates").await?;
        let rb = rows(ctx, &stats("b"), "column aggregates").await?;
        columns.push(ColumnStats {
            column: name.to_string(),
            from_sum: f(&ra, 0),
            to_sum: f(&rb, 0),
            from_mean: f(&ra, 1),
            to_mean: f(&rb, 1),
            from_null_fraction: f(&ra, 2).unwrap_or(0.0),
            to_null_fraction: f(&rb, 2).unwrap_or(0.0),
        });
    }
    Ok(columns)
}

/// The partitions `--partitions` selects: shown as their text forms, filtered per
/// partition column.
#[derive(Debug, Clone)]
pub struct Selected {
    pub shown: Vec<String>,
    pub filter: Vec<(String, Vec<String>)>,
}

/// `--partitions` of a diff of the table `job` writes (`schema`): times as a list
/// (`a,b,c`) or a range (`a..b`, both included), keys after a `:` (`a..b:emea,apac`), or
/// keys alone (`:emea`).
pub fn parse_partitions(
    job: &crate::job::Job,
    schema: &TableSchema,
    text: &str,
) -> Result<Selected, String> {
    let arg = crate::partition::PartitionsArg::parse(text);
    let times = arg.times(job.granularity)?;
    let keys = arg.static_keys()?;
    if keys.is_some() && job.static_keys.is_none() {
        return Err(format!("job `{}` has no partition keys", job.name));
    }
    if times.is_none() && keys.is_none() {
        return Err(
            "name the partitions' times (a list a,b,c or a range a..b) or keys (:k1,k2)".into(),
        );
    }
    let mut filter = Vec::new();
    if let (Some(t), Some(c)) = (&times, job.time_column(schema)) {
        filter.push((
            c.name.to_string(),
            t.iter().map(|t| t.to_string()).collect(),
        ));
    }
    if let (Some(k), Some(c)) = (&keys, job.key_column()) {
        filter.push((c.to_string(), k.iter().map(|k| k.to_string()).collect()));
    }
    let key_list: Vec<Option<crate::partition::StaticKey>> = match &keys {
        Some(k) => k.iter().map(|k| Some(*k)).collect(),
        None => vec![None],
    };
    let shown = match times {
        Some(times) => times
            .iter()
            .flat_map(|t| {
                key_list
                    .iter()
                    .map(move |k| crate::partition::PartitionKey::new(*t, *k).to_string())
            })
            .collect(),
        None => key_list
            .iter()
            .flatten()
            .map(|k| format!("{KEY_SEPARATOR}{k}"))
            .collect(),
    };
    Ok(Selected { shown, filter })
}
