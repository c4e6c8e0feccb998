//! A partition knows what it read: a re-exported day, a late file or a rewritten upstream
//! partition makes what read it stale (`status`, `backfill --stale`), the daemon reruns it
//! once, after its upstream, transitively; a rewrite from the same inputs changes nothing.
//! Real processes, and the tables read back with Python's deltalake.

use crate::util::{TestProject, assert_same_rows, commits_per_partition, python_rows};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The sample project's tables, all written by its jobs.
const TABLES: [&str; 5] = [
    "clean_orders",
    "daily_revenue",
    "monthly_region_revenue",
    "regional_orders",
    "rolling_revenue",
];

/// The shop re-exports `day` with every quantity doubled (a row whose quantity is not a
/// number, as the export has, stays as it is).
pub(crate) fn double_quantities(p: &TestProject, day: &str) {
    let rel = format!("sample-data/orders/dt={day}/orders.csv");
    let text = p.read(&rel);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let q = header.split(',').position(|c| c == "quantity").unwrap();
    let mut out = vec![header.to_string()];
    for line in lines {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        if let Some(n) = cells.get(q).and_then(|c| c.parse::<i64>().ok()) {
            cells[q] = (n * 2).to_string();
        }
        out.push(cells.join(","));
    }
    p.write(&rel, &(out.join("\n") + "\n"));
}

