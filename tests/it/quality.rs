//! Issue 7: data quality. Checks run on a partition's new rows before they are published;
//! profiles build a baseline; unusable input rows go to dead letters that a replay clears;
//! record ids depend on the key only.

use crate::util::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn orders_csv(day: &str) -> String {
    format!("sample-data/orders/dt={day}/orders.csv")
}

fn partition_error(p: &TestProject, job: &str, partition: &str) -> (String, String) {
    let status = p.ok(&["status", job, "--output", "json"]).json();
    let row = status
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["partition"] == partition))
        .cloned()
        .unwrap_or_else(|| panic!("no status for {job} {partition}: {status}"));
    (
        row["state"].as_str().unwrap_or_default().to_string(),
        row["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_failing_error_check_publishes_nothing_and_status_names_it() {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
    ]);
    let dir = p.warehouse_table("clean_orders", 1);
    let before = read_delta_rows(&dir, Some("dt = DATE '2024-01-02'")).await;
    let log = delta_log_version(&dir);
    let files = data_files(&dir).len();

    // The export repeats an order: the day's new content has a duplicate key.
    let csv = p.read(&orders_csv("2024-01-02"));
    let first_paid = csv
        .lines()
        .find(|l| l.ends_with(",paid"))
        .unwrap()
        .to_string();
    p.write(&orders_csv("2024-01-02"), &format!("{csv}{first_paid}\n"));
    let o = p.run(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-02",
        "--force",
    ]);
    assert_eq!(o.code, 1, "{}", o.context());
    assert!(
        o.stdout.contains(
            "check `unique_order_id` (error) failed: 1 value(s) of (order_id) appear more than once"
        ) && o
            .stdout
            .contains("nothing was published, the previous content stays"),
        "{}",
        o.context()
    );

    // The previous content is still what readers see, and nothing was left behind.
    assert_eq!(delta_log_version(&dir), log, "no commit");
    assert_eq!(
        read_delta_rows(&dir, Some("dt = DATE '2024-01-02'")).await,
        before
    );
    assert_eq!(
        data_files(&dir).len(),
        files,
        "the audited files were deleted"
    );
    let n = p.query("SELECT COUNT(*) AS n FROM clean_orders WHERE dt = DATE '2024-01-02'");
    assert_eq!(n[0]["n"].as_u64().unwrap() as usize, before.len());

    // `sluice status` names the check and the count.
    let (state, error) = partition_error(&p, "clean_orders", "2024-01-02");
    assert_eq!(state, "failed");
    assert!(
        error.contains("check `unique_order_id` (error) failed: 1 value(s)")
            && error.contains("\"copies\":2"),
        "{error}"
    );
    let text = p.ok(&["status", "clean_orders"]);
    text.says("check `unique_order_id`");

    // Fixed at the source, the day publishes again.
    p.write(&orders_csv("2024-01-02"), &csv);
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-02",
    ]);
    assert_eq!(
        partition_error(&p, "clean_orders", "2024-01-02").0,
        "complete"
    );
}

#[test]
fn a_volume_drop_against_the_baseline_fails_or_warns_per_severity() {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-08",
    ]);

    // Day 9's export arrives with a fifth of its rows.
    let csv = p.read(&orders_csv("2024-01-09"));
    let lines: Vec<&str> = csv.lines().collect();
    let keep = 1 + (lines.len() - 1) / 5;
    p.write(
        &orders_csv("2024-01-09"),
        &(lines[..keep].join("\n") + "\n"),
    );
    let o = p.run(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-09",
        "--to",
        "2024-01-09",
    ]);
    assert_eq!(o.code, 1, "{}", o.context());
    let (state, error) = partition_error(&p, "clean_orders", "2024-01-09");
    assert_eq!(state, "failed");
    assert!(error.contains("check `volume` (error) failed"), "{error}");
    assert!(
        error.contains("below the median") && error.contains("of the last 7 partition(s)"),
        "{error}"
    );
    let pct: f64 = error
        .split("row(s), ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a percentage in {error}"));
    assert!((75.0..=85.0).contains(&pct), "an 80% drop: {error}");
    let n = p.query("SELECT COUNT(*) AS n FROM clean_orders WHERE dt = DATE '2024-01-09'");
    assert_eq!(n[0]["n"], 0, "day 9 not published");

    // As a warning it publishes, and the profile history keeps the warning.
    p.write(
        "jobs/clean_orders.toml",
        &p.read("jobs/clean_orders.toml").replace(
            "tolerance = 0.5\n",
            "tolerance = 0.5\nseverity = \"warn\"\n",
        ),
    );
    let o = p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-09",
        "--to",
        "2024-01-09",
    ]);
    assert!(
        o.stderr.contains("check `volume` (warn) failed"),
        "{}",
        o.context()
    );
    let profile = p
        .ok(&["profile", "clean_orders", "--output", "json"])
        .json();
    let parts = profile["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 9);
    let day9 = &parts[8];
    assert_eq!(day9["partition"], "2024-01-09");
    assert_eq!(day9["profile"]["rows"].as_u64().unwrap() as usize, {
        // cancelled orders are dropped
        lines[1..keep]
            .iter()
            .filter(|l| !l.ends_with(",cancelled"))
            .count()
    });
    let volume = day9["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "volume")
        .unwrap();
    assert_eq!(volume["passed"], false);
    assert_eq!(volume["severity"], "warn");
    let text = p.ok(&["profile", "clean_orders"]);
    assert!(
        text.stdout
            .contains("2024-01-09: check `volume` (warn) failed"),
        "{}",
        text.context()
    );
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("rows ") && l.contains('▁')),
        "a sparkline with the drop{}",
        text.context()
    );
}

