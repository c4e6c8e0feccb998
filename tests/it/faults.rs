//! Faults of a real day in production, with real processes: an S3-compatible server (moto)
//! behind a proxy (`flaky_s3.py`) that cuts answers after the server acted and answers
//! `503 SlowDown`; a dead-letter write that fails; a warehouse on a small tmpfs. Each test
//! ends with what an independent reader (Python's deltalake) sees, compared with what
//! `status` says and with a clean run's rows.
//!
//! These tests start their own S3-compatible server on loopback, whatever store the rest
//! of the suite runs on; the catalog is the suite's (SQLite, or PostgreSQL in CI's second
//! pass).

use crate::util::{REPO, TestProject, assert_same_rows, is_root, python_rows, stdout_of};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TABLES: [&str; 4] = [
    "clean_orders",
    "daily_revenue",
    "monthly_region_revenue",
    "regional_orders",
];

const BUCKET: &str = "sluice-faults";

/// moto's S3 server and the misbehaving proxy in front of it, both ended (by process id)
/// when dropped.
struct FlakyS3 {
    moto: Child,
    proxy: Child,
    dir: tempfile::TempDir,
    moto_url: String,
    proxy_url: String,
}

impl FlakyS3 {
    fn start() -> FlakyS3 {
        let dir = tempfile::Builder::new()
            .prefix("sluice-flaky-s3-")
            .tempdir()
            .unwrap();
        let port = crate::daemon_process::free_port();
        let moto = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("moto.log")).unwrap(),
            ))
            .spawn()
            .expect("python3 -m moto.server (bash .ci/run installs moto[server])");
        let moto_url = format!("http://127.0.0.1:{port}");
        let port_file = dir.path().join("proxy.port");
        let proxy = Command::new("python3")
            .arg(Path::new(REPO).join("tests/it/flaky_s3.py"))
            .arg(&port_file)
            .arg(&moto_url)
            .arg(dir.path().join("rules.json"))
            .arg(dir.path().join("faults.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("proxy.log")).unwrap(),
            ))
            .spawn()
            .expect("python3 tests/it/flaky_s3.py");
        let mut s3 = FlakyS3 {
            moto,
            proxy,
            dir,
            moto_url,
            proxy_url: String::new(),
        };
        let start = Instant::now();
        loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                s3.proxy_url = format!("http://127.0.0.1:{}", p.trim());
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The bucket, straight on the server, once it answers.
        let create = format!("import boto3; boto3.client('s3').create_bucket(Bucket='{BUCKET}')");
        loop {
            let mut c = Command::new("python3");
            c.args(["-c", &create]);
            s3.set_env(&mut c, false);
            if c.output().is_ok_and(|o| o.status.success()) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto's S3 server did not start: {}",
                std::fs::read_to_string(s3.dir.path().join("moto.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s3
    }

    /// Points a process at the server, through the proxy or straight.
    fn set_env(&self, c: &mut Command, through_proxy: bool) {
        let url = if through_proxy {
            &self.proxy_url
        } else {
            &self.moto_url
        };
        c.env("AWS_ENDPOINT_URL", url)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKIAFAULTTESTS0000")
            .env("AWS_SECRET_ACCESS_KEY", "faults-secret")
            .env_remove("AWS_S3_ALLOW_UNSAFE_RENAME")
            .env_remove("AWS_CONDITIONAL_PUT");
    }

    /// The faults the proxy deals from now on (see flaky_s3.py); `{}` for none.
    fn set_rules(&self, rules: serde_json::Value) {
        let tmp = self.dir.path().join("rules.json.tmp");
        std::fs::write(&tmp, rules.to_string()).unwrap();
        std::fs::rename(tmp, self.dir.path().join("rules.json")).unwrap();
    }

    /// The faults dealt so far, one line each: `cut PUT /bucket/key`.
    fn faults(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("faults.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A local copy of the objects under `prefix` of the bucket, read straight from the
    /// server.
    fn download(&self, prefix: &str, to: &Path) -> PathBuf {
        let _ = std::fs::remove_dir_all(to);
        let mut c = Command::new("python3");
        c.arg(Path::new(REPO).join("tests/it/s3_objects.py"))
            .args(["download", &format!("s3://{BUCKET}/{prefix}")])
            .arg(to);
        self.set_env(&mut c, false);
        stdout_of(&mut c, "s3_objects.py download");
        to.to_path_buf()
    }
}

impl Drop for FlakyS3 {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
        let _ = self.moto.kill();
        let _ = self.moto.wait();
    }
}

/// A copy of the sample project whose warehouse is a fresh prefix on `s3`, reached
/// through the proxy; its catalog is the suite's.
struct S3Project {
    p: TestProject,
    prefix: String,
}

impl S3Project {
    fn new() -> S3Project {
        let mut p = TestProject::sample();
        let prefix = format!("it-{}/", uuid::Uuid::now_v7().simple());
        p.warehouse = Some(format!("s3://{BUCKET}/{prefix}"));
        S3Project { p, prefix }
    }

    fn run(&self, s3: &FlakyS3, args: &[&str]) -> crate::util::Output {
        let mut c = self.p.command(args);
        s3.set_env(&mut c, true);
        let out = c.output().expect("cannot start the sluice binary");
        crate::util::Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmd: format!("sluice {}", args.join(" ")),
            dir: self.p.path().to_path_buf(),
        }
    }

    /// A table version as the server holds it now, copied down.
    fn table(&self, s3: &FlakyS3, table: &str) -> PathBuf {
        s3.download(
            &format!("{}{table}/v1", self.prefix),
            &self.p.path().join("copy").join(table),
        )
    }
}

/// Rows per partition of a table as Python's deltalake reads it (rows of `dt`).
fn rows_per_day(rows: &[String]) -> BTreeMap<String, u64> {
    rows_per_partition("clean_orders", rows)
}

/// Rows per partition of a sample table as Python's deltalake reads it, each partition
/// written as sluice writes it (`2024-01-05`, `2024-01-05:emea`, `2024-01`).
fn rows_per_partition(table: &str, rows: &[String]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in rows {
        let v: serde_json::Value = serde_json::from_str(r).unwrap();
        let text = |c: &str| v[c].as_str().unwrap_or("-").to_string();
        let partition = match table {
            "regional_orders" => format!("{}:{}", text("dt"), text("region")),
            "monthly_region_revenue" => text("month").chars().take(7).collect(),
            _ => text("dt"),
        };
        *out.entry(partition).or_insert(0) += 1;
    }
    out
}

/// What `status` says of each complete partition of a job that holds rows: its rows.
fn complete_per_status(out: &crate::util::Output) -> BTreeMap<String, u64> {
    let mut got = BTreeMap::new();
    for row in out.json().as_array().cloned().unwrap_or_default() {
        if row["state"] == "complete" && row["rows"].as_u64() != Some(0) {
            let part = row["partition"].as_str().unwrap_or_default().to_string();
            got.insert(part, row["rows"].as_u64().unwrap_or(u64::MAX));
        }
    }
    got
}

/// No commit in the table's log both removes and adds one file: such a commit empties a
/// partition for every reader.
fn assert_no_commit_removes_what_it_adds(dir: &Path) {
    for e in std::fs::read_dir(dir.join("_delta_log")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.ends_with(".json") || name.starts_with('_') {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        let (mut adds, mut removes) = (Vec::new(), Vec::new());
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(p) = v["add"]["path"].as_str() {
                adds.push(p.to_string());
            }
            if let Some(p) = v["remove"]["path"].as_str() {
                removes.push(p.to_string());
            }
        }
        let both: Vec<&String> = adds.iter().filter(|a| removes.contains(a)).collect();
        assert!(
            both.is_empty(),
            "{name} in {} removes the files it adds: {both:?}",
            dir.display()
        );
    }
}

/// Every complete partition in `status` is in the table with the rows status says, and
/// every partition the table holds is complete in `status`.
fn assert_status_agrees(what: &str, status: &BTreeMap<String, u64>, table: &BTreeMap<String, u64>) {
    assert_eq!(
        status, table,
        "{what}: `status` (complete partitions and rows) differs from what Python's deltalake reads"
    );
}

/// A commit whose answer is lost after S3 wrote it: object_store's retry of the create
/// finds the entry there, and Delta's conflict checker takes it for another writer's.
/// Rebuilding that commit on the refreshed table removed the very files it added, and the
/// partition vanished while `status` said complete. The log must be read for the
/// partition's `txn` first.
#[test]
fn a_commit_whose_answer_is_lost_is_found_in_the_log_not_made_again() {
    let s3 = FlakyS3::start();
    let p = S3Project::new();
    let m = p.run(&s3, &["migrate"]);
    assert_eq!(m.code, 0, "{}", m.context());
    // Every second commit of a table's log (not the dead letters') loses its answer.
    s3.set_rules(serde_json::json!({
        "cut": [{"method": "PUT", "path": "/clean_orders/v1/_delta_log/\\d+\\.json$", "every": 2}]
    }));
    let out = p.run(
        &s3,
        &[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-08",
            "--concurrency",
            "1",
        ],
    );
    let cut = s3
        .faults()
        .iter()
        .filter(|f| f.starts_with("cut PUT") && f.contains("_delta_log"))
        .count();
    assert!(
        cut >= 3,
        "only {cut} commit answers were cut: {:?}",
        s3.faults()
    );
    s3.set_rules(serde_json::json!({}));
    assert_eq!(out.code, 0, "{}", out.context());
    let dir = p.table(&s3, "clean_orders");
    assert_no_commit_removes_what_it_adds(&dir);
    let table = rows_per_day(&python_rows(&dir));
    assert_eq!(table.len(), 8, "days in the table: {table:?}");
    let status = complete_per_status(&p.run(&s3, &["status", "clean_orders", "--output", "json"]));
    assert_status_agrees("clean_orders", &status, &table);
}

/// The sample month on an S3 that cuts commit answers, log reads, listings and the
/// atomic-commit probe, and answers 503 SlowDown now and then: every command ends (a
/// failed partition is run again by the next backfill), `status` agrees with the tables
/// at every step, and the tables end equal to a clean run's.
#[test]
fn the_month_on_a_flaky_s3_ends_as_a_clean_run() {
    let clean = TestProject::migrated();
    clean.backfill("2024-01-01", "2024-01-31");

    let s3 = FlakyS3::start();
    let p = S3Project::new();
    s3.set_rules(serde_json::json!({
        "cut": [
            // The atomic-commit probe's first create: its retry finds the object there.
            {"method": "PUT", "path": "_sluice/commit-probe", "nth": [1]},
            {"method": "PUT", "path": "/_delta_log/\\d+\\.json$", "every": 3},
            {"method": "GET", "path": "_delta_log", "every": 7},
            {"method": "GET", "path": "list-type=2", "every": 5}
        ],
        "slowdown": [{"method": "*", "path": "", "every": 11}]
    }));
    let m = p.run(&s3, &["migrate"]);
    assert_eq!(m.code, 0, "{}", m.context());
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let out = p.run(
            &s3,
            &["backfill", "--from", "2024-01-01", "--to", "2024-01-31"],
        );
        assert!(
            out.code == 0 || out.code == 1,
            "a backfill on a flaky store ends with success or failed partitions{}",
            out.context()
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.context());
        // What status says is what the tables hold, after every round.
        for t in TABLES {
            let dir = p.table(&s3, t);
            if !dir.join("_delta_log").exists() {
                continue;
            }
            assert_no_commit_removes_what_it_adds(&dir);
            let table = rows_per_partition(t, &python_rows(&dir));
            let status = complete_per_status(&p.run(&s3, &["status", t, "--output", "json"]));
            assert_status_agrees(t, &status, &table);
        }
        rounds.push(out.code);
        if out.code == 0 {
            break;
        }
    }
    assert_eq!(
        rounds.last(),
        Some(&0),
        "the month did not complete in 3 backfills: {rounds:?}"
    );
    let faults = s3.faults();
    let count = |kind: &str, what: &str| {
        faults
            .iter()
            .filter(|f| f.starts_with(kind) && f.contains(what))
            .count()
    };
    assert!(count("cut PUT", "_delta_log") >= 10, "{faults:?}");
    assert!(count("cut PUT", "commit-probe") >= 1, "{faults:?}");
    assert!(count("slowdown", "") >= 10, "{faults:?}");
    s3.set_rules(serde_json::json!({}));
    for t in TABLES {
        let want = python_rows(&clean.warehouse_table(t, 1));
        assert!(!want.is_empty(), "{t} is empty in the clean run");
        let got = python_rows(&p.table(&s3, t));
        assert_same_rows(t, &got, &want);
    }
    // Every bad row is a dead letter, as in the clean run.
    let letters = p.run(&s3, &["dlq", "list", "clean_orders", "--output", "json"]);
    let got: std::collections::BTreeSet<String> = letters
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| format!("{}:{}", r["file"], r["line"]))
        .collect();
    let want: std::collections::BTreeSet<String> =
        dead_letters(&clean).into_iter().map(|(_, at)| at).collect();
    assert_eq!(got, want, "dead letters on the flaky S3");
    eprintln!("backfill exit codes, round by round: {rounds:?}");
}