/// `status --output json`, by (job, partition): (state, why stale, what changed).
fn states(p: &TestProject) -> BTreeMap<(String, String), (String, String, Vec<String>)> {
    let status = p.ok(&["status", "--output", "json"]).json();
    status
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let why = &r["stale_because"];
            (
                (
                    r["job"].as_str().unwrap().to_string(),
                    r["partition"].as_str().unwrap().to_string(),
                ),
                (
                    r["state"].as_str().unwrap().to_string(),
                    why["kind"].as_str().unwrap_or_default().to_string(),
                    why["changed"]
                        .as_array()
                        .map(|c| c.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                        .unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// The partitions not `complete`, with their state and why.
fn not_complete(p: &TestProject) -> BTreeMap<(String, String), (String, String, Vec<String>)> {
    states(p)
        .into_iter()
        .filter(|(_, (s, _, _))| s != "complete")
        .collect()
}

fn key(job: &str, partition: &str) -> (String, String) {
    (job.to_string(), partition.to_string())
}

/// What a backfill over January with `--stale` would run: (job, partition, reason).
fn stale_plan(p: &TestProject) -> BTreeSet<(String, String, String)> {
    let plan = p
        .ok(&[
            "backfill",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-31",
            "--stale",
            "--dry-run",
            "--output",
            "json",
        ])
        .json();
    plan["items"]
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
        .collect()
}

/// Every table of `p`, as Python's deltalake reads it.
fn python_tables(p: &TestProject) -> BTreeMap<&'static str, Vec<String>> {
    TABLES
        .iter()
        .map(|t| (*t, python_rows(&p.warehouse_table(t, 1))))
        .collect()
}

/// A fresh sample project whose January is backfilled once over data with `day` doubled.
fn clean_backfill_with_doubled(day: &str) -> BTreeMap<&'static str, Vec<String>> {
    let fresh = TestProject::migrated();
    double_quantities(&fresh, day);
    fresh.backfill("2024-01-01", "2024-01-31");
    python_tables(&fresh)
}

/// Asserts every table of `p` is what a clean backfill of January writes over the export
/// with `day` doubled, both read by Python's deltalake.
fn assert_as_if_backfilled_with_doubled(p: &TestProject, day: &str) {
    let want = clean_backfill_with_doubled(day);
    let got = python_tables(p);
    for t in TABLES {
        assert!(!want[t].is_empty(), "{t}");
        assert_same_rows(t, &got[t], &want[t]);
    }
}

/// `sluice backfill --stale` over January.
fn backfill_stale(p: &TestProject) {
    p.ok(&[
        "backfill",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-31",
        "--stale",
    ]);
}

/// What January's days a change to `day`'s orders reaches: that day of each daily job
/// (regional_orders: each region), the 7 rolling days from it, and the month.
fn reached_by(day: u32) -> BTreeSet<(String, String)> {
    let d = format!("2024-01-{day:02}");
    let mut out: BTreeSet<(String, String)> = BTreeSet::new();
    out.insert(key("clean_orders", &d));
    out.insert(key("daily_revenue", &d));
    for r in [
        "apac", "central", "east", "emea", "latam", "north", "south", "west",
    ] {
        out.insert(key("regional_orders", &format!("{d}:{r}")));
    }
    for rolling in day..(day + 7).min(32) {
        out.insert(key("rolling_revenue", &format!("2024-01-{rolling:02}")));
    }
    out.insert(key("monthly_region_revenue", "2024-01"));
    out
}

/// Each partition's commits in each table's Delta log, by (job, partition): the times it
/// was written.
fn writes(p: &TestProject) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for t in TABLES {
        // By the partition's `txn` in the log: `2024-01-05`, `2024-01-05:emea`, `2024-01`.
        for (partition, n) in commits_per_partition(&p.warehouse_table(t, 1)) {
            out.insert((t.to_string(), partition), n);
        }
    }
    out
}

#[test]
fn a_reexported_day_makes_what_read_it_stale_and_backfill_stale_reruns_exactly_that() {
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-31");
    // Rewritten from the same export and code, a day is the same data: nothing goes stale.
    p.ok(&["run", "clean_orders", "--partition", "2024-01-05"]);
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-31",
        "--force",
    ]);
    assert_eq!(not_complete(&p), BTreeMap::new());
    assert_eq!(stale_plan(&p), BTreeSet::new());
    let before = writes(&p);

    // The shop re-exports the day: the day itself is stale because of its input.
    double_quantities(&p, "2024-01-05");
    let stale = not_complete(&p);
    assert_eq!(
        stale,
        BTreeMap::from([(
            key("clean_orders", "2024-01-05"),
            (
                "stale".into(),
                "input".into(),
                vec!["sample-data/orders/dt=2024-01-05/orders.csv changed".to_string()]
            )
        )])
    );
    // Rerun, it says what it made stale; what read the old day is stale because of it.
    let out = p.ok(&["run", "clean_orders", "--partition", "2024-01-05"]);
    out.says(
        "made stale downstream (9): daily_revenue 2024-01-05, regional_orders 2024-01-05:apac",
    );
    let stale = not_complete(&p);
    let upstream = (
        "stale".to_string(),
        "upstream".to_string(),
        vec!["clean_orders 2024-01-05".to_string()],
    );
    assert_eq!(
        stale.get(&key("daily_revenue", "2024-01-05")),
        Some(&upstream)
    );
    assert_eq!(stale.len(), 9, "{stale:#?}");
    // The month read the day's revenue, which is not rewritten yet: not stale yet.
    assert!(!stale.contains_key(&key("monthly_region_revenue", "2024-01")));

    // `--stale` plans the change's whole reach, in dependency order, and nothing else.
    let plan = stale_plan(&p);
    let planned: BTreeSet<(String, String)> = plan
        .iter()
        .map(|(j, k, _)| (j.clone(), k.clone()))
        .collect();
    let mut reach = reached_by(5);
    reach.remove(&key("clean_orders", "2024-01-05"));
    assert_eq!(planned, reach);
    assert!(plan.contains(&(
        "daily_revenue".into(),
        "2024-01-05".into(),
        "upstream_changed".into()
    )));
    assert!(plan.contains(&(
        "monthly_region_revenue".into(),
        "2024-01".into(),
        "upstream_rerun".into()
    )));
    backfill_stale(&p);
    assert_eq!(not_complete(&p), BTreeMap::new());
    assert_eq!(stale_plan(&p), BTreeSet::new());

    // Each partition the change reached was written once more, and no other.
    let after = writes(&p);
    for (k, n) in &after {
        let more = usize::from(reach.contains(k) || *k == key("clean_orders", "2024-01-05"));
        assert_eq!(*n, before[k] + more, "{k:?}");
    }
    // Every table is what a clean backfill over the corrected export writes.
    assert_as_if_backfilled_with_doubled(&p, "2024-01-05");
}

