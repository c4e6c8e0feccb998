//! Issue 39, retention: `[catalog] retention` and `sluice gc --runs` keep, beyond the age,
//! only what the catalog needs (each partition's content run and last run); nothing the
//! status, the backfill planner, the partition's page or the daemon needs is lost. The
//! rows are counted by an independent reader (Python's sqlite3) where the catalog is a file.

use crate::util::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// What `status` says of each partition that does not depend on when or by which run:
/// (job, partition) -> (state, rows, stale because, error).
fn statuses(p: &TestProject) -> BTreeMap<(String, String), String> {
    p.ok(&["status", "--output", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            let said = format!(
                "{} {} {} {}",
                s("state"),
                r["rows"],
                r["stale_because"],
                s("error")
            );
            ((s("job"), s("partition")), said)
        })
        .collect()
}

/// The runs in the catalog, counted by Python's sqlite3 (none on PostgreSQL).
fn runs_in_file(p: &TestProject) -> Option<u64> {
    if p.catalog.is_some() {
        return None;
    }
    let db = p.file(".sluice/catalog.db");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM runs').fetchone()[0])",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    Some(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
}

/// The sample project after a week replayed with a failing day, the first days forced
/// again (their first runs superseded) and the failing day failed again (its first
/// failure superseded by the second).
fn project_with_history() -> TestProject {
    let p = TestProject::migrated();
    p.break_export("2024-01-05");
    // A row that cannot be read on a day the backfill below forces again: a dead letter
    // recorded by the replay, then again by the backfill.
    let day = "sample-data/orders/dt=2024-01-02/orders.csv";
    let export = p.read(day);
    p.write(
        day,
        &format!("{export}9999999,2024-01-02 23:59:00,1,north,pets,two,1.00,paid\n"),
    );
    p.run(&["daemon", "--replay", "2024-01-01..2024-01-08"]);
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
        "--force",
        "-q",
    ]);
    p.run(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-05",
        "--to",
        "2024-01-05",
        "-q",
    ]);
    p
}