/// Rows set aside are data: when their dead letters cannot be written, the partition is
/// not published (the run fails, transiently, and its retry publishes both), so no
/// complete partition ever lacks its dead letters.
#[test]
fn a_partition_is_not_published_without_its_dead_letters() {
    let clean = TestProject::migrated();
    clean.ok(&JANUARY);
    let want = dead_letters(&clean);
    assert!(!want.is_empty(), "the sample month has bad rows");

    let p = TestProject::migrated();
    let out = p.run_env(&JANUARY, &[("SLUICE_FAILPOINT", "dead_letters_write")]);
    assert_eq!(
        out.code,
        0,
        "the retry publishes the partition{}",
        out.context()
    );
    assert!(
        out.stderr
            .contains("dead letters (rows set aside) could not be written"),
        "the failed attempt says why{}",
        out.context()
    );
    assert_eq!(dead_letters(&p), want, "every bad row is a dead letter");
    // The failed attempt published nothing: each day was committed once.
    let commits = crate::util::commits_per_partition(&p.warehouse_table("clean_orders", 1));
    assert!(commits.values().all(|n| *n == 1), "{commits:?}");
}

/// The sample month of `clean_orders`, the job with bad rows.
const JANUARY: [&str; 6] = [
    "backfill",
    "clean_orders",
    "--from",
    "2024-01-01",
    "--to",
    "2024-01-31",
];

