//! Issue: a job runs a partition of sample data into a versioned Delta table, idempotently.

use crate::util::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// The non-cancelled orders of one day, read straight from the CSV (not through sluice):
/// order_id -> amount. Rows that do not parse are left out, as `bad_rows = "skip"` does.
fn expected_clean_orders(p: &TestProject, day: &str) -> BTreeMap<i64, f64> {
    let path = p.file(&format!("sample-data/orders/dt={day}/orders.csv"));
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .unwrap();
    let mut out = BTreeMap::new();
    for rec in rdr.records() {
        let r = rec.unwrap();
        if r.len() != 8 || &r[7] == "cancelled" {
            continue;
        }
        let (Ok(id), Ok(q), Ok(price)) = (
            r[0].parse::<i64>(),
            r[5].parse::<i64>(),
            r[6].parse::<f64>(),
        ) else {
            continue;
        };
        if chrono::NaiveDateTime::parse_from_str(&r[1], "%Y-%m-%d %H:%M:%S%.f").is_err() {
            continue;
        }
        out.insert(id, q as f64 * price);
    }
    out
}

fn shorter_leases(p: &TestProject) {
    let mut cfg = p.read("sluice.toml");
    cfg.push_str("\n[runner]\nlease_ttl_seconds = 2\n");
    p.write("sluice.toml", &cfg);
}

