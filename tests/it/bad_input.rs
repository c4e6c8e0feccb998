//! What a new user's own project ran into (issue 16): each case as it was met, with the
//! answer sluice gives now. (Repeated JSON keys are caught suite-wide: `Output::json`
//! parses strictly.)

use crate::util::{TestProject, python_delta_summary};

#[test]
fn an_input_path_that_could_leave_the_project_fails_validation() {
    let p = TestProject::sample();
    let spec = p.read("jobs/clean_orders.toml").replace(
        "path = \"sample-data/orders/dt={partition}/orders.csv\"",
        "path = \"sample-data/orders/dt={partition}/../../../../../../etc/passwd\"",
    );
    p.write("jobs/clean_orders.toml", &spec);
    let out = p.run(&["validate"]);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(
        out.stdout.contains("jobs/clean_orders.toml") && out.stdout.contains("inputs[0].path"),
        "{}",
        out.context()
    );
    out.says("`..` segment");
    // Nothing runs from it either.
    p.ok(&["migrate"]);
    let run = p.run(&["run", "clean_orders", "--partition", "2024-01-02"]);
    assert_eq!(run.code, 2, "{}", run.context());
    run.complains("`..` segment");
}

#[test]
fn a_monthly_backfill_over_an_upstream_that_starts_mid_month_runs() {
    let p = TestProject::sample();
    let spec = p
        .read("jobs/daily_revenue.toml")
        .replace("start = \"2024-01-01\"", "start = \"2024-01-20\"");
    p.write("jobs/daily_revenue.toml", &spec);
    p.ok(&["migrate"]);
    p.ok(&[
        "backfill",
        "clean_orders",
        "daily_revenue",
        "--from",
        "2024-01-20",
        "--to",
        "2024-01-31",
    ]);
    // The days before daily_revenue's start are not missing: the month runs.
    for extra in [&[][..], &["--force"][..]] {
        let mut args = vec![
            "backfill",
            "monthly_region_revenue",
            "--from",
            "2024-01",
            "--to",
            "2024-01",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = p.ok(&args);
        let summary = out.json();
        assert_eq!(summary["succeeded"], 1, "{extra:?}{}", out.context());
        assert_eq!(summary["skipped"], 0, "{extra:?}{}", out.context());
    }
    // An independent reader: every region of January was active on the 12 days from the 20th.
    let table = p.warehouse_table("monthly_region_revenue", 1);
    let (regions, distinct, active_days) =
        python_delta_summary(&table, "month", "2024-01-01", "region", "active_days");
    assert!(regions > 0);
    assert_eq!(regions, distinct);
    assert_eq!(active_days, 12.0 * regions as f64);
}

#[test]
fn tables_lists_migrated_tables_before_anything_is_written() {
    let p = TestProject::sample();
    let empty = p.ok(&["tables"]);
    assert!(
        empty.stdout.contains("no tables yet") && empty.stdout.contains("sluice migrate"),
        "{}",
        empty.context()
    );
    p.ok(&["migrate"]);
    let text = p.ok(&["tables"]);
    for t in [
        "clean_orders",
        "daily_revenue",
        "monthly_region_revenue",
        "regional_orders",
    ] {
        assert!(text.stdout.contains(t), "{t}{}", text.context());
    }
    text.says("nothing written yet");
    let json = p.ok(&["tables", "--output", "json"]).json();
    let tables: Vec<(&str, &serde_json::Value)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap(), &t["version"]))
        .collect();
    assert_eq!(tables.len(), 8, "{json:#}");
    assert!(tables.iter().all(|(_, v)| v.is_null()), "{json:#}");
}

#[test]
fn a_catalog_that_cannot_be_written_is_named_at_once_not_after_a_pool_timeout() {
    let p = TestProject::sample();
    if p.catalog.is_some() {
        // On PostgreSQL: an unreachable server is named at once.
        let out = p.run(&["--catalog", "postgres://sluice@127.0.0.1:1/none", "status"]);
        assert_eq!(out.code, 2, "{}", out.context());
        out.complains("Connection refused");
        out.complains("check that the server is up");
        return;
    }
    // A folder made immutable (root included): no file can be created in it, as in a
    // read-only folder, whoever runs the suite.
    let dir = p.file("read-only");
    std::fs::create_dir_all(&dir).unwrap();
    let catalog = format!("sqlite://{}/catalog.db", dir.display());

    let frozen = Immutable::set(&dir);
    let started = std::time::Instant::now();
    let out = p.run(&["--catalog", &catalog, "status"]);
    let took = started.elapsed();
    drop(frozen);
    assert_eq!(out.code, 2, "{}", out.context());
    out.complains("not writable");
    assert!(!out.stderr.contains("pool timed out"), "{}", out.context());
    // Generous: the point is "not the 30 s pool timeout".
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    let once = out.stderr.matches("unable to open database file").count();
    assert_eq!(once, 1, "the cause is said once{}", out.context());
}