/// A warehouse folder on a tmpfs of `size`, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        stdout_of(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(at),
            "mount a tmpfs (as root)",
        );
        SmallDisk(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        stdout_of(
            Command::new("mount")
                .args(["-o", &format!("remount,size={size}")])
                .arg(&self.0),
            "remount the tmpfs",
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The dead letters `dlq list` shows, as (partition, file:line).
fn dead_letters(p: &TestProject) -> std::collections::BTreeSet<(String, String)> {
    let rows = p
        .ok(&["dlq", "list", "clean_orders", "--output", "json"])
        .json();
    rows.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["partition"].as_str().unwrap_or_default().to_string(),
                format!("{}:{}", r["file"], r["line"]),
            )
        })
        .collect()
}

/// The warehouse on a disk too small for the month: the backfill fails the partitions
/// that do not fit, saying the disk is full (not "failed to parse"); what `status` calls
/// complete is in the table and has all its dead letters; once there is room, a rerun
/// completes the month to a clean run's rows and dead letters.
#[test]
fn a_full_disk_fails_partitions_clearly_and_loses_no_dead_letter() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let clean = TestProject::migrated();
    clean.ok(&JANUARY);
    let want_letters = dead_letters(&clean);

    let mut p = TestProject::sample();
    // A local folder whatever the suite's store: the small disk is the point.
    p.warehouse = None;
    let disk = SmallDisk::mount(&p.path().join("warehouse"), "320k");
    p.ok(&["migrate"]);
    let out = p.run(&JANUARY);
    assert_eq!(out.code, 1, "some partitions do not fit{}", out.context());
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("no space left"), "{}", out.context());
    assert!(
        !said.contains("Failed to parse parquet"),
        "{}",
        out.context()
    );
    assert!(!said.contains("panicked"), "{}", out.context());
    let dir = p.warehouse_table("clean_orders", 1);
    let table = rows_per_day(&python_rows(&dir));
    let status = complete_per_status(&p.ok(&["status", "clean_orders", "--output", "json"]));
    assert!(!status.is_empty() && status.len() < 31, "{status:?}");
    assert_status_agrees("clean_orders on a full disk", &status, &table);
    let letters = dead_letters(&p);
    let of_complete: std::collections::BTreeSet<_> = want_letters
        .iter()
        .filter(|(part, _)| status.contains_key(part))
        .cloned()
        .collect();
    assert!(
        of_complete.is_subset(&letters),
        "complete partitions lack dead letters: {:?}",
        of_complete.difference(&letters).collect::<Vec<_>>()
    );

    disk.resize("64m");
    p.ok(&JANUARY);
    assert_eq!(dead_letters(&p), want_letters);
    assert_same_rows(
        "clean_orders after room was made",
        &python_rows(&p.warehouse_table("clean_orders", 1)),
        &python_rows(&clean.warehouse_table("clean_orders", 1)),
    );
}