#[test]
fn run_downstream_reruns_what_the_run_made_stale_level_by_level() {
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-31");
    double_quantities(&p, "2024-01-20");
    let out = p.ok(&[
        "run",
        "clean_orders",
        "--partition",
        "2024-01-20",
        "--downstream",
        "--output",
        "json",
    ]);
    let report = out.json();
    let reran: BTreeSet<(String, String)> = report["downstream"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "succeeded", "{r:#}");
            key(r["job"].as_str().unwrap(), r["partition"].as_str().unwrap())
        })
        .collect();
    let mut reach = reached_by(20);
    reach.remove(&key("clean_orders", "2024-01-20"));
    assert_eq!(reran, reach);
    assert_eq!(not_complete(&p), BTreeMap::new());
    assert_as_if_backfilled_with_doubled(&p, "2024-01-20");
}

/// The shop's export of 2024-02-01 (the 31st's orders, dated a day later): a replay that
/// reaches the ticks of February 2nd has data to run.
fn export_february_first(p: &TestProject) {
    let text = p
        .read("sample-data/orders/dt=2024-01-31/orders.csv")
        .replace("2024-01-31", "2024-02-01");
    p.write("sample-data/orders/dt=2024-02-01/orders.csv", &text);
    // The customer system exported that day too: no change.
    let header = p.read("sample-data/customer_changes/dt=2024-01-31/changes.csv");
    let header = header.lines().next().unwrap_or_default();
    p.write(
        "sample-data/customer_changes/dt=2024-02-01/changes.csv",
        &format!("{header}\n"),
    );
    // And the rates were published for it.
    let rates = p.read("sample-data/rates_api/rates.csv");
    let february: String = rates
        .lines()
        .filter(|l| l.starts_with("2024-01-31,"))
        .map(|l| format!("{}\n", l.replace("2024-01-31", "2024-02-01")))
        .collect();
    p.write(
        "sample-data/rates_api/rates.csv",
        &format!("{}\n{february}", rates.trim_end()),
    );
}

/// The sample project with clean_orders watching its input files for `window`, and an
/// export of 2024-02-01.
fn watching(window: &str) -> TestProject {
    let p = TestProject::migrated();
    let spec = p.read("jobs/clean_orders.toml").replace(
        "wait_for_inputs = \"6h\"",
        &format!("wait_for_inputs = \"6h\"\nwatch_inputs = \"{window}\""),
    );
    p.write("jobs/clean_orders.toml", &spec);
    export_february_first(&p);
    p
}

