//! The audit step of write-audit-publish: the partition's new rows (uploaded, not yet
//! committed) are profiled, and every check is run on them as SQL over a table `output`.

use super::{Check, CheckKind, CheckResult, ColumnProfile, Profile, Quality, median};
use crate::names::Name;
use deltalake::arrow::array::{Array, ArrayRef, AsArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Float64Type, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::common::hash_utils::{HLL_RANDOM_STATE, create_hashes};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use deltalake::datafusion::logical_expr::Accumulator;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::datafusion::scalar::ScalarValue;
use std::collections::HashSet;
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

/// Profiles the rows column by column with Arrow kernels: no SQL is planned and no value
/// is formatted but the two bounds, so profiling costs little beside writing the rows.
/// The figures SQL's COUNT, approx_distinct, MIN, MAX and AVG give (bounds as text, the way
/// `CAST(.. AS VARCHAR)` writes them).
fn profile(schema: &SchemaRef, batches: &[RecordBatch], rows: u64) -> Profile {
    let mut p = Profile {
        rows,
        ..Default::default()
    };
    if rows == 0 {
        return p;
    }
    let mut hashes: Vec<u64> = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let columns: Vec<&ArrayRef> = batches.iter().map(|b| b.column(i)).collect();
        let nulls: u64 = columns.iter().map(|a| a.null_count() as u64).sum();
        let present = rows - nulls.min(rows);
        let mut column = ColumnProfile {
            null_fraction: nulls.min(rows) as f64 / rows as f64,
            ..Default::default()
        };
        if !matches!(
            f.data_type(),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        ) {
            // A type a kernel does not handle (a nested one, say) leaves that figure out
            // rather than failing the run: the profile describes, the checks decide.
            column.distinct = distinct(&columns, &mut hashes).unwrap_or(0);
            column.min = bound(&columns, MinAccumulator::try_new(f.data_type()));
            column.max = bound(&columns, MaxAccumulator::try_new(f.data_type()));
            if f.data_type().is_numeric() && present > 0 {
                column.mean = sum(&columns).map(|s| s / present as f64);
            }
        }
        p.columns.insert(f.name().clone(), column);
    }
    p
}

/// The count of distinct non-null values, from the values' hashes: exact up to a few
/// thousand, then a HyperLogLog estimate (2^14 registers, about 1% error), as SQL's
/// approx_distinct gives, without turning every value into text first.
fn distinct(columns: &[&ArrayRef], hashes: &mut Vec<u64>) -> Option<u64> {
    const P: u32 = 14;
    const M: usize = 1 << P;
    const EXACT_UP_TO: usize = 4096;
    let mut registers = vec![0u8; M];
    let mut exact = Some(HashSet::with_capacity_and_hasher(64, PreHashed::default()));
    for a in columns {
        hashes.clear();
        hashes.resize(a.len(), 0);
        create_hashes([*a], &HLL_RANDOM_STATE, hashes).ok()?;
        for (row, h) in hashes.iter().enumerate() {
            if a.is_valid(row) {
                let index = (h & (M as u64 - 1)) as usize;
                let rank = ((h >> P) | (1 << (64 - P))).trailing_zeros() as u8 + 1;
                registers[index] = registers[index].max(rank);
                if let Some(seen) = &mut exact {
                    seen.insert(*h);
                    if seen.len() > EXACT_UP_TO {
                        exact = None;
                    }
                }
            }
        }
    }
    if let Some(seen) = exact {
        return Some(seen.len() as u64);
    }
    let m = M as f64;
    let zeros = registers.iter().filter(|r| **r == 0).count();
    let sum: f64 = registers.iter().map(|r| 1.0 / (1u64 << *r) as f64).sum();
    let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
    // Few values: linear counting over the empty registers is the better estimate.
    let estimate = if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    };
    Some(estimate.round() as u64)
}

/// The values of the exact set are hashes already: hashing them again would cost more than
/// the rest of the count.
type PreHashed = std::hash::BuildHasherDefault<PassThrough>;

#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The smallest or largest value as text, the way `CAST(.. AS VARCHAR)` writes it; `None`
/// for no value.
fn bound<A: Accumulator>(
    columns: &[&ArrayRef],
    acc: deltalake::datafusion::error::Result<A>,
) -> Option<String> {
    let mut acc = acc.ok()?;
    for a in columns {
        acc.update_batch(&[(*a).clone()]).ok()?;
    }
    let v = acc.evaluate().ok()?;
    if v.is_null() {
        return None;
    }
    let text = cast(&v.to_array().ok()?, &DataType::Utf8).ok()?;
    let text = text.as_string::<i32>();
    (text.len() == 1 && text.is_valid(0)).then(|| text.value(0).to_string())
}