#[tokio::test]
async fn a_partition_run_writes_rows_that_independent_readers_see() {
    let p = TestProject::migrated();
    let report = p
        .ok(&[
            "run",
            "clean_orders",
            "--partition",
            "2024-01-03",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(report["state"], "succeeded", "{report:#}");
    let expected = expected_clean_orders(&p, "2024-01-03");
    assert!(expected.len() > 100, "the sample day has orders");
    assert_eq!(report["rows"].as_u64(), Some(expected.len() as u64));

    // A fresh deltalake handle through DataFusion.
    let dir = p.warehouse_table("clean_orders", 1);
    let rows = read_delta_rows(&dir, Some("dt = DATE '2024-01-03'")).await;
    assert_eq!(rows.len(), expected.len());
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| {
            r.split('|')
                .next()
                .unwrap()
                .trim_start_matches("order_id=")
                .parse()
                .unwrap()
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, expected.keys().copied().collect::<Vec<_>>());

    // The Python deltalake package: its own log replay and Parquet reader.
    let (n, distinct, sum) = python_delta_summary(&dir, "dt", "2024-01-03", "order_id", "amount");
    assert_eq!(
        (n, distinct),
        (expected.len() as u64, expected.len() as u64)
    );
    let want: f64 = expected.values().sum();
    assert!((sum - want).abs() < 1e-6 * want, "sum {sum} vs {want}");

    // Status names the run, its rows, its code fingerprint.
    let status = p.ok(&["status", "clean_orders", "--output", "json"]).json();
    let row = &status[0];
    assert_eq!(row["partition"], "2024-01-03");
    assert_eq!(row["state"], "complete");
    assert_eq!(row["rows"].as_u64(), Some(expected.len() as u64));
    assert_eq!(row["run_id"], report["run_id"]);
    assert_eq!(row["fingerprint"], report["fingerprint"]);
    let run_id = report["run_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(run_id).unwrap().get_version_num(), 7);
}

#[tokio::test]
async fn rerunning_a_partition_gives_the_same_rows_in_one_more_commit_and_leaves_others_alone() {
    let p = TestProject::migrated();
    p.ok(&["run", "clean_orders", "--partition", "2024-01-02"]);
    p.ok(&["run", "clean_orders", "--partition", "2024-01-03"]);
    let dir = p.warehouse_table("clean_orders", 1);
    let day2 = read_delta_rows(&dir, Some("dt = DATE '2024-01-02'")).await;
    let day3 = read_delta_rows(&dir, Some("dt = DATE '2024-01-03'")).await;
    let day3_files = active_files(&dir, "dt=2024-01-03").await;
    let v = delta_log_version(&dir);

    p.ok(&["run", "clean_orders", "--partition", "2024-01-02"]);

    assert_eq!(
        delta_log_version(&dir),
        v + 1,
        "one partition write is one commit"
    );
    assert_eq!(
        read_delta_rows(&dir, Some("dt = DATE '2024-01-02'")).await,
        day2,
        "same rows, no duplicates"
    );
    assert_eq!(
        read_delta_rows(&dir, Some("dt = DATE '2024-01-03'")).await,
        day3
    );
    assert_eq!(
        active_files(&dir, "dt=2024-01-03").await,
        day3_files,
        "other partitions untouched"
    );
    let all = read_delta_rows(&dir, None).await;
    assert_eq!(all.len(), day2.len() + day3.len());
}

async fn active_files(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    refresh(dir);
    let url = url::Url::from_directory_path(dir).unwrap();
    let t = deltalake::open_table(url).await.unwrap();
    let mut files: Vec<String> = t
        .get_file_uris()
        .unwrap()
        .filter(|f| f.contains(prefix))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn sigkill_before_the_commit_leaves_the_previous_content_and_the_next_run_no_duplicates() {
    let p = TestProject::sample();
    shorter_leases(&p);
    p.ok(&["migrate"]);
    p.ok(&["run", "clean_orders", "--partition", "2024-01-04"]);
    let dir = p.warehouse_table("clean_orders", 1);
    let clean = read_delta_rows(&dir, Some("dt = DATE '2024-01-04'")).await;
    let parquet_before = data_files(&dir).len();

    // New code, so that a partial write would show: amounts doubled.
    let sql = p.read("jobs/clean_orders.sql").replace(
        "CAST(quantity * unit_price AS DECIMAL(12, 2)) AS amount",
        "CAST(2 * quantity * unit_price AS DECIMAL(12, 2)) AS amount",
    );
    p.write("jobs/clean_orders.sql", &sql);
    let (mut child, log) = p.spawn(
        &["run", "clean_orders", "--partition", "2024-01-04"],
        &[("SLUICE_FAILPOINT", "before_commit")],
    );
    wait_for_text(&log, "paused at failpoint", Duration::from_secs(120));
    sigkill(&mut child);

    assert!(
        data_files(&dir).len() > parquet_before,
        "the killed run had uploaded its files"
    );
    assert_eq!(
        read_delta_rows(&dir, Some("dt = DATE '2024-01-04'")).await,
        clean,
        "the partition still holds its previous complete content"
    );
    let status = p.ok(&["status", "clean_orders", "--output", "json"]).json();
    assert_eq!(
        status[0]["state"], "running",
        "the catalog saw the run start"
    );

    // Once the dead run's lease expires, the next run takes over and reconciles.
    std::thread::sleep(Duration::from_millis(2200));
    let out = p.ok(&[
        "run",
        "clean_orders",
        "--partition",
        "2024-01-04",
        "--output",
        "json",
    ]);
    out.complains("previous run died before committing");
    let after = read_delta_rows(&dir, Some("dt = DATE '2024-01-04'")).await;
    assert_eq!(after.len(), clean.len(), "no duplicates");
    let doubled: Vec<String> = after
        .iter()
        .filter(|r| r.contains("amount="))
        .cloned()
        .collect();
    assert_eq!(doubled.len(), clean.len());
    assert_ne!(after, clean, "the new code's rows replaced the old ones");
}

/// The names in `dir` of input copies without bad rows (sluice's temporary files).
fn copies_without_bad_rows(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sluice-without-bad-rows-"))
        .collect();
    names.sort();
    names
}

/// A process killed with SIGKILL cannot remove its temporary copy of an input without the
/// input's bad rows; the next run that makes such a copy removes those whose process is
/// gone, and no other.
#[test]
fn copies_without_bad_rows_that_killed_runs_left_are_removed_by_the_next_run() {
    let p = TestProject::migrated();
    let tmp = tempfile::tempdir().unwrap();
    // What a kill during a query leaves: a copy of a process that is gone. Beside it, a
    // copy of a process still running (this test's own), which must stay.
    let gone = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let id = c.id();
        c.wait().unwrap();
        id
    };
    let left = format!("sluice-without-bad-rows-{gone}-left.csv");
    let live = format!("sluice-without-bad-rows-{}-live.csv", std::process::id());
    std::fs::write(tmp.path().join(&left), "order_id\n").unwrap();
    std::fs::write(tmp.path().join(&live), "order_id\n").unwrap();
    // 2024-01-07's export has a row that cannot be read: its run reads a copy without it.
    let o = p.run_env(
        &["run", "clean_orders", "--partition", "2024-01-07"],
        &[("TMPDIR", tmp.path().to_str().unwrap())],
    );
    assert_eq!(o.code, 0, "{}", o.context());
    assert_eq!(copies_without_bad_rows(tmp.path()), [live]);
}

#[tokio::test]
async fn sigkill_after_the_commit_is_reconciled_from_the_delta_log() {
    let p = TestProject::sample();
    shorter_leases(&p);
    p.ok(&["migrate"]);
    let (mut child, log) = p.spawn(
        &["run", "clean_orders", "--partition", "2024-01-05"],
        &[("SLUICE_FAILPOINT", "after_commit")],
    );
    wait_for_text(&log, "paused at failpoint", Duration::from_secs(120));
    sigkill(&mut child);
    let dir = p.warehouse_table("clean_orders", 1);
    let committed = read_delta_rows(&dir, Some("dt = DATE '2024-01-05'")).await;
    assert_eq!(
        committed.len(),
        expected_clean_orders(&p, "2024-01-05").len(),
        "the commit landed"
    );
    let v = delta_log_version(&dir);

    std::thread::sleep(Duration::from_millis(2200));
    let out = p.ok(&["run", "clean_orders", "--partition", "2024-01-05"]);
    out.complains("previous run's commit had landed");
    assert_eq!(delta_log_version(&dir), v + 1);
    assert_eq!(
        read_delta_rows(&dir, Some("dt = DATE '2024-01-05'")).await,
        committed
    );
}

/// One bad spec per project: each gives exactly one error, naming the file, and no panic.
#[test]
fn bad_job_specs_each_give_one_clear_error_naming_the_file() {
    struct Case {
        what: &'static str,
        files: Vec<(&'static str, &'static str)>,
        file: &'static str,
        says: &'static str,
    }
    let base = |extra: &str| {
        format!(
            "version = 1\n{extra}\n[partitioning]\ngranularity = \"daily\"\n[[inputs]]\nname = \"orders\"\npath = \"sample-data/orders/dt={{partition}}/orders.csv\"\n[output]\ntable = \"clean_orders\"\n"
        )
    };
    let unknown_field = base("colour = \"blue\"");
    let bad_cron = base("[schedule]\ncron = \"61 * * * *\"");
    let cases = vec![
        Case {
            what: "unknown field",
            files: vec![(
                "jobs/clean_orders.toml",
                Box::leak(unknown_field.into_boxed_str()),
            )],
            file: "jobs/clean_orders.toml",
            says: "unknown field `colour`",
        },
        Case {
            what: "bad cron",
            files: vec![(
                "jobs/clean_orders.toml",
                Box::leak(bad_cron.into_boxed_str()),
            )],
            file: "jobs/clean_orders.toml",
            says: "schedule.cron",
        },
        Case {
            what: "missing SQL file",
            files: vec![("jobs/clean_orders.sql", "")],
            file: "jobs/clean_orders.toml",
            says: "SQL file jobs/clean_orders.sql",
        },
        Case {
            what: "unknown upstream table",
            files: vec![(
                "jobs/daily_revenue.toml",
                "version = 1\n[partitioning]\ngranularity = \"daily\"\n[[inputs]]\nname = \"clean_orders\"\ntable = \"clean_ordres\"\n[output]\ntable = \"daily_revenue\"\n",
            )],
            file: "jobs/daily_revenue.toml",
            says: "unknown upstream table `clean_ordres`",
        },
        Case {
            what: "dependency cycle",
            files: vec![
                (
                    "migrations/0011_create_a.sql",
                    "CREATE TABLE a_t (x BIGINT, dt DATE) PARTITIONED BY (dt);\nCREATE TABLE b_t (x BIGINT, dt DATE) PARTITIONED BY (dt);",
                ),
                (
                    "jobs/a.toml",
                    "version = 1\n[partitioning]\ngranularity = \"daily\"\n[[inputs]]\nname = \"b_t\"\ntable = \"b_t\"\n[output]\ntable = \"a_t\"\n",
                ),
                ("jobs/a.sql", "SELECT x FROM b_t"),
                (
                    "jobs/b.toml",
                    "version = 1\n[partitioning]\ngranularity = \"daily\"\n[[inputs]]\nname = \"a_t\"\ntable = \"a_t\"\n[output]\ntable = \"b_t\"\n",
                ),
                ("jobs/b.sql", "SELECT x FROM a_t"),
            ],
            file: "jobs/a.toml",
            says: "dependency cycle: a -> b -> a",
        },
    ];
    for case in cases {
        let p = TestProject::sample();
        for (rel, text) in &case.files {
            if text.is_empty() {
                std::fs::remove_file(p.file(rel)).unwrap();
            } else {
                p.write(rel, text);
            }
        }
        let out = p.run(&["validate"]);
        assert_eq!(
            out.code,
            1,
            "{}: validate must fail{}",
            case.what,
            out.context()
        );
        assert!(
            !out.stderr.contains("panicked"),
            "{}: no panic{}",
            case.what,
            out.context()
        );
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with(case.file))
            .collect();
        assert!(
            lines.iter().any(|l| l.contains(case.says)),
            "{}: expected `{}: ...{}...`{}",
            case.what,
            case.file,
            case.says,
            out.context()
        );
        if case.what != "dependency cycle" {
            assert_eq!(
                lines.len(),
                1,
                "{}: exactly one error{}",
                case.what,
                out.context()
            );
        }
        let json = p.run(&["validate", "--output", "json"]).json();
        assert_eq!(json["ok"], false);
    }
}

#[test]
fn the_sample_project_validates_and_plans_its_sql() {
    let p = TestProject::sample();
    let out = p.ok(&["validate"]);
    assert!(
        out.stdout.contains("ok: 8 job(s), 7 migration(s)"),
        "{}",
        out.context()
    );
}

#[test]
fn sql_that_does_not_fit_the_table_is_refused_naming_the_column_and_both_types() {
    let p = TestProject::migrated();
    let sql = p.read("jobs/clean_orders.sql");
    p.write(
        "jobs/clean_orders.sql",
        &sql.replace("status\nFROM", "status,\n    1 AS extra\nFROM"),
    );
    let out = p.run(&["run", "clean_orders", "--partition", "2024-01-02"]);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(
        out.stderr
            .contains("the SQL produces column `extra`, which table `clean_orders` does not have"),
        "{}",
        out.context()
    );

    p.write(
        "jobs/clean_orders.sql",
        &sql.replace(
            "    quantity,\n",
            "    CAST(quantity AS VARCHAR) AS quantity,\n",
        ),
    );
    let out = p.run(&["run", "clean_orders", "--partition", "2024-01-02"]);
    assert_eq!(out.code, 1, "{}", out.context());
    out.complains(
        "column `quantity`: the SQL produces STRING but table `clean_orders` declares INT",
    );

    p.write(
        "jobs/clean_orders.sql",
        &sql.replace("    customer_id,\n", ""),
    );
    let out = p.run(&["run", "clean_orders", "--partition", "2024-01-02"]);
    assert_eq!(out.code, 1, "{}", out.context());
    out.complains("does not produce column `customer_id`");
    // validate finds the same without reading data
    let v = p.run(&["validate"]);
    v.says("customer_id");
}

#[test]
fn corrupt_rows_fail_naming_file_and_line_or_are_skipped_with_a_log_line() {
    let p = TestProject::migrated();
    // skip (the sample job's setting): the run succeeds and names the row it left out.
    let out = p.ok(&["run", "clean_orders", "--partition", "2024-01-07"]);
    out.says("skipped 1 bad input row");
    out.says("sample-data/orders/dt=2024-01-07/orders.csv:43: column `quantity`: `two` is not a valid INT");
    out.complains("skipping bad input row");

    // fail (the default): the run fails and says where.
    let spec = p
        .read("jobs/clean_orders.toml")
        .replace("bad_rows = \"skip\"", "");
    p.write("jobs/clean_orders.toml", &spec);
    for (day, says) in [
        ("2024-01-12", "orders.csv:19: expected 8 fields, found 7"),
        (
            "2024-01-19",
            "orders.csv:90: column `order_ts`: `2024-01-19 25:61:00` is not a valid TIMESTAMP",
        ),
        ("2024-01-23", "orders.csv:7: column `unit_price`"),
        ("2024-01-28", "`yesterday` is not a valid TIMESTAMP"),
    ] {
        let out = p.run(&["run", "clean_orders", "--partition", day]);
        assert_eq!(out.code, 1, "{}", out.context());
        assert!(
            out.stderr.contains(says),
            "{day}: expected `{says}`{}",
            out.context()
        );
        assert!(
            out.stderr
                .contains(&format!("sample-data/orders/dt={day}/orders.csv")),
            "{}",
            out.context()
        );
    }
}

#[test]
fn every_log_line_of_a_run_carries_its_run_id() {
    let p = TestProject::migrated();
    let out = p.ok(&[
        "run",
        "clean_orders",
        "--partition",
        "2024-01-07",
        "--output",
        "json",
        "--log-format",
        "json",
    ]);
    let run_id = out.json()["run_id"].as_str().unwrap().to_string();
    let mut in_run = 0;
    for line in out.stderr.lines() {
        let v: serde_json::Value = crate::util::strict_json(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        let msg = v["message"].as_str().unwrap_or_default();
        if ["run started", "skipping bad input row", "run succeeded"]
            .iter()
            .any(|m| msg.starts_with(m))
        {
            in_run += 1;
            assert_eq!(v["span"]["run_id"], run_id.as_str(), "{line}");
            assert_eq!(v["span"]["job"], "clean_orders", "{line}");
            assert_eq!(v["span"]["partition"], "2024-01-07", "{line}");
        }
    }
    assert!(in_run >= 3, "{}", out.context());
}

#[test]
fn partition_values_are_parsed_never_spliced() {
    let p = TestProject::migrated();
    for bad in [
        "2024-01-01' OR '1'='1",
        "../2024-01-01",
        "2024-1-1",
        "2024-01",
    ] {
        let out = p.run(&["run", "clean_orders", "--partition", bad]);
        assert_eq!(out.code, 2, "{}", out.context());
        assert!(
            out.stderr
                .contains("is not a daily partition: expected YYYY-MM-DD"),
            "{}",
            out.context()
        );
    }
}

#[tokio::test]
async fn the_chain_of_sample_jobs_agrees_with_itself() {
    let p = TestProject::migrated();
    for d in 1..=31 {
        p.ok(&[
            "run",
            "clean_orders",
            "--partition",
            &format!("2024-01-{d:02}"),
        ]);
        p.ok(&[
            "run",
            "daily_revenue",
            "--partition",
            &format!("2024-01-{d:02}"),
        ]);
    }
    p.ok(&["run", "monthly_region_revenue", "--partition", "2024-01"]);
    let sum = |rows: &[String], col: &str| -> f64 {
        rows.iter()
            .map(|r| {
                r.split('|')
                    .find_map(|c| c.strip_prefix(&format!("{col}=")))
                    .unwrap()
                    .parse::<f64>()
                    .unwrap()
            })
            .sum()
    };
    let orders = read_delta_rows(&p.warehouse_table("clean_orders", 1), None).await;
    let daily = read_delta_rows(&p.warehouse_table("daily_revenue", 1), None).await;
    let monthly = read_delta_rows(&p.warehouse_table("monthly_region_revenue", 1), None).await;
    let total = sum(&orders, "amount");
    assert!((sum(&daily, "revenue") - total).abs() < 1e-6 * total);
    assert!((sum(&monthly, "revenue") - total).abs() < 1e-6 * total);
    assert_eq!(sum(&daily, "orders") as usize, orders.len());
    assert_eq!(monthly.len(), 8, "one row per region");
    assert!(
        monthly
            .iter()
            .all(|r| r.contains("month=2024-01-01") && r.contains("active_days=31"))
    );
}

#[test]
fn the_readme_main_command_works_as_written() {
    let p = TestProject::sample();
    let readme = std::fs::read_to_string(std::path::Path::new(REPO).join("README.md")).unwrap();
    let cmd = readme
        .split("<!-- main-command -->")
        .nth(1)
        .and_then(|s| s.split("```sh").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README has a main command block")
        .trim()
        .to_string();
    // The README runs sluice through cargo; here the test's binary stands in for it.
    let mut bash = std::process::Command::new("bash");
    bash.args(["-c", &cmd.replace("cargo run --release --", BIN)])
        .current_dir(p.path());
    p.set_stores(&mut bash);
    let out = bash.output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = p.ok(&["status", "--output", "json"]).json();
    let rows = status.as_array().unwrap();
    assert_eq!(
        rows.len(),
        31 + 31 + 1 + 31 + 31 * 8 + 31 * 2 + 31,
        "every partition of the sample month (regional_orders: each day of each region; customers and its history: each day's changes; the exchange rates)"
    );
    assert!(rows.iter().all(|r| r["state"] == "complete"), "{status:#}");
}

#[tokio::test]
async fn a_downstream_partition_reads_only_its_upstream_partition() {
    let p = TestProject::migrated();
    for d in ["2024-01-06", "2024-01-07"] {
        p.ok(&["run", "clean_orders", "--partition", d]);
    }
    // Break the other day's data file: a run that scanned it would fail.
    p.overwrite_partition_files("clean_orders", 1, "dt=2024-01-06", "not parquet");
    let report = p
        .ok(&[
            "run",
            "daily_revenue",
            "--partition",
            "2024-01-07",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(report["state"], "succeeded");
    let rows = read_delta_rows(&p.warehouse_table("daily_revenue", 1), None).await;
    assert!(!rows.is_empty() && rows.iter().all(|r| r.contains("dt=2024-01-07")));
    let broken = p.run(&["run", "daily_revenue", "--partition", "2024-01-06"]);
    assert_eq!(
        broken.code,
        1,
        "the broken day is read only by its own partition{}",
        broken.context()
    );
}

#[test]
fn the_generator_writes_the_sample_data_byte_for_byte() {
    // Examples are built beside the binary by `cargo test`.
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let generator = bin_dir.join("examples").join("gen_orders");
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(&generator)
        .args([
            "--days",
            "31",
            "--rows-per-day",
            "200",
            "--customers",
            "500",
            "--corrupt",
            "--out",
        ])
        .arg(out.path())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", generator.display()));
    assert!(status.success());
    let repo = std::path::Path::new(REPO).join("sample-data");
    let mut compared = 0;
    for day in 1..=31 {
        let rel = format!("orders/dt=2024-01-{day:02}/orders.csv");
        assert_eq!(
            std::fs::read(out.path().join(&rel)).unwrap(),
            std::fs::read(repo.join(&rel)).unwrap(),
            "{rel} differs from a fresh generation"
        );
        compared += 1;
        let rel = format!("customer_changes/dt=2024-01-{day:02}/changes.csv");
        assert_eq!(
            std::fs::read(out.path().join(&rel)).unwrap(),
            std::fs::read(repo.join(&rel)).unwrap(),
            "{rel} differs from a fresh generation"
        );
    }
    assert_eq!(
        std::fs::read(out.path().join("customers.csv")).unwrap(),
        std::fs::read(repo.join("customers.csv")).unwrap()
    );
    assert_eq!(compared, 31);
}