/// Replays `window` on `p` at `speed`, calling `on_line` with each line it prints as it
/// prints it; returns the lines, insisting on success.
fn replay_watched(p: &TestProject, window: &str, mut on_line: impl FnMut(&str)) -> Vec<String> {
    let mut child = p
        .command(&["daemon", "--replay", window, "--speed", "345600", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        on_line(&line);
        lines.push(line);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", lines.join("\n"));
    lines
}

#[test]
fn a_day_replaced_mid_replay_is_rerun_once_after_its_upstream_and_nothing_else_is() {
    let p = watching("45d");
    // A simulated day takes a quarter of a second. The export of 2024-01-05 is replaced
    // once the month's roll-up has run (2024-02-01 04:00 in Berlin); the replay goes on
    // through the next day's ticks.
    let mut replaced = false;
    let lines = replay_watched(&p, "2024-01-01..2024-02-02", |line| {
        if !replaced && line.contains("monthly_region_revenue 2024-01 succeeded") {
            double_quantities(&p, "2024-01-05");
            replaced = true;
        }
    });
    let text = lines.join("\n");
    assert!(replaced, "{text}");
    // Each partition the change reached, the month too, ran exactly once more, after
    // clean_orders; nothing else did.
    let reach = reached_by(5);
    for (k, n) in writes(&p) {
        let times = if reach.contains(&k) { 2 } else { 1 };
        assert_eq!(n, times, "{k:?} in:\n{text}");
    }
    let at = |needle: &str| {
        lines
            .iter()
            .rposition(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{text}"))
    };
    let day = at("daily_revenue 2024-01-05 succeeded");
    assert!(at("clean_orders 2024-01-05 succeeded") < day);
    assert!(day < at("monthly_region_revenue 2024-01 succeeded"));
    assert!(day < at("rolling_revenue 2024-01-11 succeeded"));
    assert_eq!(not_complete(&p), BTreeMap::new());
    // Every table is what a clean backfill over the corrected data writes.
    let fresh = TestProject::migrated();
    double_quantities(&fresh, "2024-01-05");
    export_february_first(&fresh);
    fresh.backfill("2024-01-01", "2024-02-01");
    let (got, want) = (python_tables(&p), python_tables(&fresh));
    for t in TABLES {
        assert_same_rows(t, &got[t], &want[t]);
    }

    // Replayed again over the complete month with its inputs as they are: nothing runs.
    let lines = replay_watched(&p, "2024-01-01..2024-02-02", |_| {});
    assert!(
        lines
            .iter()
            .any(|l| l == "0 succeeded, 0 failed, 0 not run"),
        "{}",
        lines.join("\n")
    );
}

#[test]
fn a_new_file_within_watch_inputs_reruns_its_day_and_what_reads_it_once() {
    let p = TestProject::with_files(&[
        (
            "jobs/landed.toml",
            "description = \"files that land in a day's folder\"\nversion = 1\nstart = \"2024-03-01\"\n\n[schedule]\ncron = \"0 1 * * *\"\nwatch_inputs = \"3d\"\n\n[partitioning]\ngranularity = \"daily\"\n\n[[inputs]]\nname = \"files\"\npath = \"in/{partition}/*.csv\"\nformat = \"csv\"\nschema = [\"n BIGINT NOT NULL\"]\n\n[output]\ntable = \"landed\"\n",
        ),
        (
            "jobs/landed.sql",
            "SELECT CAST($partition AS DATE) AS dt, COUNT(*) AS files_rows, SUM(n) AS total FROM files",
        ),
        (
            "jobs/summed.toml",
            "description = \"reads landed\"\nversion = 1\nstart = \"2024-03-01\"\n\n[schedule]\ncron = \"0 2 * * *\"\n\n[partitioning]\ngranularity = \"daily\"\n\n[[inputs]]\nname = \"landed\"\ntable = \"landed\"\n\n[output]\ntable = \"summed\"\n",
        ),
        (
            "jobs/summed.sql",
            "SELECT dt, total * 10 AS total10 FROM landed",
        ),
        (
            "migrations/0001_landed.sql",
            "CREATE TABLE landed (dt DATE NOT NULL, files_rows BIGINT NOT NULL, total BIGINT) PARTITIONED BY (dt);\nCREATE TABLE summed (dt DATE NOT NULL, total10 BIGINT) PARTITIONED BY (dt);\n",
        ),
    ]);
    for day in ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"] {
        p.write(&format!("in/{day}/a.csv"), "n\n1\n2\n");
    }
    p.ok(&["migrate"]);
    let first = p.ok(&["daemon", "--replay", "2024-03-02..2024-03-05", "--quiet"]);
    first.says("8 succeeded, 0 failed, 0 not run");
    // A late file for a day inside the window, one for a day outside it.
    p.write("in/2024-03-04/b.csv", "n\n100\n");
    p.write("in/2024-03-01/b.csv", "n\n1000\n");
    let second = p.ok(&["daemon", "--replay", "2024-03-06..2024-03-06", "--quiet"]);
    // 03-05 is due on the 6th, and the late file's day reruns with what reads it.
    second.says("4 succeeded, 0 failed, 0 not run");
    let commits = |t: &str| commits_per_partition(&p.warehouse_table(t, 1));
    for t in ["landed", "summed"] {
        let c = commits(t);
        assert_eq!(c["2024-03-04"], 2, "{t}: {c:?}");
        assert_eq!(c["2024-03-01"], 1, "{t}: {c:?}");
        assert_eq!(c["2024-03-03"], 1, "{t}: {c:?}");
    }
    let rows = p.query("SELECT total10 FROM summed WHERE dt = DATE '2024-03-04'");
    assert_eq!(rows[0]["total10"], 1030);
    // Outside the window it is only shown: stale because of its input.
    let st = states(&p);
    assert_eq!(
        st[&key("landed", "2024-03-01")],
        (
            "stale".into(),
            "input".into(),
            vec!["in/2024-03-01/b.csv new".to_string()]
        )
    );
}

#[test]
fn an_upstream_rewritten_while_a_downstream_day_runs_leaves_that_day_stale() {
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-31");
    double_quantities(&p, "2024-01-05");
    // clean_orders 01-05's old content is read, and the run waits before its commit ...
    let (mut slow, _log) = p.spawn(
        &["run", "daily_revenue", "--partition", "2024-01-05"],
        &[
            ("SLUICE_FAILPOINT", "slow_commit"),
            ("SLUICE_FAILPOINT_DELAY_MS", "4000"),
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    // ... while the day is rewritten from the new export.
    p.ok(&["run", "clean_orders", "--partition", "2024-01-05"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(s) = slow.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "the slow run did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(0));
    // It committed what it read, and is stale for it: nothing is taken for fresh.
    let st = not_complete(&p);
    assert_eq!(
        st.get(&key("daily_revenue", "2024-01-05")),
        Some(&(
            "stale".to_string(),
            "upstream".to_string(),
            vec!["clean_orders 2024-01-05".to_string()]
        )),
        "{st:#?}"
    );
    backfill_stale(&p);
    assert_as_if_backfilled_with_doubled(&p, "2024-01-05");
}

#[test]
fn two_daemons_rerun_each_stale_partition_once() {
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-31");
    double_quantities(&p, "2024-01-12");
    // A backfill says what its rewrites made stale, as a run does.
    let out = p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-12",
        "--to",
        "2024-01-12",
        "--force",
    ]);
    out.says(
        "made stale downstream (9): daily_revenue 2024-01-12, regional_orders 2024-01-12:apac",
    );
    let before = writes(&p);
    // Two daemons on one catalog find the same stale partitions at once.
    let start = |log: &str| {
        // Half an hour without a tick: only what is stale runs. Each daemon's log is kept
        // to say, should a partition run twice, which daemon ran it and why.
        let log = std::fs::File::create(p.path().join(log)).unwrap();
        p.command(&[
            "daemon",
            "--replay",
            "2024-02-01T00:00:00Z..2024-02-01T00:30:00Z",
        ])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap()
    };
    let (a, b) = (start("daemon-a.log"), start("daemon-b.log"));
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let logs = || format!("{}\n{}", p.read("daemon-a.log"), p.read("daemon-b.log"));
    let mut reach = reached_by(12);
    reach.remove(&key("clean_orders", "2024-01-12"));
    for (k, n) in writes(&p) {
        let more = usize::from(reach.contains(&k));
        assert_eq!(n, before[&k] + more, "{k:?}\n{}", logs());
    }
    assert_eq!(not_complete(&p), BTreeMap::new());
}

#[tokio::test]
async fn mark_only_shows_an_upstream_change_and_the_metrics_count_it_by_kind() {
    use sluice::clock::ManualClock;
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-31");
    // daily_revenue only shows what an upstream change did; the others rerun it.
    let spec = p.read("jobs/daily_revenue.toml").replace(
        "time_zone = \"Europe/Berlin\"",
        "time_zone = \"Europe/Berlin\"\non_upstream_change = \"mark\"",
    );
    p.write("jobs/daily_revenue.toml", &spec);
    p.ok(&[
        "backfill",
        "daily_revenue",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-31",
        "--stale",
    ]);
    double_quantities(&p, "2024-01-05");
    p.ok(&["run", "clean_orders", "--partition", "2024-01-05"]);
    // Between two ticks: nothing is due but what is stale.
    let clock = ManualClock::new(crate::daemon::utc(2024, 2, 1, 0, 10));
    let mut d = crate::daemon::daemon(&p, &clock).await;
    d.run_until_idle().await;
    let metrics = d.metrics.render();
    for line in [
        "sluice_stale_partitions{job=\"daily_revenue\",because=\"upstream\"} 1",
        "sluice_stale_partitions{job=\"regional_orders\",because=\"upstream\"} 0",
        "sluice_stale_partitions{job=\"clean_orders\",because=\"input\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    assert!(d.queued().is_empty(), "{:?}", d.queued());
    let st = not_complete(&p);
    // Marked, not rerun; the regions, which rerun, are complete.
    assert_eq!(
        st.keys().cloned().collect::<Vec<_>>(),
        vec![key("daily_revenue", "2024-01-05")],
        "{st:#?}"
    );
}

#[tokio::test]
async fn the_grid_and_the_partition_page_say_why_a_partition_is_stale() {
    use crate::ui::{Ui, cells};
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-10");
    double_quantities(&p, "2024-01-05");
    p.ok(&["run", "clean_orders", "--partition", "2024-01-06"]);
    // The 6th's file is touched by nothing; the 5th's changed, and the 6th is rewritten
    // with the same data: its readers stay fresh. The pages read the catalog at each
    // request: one server sees both moments.
    let ui = Ui::start(&p, &[]);
    let grid_now = || async {
        let page = ui
            .get("/?from=2024-01-01&to=2024-01-10&per_page=200", &[])
            .await;
        (cells(&page.body), page)
    };
    let (cells_now, _) = grid_now().await;
    assert_eq!(
        cells_now[&key("clean_orders", "2024-01-05")],
        "input_changed"
    );
    assert_eq!(cells_now[&key("clean_orders", "2024-01-06")], "complete");
    assert_eq!(cells_now[&key("daily_revenue", "2024-01-06")], "complete");
    p.ok(&["run", "clean_orders", "--partition", "2024-01-05"]);
    let (grid, page) = grid_now().await;
    assert_eq!(grid[&key("clean_orders", "2024-01-05")], "complete");
    assert_eq!(
        grid[&key("daily_revenue", "2024-01-05")],
        "upstream_changed"
    );
    assert_eq!(grid[&key("rolling_revenue", "2024-01-05")], "complete");
    page.shows(
        "the grid",
        &["upstream changed: complete, but an upstream partition it read"],
    );
    let page = ui
        .get("/jobs/daily_revenue/partitions/2024-01-05", &[])
        .await;
    page.shows(
        "the partition page",
        &[
            "upstream changed: clean_orders 2024-01-05",
            "What its content read",
            "clean_orders v1: 2024-01-05 (data version ",
        ],
    );
    let page = ui
        .get("/jobs/clean_orders/partitions/2024-01-05", &[])
        .await;
    page.shows(
        "the partition page",
        &["sample-data/orders/dt=2024-01-05/orders.csv", "ETag"],
    );
}

#[test]
fn a_window_that_cannot_be_read_is_refused_by_validate_naming_the_field() {
    let p = TestProject::sample();
    let spec = p.read("jobs/rolling_revenue.toml");
    for (window, says) in [
        (
            "window = { from = 0, to = -6 }",
            "field `inputs[0].window` = { from = 0, to = -6 }: `from` must be at most `to`",
        ),
        ("window = { from = -6 }", "missing field `to`"),
    ] {
        p.write(
            "jobs/rolling_revenue.toml",
            &spec.replace("window = { from = -6, to = 0 }", window),
        );
        let out = p.run(&["validate"]);
        assert_eq!(out.code, 1, "{}", out.context());
        out.says(says);
    }
    // On a file input, whose files its path names.
    p.write("jobs/rolling_revenue.toml", &spec);
    let clean = p.read("jobs/clean_orders.toml").replace(
        "format = \"csv\"",
        "format = \"csv\"\nwindow = { from = -1, to = 0 }",
    );
    p.write("jobs/clean_orders.toml", &clean);
    let out = p.run(&["validate"]);
    out.says("input `orders`: `window` applies to table inputs only");
}