/// The partition of each of clean_orders' dead letters, as `dlq list` says.
fn dead_letter_days(p: &TestProject) -> Vec<String> {
    let letters = p
        .ok(&["dlq", "list", "clean_orders", "--output", "json"])
        .json();
    letters
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["partition"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn gc_runs_removes_only_what_no_partition_points_at_and_nothing_shown_changes() {
    let p = project_with_history();
    let o = p.run(&["gc", "--runs"]);
    assert_eq!(o.code, 2, "{}", o.context());
    o.complains("set `[catalog] retention = \"90d\"` in sluice.toml, or pass --older-than");

    // A retention that is not an age is refused naming it.
    let settings = p.read("sluice.toml");
    p.write(
        "sluice.toml",
        &settings.replacen("[catalog]\n", "[catalog]\nretention = \"forever\"\n", 1),
    );
    let o = p.run(&["gc", "--runs"]);
    assert_eq!(o.code, 2, "{}", o.context());
    o.complains("[catalog] retention = `forever`");
    p.write("sluice.toml", &settings);

    let before = statuses(&p);
    let plan = |p: &TestProject| {
        p.ok(&[
            "backfill",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-10",
            "--dry-run",
            "--output",
            "json",
        ])
        .json()
    };
    let plan_before = plan(&p);
    let failed_day = |p: &TestProject| {
        p.ok(&[
            "status",
            "clean_orders",
            "--partition",
            "2024-01-05",
            "--output",
            "json",
        ])
        .json()
    };
    let day_before = failed_day(&p);
    let runs_before = runs_in_file(&p);
    let letters_before = dead_letter_days(&p);
    // The forced days' letters were recorded today by the backfill; the rest by the
    // replay, in January 2024.
    let recent: Vec<String> = letters_before
        .iter()
        .filter(|d| d.as_str() <= "2024-01-03")
        .cloned()
        .collect();
    assert!(
        !recent.is_empty() && recent.len() < letters_before.len(),
        "{letters_before:?}"
    );

    // Dry: says what would go, changes nothing.
    let gc = |dry: &[&str]| {
        let args = [
            &["gc", "--runs", "--older-than", "30d", "--output", "json"],
            dry,
        ]
        .concat();
        p.ok(&args).json()
    };
    let dry = gc(&["--dry-run"]);
    let removable = dry["runs_removed"].as_u64().unwrap();
    // Three forced days' first runs, the failing day's first failure.
    assert_eq!(removable, 4, "{dry:#}");
    assert_eq!(
        dry["dead_letters_removed"].as_u64(),
        Some((letters_before.len() - recent.len()) as u64),
        "{dry:#}"
    );
    assert_eq!(dead_letter_days(&p), letters_before);
    let kept = dry["runs_kept"].as_u64().unwrap();
    assert!(kept > 0, "{dry:#}");
    if let Some(n) = runs_before {
        // The four runs of the backfills (today's) are not old: not looked at.
        assert_eq!(kept + removable + 4, n, "{dry:#}");
    }
    assert_eq!(runs_in_file(&p), runs_before);

    let done = gc(&[]);
    assert_eq!(done["runs_removed"].as_u64(), Some(removable), "{done:#}");
    assert!(
        done["longest_lock_ms"].as_f64().unwrap() < 100.0,
        "{done:#}"
    );
    if let (Some(b), Some(a)) = (runs_before, runs_in_file(&p)) {
        assert_eq!(a, b - removable);
    }
    // The old letters are gone, for `dlq list` and for an independent reader.
    assert_eq!(dead_letter_days(&p), recent);
    assert_eq!(
        python_rows(&p.dead_letters_dir("clean_orders")).len(),
        recent.len()
    );
    let again = gc(&["--dry-run"]);
    assert_eq!(again["runs_removed"].as_u64(), Some(0), "{again:#}");
    assert_eq!(again["dead_letters_removed"].as_u64(), Some(0), "{again:#}");

    // What the status, the planner and the failed day's page show is what they showed.
    assert_eq!(statuses(&p), before);
    assert_eq!(plan(&p), plan_before);
    let day = failed_day(&p);
    assert_eq!(day["partition"], day_before["partition"]);
    assert_eq!(day["partition"]["error"], day_before["partition"]["error"]);
    let runs = |d: &Value| d["runs"].as_array().map_or(0, |r| r.len());
    assert_eq!(
        runs(&day),
        runs(&day_before) - 1,
        "the first failure went: {day:#}"
    );

    // And the daemon goes on from it: the next days run, nothing old is run again.
    p.run(&["daemon", "--replay", "2024-01-08..2024-01-10"]);
    let after = statuses(&p);
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{k:?}");
    }
    assert!(after.len() > before.len());
}

#[test]
fn a_daemon_with_retention_prunes_as_it_goes_and_ends_where_one_without_does() {
    let with = project_with_history();
    let without = project_with_history();
    let settings =
        with.read("sluice.toml")
            .replacen("[catalog]\n", "[catalog]\nretention = \"3d\"\n", 1);
    with.write("sluice.toml", &settings);
    // A damaged dead-letter table of a job pruned before clean_orders is passed over, not
    // left to stop every prune before clean_orders' letters are reached.
    let damaged = "_dead_letters/rolling_revenue/_delta_log/00000000000000000000.json";
    with.put_warehouse_object(damaged, "{ not a commit");
    let o = with.run(&["daemon", "--replay", "2024-01-08..2024-01-20"]);
    without.run(&["daemon", "--replay", "2024-01-08..2024-01-20"]);
    assert_eq!(statuses(&with), statuses(&without));
    assert!(
        o.stderr
            .lines()
            .any(|l| l.contains("could not prune a job's dead letters")
                && l.contains("rolling_revenue")),
        "{}",
        o.context()
    );
    // The replay's letters of the 7th and 12th passed the retention, those of the 19th
    // (recorded on the 20th) did not; the backfill's of the 2nd are today's.
    let all = ["2024-01-02", "2024-01-07", "2024-01-12", "2024-01-19"];
    assert_eq!(dead_letter_days(&without), all);
    assert_eq!(dead_letter_days(&with), ["2024-01-02", "2024-01-19"]);
    // The forced runs finished today (the backfill's clock), newer than any cutoff of the
    // replay's: what went is the first failure of the 5th... and whatever the replay
    // superseded; the log says how much and for how long the lock was held.
    let pruned: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("run history pruned"))
        .collect();
    assert!(!pruned.is_empty(), "{}", o.context());
    assert!(
        pruned.iter().any(|l| !l.contains("runs_removed=0")),
        "{pruned:#?}"
    );
    if let (Some(w), Some(wo)) = (runs_in_file(&with), runs_in_file(&without)) {
        assert!(w < wo, "{w} runs kept with retention, {wo} without");
    }

    // `gc --runs` prunes the rest, then fails naming the table it could not prune.
    let o = with.run(&["gc", "--runs", "--older-than", "1d"]);
    assert_eq!(o.code, 1, "{}", o.context());
    o.complains("could not prune the dead letters of job `rolling_revenue`");
    assert!(o.stdout.contains("removed"), "{}", o.context());
    assert_eq!(dead_letter_days(&with), ["2024-01-02"]);
}