#[test]
fn bytes_that_are_not_utf8_make_a_dead_letter_not_a_failed_partition() {
    let p = TestProject::migrated();
    let day = "2024-01-05";
    let rows_of = |out: &crate::util::Output| out.json()["rows"].as_u64().unwrap();
    let before = rows_of(&p.ok(&[
        "run",
        "clean_orders",
        "--partition",
        day,
        "--output",
        "json",
    ]));
    // One more order, its region in Latin-1 (0xE9 is `é` there, and no UTF-8 at all).
    let file = p.file(&format!("sample-data/orders/dt={day}/orders.csv"));
    let mut bytes = std::fs::read(&file).unwrap();
    let line = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    bytes.extend_from_slice(b"999001,2024-01-05 10:00:00,1,r\xE9gion,garden,1,9.99,paid\n");
    std::fs::write(&file, bytes).unwrap();

    // bad_rows = "skip" (the sample's): the partition is written without it.
    let out = p.ok(&[
        "run",
        "clean_orders",
        "--partition",
        day,
        "--output",
        "json",
    ]);
    assert_eq!(rows_of(&out), before, "{}", out.context());
    let letters = p
        .ok(&[
            "dlq",
            "list",
            "clean_orders",
            "--partition",
            day,
            "--output",
            "json",
        ])
        .json();
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["line"], line as u64);
    assert!(
        letters[0]["error"]
            .as_str()
            .unwrap()
            .contains("`region`: the bytes are not UTF-8"),
        "{letters:?}"
    );
    assert_eq!(
        letters[0]["raw"],
        "999001,2024-01-05 10:00:00,1,r\\xE9gion,garden,1,9.99,paid"
    );
    let (rows, _, _) = python_delta_summary(
        &p.warehouse_table("clean_orders", 1),
        "dt",
        day,
        "order_id",
        "quantity",
    );
    assert_eq!(rows, before);

    // bad_rows = "fail": the partition fails naming the file and line.
    let spec = p
        .read("jobs/clean_orders.toml")
        .replace("bad_rows = \"skip\"", "bad_rows = \"fail\"");
    p.write("jobs/clean_orders.toml", &spec);
    let out = p.run(&["run", "clean_orders", "--partition", day]);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(
        out.stderr.contains(&format!(
            "sample-data/orders/dt={day}/orders.csv:{line}: column `region`"
        )),
        "{}",
        out.context()
    );
}

const EVENTS_JOB: &str = r#"
version = 1
bad_rows = "skip"
[partitioning]
granularity = "daily"
[[inputs]]
name = "events"
path = "data/dt={partition}/events.ndjson"
format = "json"
schema = ["id BIGINT NOT NULL", "at TIMESTAMP NOT NULL", "kind STRING NOT NULL", "ms BIGINT"]
[output]
table = "events"
"#;

