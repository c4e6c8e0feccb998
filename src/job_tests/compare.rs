//! A test's verdict: the run's error, checks, dead letters and rows against what the test
//! expects. Rows are compared as a multiset unless the test (or the SQL's ORDER BY) asks
//! for order; floats and decimals within the test's tolerance; only the compared columns.
//! A failure reads as a diff: missing rows, unexpected rows, and changed rows (same key)
//! with the columns that differ.

use super::error::{FixtureError, JobTestError};
use super::execute::Actual;
use super::fixture;
use super::{Expect, TestCase};
use crate::job::Job;
use deltalake::arrow::array::{Array, ArrayRef};
use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::scalar::ScalarValue;
use std::sync::Arc;

/// Why a test failed, a line each; empty when it passed.
pub fn judge(test: &TestCase, job: &Job, actual: &Actual) -> Result<Vec<String>, JobTestError> {
    let e = &test.expect;
    let mut out = Vec::new();
    match (&e.error, &actual.error) {
        (Some(want), Some(got)) if got.contains(want.as_str()) => {}
        (Some(want), Some(got)) => out.push(format!(
            "expected an error containing \"{want}\"; the run failed with: {got}"
        )),
        (Some(want), None) => out.push(format!(
            "expected an error containing \"{want}\"; the run succeeded"
        )),
        // A check that stopped the run is reported with the checks below.
        (None, Some(got)) if actual.blocked_by.is_none() => {
            out.push(format!("the run failed: {got}"))
        }
        (None, _) => {}
    }
    if e.rows.is_none()
        && e.error.is_none()
        && e.failing_checks.is_empty()
        && e.dead_letters.is_empty()
    {
        out.push("expects nothing: give `expect.rows` (or `csv`, `file`), `error`, `failing_checks` or `dead_letters`, or run `sluice test --update` to write the actual rows as expected".into());
    }
    out.extend(checks(e, actual));
    out.extend(dead_letters(e, actual));
    if let (Some(rows), Some(output)) = (&e.rows, &actual.output) {
        out.extend(rows_diff(e, rows, output, actual.ordered, job)?);
    }
    Ok(out)
}

fn checks(e: &Expect, actual: &Actual) -> Vec<String> {
    let mut out = Vec::new();
    for c in &actual.checks {
        let expected = e.failing_checks.contains(&c.name);
        if !c.passed && !expected {
            out.push(format!(
                "{c} (not expected: list it in `expect.failing_checks` if it should)"
            ));
        }
        if c.passed && expected {
            out.push(format!("expected check `{}` to fail; it passed", c.name));
        }
    }
    for name in &e.failing_checks {
        if actual.output.is_some() && !actual.checks.iter().any(|c| &c.name == name) {
            out.push(format!("expected check `{name}` to fail; it did not run"));
        }
    }
    out
}

fn dead_letters(e: &Expect, actual: &Actual) -> Vec<String> {
    let mut out = Vec::new();
    for d in &actual.dead_letters {
        if !e
            .dead_letters
            .iter()
            .any(|x| x.input == d.input && x.line == d.line)
        {
            out.push(format!(
                "unexpected dead letter: input `{}`, {}:{}: {}",
                d.input, d.file, d.line, d.error
            ));
        }
    }
    for x in &e.dead_letters {
        if !actual
            .dead_letters
            .iter()
            .any(|d| x.input == d.input && x.line == d.line)
        {
            out.push(format!(
                "expected a dead letter at input `{}` line {}; there is none",
                x.input, x.line
            ));
        }
    }
    out
}

/// The columns a test compares: `columns`, or those its expected rows name.
pub fn compared_columns(e: &Expect, rows: &fixture::Source) -> Result<Vec<String>, FixtureError> {
    match &e.columns {
        Some(c) => Ok(c.clone()),
        None => rows.columns(),
    }
}