/// A valid record for a corrupt sample line: the same order with the bad values mended.
fn mend(raw: &str, day: &str) -> String {
    let mut f: Vec<String> = raw.trim_end().split(',').map(str::to_string).collect();
    if f.len() == 7 {
        f.push("paid".into());
    }
    if chrono::NaiveDateTime::parse_from_str(&f[1], "%Y-%m-%d %H:%M:%S%.f").is_err() {
        f[1] = format!("{day} 12:00:00");
    }
    if f[5].parse::<i32>().is_err() {
        f[5] = "2".into();
    }
    f[6] = f[6].trim_start_matches('$').to_string();
    f.join(",")
}

#[test]
fn corrupt_sample_rows_are_dead_letters_and_a_replay_brings_them_in() {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-31",
    ]);
    let letters = p
        .ok(&["dlq", "list", "clean_orders", "--output", "json"])
        .json();
    let letters = letters.as_array().unwrap().clone();
    assert_eq!(
        letters.len(),
        5,
        "the sample month's corrupt rows: {letters:?}"
    );
    for l in &letters {
        let file = l["file"].as_str().unwrap();
        let line = l["line"].as_u64().unwrap() as usize;
        let text = p.read(file);
        assert_eq!(
            text.lines().nth(line - 1).unwrap().trim_end(),
            l["raw"].as_str().unwrap().trim_end(),
            "{file}:{line} is the record"
        );
        assert!(!l["error"].as_str().unwrap().is_empty());
    }
    let shown = p.ok(&["dlq", "list", "clean_orders", "--partition", "2024-01-07"]);
    assert!(
        shown
            .stdout
            .contains("sample-data/orders/dt=2024-01-07/orders.csv:43")
            && shown.stdout.contains("`two` is not a valid INT"),
        "{}",
        shown.context()
    );
    // The partition is a bound value: text that would widen a spliced filter selects
    // nothing.
    for hostile in [
        "2024-01-07' OR '1'='1",
        "2024-01-07\" OR \"partition\" <> \"",
    ] {
        let none = p
            .ok(&[
                "dlq",
                "list",
                "clean_orders",
                "--partition",
                hostile,
                "--output",
                "json",
            ])
            .json();
        assert_eq!(none.as_array().map(Vec::len), Some(0), "{hostile}: {none}");
    }

    // max_bad_rows: a count of 0 fails the day naming the row; 1% lets it through.
    let spec = p.read("jobs/clean_orders.toml");
    p.write(
        "jobs/clean_orders.toml",
        &format!("max_bad_rows = 0\n{spec}"),
    );
    let o = p.run(&["run", "clean_orders", "--partition", "2024-01-07"]);
    assert_ne!(o.code, 0, "{}", o.context());
    let text = format!("{}{}", o.stdout, o.stderr);
    let read = p.read(&orders_csv("2024-01-07")).lines().count() - 1;
    assert!(
        text.contains(&format!(
            "1 of {read} input row(s) cannot be used, more than `max_bad_rows` allows (0 row(s))"
        )) && text.contains("orders.csv:43"),
        "{}",
        o.context()
    );
    p.write(
        "jobs/clean_orders.toml",
        &format!("max_bad_rows = \"1%\"\n{spec}"),
    );
    p.ok(&["run", "clean_orders", "--partition", "2024-01-07"]);
    p.write("jobs/clean_orders.toml", &spec);

    // Mend each source line and replay its day: the rows arrive, the letters go.
    for l in &letters {
        let file = l["file"].as_str().unwrap();
        let line = l["line"].as_u64().unwrap() as usize;
        let day = l["partition"].as_str().unwrap();
        let text = p.read(file);
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines[line - 1] = mend(&lines[line - 1], day);
        p.write(file, &(lines.join("\n") + "\n"));
        let o = p.ok(&["dlq", "replay", "clean_orders", "--partition", day]);
        o.says("dead letters 1 -> 0");
        let order_id = l["raw"].as_str().unwrap().split(',').next().unwrap();
        let n = p.query(&format!(
            "SELECT COUNT(*) AS n FROM clean_orders WHERE order_id = {order_id}"
        ));
        assert_eq!(n[0]["n"], 1, "order {order_id} is in the table");
    }
    let left = p.ok(&["dlq", "list", "clean_orders"]);
    left.says("no dead letters");
}

