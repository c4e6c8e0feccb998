//! Issue: backfill date ranges from the CLI: planned, parallel, resumable, safe beside other
//! workers.

use crate::util::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn short_leases(p: &TestProject) {
    let mut cfg = p.read("sluice.toml");
    cfg.push_str("\n[runner]\nlease_ttl_seconds = 2\n");
    p.write("sluice.toml", &cfg);
}

/// (job, partition) of the items whose outcome is `outcome`.
pub(crate) fn with_outcome(summary: &Value, outcome: &str) -> BTreeSet<(String, String)> {
    summary["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] == outcome)
        .map(|i| {
            (
                i["job"].as_str().unwrap().to_string(),
                i["partition"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every table of the project, read by a fresh deltalake handle.
pub(crate) async fn all_rows(p: &TestProject) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for t in [
        "clean_orders",
        "daily_revenue",
        "monthly_region_revenue",
        "regional_orders",
        "rolling_revenue",
    ] {
        let dir = p.warehouse_table(t, 1);
        out.insert(
            t,
            if dir.exists() {
                read_delta_rows(&dir, None).await
            } else {
                Vec::new()
            },
        );
    }
    out
}

/// The rows a clean, uninterrupted backfill of the sample month writes.
pub(crate) async fn clean_run_rows(jobs: &[&str]) -> BTreeMap<&'static str, Vec<String>> {
    let p = TestProject::migrated();
    let mut args = vec!["backfill"];
    args.extend_from_slice(jobs);
    args.extend_from_slice(&["--from", "2024-01-01", "--to", "2024-01-31"]);
    p.ok(&args);
    all_rows(&p).await
}

#[test]
fn dry_run_lists_exactly_what_the_real_run_then_does() {
    let p = TestProject::migrated();
    // Some history: one day complete, one failed.
    p.ok(&["run", "clean_orders", "--partition", "2024-01-02"]);
    let sql = p.read("jobs/clean_orders.sql");
    p.write("jobs/clean_orders.sql", "SELECT nonsense FROM orders");
    assert_eq!(
        p.run(&["run", "clean_orders", "--partition", "2024-01-03"])
            .code,
        1
    );
    p.write("jobs/clean_orders.sql", &sql);

    for extra in [
        &[][..],
        &["--force"][..],
        &["--only-failed"][..],
        &["--newest-first", "--concurrency", "3"][..],
    ] {
        let mut args = vec![
            "backfill",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-10",
            "--output",
            "json",
        ];
        // (the monthly job's January is not inside the range, so it is not planned)
        args.extend_from_slice(extra);
        let mut dry = args.clone();
        dry.push("--dry-run");
        let plan = p.ok(&dry).json();
        let planned: Vec<(String, String, String)> = plan["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["job"].as_str().unwrap().to_string(),
                    i["partition"].as_str().unwrap().to_string(),
                    i["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let summary = p.ok(&args).json();
        let done: Vec<(String, String, String)> = summary["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                assert_eq!(i["outcome"], "succeeded", "{extra:?}: {i}");
                (
                    i["job"].as_str().unwrap().to_string(),
                    i["partition"].as_str().unwrap().to_string(),
                    i["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(planned, done, "{extra:?}: the dry run's plan is what ran");
        if extra.is_empty() {
            // 2024-01-02 was complete; 2024-01-03 had failed; the rest were missing.
            assert!(
                !planned
                    .iter()
                    .any(|(j, d, _)| j == "clean_orders" && d == "2024-01-02")
            );
            assert!(planned.contains(&(
                "clean_orders".into(),
                "2024-01-03".into(),
                "failed".into()
            )));
            assert!(
                plan["not_selected"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|n| n["partition"] == "2024-01-02" && n["why"] == "complete")
            );
        }
    }
    // Upstream before downstream in the plan.
    let plan = p
        .ok(&[
            "backfill",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-31",
            "--force",
            "--dry-run",
            "--output",
            "json",
        ])
        .json();
    let items = plan["items"].as_array().unwrap();
    for (pos, i) in items.iter().enumerate() {
        for d in i["waits_on"].as_array().unwrap() {
            assert!(
                (d.as_u64().unwrap() as usize) < pos,
                "dependencies come first: {i}"
            );
        }
    }
}

#[tokio::test]
async fn a_killed_backfill_resumes_where_it_stopped_and_ends_with_a_clean_runs_rows() {
    let classic = ["clean_orders", "daily_revenue", "monthly_region_revenue"];
    let clean = clean_run_rows(&classic).await;
    let p = TestProject::sample();
    short_leases(&p);
    p.ok(&["migrate"]);
    let args = [
        "backfill",
        "clean_orders",
        "daily_revenue",
        "monthly_region_revenue",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-31",
        "--concurrency",
        "2",
    ];
    let (mut child, log) = p.spawn(&args, &[]);
    // Let it get part of the way.
    wait_for_text(&log, "progress=20/63", Duration::from_secs(120));
    sigkill(&mut child);
    let done_before = p
        .ok(&["status", "--output", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "complete")
        .count();
    assert!(
        (20..63).contains(&done_before),
        "killed part-way: {done_before} done"
    );

    let mut rerun: Vec<&str> = args.to_vec();
    rerun.extend(["--output", "json"]);
    let summary = p.ok(&rerun).json();
    assert_eq!(
        summary["planned"].as_u64().unwrap() as usize,
        63 - done_before,
        "the re-run plans only what is left: {summary:#}"
    );
    assert_eq!(summary["failed"], 0);
    let rows = all_rows(&p).await;
    for (t, want) in &clean {
        assert_same_rows(t, &rows[t], want);
    }
    for (partition, commits) in commits_per_partition(&p.warehouse_table("clean_orders", 1)) {
        assert!(commits <= 2, "{partition} written {commits} times");
    }
}

#[tokio::test]
async fn two_overlapping_backfills_never_write_a_partition_twice() {
    let clean = clean_run_rows(&["clean_orders", "daily_revenue"]).await;
    let p = TestProject::migrated();
    let a_args = [
        "backfill",
        "clean_orders",
        "daily_revenue",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-25",
        "--output",
        "json",
    ];
    let b_args = [
        "backfill",
        "clean_orders",
        "daily_revenue",
        "--from",
        "2024-01-05",
        "--to",
        "2024-01-31",
        "--newest-first",
        "--output",
        "json",
    ];
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| p.run(&a_args));
        let b = s.spawn(|| p.run(&b_args));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.code, 0, "{}", a.context());
    assert_eq!(b.code, 0, "{}", b.context());
    let (a, b) = (a.json(), b.json());
    let ran_a = with_outcome(&a, "succeeded");
    let ran_b = with_outcome(&b, "succeeded");
    assert!(
        ran_a.is_disjoint(&ran_b),
        "no partition ran in both: {:?}",
        ran_a.intersection(&ran_b).collect::<Vec<_>>()
    );
    assert_eq!(
        ran_a.len() + ran_b.len(),
        62,
        "every partition ran once, in one of them"
    );
    // What one ran, the other reports as found done (at planning) or done by the other.
    let found_done = |s: &Value| -> BTreeSet<(String, String)> {
        let mut set = with_outcome(s, "done_elsewhere");
        for n in s["not_selected_items"].as_array().unwrap() {
            set.insert((
                n["job"].as_str().unwrap().into(),
                n["partition"].as_str().unwrap().into(),
            ));
        }
        set
    };
    let in_b_range = |d: &str| d >= "2024-01-05";
    let in_a_range = |d: &str| d <= "2024-01-25";
    for (j, d) in &ran_a {
        if in_b_range(d) {
            assert!(
                found_done(&b).contains(&(j.clone(), d.clone())),
                "B reports {j} {d} as done by A"
            );
        }
    }
    for (j, d) in &ran_b {
        if in_a_range(d) {
            assert!(
                found_done(&a).contains(&(j.clone(), d.clone())),
                "A reports {j} {d} as done by B"
            );
        }
    }
    let rows = all_rows(&p).await;
    assert_same_rows(
        "clean_orders",
        &rows["clean_orders"],
        &clean["clean_orders"],
    );
    assert_same_rows(
        "daily_revenue",
        &rows["daily_revenue"],
        &clean["daily_revenue"],
    );
    for t in ["clean_orders", "daily_revenue"] {
        let commits = commits_per_partition(&p.warehouse_table(t, 1));
        assert_eq!(commits.len(), 31);
        assert!(
            commits.values().all(|&c| c == 1),
            "{t}: one commit per partition: {commits:?}"
        );
    }
}

#[test]
fn a_failing_partition_stops_only_itself_and_its_dependents() {
    let p = TestProject::migrated();
    // The SQL fails for one day only.
    let sql = p.read("jobs/clean_orders.sql").replace(
        "WHERE status <> 'cancelled'",
        "WHERE status <> 'cancelled' AND 1 / (CASE WHEN $partition = '2024-01-05' THEN 0 ELSE 1 END) = 1",
    );
    p.write("jobs/clean_orders.sql", &sql);
    let out = p.run(&[
        "backfill",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-31",
        "--output",
        "json",
    ]);
    assert_eq!(
        out.code,
        1,
        "a failed partition fails the backfill{}",
        out.context()
    );
    let s = out.json();
    let failed = with_outcome(&s, "failed");
    assert_eq!(
        failed,
        BTreeSet::from([("clean_orders".to_string(), "2024-01-05".to_string())])
    );
    let skipped: BTreeMap<(String, String), String> = s["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] == "skipped")
        .map(|i| {
            (
                (
                    i["job"].as_str().unwrap().into(),
                    i["partition"].as_str().unwrap().into(),
                ),
                i["skipped_because"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        skipped[&("daily_revenue".into(), "2024-01-05".into())],
        "upstream clean_orders 2024-01-05 failed"
    );
    assert_eq!(
        skipped[&("monthly_region_revenue".into(), "2024-01".into())],
        "upstream daily_revenue 2024-01-05 was skipped"
    );
    // Each region's partition of that day reads it too.
    assert_eq!(
        skipped[&("regional_orders".into(), "2024-01-05:emea".into())],
        "upstream clean_orders 2024-01-05 failed"
    );
    // The 7 rolling days that read the day (2024-01-05 .. 2024-01-11) too.
    assert_eq!(
        skipped[&("rolling_revenue".into(), "2024-01-11".into())],
        "upstream daily_revenue 2024-01-05 was skipped"
    );
    assert_eq!(skipped.len(), 2 + 8 + 7);
    // The customers' jobs and the exchange rates read none of it: all 93 of their days ran.
    assert_eq!(
        s["succeeded"],
        60 + 30 * 8 + 24 + 62 + 31,
        "the siblings ran"
    );
    let text = p.run(&["backfill", "--from", "2024-01-01", "--to", "2024-01-31"]);
    assert_eq!(text.code, 1);
    assert!(
        text.stdout
            .contains("upstream clean_orders 2024-01-05 failed"),
        "{}",
        text.context()
    );

    // --fail-fast starts nothing after the first failure.
    let q = TestProject::migrated();
    q.write("jobs/clean_orders.sql", &sql);
    let s = q
        .run(&[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-05",
            "--to",
            "2024-01-31",
            "--concurrency",
            "1",
            "--fail-fast",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(s["failed"], 1);
    assert_eq!(s["succeeded"], 0);
    assert!(with_outcome(&s, "skipped").len() == 26);
}

#[test]
fn backfill_arguments_are_checked() {
    let p = TestProject::migrated();
    for (args, says) in [
        (
            vec!["backfill", "--from", "2024-02-01", "--to", "2024-01-01"],
            "is after --to",
        ),
        (
            vec!["backfill", "--from", "yesterday", "--to", "2024-01-01"],
            "--from `yesterday`: expected a day",
        ),
        (
            vec![
                "backfill",
                "nope",
                "--from",
                "2024-01-01",
                "--to",
                "2024-01-02",
            ],
            "no job `nope` in this project",
        ),
        (
            vec![
                "backfill",
                "--from",
                "2024-01-01",
                "--to",
                "2024-01-02",
                "--force",
                "--stale",
            ],
            "cannot be used with",
        ),
        (
            vec![
                "backfill",
                "--from",
                "2024-01-01",
                "--to",
                "2024-01-02",
                "--concurrency",
                "0",
            ],
            "0 is not in 1..",
        ),
    ] {
        let out = p.run(&args);
        assert_eq!(out.code, 2, "{}", out.context());
        assert!(
            out.stderr.contains(says),
            "expected `{says}`{}",
            out.context()
        );
    }
    // Not migrated: a clear pointer to migrate.
    let q = TestProject::sample();
    let out = q.run(&["backfill", "--from", "2024-01-01", "--to", "2024-01-02"]);
    assert_eq!(out.code, 2);
    out.complains("run `sluice migrate` first");
}

#[test]
fn stale_partitions_are_those_written_by_other_code() {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
    ]);
    let plan = p
        .ok(&[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-03",
            "--stale",
            "--dry-run",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(
        plan["items"].as_array().unwrap().len(),
        0,
        "same code: nothing stale"
    );
    let sql = p.read("jobs/clean_orders.sql");
    p.write(
        "jobs/clean_orders.sql",
        &format!("{sql}\n-- a comment changes the code\n"),
    );
    let plan = p
        .ok(&[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-03",
            "--stale",
            "--dry-run",
            "--output",
            "json",
        ])
        .json();
    let items = plan["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(
        items
            .iter()
            .all(|i| i["reason"] == "stale" && i["previous_fingerprint"] != i["fingerprint"])
    );
}

#[test]
fn transient_failures_are_retried_and_sql_errors_are_not() {
    let p = TestProject::migrated();
    let spec = p
        .read("jobs/clean_orders.toml")
        .replace("backoff_seconds = 5", "backoff_seconds = 0.05");
    p.write("jobs/clean_orders.toml", &spec);
    let out = p.run_env(
        &[
            "run",
            "clean_orders",
            "--partition",
            "2024-01-02",
            "--output",
            "json",
        ],
        &[("SLUICE_FAILPOINT", "transient_commit_error")],
    );
    assert_eq!(out.code, 0, "{}", out.context());
    let r = out.json();
    assert_eq!(r["attempts"], 2, "one transient failure, one retry: {r:#}");
    out.complains("transient failure; retrying");

    p.write("jobs/clean_orders.sql", "SELECT no_such_column FROM orders");
    let out = p.run(&[
        "run",
        "clean_orders",
        "--partition",
        "2024-01-03",
        "--output",
        "json",
    ]);
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["attempts"], 1, "a SQL error is not retried");
}
