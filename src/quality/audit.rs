//! The audit step of write-audit-publish: the partition's new rows (uploaded, not yet
//! committed), profiled as they streamed (`profiler`), and every check run on them as SQL
//! over a table `output`.

use super::profiler::Profiler;
use super::{Check, CheckKind, CheckResult, Profile, Quality, QualityError, median};
use crate::names::Name;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::TableProvider;
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

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QualityError> {
    let df = ctx.sql(sql).await?;
    df.collect().await.map_err(QualityError::from)
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

/// The count of a failing-rows query and a few of its rows as JSON.
async fn failing(ctx: &SessionContext, query: &str) -> Result<(u64, Vec<String>), QualityError> {
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
    w.write_batches(&refs)?;
    w.finish()?;
    let text = String::from_utf8_lossy(&w.into_inner()).into_owned();
    Ok((n, text.lines().map(str::to_string).collect()))
}

/// A partition's new rows, as the audit sees them: their profile (built as they streamed
/// to the writer) and a table to run the checks on: the rows kept in memory when they fit
/// the budget, else the uploaded files read back.
pub struct NewRows {
    pub profile: Profile,
    pub table: Arc<dyn TableProvider>,
}

impl NewRows {
    /// Rows held in memory (a job test's, or a small partition's).
    pub fn in_memory(
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<NewRows, QualityError> {
        let mut profiler = Profiler::new(schema.clone());
        for b in &batches {
            profiler.update(b);
        }
        let table = MemTable::try_new(schema, vec![batches])?;
        Ok(NewRows {
            profile: profiler.finish(),
            table: Arc::new(table),
        })
    }
}

/// Runs every check on the new rows, in `ctx` (whose memory pool bounds what the checks
/// hold; sorts and aggregations spill). `baseline`: the profiles of the partitions before
/// this one, newest first. `partition_end_us`: the partition's end (for freshness), in
/// microseconds since the epoch.
pub async fn audit(
    ctx: &SessionContext,
    new: NewRows,
    checks: &[Check],
    baseline: &[Profile],
    partition_end_us: Option<i64>,
) -> Result<Quality, QualityError> {
    let NewRows { profile, table } = new;
    let rows = profile.rows;
    if checks.is_empty() {
        return Ok(Quality {
            profile: Some(profile),
            checks: Vec::new(),
        });
    }
    // The checks are SQL over the new rows as a table `output`.
    ctx.register_table("output", table)?;
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
) -> Result<Verdict, QualityError> {
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
            // A proof that fails to run proves nothing: the SQL then counts.
            let proven = super::unique::proven_unique(ctx, &cols, rows).await;
            let (n, s) = if proven.unwrap_or(false) {
                (0, Vec::new())
            } else {
                failing(
                    ctx,
                    &format!("SELECT {cols}, COUNT(*) AS copies FROM output GROUP BY {cols} HAVING COUNT(*) > 1"),
                )
                .await?
            };
            (n == 0, n, repeated_keys(n, columns), s)
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
) -> Result<Verdict, QualityError> {
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
                let fresh = rows > 0 && newest >= limit;
                (
                    fresh,
                    rows,
                    format!(
                        "newest `{column}` is {newest_text}, {} {}s before the partition end",
                        if fresh { "within" } else { "more than" },
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

/// What a `unique` check on `columns` says of the `n` values that appear more than once.
pub fn repeated_keys(n: u64, columns: &[Name]) -> String {
    format!("{n} value(s) of ({}) appear more than once", list(columns))
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
    use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

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
        let got = NewRows::in_memory(schema.clone(), batches.clone())
            .unwrap()
            .profile;
        assert_eq!(got.rows, rows);

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
