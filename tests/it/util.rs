//! Test helpers: a temp copy of the sample project, the real binary run inside it, and
//! readers of its Delta tables that share no code with sluice's write path. On failure they
//! print the command, the folder, stdout and stderr.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub struct TestProject {
    pub dir: tempfile::TempDir,
    /// This project's own PostgreSQL database, when the suite runs on PostgreSQL.
    pub catalog: Option<String>,
    /// This project's own prefix (`s3://bucket/.../<id>/`), when the warehouse is remote.
    pub warehouse: Option<String>,
}

/// The PostgreSQL server the suite runs against instead of SQLite: a URL whose user may
/// create databases (`SLUICE_TEST_CATALOG`, set by .ci/run). Each project gets its own.
pub fn remote_catalog() -> Option<String> {
    std::env::var("SLUICE_TEST_CATALOG")
        .ok()
        .filter(|v| !v.is_empty())
}

/// The object-store warehouse root the suite runs against instead of a local folder
/// (`SLUICE_TEST_WAREHOUSE`, e.g. `s3://bucket`; endpoint and keys in the AWS_* variables).
pub fn remote_warehouse() -> Option<String> {
    std::env::var("SLUICE_TEST_WAREHOUSE")
        .ok()
        .filter(|v| !v.is_empty())
}