/// The sum of the values as doubles (SQL's AVG sums the same way).
fn sum(columns: &[&ArrayRef]) -> Option<f64> {
    let mut total = 0.0;
    for a in columns {
        let d = cast(a, &DataType::Float64).ok()?;
        total += deltalake::arrow::compute::sum(d.as_primitive::<Float64Type>()).unwrap_or(0.0);
    }
    Some(total)
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
    session: impl FnOnce() -> SessionContext,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    checks: &[Check],
    baseline: &[Profile],
    partition_end_us: Option<i64>,
) -> Result<Quality, String> {
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let profile = profile(&schema, &batches, rows);
    if checks.is_empty() {
        return Ok(Quality {
            profile: Some(profile),
            checks: Vec::new(),
        });
    }
    // The checks are SQL over the new rows as a table `output`.
    let ctx = &session();
    let table = MemTable::try_new(schema.clone(), vec![batches]).map_err(|e| e.to_string())?;
    ctx.register_table("output", Arc::new(table))
        .map_err(|e| e.to_string())?;
    let mut results = Vec::new();
    for check in checks {
        let outcome = run_check(ctx, check, rows, &profile, baseline, partition_end_us).await;
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

/// What one check found: passed, how many rows or values fail it, what it says, and a few
/// failing rows.
type Verdict = (bool, u64, String, Vec<String>);

/// Runs one check on the new rows (table `output` of `ctx`).
async fn run_check(
    ctx: &SessionContext,
    check: &Check,
    rows: u64,
    profile: &Profile,
    baseline: &[Profile],
    partition_end_us: Option<i64>,
) -> Result<Verdict, String> {
    Ok(match &check.kind {
        CheckKind::NotNull { columns } => {
            let cond: Vec<String> = columns
                .iter()
                .map(|c| format!("{} IS NULL", quote(c.as_str())))
                .collect();
            let (n, s) = failing(
                ctx,
                &format!("SELECT * FROM output WHERE {}", cond.join(" OR ")),
            )
            .await?;
            (
                n == 0,
                n,
                format!("{n} row(s) with a null in {}", list(columns)),
                s,
            )
        }
        CheckKind::Unique { columns } => {
            let cols: Vec<String> = columns.iter().map(|c| quote(c.as_str())).collect();
            let cols = cols.join(", ");
            let (n, s) = failing(
                ctx,
                &format!("SELECT {cols}, COUNT(*) AS copies FROM output GROUP BY {cols} HAVING COUNT(*) > 1"),
            )
            .await?;
            (
                n == 0,
                n,
                format!("{n} value(s) of ({}) appear more than once", list(columns)),
                s,
            )
        }
        CheckKind::AcceptedValues { column, values } => {
            let vals: Vec<String> = values.iter().map(|v| literal(v)).collect();
            let c = quote(column.as_str());
            let (n, s) = failing(
                ctx,
                &format!("SELECT * FROM output WHERE {c} IS NOT NULL AND CAST({c} AS VARCHAR) NOT IN ({})", vals.join(", ")),
            )
            .await?;
            (
                n == 0,
                n,
                format!("{n} row(s) with `{column}` outside [{}]", values.join(", ")),
                s,
            )
        }
        CheckKind::RowCount { min, max } => {
            let low = min.is_some_and(|m| rows < m);
            let high = max.is_some_and(|m| rows > m);
            let range = format!(
                "{} .. {}",
                min.map(|m| m.to_string()).unwrap_or_default(),
                max.map(|m| m.to_string()).unwrap_or_default()
            );
            (
                !(low || high),
                rows,
                format!("{rows} row(s), expected {range}"),
                Vec::new(),
            )
        }
        CheckKind::Sql { query } => {
            let (n, s) = failing(ctx, query).await?;
            (
                n == 0,
                n,
                format!("{n} row(s) returned by the check's query"),
                s,
            )
        }
        CheckKind::Freshness { column, max_age } => {
            freshness(ctx, column, *max_age, rows, partition_end_us).await?
        }
        CheckKind::Volume {
            baseline: n,
            tolerance,
        } => volume(baseline, *n, *tolerance, rows),
        CheckKind::NullFraction {
            column,
            baseline: n,
            max_increase,
        } => null_fraction(profile, baseline, column, *n, *max_increase, rows),
    })
}

/// The newest value of `column` is at most `max_age` before the partition's end.
async fn freshness(
    ctx: &SessionContext,
    column: &Name,
    max_age: std::time::Duration,
    rows: u64,
    partition_end_us: Option<i64>,
) -> Result<Verdict, String> {
    Ok({
        let c = quote(column.as_str());
        let newest = as_u64(scalar(
            &collect(
                ctx,
                &format!("SELECT CAST(MAX({c}) AS BIGINT) AS m FROM output"),
            )
            .await?,
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
            None => (
                true,
                0,
                "no partition end to compare with".into(),
                Vec::new(),
            ),
        }
    })
}

/// The row count within `tolerance` of the median of the last `n` partitions.
fn volume(baseline: &[Profile], n: u32, tolerance: f64, rows: u64) -> Verdict {
    let mut past: Vec<f64> = baseline
        .iter()
        .take(n as usize)
        .map(|p| p.rows as f64)
        .collect();
    if past.is_empty() {
        (
            true,
            rows,
            "no earlier partition to compare with".into(),
            Vec::new(),
        )
    } else {
        let k = past.len();
        let m = median(&mut past);
        let dev = if m == 0.0 {
            if rows == 0 { 0.0 } else { f64::INFINITY }
        } else {
            (rows as f64 - m) / m
        };
        (
            dev.abs() <= tolerance,
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

/// `column`'s null fraction at most `max_increase` above its mean over the last `n`
/// partitions that had rows.
fn null_fraction(
    profile: &Profile,
    baseline: &[Profile],
    column: &Name,
    n: u32,
    max_increase: f64,
    rows: u64,
) -> Verdict {
    let now = profile
        .columns
        .get(column.as_str())
        .map(|c| c.null_fraction)
        .unwrap_or(0.0);
    let past: Vec<f64> = baseline
        .iter()
        .filter(|p| p.rows > 0)
        .take(n as usize)
        .filter_map(|p| p.columns.get(column.as_str()).map(|c| c.null_fraction))
        .collect();
    if past.is_empty() {
        (
            true,
            0,
            "no earlier partition to compare with".into(),
            Vec::new(),
        )
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

fn list(columns: &[Name]) -> String {
    columns
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{
        Date32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use deltalake::arrow::datatypes::{Field, Schema, TimeUnit};

    /// The kernel-built profile agrees with the same figures asked of SQL.
    #[tokio::test]
    async fn profile_matches_sql() {
        let n = 5000i64;
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("day", DataType::Date32, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = |from: i64| {
            let ids = (from..from + n).map(|i| (i % 7 != 0).then_some(i % 1200));
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter(ids)),
                    Arc::new(StringArray::from_iter(
                        (from..from + n).map(|i| (i % 3 != 0).then(|| format!("n{}", i % 40))),
                    )),
                    Arc::new(Float64Array::from_iter_values(
                        (from..from + n).map(|i| i as f64 * 0.25 - 3.0),
                    )),
                    Arc::new(Date32Array::from_iter_values(
                        (from..from + n).map(|i| 19700 + (i % 30) as i32),
                    )),
                    Arc::new(
                        TimestampMicrosecondArray::from_iter(
                            (from..from + n).map(|i| (i % 5 != 0).then_some(i * 1_000_003)),
                        )
                        .with_timezone("UTC"),
                    ),
                ],
            )
            .unwrap()
        };
        let batches = vec![batch(0), batch(n)];
        let rows = 2 * n as u64;
        let got = profile(&schema, &batches, rows);

        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema.clone(), vec![batches]).unwrap();
        ctx.register_table("output", Arc::new(table)).unwrap();
        for f in schema.fields().iter() {
            let c = quote(f.name());
            let sql = format!(
                "SELECT COUNT({c}) AS n, COUNT(DISTINCT {c}) AS d, CAST(MIN({c}) AS VARCHAR) AS lo, \
                 CAST(MAX({c}) AS VARCHAR) AS hi FROM output"
            );
            let b = collect(&ctx, &sql).await.unwrap();
            let p = &got.columns[f.name()];
            let present = as_u64(scalar(&b, "n"));
            assert_eq!(
                p.null_fraction,
                (rows - present) as f64 / rows as f64,
                "{c}"
            );
            let exact = as_u64(scalar(&b, "d")) as f64;
            assert!(
                (p.distinct as f64 - exact).abs() <= exact * 0.02,
                "{c}: {} against {exact}",
                p.distinct
            );
            let text = |k: &str| match scalar(&b, k) {
                Some(ScalarValue::Utf8(s)) | Some(ScalarValue::Utf8View(s)) => s,
                other => panic!("{other:?}"),
            };
            assert_eq!(p.min, text("lo"), "{c}");
            assert_eq!(p.max, text("hi"), "{c}");
        }
        let mean = got.columns["price"].mean.unwrap();
        let expected = (0..2 * n).map(|i| i as f64 * 0.25 - 3.0).sum::<f64>() / rows as f64;
        assert!((mean - expected).abs() < 1e-9, "{mean} against {expected}");
        assert_eq!(got.columns["day"].mean, None);
    }
}