#[test]
fn output_rows_that_do_not_fit_the_table_are_dead_letters_too() {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-01",
    ]);
    p.write(
        "jobs/daily_revenue.toml",
        &format!("bad_rows = \"skip\"\n{}", p.read("jobs/daily_revenue.toml")),
    );
    p.write(
        "jobs/daily_revenue.sql",
        &p.read("jobs/daily_revenue.sql").replace(
            "COUNT(*)                            AS orders",
            "CASE WHEN region = 'east' THEN NULL ELSE COUNT(*) END AS orders",
        ),
    );
    p.ok(&[
        "backfill",
        "daily_revenue",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-01",
    ]);
    let letters = p
        .ok(&["dlq", "list", "daily_revenue", "--output", "json"])
        .json();
    let letters = letters.as_array().unwrap();
    assert!(!letters.is_empty());
    for l in letters {
        assert_eq!(l["file"], "(output of jobs/daily_revenue.sql)");
        assert!(l["line"].as_u64().unwrap() >= 1);
        assert!(
            l["raw"].as_str().unwrap().contains("\"region\":\"east\""),
            "{l}"
        );
        assert!(
            l["error"]
                .as_str()
                .unwrap()
                .contains("column `orders` of table `daily_revenue` is NOT NULL"),
            "{l}"
        );
    }
    let n = p.query("SELECT COUNT(*) AS n FROM daily_revenue WHERE region = 'east'");
    assert_eq!(n[0]["n"], 0, "the rejected rows are left out");
}

/// (order_id, record_id) pairs as the Python deltalake package reads them.
fn python_record_ids(dir: &Path) -> BTreeMap<i64, String> {
    refresh(dir);
    let script = r#"
import sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1]).to_pyarrow_table(columns=["order_id", "record_id"])
for o, r in zip(t.column("order_id").to_pylist(), t.column("record_id").to_pylist()):
    print(o, r)
import os; os._exit(0)
"#;
    stdout_of(
        Command::new("python3").args(["-c", script]).arg(dir),
        "the Python deltalake reader",
    )
    .lines()
    .map(|l| {
        let (o, r) = l.split_once(' ').unwrap();
        (o.parse().unwrap(), r.to_string())
    })
    .collect()
}

#[test]
fn record_ids_are_equal_across_clean_runs_on_different_warehouses() {
    let a = TestProject::sample();
    let b = TestProject::sample();
    // The second keeps its warehouse somewhere else again.
    let sluice_toml = b.read("sluice.toml");
    let elsewhere = b.path().join("elsewhere/lake");
    b.write(
        "sluice.toml",
        &sluice_toml.replace("\"./warehouse\"", &format!("\"{}\"", elsewhere.display())),
    );
    for p in [&a, &b] {
        p.ok(&["migrate"]);
        let o = p.ok(&[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-03",
        ]);
        // Days without bad rows have no dead letters, and that is not a problem.
        assert!(!o.stderr.contains("dead letters"), "{}", o.context());
    }
    let none = a.ok(&["dlq", "list", "clean_orders"]);
    none.says("no dead letters");
    // On an object store each project has its own prefix already, and the environment
    // (which names it) outranks sluice.toml.
    let b_table = if b.remote() {
        b.warehouse_table("clean_orders", 1)
    } else {
        elsewhere.join("clean_orders/v1")
    };
    assert!(b_table.exists(), "{}", b.read("sluice.toml"));
    let ids_a = python_record_ids(&a.warehouse_table("clean_orders", 1));
    let ids_b = python_record_ids(&b_table);
    assert!(ids_a.len() > 400, "{}", ids_a.len());
    assert_eq!(ids_a, ids_b);
    let distinct: std::collections::BTreeSet<_> = ids_a.values().collect();
    assert_eq!(distinct.len(), ids_a.len(), "one id per order");
    assert!(
        ids_a
            .values()
            .all(|r| r.len() == 32 && r.bytes().all(|c| c.is_ascii_hexdigit())),
        "128-bit hex ids"
    );
    // A re-run keeps them.
    a.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-02",
        "--force",
    ]);
    assert_eq!(
        python_record_ids(&a.warehouse_table("clean_orders", 1)),
        ids_b
    );
}