/// Runs a helper program (psql, python3, curl) to the end and returns its stdout; the test
/// fails with `what` and the program's stderr if it cannot start or fails.
pub fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new, empty database on the test server, as a URL.
pub fn create_database(admin: &str) -> String {
    let name = format!("sluice_it_{}", uuid::Uuid::now_v7().simple());
    stdout_of(
        Command::new("psql")
            .args([admin, "-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE {name}")),
        "psql creating a test database (installed with PostgreSQL by .ci/run)",
    );
    let mut u = url::Url::parse(admin).expect("SLUICE_TEST_CATALOG is a URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

/// Where a project keeps local copies of its remote warehouse, and the file naming the
/// remote root they come from.
const COPY_DIR: &str = "warehouse-copy";
const COPY_SOURCE: &str = "warehouse-copy.source";

/// Replaces `copy` with the objects under `<root><rel>` (absent when there are none).
fn fetch_copy(root: &str, rel: &str, copy: &Path) {
    let _ = std::fs::remove_dir_all(copy);
    s3_objects(&["download", &format!("{root}{rel}"), copy.to_str().unwrap()]);
}

/// With a remote warehouse the tests read local copies of it; every reader below fetches
/// its copy again first, so that it shows the store as it is now, not as it was when the
/// test took the path. A path outside a copy (a local warehouse) is left alone.
pub fn refresh(dir: &Path) {
    let parts: Vec<_> = dir.components().collect();
    let Some(i) = parts.iter().position(|c| c.as_os_str() == COPY_DIR) else {
        return;
    };
    let project: PathBuf = parts[..i].iter().collect();
    let rel: PathBuf = parts[i + 1..].iter().collect();
    let root = std::fs::read_to_string(project.join(COPY_SOURCE)).unwrap();
    fetch_copy(&root, rel.to_str().unwrap(), dir);
}

/// Runs tests/it/s3_objects.py (boto3, installed by .ci/run with the S3-compatible server).
fn s3_objects(args: &[&str]) -> u64 {
    stdout_of(
        Command::new("python3")
            .arg(Path::new(REPO).join("tests/it/s3_objects.py"))
            .args(args),
        &format!("s3_objects.py {args:?}"),
    )
    .trim()
    .parse()
    .unwrap_or(0)
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

    /// stdout as JSON, parsed strictly: a key twice in one object fails the test (most
    /// parsers would keep one of the two silently).
    pub fn json(&self) -> serde_json::Value {
        strict_json(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not strict JSON ({e}){}", self.context()))
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
        TestProject::in_dir(dir)
    }

    /// A project in `dir` with its own catalog and warehouse on the servers the suite runs
    /// against (none: SQLite and a local folder, from sluice.toml's defaults).
    fn in_dir(dir: tempfile::TempDir) -> TestProject {
        let catalog = remote_catalog().map(|admin| create_database(&admin));
        let warehouse = remote_warehouse().map(|root| {
            format!(
                "{}/it-{}/",
                root.trim_end_matches('/'),
                uuid::Uuid::now_v7().simple()
            )
        });
        TestProject {
            dir,
            catalog,
            warehouse,
        }
    }

    /// Whether the warehouse is on an object store (so the tests read copies of its files).
    pub fn remote(&self) -> bool {
        self.warehouse.is_some()
    }

    /// The settings overrides a process started on this project would get from the
    /// environment: for tests that build sluice's parts in-process.
    pub fn overrides(&self) -> sluice::config::Overrides {
        sluice::config::Overrides {
            project: Some(self.path().to_path_buf()),
            catalog: self.catalog.clone(),
            warehouse: self.warehouse.clone(),
        }
    }

    /// A project made of just `files` (path, content), with `sluice.toml` if given.
    pub fn with_files(files: &[(&str, &str)]) -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("sluice-it-")
            .tempdir()
            .unwrap();
        let p = TestProject::in_dir(dir);
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

    /// Points a command at this project's catalog and warehouse: its own database and
    /// prefix on the remote servers, or (variables removed) sluice.toml's local defaults.
    pub fn set_stores(&self, c: &mut Command) {
        match &self.catalog {
            Some(url) => c.env("SLUICE_CATALOG", url),
            None => c.env_remove("SLUICE_CATALOG"),
        };
        match &self.warehouse {
            Some(url) => c.env("SLUICE_WAREHOUSE", url),
            None => c.env_remove("SLUICE_WAREHOUSE"),
        };
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.path()).args(args);
        self.set_stores(&mut c);
        c.env_remove("SLUICE_LOG")
            .env_remove("RUST_LOG")
            .env_remove("SLUICE_LOG_FORMAT")
            .env_remove("SLUICE_FAILPOINT")
            .env_remove("SLUICE_UI_TOKEN")
            .env_remove("OPENLINEAGE_URL")
            .env_remove("OPENLINEAGE_API_KEY")
            .env_remove("OPENLINEAGE_NAMESPACE")
            .env_remove("OPENLINEAGE_ENDPOINT");
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

    /// Runs sluice to completion, and returns its peak resident memory (KiB) as the OS
    /// counts it: the process is run by a Python parent that reads `getrusage` of its
    /// children once it has exited.
    pub fn run_measuring_peak_rss(&self, args: &[&str]) -> (Output, u64) {
        const MARK: &str = "peak-rss-kib=";
        let c = self.command(args);
        let mut wrapped = Command::new("python3");
        wrapped
            .arg("-c")
            .arg(format!(
                "import resource, subprocess, sys\n\
                 r = subprocess.run(sys.argv[1:])\n\
                 sys.stderr.write('\\n{MARK}%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                 sys.exit(r.returncode)"
            ))
            .arg(c.get_program())
            .args(c.get_args())
            .current_dir(self.path());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        let out = wrapped.output().expect("cannot start python3");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let (stderr, peak) = match stderr.rsplit_once(MARK) {
            Some((before, kib)) => (before.to_string(), kib.trim().parse().unwrap_or(0)),
            None => (stderr, 0),
        };
        assert!(peak > 0, "no peak RSS reported; stderr: {stderr}");
        let out = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
            cmd: format!("sluice {}", args.join(" ")),
            dir: self.path().to_path_buf(),
        };
        (out, peak)
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

    /// A table version's folder. With a remote warehouse, a fresh local copy of its objects
    /// (absent when it has none), so that readers see exactly what sluice wrote.
    pub fn warehouse_table(&self, table: &str, version: u32) -> PathBuf {
        self.warehouse_dir(&format!("{table}/v{version}"))
    }

    /// The warehouse root; with a remote warehouse, a fresh local copy of all of it.
    pub fn warehouse_root(&self) -> PathBuf {
        self.warehouse_dir("")
    }

    /// The folder of a table location sluice printed (`sluice resolve`): the path of a
    /// `file://` URL, or a fresh local copy of an object-store prefix of this project.
    pub fn location_dir(&self, uri: &str) -> PathBuf {
        let u = url::Url::parse(uri).unwrap_or_else(|e| panic!("`{uri}` is not a URL: {e}"));
        if u.scheme() == "file" {
            return u.to_file_path().unwrap();
        }
        let root = self.warehouse.as_deref().unwrap_or_default();
        let rel = uri
            .strip_prefix(root)
            .unwrap_or_else(|| panic!("`{uri}` is outside this project's warehouse {root}"));
        self.warehouse_dir(rel.trim_end_matches('/'))
    }

    fn warehouse_dir(&self, rel: &str) -> PathBuf {
        let Some(root) = &self.warehouse else {
            return self.path().join("warehouse").join(rel);
        };
        std::fs::write(self.path().join(COPY_SOURCE), root).unwrap();
        let copy = self.path().join(COPY_DIR).join(rel);
        fetch_copy(root, rel, &copy);
        copy
    }

    /// Overwrites every data file of one partition of a table version with `content`: for
    /// tests that damage a file on purpose.
    pub fn overwrite_partition_files(
        &self,
        table: &str,
        version: u32,
        partition: &str,
        content: &str,
    ) {
        let rel = format!("{table}/v{version}/{partition}");
        match &self.warehouse {
            None => {
                let dir = self.path().join("warehouse").join(&rel);
                for f in std::fs::read_dir(&dir).unwrap().flatten() {
                    std::fs::write(f.path(), content).unwrap();
                }
            }
            Some(root) => {
                let n = s3_objects(&["overwrite", &format!("{root}{rel}"), content]);
                assert!(n > 0, "no objects under {root}{rel}");
            }
        }
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

/// Whether the tests run as root (CI does): mounting a tmpfs and running PostgreSQL as its
/// own user need it.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// SIGTERM, by process id: the polite stop.
pub fn sigterm(child: &Child) {
    signal(child, "TERM");
}

/// Sends `sig` (TERM, STOP, CONT...) to the child, by process id.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {}", child.id());
}

pub fn wait_exit(child: &mut std::process::Child, within: Duration) -> i32 {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(
            start.elapsed() < within,
            "the daemon did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Parses `text` as JSON, refusing an object that names a key twice.
pub fn strict_json(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct Strict;

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = serde_json::Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<serde_json::Value, D::Error> {
        d.deserialize_any(Strict)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = serde_json::Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<serde_json::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<serde_json::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<serde_json::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<serde_json::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            items.push(v);
        }
        Ok(items.into())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<serde_json::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key `{key}` appears twice in one object"
                )));
            }
            let v = map.next_value_seed(Strict)?;
            object.insert(key, v);
        }
        Ok(object.into())
    }
}

