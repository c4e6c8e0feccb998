//! Test helpers: a temp copy of the sample project, the real binary run inside it, and
//! readers of its Delta tables that share no code with sluice's write path. On failure they
//! print the command, the folder, stdout and stderr.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub struct TestProject {
    pub dir: tempfile::TempDir,
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub cmd: String,
    pub dir: PathBuf,
}

impl Output {
    pub fn context(&self) -> String {
        format!(
            "\n--- command: {}\n--- folder: {}\n--- exit code: {}\n--- stdout:\n{}\n--- stderr:\n{}\n",
            self.cmd,
            self.dir.display(),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}){}", self.context()))
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

impl TestProject {
    /// A fresh copy of the sample project (sluice.toml, jobs/, migrations/, sample-data/).
    pub fn sample() -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("sluice-it-")
            .tempdir()
            .unwrap();
        let repo = Path::new(REPO);
        for d in ["jobs", "migrations", "sample-data"] {
            copy_dir(&repo.join(d), &dir.path().join(d));
        }
        std::fs::copy(repo.join("sluice.toml"), dir.path().join("sluice.toml")).unwrap();
        TestProject { dir }
    }

    /// A project made of just `files` (path, content), with `sluice.toml` if given.
    pub fn with_files(files: &[(&str, &str)]) -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("sluice-it-")
            .tempdir()
            .unwrap();
        let p = TestProject { dir };
        for (rel, content) in files {
            p.write(rel, content);
        }
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.file(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.path())
            .args(args)
            .env_remove("SLUICE_CATALOG")
            .env_remove("SLUICE_WAREHOUSE")
            .env_remove("SLUICE_LOG")
            .env_remove("RUST_LOG")
            .env_remove("SLUICE_LOG_FORMAT")
            .env_remove("SLUICE_FAILPOINT");
        c
    }

    /// Runs sluice to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("cannot start the sluice binary");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmd: format!("sluice {}", args.join(" ")),
            dir: self.path().to_path_buf(),
        }
    }

    /// Runs sluice and insists on exit code 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert_eq!(o.code, 0, "expected success{}", o.context());
        o
    }

    /// Starts sluice in the background, stderr to a file the test can watch.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> (Child, PathBuf) {
        let log = self
            .path()
            .join(format!("spawn-{}.log", uuid::Uuid::now_v7()));
        let f = std::fs::File::create(&log).unwrap();
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::from(f))
            .spawn()
            .expect("cannot start the sluice binary");
        (child, log)
    }

    /// `sluice query SQL --output json`, as rows of JSON objects.
    pub fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        self.ok(&["query", sql, "--output", "json"])
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn warehouse_table(&self, table: &str, version: u32) -> PathBuf {
        self.path()
            .join("warehouse")
            .join(table)
            .join(format!("v{version}"))
    }
}

/// Waits until `path` contains `needle`, or panics after `timeout` with the file's text.
pub fn wait_for_text(path: &Path, needle: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        if start.elapsed() > timeout {
            panic!(
                "`{needle}` did not appear in {} within {timeout:?}:\n{text}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL, by process id: the process gets no chance to clean up.
pub fn sigkill(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
}

/// The table's rows, read by a fresh deltalake handle through DataFusion (not through
/// sluice), each row as one string, sorted.
pub async fn read_delta_rows(dir: &Path, filter: Option<&str>) -> Vec<String> {
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
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .args([filter_col, filter_value, key, sum_col])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the Python deltalake reader failed (bash .ci/run installs it: pip install deltalake pyarrow):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let parts: Vec<&str> = text.split_whitespace().collect();
    (
        parts[0].parse().unwrap(),
        parts[1].parse().unwrap(),
        parts[2].parse().unwrap(),
    )
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