#[test]
fn every_unusable_json_line_is_a_dead_letter_with_file_and_line() {
    let p = TestProject::with_files(&[
        ("jobs/events.toml", EVENTS_JOB),
        ("jobs/events.sql", "SELECT id, at, kind, ms FROM events"),
        (
            "migrations/0001_events.sql",
            "CREATE TABLE events (id BIGINT NOT NULL, at TIMESTAMP NOT NULL, kind STRING NOT NULL, ms BIGINT, dt DATE NOT NULL) PARTITIONED BY (dt);",
        ),
    ]);
    let mut data: Vec<u8> = Vec::new();
    for line in [
        &br#"{"id": 1, "at": "2024-03-01 10:00:00", "kind": "view", "ms": 12}"#[..],
        br#"{"id": 2, "at": "2024-03-01 10:00:01", "kind": "view", "ms": "fast"}"#,
        br#"{"id": 3, "at": "2024-03-01 10:00:02", "kind": "click", "ms": null}"#,
        br#"{"id": 4, "at": "#,
        br#"{"id": 5, "at": "2024-02-31 25:61:00", "kind": "view", "ms": 1}"#,
        br#"{"id": 6, "at": "2024-03-01 10:00:03", "kind": null, "ms": 1}"#,
        b"",
        br#"{"id": 8, "at": "2024-03-01 10:00:04", "kind": "view", "ms": 30}"#,
        b"{\"id\": 9, \"at\": \"2024-03-01 10:00:05\", \"kind\": \"vi\xFFew\", \"ms\": 1}",
    ] {
        data.extend_from_slice(line);
        data.push(b'\n');
    }
    let file = p.file("data/dt=2024-03-01/events.ndjson");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &data).unwrap();
    p.ok(&["migrate"]);
    let out = p.ok(&[
        "run",
        "events",
        "--partition",
        "2024-03-01",
        "--output",
        "json",
    ]);
    assert_eq!(out.json()["rows"], 3, "{}", out.context());
    let letters = p.ok(&["dlq", "list", "events", "--output", "json"]).json();
    let got: Vec<(u64, String)> = letters
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["file"], "data/dt=2024-03-01/events.ndjson");
            (
                l["line"].as_u64().unwrap(),
                l["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let lines: Vec<u64> = got.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [2, 4, 5, 6, 9], "{got:?}");
    assert!(got[0].1.contains("fast"), "{got:?}");
    assert!(got[1].1.contains("not valid JSON"), "{got:?}");
    assert!(got[2].1.contains("2024-02-31 25:61:00"), "{got:?}");
    assert!(got[3].1.contains("`kind` is missing or null"), "{got:?}");
    assert!(got[4].1.contains("not UTF-8"), "{got:?}");
    assert!(
        letters[4]["raw"]
            .as_str()
            .unwrap()
            .contains(r#""vi\xFFew""#),
        "{letters:#}"
    );
    // An independent reader: ids 1, 3 and 8, 42 ms in all.
    let (rows, ids, ms) = python_delta_summary(
        &p.warehouse_table("events", 1),
        "dt",
        "2024-03-01",
        "id",
        "ms",
    );
    assert_eq!((rows, ids, ms), (3, 3, 42.0));

    // bad_rows = "fail": the partition fails naming the first, by file and line.
    p.write(
        "jobs/events.toml",
        &EVENTS_JOB.replace("\"skip\"", "\"fail\""),
    );
    let out = p.run(&["run", "events", "--partition", "2024-03-01"]);
    assert_eq!(out.code, 1, "{}", out.context());
    out.complains("data/dt=2024-03-01/events.ndjson:2:");
}

#[test]
fn a_warehouse_that_cannot_be_written_fails_each_partition_once_with_the_cause_and_no_panic() {
    let p = TestProject::sample();
    if p.remote() {
        // The immutable flag below needs a local folder.
        return;
    }
    p.ok(&["migrate"]);
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
    ]);
    let table = p.warehouse_table("clean_orders", 1);

    // No new partition folder can be made in it, root included.
    let frozen = Immutable::set(&table);
    let out = p.run(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-03",
        "--to",
        "2024-01-05",
    ]);
    drop(frozen);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(!out.stderr.contains("panicked"), "{}", out.context());
    // Not a storage hiccup: no retry, one failure per partition, saying why.
    assert!(!out.stderr.contains("retrying"), "{}", out.context());
    assert_eq!(
        out.stderr.matches("run failed").count(),
        3,
        "{}",
        out.context()
    );
    // One line per failure on stderr; the summary says each whole, with what to do.
    assert!(
        out.stderr
            .contains("permission denied: Unable to create dir")
            && out.stdout.contains("the warehouse is not writable here"),
        "{}",
        out.context()
    );
    // Writable again: the same backfill finishes what it could not do.
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-03",
        "--to",
        "2024-01-05",
    ]);
    let (rows, orders, _) =
        python_delta_summary(&table, "dt", "2024-01-04", "order_id", "quantity");
    assert!(rows > 0 && rows == orders, "{rows} rows, {orders} orders");
}

#[test]
fn a_run_that_straddles_a_migration_writes_under_the_new_schema() {
    let p = TestProject::migrated();
    let day = "2024-01-09";
    // The run waits 3 s before its commit; the migration lands meanwhile.
    let (mut run, log) = p.spawn(
        &["run", "clean_orders", "--partition", day],
        &[
            ("SLUICE_FAILPOINT", "slow_commit"),
            ("SLUICE_FAILPOINT_DELAY_MS", "3000"),
        ],
    );
    crate::util::wait_for_text(
        &log,
        "delaying at failpoint",
        std::time::Duration::from_secs(60),
    );
    p.write(
        "migrations/0008_add_score.sql",
        "ALTER TABLE clean_orders ADD COLUMN score BIGINT NOT NULL DEFAULT 7;\n",
    );
    p.ok(&["migrate"]);
    let code = crate::util::wait_exit(&mut run, std::time::Duration::from_secs(120));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("schema of"),
        "the first attempt was refused:\n{text}"
    );
    // An independent reader: every row of the day carries the new column's default.
    let (rows, orders, score) = python_delta_summary(
        &p.warehouse_table("clean_orders", 1),
        "dt",
        day,
        "order_id",
        "score",
    );
    assert!(rows > 0 && rows == orders, "{rows} rows, {orders} orders");
    assert_eq!(score, 7.0 * rows as f64, "a row without the default");
}

/// A folder made immutable (`chattr +i`: no file can be created in it, root included)
/// until dropped, so that a failing test still leaves a folder its cleanup can remove.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(dir: &std::path::Path) -> Immutable {
        assert!(
            chattr("+i", dir),
            "chattr +i (e2fsprogs) on {} failed",
            dir.display()
        );
        Immutable(dir.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
    }
}

fn chattr(flag: &str, dir: &std::path::Path) -> bool {
    std::process::Command::new("chattr")
        .arg(flag)
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}
