//! The audit step of write-audit-publish: the partition's new rows (uploaded, not yet
//! committed) are profiled and every check is run on them, as SQL over a table `output`.

use super::{Check, CheckKind, CheckResult, ColumnProfile, Profile, Quality, median};
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::scalar::ScalarValue;
use std::sync::Arc;

/// How many failing rows a check keeps as samples.
const SAMPLES: usize = 3;

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    df.collect().await.map_err(|e| e.to_string())
}

fn scalar(batches: &[RecordBatch], column: &str) -> Option<ScalarValue> {
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    let a = b.column_by_name(column)?;
    ScalarValue::try_from_array(a, 0).ok()
}

fn as_u64(v: Option<ScalarValue>) -> u64 {
    match v {
        Some(ScalarValue::Int64(Some(n))) => n.max(0) as u64,
        Some(ScalarValue::UInt64(Some(n))) => n,
        Some(ScalarValue::Int32(Some(n))) => n.max(0) as u64,
        _ => 0,
    }
}

fn as_f64(v: Option<ScalarValue>) -> Option<f64> {
    match v {
        Some(ScalarValue::Float64(Some(x))) => Some(x),
        _ => None,
    }
}

fn as_string(v: Option<ScalarValue>) -> Option<String> {
    match v {
        Some(ScalarValue::Utf8(Some(s)))
        | Some(ScalarValue::LargeUtf8(Some(s)))
        | Some(ScalarValue::Utf8View(Some(s))) => Some(s),
        _ => None,
    }
}

fn numeric(dt: &DataType) -> bool {
    dt.is_numeric()
}

/// Profiles `output` in one query.
async fn profile(ctx: &SessionContext, schema: &SchemaRef, rows: u64) -> Result<Profile, String> {
    let mut p = Profile {
        rows,
        ..Default::default()
    };
    if rows == 0 {
        return Ok(p);
    }
    let mut exprs = vec!["COUNT(*) AS rows".to_string()];
    for (i, f) in schema.fields().iter().enumerate() {
        let c = quote(f.name());
        exprs.push(format!("COUNT({c}) AS n{i}"));
        if matches!(
            f.data_type(),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        ) {
            continue;
        }
        exprs.push(format!("approx_distinct(CAST({c} AS VARCHAR)) AS d{i}"));
        exprs.push(format!("CAST(MIN({c}) AS VARCHAR) AS lo{i}"));
        exprs.push(format!("CAST(MAX({c}) AS VARCHAR) AS hi{i}"));
        if numeric(f.data_type()) {
            exprs.push(format!("CAST(AVG({c}) AS DOUBLE) AS mean{i}"));
        }
    }
    let batches = collect(ctx, &format!("SELECT {} FROM output", exprs.join(", "))).await?;
    for (i, f) in schema.fields().iter().enumerate() {
        let present = as_u64(scalar(&batches, &format!("n{i}")));
        p.columns.insert(
            f.name().clone(),
            ColumnProfile {
                null_fraction: (rows - present.min(rows)) as f64 / rows as f64,
                distinct: as_u64(scalar(&batches, &format!("d{i}"))),
                min: as_string(scalar(&batches, &format!("lo{i}"))),
                max: as_string(scalar(&batches, &format!("hi{i}"))),
                mean: as_f64(scalar(&batches, &format!("mean{i}"))),
            },
        );
    }
    Ok(p)
}

/// The count of a failing-rows query and a few of its rows as JSON.
async fn failing(ctx: &SessionContext, query: &str) -> Result<(u64, Vec<String>), String> {
    let query = query.trim().trim_end_matches(';');
    let n = as_u64(scalar(
        &collect(
            ctx,
            &format!("SELECT COUNT(*) AS n FROM ({query}) AS failing"),
        )
        .await?,
        "n",
    ));
    if n == 0 {
        return Ok((0, Vec::new()));
    }
    let batches = collect(
        ctx,
        &format!("SELECT * FROM ({query}) AS failing LIMIT {SAMPLES}"),
    )
    .await?;
    let mut w = deltalake::arrow::json::LineDelimitedWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    w.write_batches(&refs).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&w.into_inner()).into_owned();
    Ok((n, text.lines().map(str::to_string).collect()))
}