fn rows_diff(
    e: &Expect,
    rows: &fixture::Source,
    output: &RecordBatch,
    sql_orders: bool,
    job: &Job,
) -> Result<Vec<String>, JobTestError> {
    let columns = compared_columns(e, rows).map_err(JobTestError::Expected)?;
    let actual = project(output, &columns)?;
    let expected = fixture::typed(rows, &actual.schema()).map_err(JobTestError::Expected)?;
    let ordered = e.ordered.unwrap_or(sql_orders);
    let t = Table {
        expected: expected.columns().to_vec(),
        actual: actual.columns().to_vec(),
        tolerance: e.tolerance,
    };
    // Rows with the same key (the compared part of it) are shown as one changed row.
    let key: Vec<usize> = job
        .key
        .iter()
        .filter_map(|k| columns.iter().position(|c| c == k.as_str()))
        .collect();
    let mut lines = Vec::new();
    let (ne, na) = (expected.num_rows(), actual.num_rows());
    if ordered {
        for i in 0..ne.max(na) {
            match (i < ne, i < na) {
                (true, true) => {
                    let differ = t.differing(i, i);
                    if !differ.is_empty() {
                        lines.push(t.changed(&columns, &format!("row {}", i + 1), i, i, &differ));
                    }
                }
                (true, false) => lines.push(format!("- missing     {}", t.row(&columns, true, i))),
                _ => lines.push(format!("+ unexpected  {}", t.row(&columns, false, i))),
            }
        }
    } else {
        let mut used = vec![false; na];
        let mut missing = Vec::new();
        for i in 0..ne {
            match (0..na).find(|&j| !used[j] && t.differing(i, j).is_empty()) {
                Some(j) => used[j] = true,
                None => missing.push(i),
            }
        }
        for i in missing {
            let same_key = (!key.is_empty())
                .then(|| (0..na).find(|&j| !used[j] && key.iter().all(|&c| t.equal(c, i, j))))
                .flatten();
            match same_key {
                Some(j) => {
                    used[j] = true;
                    let shown = key
                        .iter()
                        .map(|&c| format!("{}={}", columns[c], cell(&t.expected[c], i)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    lines.push(t.changed(&columns, &shown, i, j, &t.differing(i, j)));
                }
                None => lines.push(format!("- missing     {}", t.row(&columns, true, i))),
            }
        }
        for (j, u) in used.iter().enumerate() {
            if !u {
                lines.push(format!("+ unexpected  {}", t.row(&columns, false, j)));
            }
        }
    }
    if lines.is_empty() {
        return Ok(lines);
    }
    let mut head = vec![format!(
        "rows differ: {ne} expected, {na} produced (compared: {}; {}{})",
        columns.join(", "),
        if ordered { "in order" } else { "order ignored" },
        e.tolerance
            .map(|t| format!("; tolerance {t}"))
            .unwrap_or_default()
    )];
    head.extend(lines.into_iter().map(|l| format!("  {l}")));
    Ok(head)
}

/// `batch`'s columns named `columns`, in that order.
fn project(batch: &RecordBatch, columns: &[String]) -> Result<RecordBatch, JobTestError> {
    let schema = batch.schema();
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    for c in columns {
        let i = schema
            .index_of(c)
            .map_err(|_| JobTestError::NoOutputColumn(c.clone()))?;
        fields.push(schema.field(i).clone());
        arrays.push(batch.column(i).clone());
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// Expected and actual columns side by side (same types, same order).
struct Table {
    expected: Vec<ArrayRef>,
    actual: Vec<ArrayRef>,
    tolerance: Option<f64>,
}

impl Table {
    /// The columns where expected row `i` and actual row `j` differ.
    fn differing(&self, i: usize, j: usize) -> Vec<usize> {
        (0..self.expected.len())
            .filter(|&c| !self.equal(c, i, j))
            .collect()
    }

    fn equal(&self, c: usize, i: usize, j: usize) -> bool {
        let (e, a) = (&self.expected[c], &self.actual[c]);
        match (e.is_null(i), a.is_null(j)) {
            (true, true) => return true,
            (false, false) => {}
            _ => return false,
        }
        let (Ok(x), Ok(y)) = (
            ScalarValue::try_from_array(e, i),
            ScalarValue::try_from_array(a, j),
        ) else {
            return false;
        };
        match (self.tolerance, number(&x), number(&y)) {
            (Some(tol), Some(x), Some(y)) => (x - y).abs() <= tol + f64::EPSILON * x.abs(),
            _ => x == y,
        }
    }

    fn row(&self, columns: &[String], expected: bool, i: usize) -> String {
        let side = if expected {
            &self.expected
        } else {
            &self.actual
        };
        columns
            .iter()
            .zip(side)
            .map(|(c, a)| format!("{c}={}", cell(a, i)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn changed(
        &self,
        columns: &[String],
        at: &str,
        i: usize,
        j: usize,
        differ: &[usize],
    ) -> String {
        format!(
            "~ changed     {at}: {}",
            differ
                .iter()
                .map(|&c| format!(
                    "{} expected {}, got {}",
                    columns[c],
                    cell(&self.expected[c], i),
                    cell(&self.actual[c], j)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }
}

/// A float or decimal as f64, for comparison within a tolerance.
fn number(v: &ScalarValue) -> Option<f64> {
    match v.data_type() {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            v.cast_to(&DataType::Float64).ok().and_then(|f| match f {
                ScalarValue::Float64(x) => x,
                _ => None,
            })
        }
        DataType::Decimal128(_, s) => match v {
            ScalarValue::Decimal128(Some(n), _, _) => Some(*n as f64 / 10f64.powi(i32::from(s))),
            _ => None,
        },
        _ => None,
    }
}

/// One value as a person reads it; NULL for null.
pub fn cell(a: &ArrayRef, i: usize) -> String {
    let opts = FormatOptions::default().with_null("NULL");
    match ArrayFormatter::try_new(a.as_ref(), &opts) {
        Ok(f) => f.value(i).to_string(),
        Err(_) => "?".into(),
    }
}
