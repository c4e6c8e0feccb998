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
    assert!(out.stdout.contains("`..` segment"), "{}", out.context());
    // Nothing runs from it either.
    p.ok(&["migrate"]);
    let run = p.run(&["run", "clean_orders", "--partition", "2024-01-02"]);
    assert_eq!(run.code, 2, "{}", run.context());
    assert!(run.stderr.contains("`..` segment"), "{}", run.context());
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
    for t in ["clean_orders", "daily_revenue", "monthly_region_revenue"] {
        assert!(text.stdout.contains(t), "{t}{}", text.context());
    }
    assert!(text.stdout.contains("nothing written yet"), "{}", text.context());
    let json = p.ok(&["tables", "--output", "json"]).json();
    let tables: Vec<(&str, &serde_json::Value)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap(), &t["version"]))
        .collect();
    assert_eq!(tables.len(), 3, "{json:#}");
    assert!(tables.iter().all(|(_, v)| v.is_null()), "{json:#}");
}

#[test]
fn a_catalog_that_cannot_be_written_is_named_at_once_not_after_a_pool_timeout() {
    let p = TestProject::sample();
    if p.catalog.is_some() {
        // On PostgreSQL: an unreachable server is named at once.
        let out = p.run(&["--catalog", "postgres://sluice@127.0.0.1:1/none", "status"]);
        assert_eq!(out.code, 2, "{}", out.context());
        assert!(out.stderr.contains("Connection refused"), "{}", out.context());
        assert!(out.stderr.contains("check that the server is up"), "{}", out.context());
        return;
    }
    // A folder made immutable (root included): no file can be created in it, as in a
    // read-only folder, whoever runs the suite.
    let dir = p.file("read-only");
    std::fs::create_dir_all(&dir).unwrap();
    let catalog = format!("sqlite://{}/catalog.db", dir.display());
    let chattr = |flag: &str| {
        std::process::Command::new("chattr")
            .args([flag, dir.to_str().unwrap()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(chattr("+i"), "chattr +i (e2fsprogs) on the test folder failed");
    let started = std::time::Instant::now();
    let out = p.run(&["--catalog", &catalog, "status"]);
    let took = started.elapsed();
    chattr("-i");
    assert_eq!(out.code, 2, "{}", out.context());
    assert!(out.stderr.contains("not writable"), "{}", out.context());
    assert!(!out.stderr.contains("pool timed out"), "{}", out.context());
    // Generous: the point is "not the 30 s pool timeout".
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    let once = out.stderr.matches("unable to open database file").count();
    assert_eq!(once, 1, "the cause is said once{}", out.context());
}