#[test]
fn strict_json_refuses_a_repeated_key() {
    assert!(strict_json(r#"{"a": 1, "b": [{"c": 2}]}"#).is_ok());
    let e = strict_json(r#"{"a": 1, "b": {"c": 2, "c": 3}}"#).unwrap_err();
    assert!(e.to_string().contains("`c` appears twice"), "{e}");
}

/// Each order of the sample export (of one day, or all) `times` times over, under new order
/// ids (a copy's id is the order's plus a multiple of 1,000,000); rows whose id is not a
/// number, once.
pub fn enlarge_orders(p: &TestProject, times: u64, only_day: Option<&str>) {
    let dir = p.file("sample-data/orders");
    for day in std::fs::read_dir(&dir).unwrap() {
        let day = day.unwrap().path();
        if only_day.is_some_and(|d| !day.ends_with(format!("dt={d}"))) {
            continue;
        }
        let file = day.join("orders.csv");
        let text = std::fs::read_to_string(&file).unwrap();
        let mut lines = text.lines();
        let mut out = format!("{}\n", lines.next().unwrap());
        for line in lines {
            let (id, rest) = line.split_once(',').unwrap_or((line, ""));
            match id.parse::<u64>() {
                Ok(id) => {
                    for k in 0..times {
                        out.push_str(&format!("{},{rest}\n", id + k * 1_000_000));
                    }
                }
                Err(_) => out.push_str(&format!("{line}\n")),
            }
        }
        std::fs::write(&file, out).unwrap();
    }
}
