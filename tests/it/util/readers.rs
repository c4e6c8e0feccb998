//! Readers of the tables sluice wrote that share no code with its write path: a fresh
//! deltalake handle, the Python `deltalake` package, the Delta log's files.

use super::processes::stdout_of;
use super::stores::refresh;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The table's rows, read by a fresh deltalake handle through DataFusion (not through
/// sluice), each row as one string, sorted.
pub async fn read_delta_rows(dir: &Path, filter: Option<&str>) -> Vec<String> {
    refresh(dir);
    use deltalake::datafusion::prelude::SessionContext;
    let url = url::Url::from_directory_path(dir).unwrap();
    let table = deltalake::open_table(url).await.expect("open Delta table");
    let ctx = SessionContext::new();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let sql = match filter {
        Some(f) => format!("SELECT * FROM t WHERE {f}"),
        None => "SELECT * FROM t".to_string(),
    };
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let mut rows = Vec::new();
    for b in &batches {
        let fmt = deltalake::arrow::util::display::FormatOptions::default();
        let cols: Vec<_> = b
            .columns()
            .iter()
            .map(|c| {
                deltalake::arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &fmt).unwrap()
            })
            .collect();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .zip(&cols)
                .map(|(f, c)| format!("{}={}", f.name(), c.value(r)))
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    rows
}

/// The Parquet data files under `dir` (checkpoints in `_delta_log` left out), sorted.
pub fn data_files(dir: &Path) -> Vec<String> {
    refresh(dir);
    fn walk(d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "_delta_log") {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// The latest Delta version, from the log folder's file names.
pub fn delta_log_version(dir: &Path) -> u64 {
    refresh(dir);
    std::fs::read_dir(dir.join("_delta_log"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_suffix(".json").and_then(|v| v.parse::<u64>().ok())
        })
        .max()
        .unwrap()
}

/// Reads a Delta table with the Python `deltalake` package (installed by .ci/run): a reader
/// with its own log replay. Returns (rows, distinct values of `key`, sum of `sum_col`).
pub fn python_delta_summary(
    dir: &Path,
    filter_col: &str,
    filter_value: &str,
    key: &str,
    sum_col: &str,
) -> (u64, u64, f64) {
    refresh(dir);
    let script = r#"
import sys, datetime
from deltalake import DeltaTable
import pyarrow.compute as pc
path, col, value, key, sum_col = sys.argv[1:6]
t = DeltaTable(path).to_pyarrow_table()
day = datetime.date.fromisoformat(value)
t = t.filter(pc.equal(t[col], day))
print(t.num_rows, len(pc.unique(t[key])), pc.sum(t[sum_col]).as_py() or 0, flush=True)
# The deltalake package can abort while the interpreter tears down its runtime threads;
# the answer is out by then.
import os; os._exit(0)
"#;
    let text = stdout_of(
        Command::new("python3").args(["-c", script]).arg(dir).args([
            filter_col,
            filter_value,
            key,
            sum_col,
        ]),
        "the Python deltalake reader (bash .ci/run installs it: pip install deltalake pyarrow)",
    );
    let parts: Vec<&str> = text.split_whitespace().collect();
    (
        parts[0].parse().unwrap(),
        parts[1].parse().unwrap(),
        parts[2].parse().unwrap(),
    )
}

/// Every row of a Delta table as Python's deltalake reads it, one JSON text per row,
/// sorted: an independent reader's view of the table.
pub fn python_rows(dir: &Path) -> Vec<String> {
    refresh(dir);
    let script = r#"
import sys, json
from deltalake import DeltaTable
rows = DeltaTable(sys.argv[1]).to_pyarrow_table().to_pylist()
for line in sorted(json.dumps(r, sort_keys=True, default=str) for r in rows):
    print(line)
import os, sys; sys.stdout.flush(); os._exit(0)
"#;
    stdout_of(
        Command::new("python3").args(["-c", script]).arg(dir),
        "the Python deltalake reader (bash .ci/run installs it: pip install deltalake pyarrow)",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Asserts two tables' rows are equal; on failure shows counts and the first differences,
/// not the whole tables.
pub fn assert_same_rows(what: &str, got: &[String], want: &[String]) {
    if got == want {
        return;
    }
    let g: std::collections::BTreeSet<&String> = got.iter().collect();
    let w: std::collections::BTreeSet<&String> = want.iter().collect();
    let extra: Vec<&&String> = g.difference(&w).take(5).collect();
    let missing: Vec<&&String> = w.difference(&g).take(5).collect();
    panic!(
        "{what}: {} rows, expected {}\n  unexpected (first 5): {extra:#?}\n  missing (first 5): {missing:#?}",
        got.len(),
        want.len()
    );
}

/// Each partition's commits in the Delta log, from the `txn` actions (one per commit).
pub fn commits_per_partition(dir: &Path) -> BTreeMap<String, usize> {
    commit_tokens(dir)
        .into_iter()
        .map(|(k, v)| (k, v.len()))
        .collect()
}

/// Each partition's commits in the Delta log as the fencing tokens they carried (the `txn`
/// version), in log order: a token above 1 means the partition's lease was taken over.
pub fn commit_tokens(dir: &Path) -> BTreeMap<String, Vec<i64>> {
    refresh(dir);
    let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(dir.join("_delta_log"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            let v = n.strip_suffix(".json")?.parse::<u64>().ok()?;
            Some((v, e.path()))
        })
        .collect();
    names.sort();
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (_, path) in names {
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(app) = v["txn"]["appId"].as_str() {
                out.entry(app.trim_start_matches("sluice:").to_string())
                    .or_default()
                    .push(v["txn"]["version"].as_i64().unwrap_or(-1));
            }
        }
    }
    out
}
