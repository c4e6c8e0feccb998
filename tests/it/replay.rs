//! `sluice daemon --replay FROM..TO`: the real binary rehearses the schedule on a simulated
//! clock: every partition once, at its tick, in dependency order, with the same tables as
//! a backfill, and ticks in the job's zone across a daylight-saving change.

use crate::backfill::{all_rows, clean_run_rows};
use crate::daemon::{daily_job, project_of};
use crate::util::{TestProject, assert_same_rows, commits_per_partition};

/// The stdout lines' index of the first line containing `text`.
fn at(lines: &[&str], text: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no line with `{text}` in:\n{}", lines.join("\n")))
}

#[tokio::test]
async fn a_replayed_january_runs_each_partition_once_at_its_tick_like_a_backfill() {
    let p = TestProject::migrated();
    let out = p.ok(&["daemon", "--replay", "2024-01-01..2024-02-01", "--quiet"]);
    out.says("404 succeeded, 0 failed, 0 not run");
    let lines: Vec<&str> = out.stdout.lines().collect();
    for day in 1..=31 {
        let d = format!("2024-01-{day:02}");
        let next = chrono::NaiveDate::from_ymd_opt(2024, 1, day)
            .and_then(|n| n.succ_opt())
            .unwrap();
        // At its tick: 02:30 and 03:00 Berlin (CET, UTC+1) the next morning.
        let clean = at(
            &lines,
            &format!(
                "{next}T01:30:00Z  clean_orders {d} started (tick {next} 02:30 Europe/Berlin)"
            ),
        );
        let revenue = at(
            &lines,
            &format!(
                "{next}T02:00:00Z  daily_revenue {d} started (tick {next} 03:00 Europe/Berlin)"
            ),
        );
        // Dependency order: the day's revenue after its orders are in.
        assert!(at(&lines, &format!("clean_orders {d} succeeded")) < revenue);
        assert!(clean < revenue);
    }
    let monthly = at(
        &lines,
        "2024-02-01T03:00:00Z  monthly_region_revenue 2024-01 started (tick 2024-02-01 04:00 Europe/Berlin)",
    );
    assert!(at(&lines, "daily_revenue 2024-01-31 succeeded") < monthly);
    // Once each: one commit per partition in the Delta log.
    for table in ["clean_orders", "daily_revenue"] {
        let commits = commits_per_partition(&p.warehouse_table(table, 1));
        assert_eq!(commits.len(), 31, "{table}: {commits:?}");
        assert!(commits.values().all(|n| *n == 1), "{table}: {commits:?}");
    }
    // The catalog's runs started at their ticks, in simulated time.
    let status = p
        .ok(&["status", "daily_revenue", "--output", "json"])
        .json();
    let started: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["partition"] == "2024-01-05")
        .filter_map(|r| r["started_at"].as_str())
        .collect();
    assert_eq!(started, vec!["2024-01-06T02:00:00.000Z"]);
    // The same tables as a backfill of the month, read by a fresh reader.
    let replayed = all_rows(&p).await;
    let backfilled = clean_run_rows(&[]).await;
    for (table, rows) in &backfilled {
        assert!(!rows.is_empty(), "{table}");
        assert_same_rows(table, &replayed[table], rows);
    }
}

#[test]
fn a_replay_across_the_autumn_clock_change_ticks_once_a_day_in_the_jobs_zone() {
    // 2024-10-27 03:00 → 02:00 in Berlin: 02:30 happens twice; the day runs once.
    let p = project_of(&[daily_job(
        "daily",
        "cron = \"30 2 * * *\"\ntime_zone = \"Europe/Berlin\"",
        "2024-10-24",
    )]);
    let out = p.ok(&["daemon", "--replay", "2024-10-25..2024-10-28", "--quiet"]);
    out.says("4 succeeded, 0 failed, 0 not run");
    let lines: Vec<&str> = out.stdout.lines().collect();
    for (utc, local, day) in [
        ("2024-10-25T00:30:00Z", "2024-10-25 02:30", "2024-10-24"),
        ("2024-10-26T00:30:00Z", "2024-10-26 02:30", "2024-10-25"),
        // The first 02:30 of the long day (still summer time, UTC+2) ...
        ("2024-10-27T00:30:00Z", "2024-10-27 02:30", "2024-10-26"),
        // ... and winter time (UTC+1) the day after.
        ("2024-10-28T01:30:00Z", "2024-10-28 02:30", "2024-10-27"),
    ] {
        at(
            &lines,
            &format!("{utc}  daily {day} started (tick {local} Europe/Berlin)"),
        );
    }
    let started = lines.iter().filter(|l| l.contains(" started ")).count();
    assert_eq!(started, 4, "{}", out.context());
    let commits = commits_per_partition(&p.warehouse_table("daily", 1));
    assert_eq!(commits.len(), 4, "{commits:?}");
    assert!(commits.values().all(|n| *n == 1), "{commits:?}");
}

#[test]
fn a_replay_that_fails_a_partition_exits_1_and_says_which() {
    let p = TestProject::migrated();
    // A day whose export never arrives: it waits 6 h of simulated time, then fails, and the
    // day's revenue, which reads it, is not run.
    std::fs::remove_dir_all(p.file("sample-data/orders/dt=2024-01-03")).unwrap();
    let out = p.run(&["daemon", "--replay", "2024-01-03..2024-01-04", "--quiet"]);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(
        out.stdout
            .contains("clean_orders 2024-01-03 failed: input files did not arrive within 6h"),
        "{}",
        out.context()
    );
    assert!(
        out.stdout
            .contains("not run: daily_revenue 2024-01-03 (waiting on clean_orders/2024-01-03)"),
        "{}",
        out.context()
    );
    assert!(
        out.stdout
            .contains("2024-01-04T07:30:00Z  clean_orders 2024-01-03 failed"),
        "{}",
        out.context()
    );
}

#[test]
fn a_retry_in_a_replay_waits_its_backoff_in_simulated_time() {
    let p = TestProject::migrated();
    // The first commit fails as a transient error; the job's retry waits 5 s (backoff) on
    // the replay's clock, not the wall clock's.
    let out = p.run_env(
        &[
            "daemon",
            "--replay",
            "2024-01-02T00:00:00Z..2024-01-02T01:45:00Z",
            "--quiet",
        ],
        &[("SLUICE_FAILPOINT", "transient_commit_error")],
    );
    assert_eq!(out.code, 0, "{}", out.context());
    out.says("1 succeeded, 0 failed, 0 not run");
    let status = p.ok(&["status", "clean_orders", "--output", "json"]).json();
    let run = &status.as_array().unwrap()[0];
    assert_eq!(run["partition"], "2024-01-01");
    assert_eq!(run["attempt"], 2, "{run}");
    // The second attempt started after the backoff (2.5 to 5 s, with jitter), in simulated
    // time; the wall clock would read 2026.
    let started = run["started_at"].as_str().unwrap_or_default();
    assert!(
        ("2024-01-02T01:30:02.500Z"..="2024-01-02T01:30:05.000Z").contains(&started),
        "{run}"
    );
}