/// Profiles the new rows and runs every check on them. `baseline`: the profiles of the
/// partitions before this one, newest first. `partition_end_us`: the partition's end (for
/// freshness), in microseconds since the epoch.
pub async fn audit(
    ctx: &SessionContext,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    checks: &[Check],
    baseline: &[Profile],
    partition_end_us: Option<i64>,
) -> Result<Quality, String> {
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let table = MemTable::try_new(schema.clone(), vec![batches]).map_err(|e| e.to_string())?;
    ctx.register_table("output", Arc::new(table))
        .map_err(|e| e.to_string())?;
    let profile = profile(ctx, &schema, rows).await?;
    let mut results = Vec::new();
    for check in checks {
        let outcome: Result<(bool, u64, String, Vec<String>), String> = async {
            Ok(match &check.kind {
                CheckKind::NotNull { columns } => {
                    let cond: Vec<String> =
                        columns.iter().map(|c| format!("{} IS NULL", quote(c.as_str()))).collect();
                    let (n, s) = failing(ctx, &format!("SELECT * FROM output WHERE {}", cond.join(" OR "))).await?;
                    (n == 0, n, format!("{n} row(s) with a null in {}", list(columns)), s)
                }
                CheckKind::Unique { columns } => {
                    let cols: Vec<String> = columns.iter().map(|c| quote(c.as_str())).collect();
                    let cols = cols.join(", ");
                    let (n, s) = failing(
                        ctx,
                        &format!("SELECT {cols}, COUNT(*) AS copies FROM output GROUP BY {cols} HAVING COUNT(*) > 1"),
                    )
                    .await?;
                    (n == 0, n, format!("{n} value(s) of ({}) appear more than once", list(columns)), s)
                }
                CheckKind::AcceptedValues { column, values } => {
                    let vals: Vec<String> = values.iter().map(|v| literal(v)).collect();
                    let c = quote(column.as_str());
                    let (n, s) = failing(
                        ctx,
                        &format!("SELECT * FROM output WHERE {c} IS NOT NULL AND CAST({c} AS VARCHAR) NOT IN ({})", vals.join(", ")),
                    )
                    .await?;
                    (n == 0, n, format!("{n} row(s) with `{column}` outside [{}]", values.join(", ")), s)
                }
                CheckKind::RowCount { min, max } => {
                    let low = min.is_some_and(|m| rows < m);
                    let high = max.is_some_and(|m| rows > m);
                    let range = format!(
                        "{} .. {}",
                        min.map(|m| m.to_string()).unwrap_or_default(),
                        max.map(|m| m.to_string()).unwrap_or_default()
                    );
                    (!(low || high), rows, format!("{rows} row(s), expected {range}"), Vec::new())
                }
                CheckKind::Sql { query } => {
                    let (n, s) = failing(ctx, query).await?;
                    (n == 0, n, format!("{n} row(s) returned by the check's query"), s)
                }
                CheckKind::Freshness { column, max_age } => {
                    let c = quote(column.as_str());
                    let newest = as_u64(scalar(
                        &collect(ctx, &format!("SELECT CAST(MAX({c}) AS BIGINT) AS m FROM output")).await?,
                        "m",
                    )) as i64;
                    match partition_end_us {
                        Some(end) => {
                            let limit = end - max_age.as_micros() as i64;
                            let newest_text = chrono::DateTime::from_timestamp_micros(newest)
                                .map(|t| t.to_rfc3339())
                                .unwrap_or_else(|| "none".into());
                            (
                                rows > 0 && newest >= limit,
                                rows,
                                format!(
                                    "newest `{column}` is {newest_text}, more than {}s before the partition end",
                                    max_age.as_secs()
                                ),
                                Vec::new(),
                            )
                        }
                        None => (true, 0, "no partition end to compare with".into(), Vec::new()),
                    }
                }
                CheckKind::Volume { baseline: n, tolerance } => {
                    let mut past: Vec<f64> =
                        baseline.iter().take(*n as usize).map(|p| p.rows as f64).collect();
                    if past.is_empty() {
                        (true, rows, "no earlier partition to compare with".into(), Vec::new())
                    } else {
                        let k = past.len();
                        let m = median(&mut past);
                        let dev = if m == 0.0 {
                            if rows == 0 { 0.0 } else { f64::INFINITY }
                        } else {
                            (rows as f64 - m) / m
                        };
                        (
                            dev.abs() <= *tolerance,
                            rows,
                            format!(
                                "{rows} row(s), {:.0}% {} the median {m} of the last {k} partition(s) (allowed ±{:.0}%)",
                                dev.abs() * 100.0,
                                if dev < 0.0 { "below" } else { "above" },
                                tolerance * 100.0
                            ),
                            Vec::new(),
                        )
                    }
                }
                CheckKind::NullFraction { column, baseline: n, max_increase } => {
                    let now = profile
                        .columns
                        .get(column.as_str())
                        .map(|c| c.null_fraction)
                        .unwrap_or(0.0);
                    let past: Vec<f64> = baseline
                        .iter()
                        .filter(|p| p.rows > 0)
                        .take(*n as usize)
                        .filter_map(|p| p.columns.get(column.as_str()).map(|c| c.null_fraction))
                        .collect();
                    if past.is_empty() {
                        (true, 0, "no earlier partition to compare with".into(), Vec::new())
                    } else {
                        let mean = past.iter().sum::<f64>() / past.len() as f64;
                        let nulls = (now * rows as f64).round() as u64;
                        (
                            now <= mean + max_increase,
                            nulls,
                            format!(
                                "`{column}` is {:.1}% null against {:.1}% over the last {} partition(s) (allowed +{:.1} points)",
                                now * 100.0,
                                mean * 100.0,
                                past.len(),
                                max_increase * 100.0
                            ),
                            Vec::new(),
                        )
                    }
                }
            })
        }
        .await;
        let (passed, failing, detail, samples) = match outcome {
            Ok(x) => x,
            Err(e) => (
                false,
                0,
                format!("the check could not run: {e}"),
                Vec::new(),
            ),
        };
        results.push(CheckResult {
            name: check.name.clone(),
            severity: check.severity,
            passed,
            failing,
            detail,
            samples,
        });
    }
    Ok(Quality {
        profile: Some(profile),
        checks: results,
    })
}

fn list(columns: &[crate::names::Name]) -> String {
    columns
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
