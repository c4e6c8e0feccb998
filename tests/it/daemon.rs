//! Issue: the scheduler daemon. The scheduling tests drive the daemon's core in-process with
//! a manual clock (nothing sleeps; days pass in milliseconds) against a real SQLite catalog
//! and real Delta tables; the process tests run the real binary and signal it.

use crate::util::*;
use chrono::{DateTime, TimeZone, Utc};
use sluice::catalog::{Catalog, RunRow, RunState};
use sluice::cli::context::Context;
use sluice::clock::{Clock, ManualClock};
use sluice::daemon::{Daemon, Options};
use sluice::project::Project;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap()
}

/// A daily job `name` writing `(p STRING, dt DATE)`: one row naming its partition.
pub(crate) fn daily_job(name: &str, schedule: &str, start: &str) -> [(String, String); 3] {
    [
        (
            format!("jobs/{name}.toml"),
            format!(
                "description = \"test job\"\nversion = 1\nstart = \"{start}\"\n\n[schedule]\n{schedule}\n\n[partitioning]\ngranularity = \"daily\"\ntime_zone = \"Europe/Berlin\"\n\n[output]\ntable = \"{name}\"\n"
            ),
        ),
        (
            format!("jobs/{name}.sql"),
            "SELECT CAST($partition AS STRING) AS p".to_string(),
        ),
        (
            format!("migrations/0001_{name}.sql"),
            format!("CREATE TABLE {name} (p STRING, dt DATE NOT NULL) PARTITIONED BY (dt);\n"),
        ),
    ]
}

pub(crate) fn project_of(jobs: &[[(String, String); 3]]) -> TestProject {
    // Each job's migration gets its own number.
    let files: Vec<(String, String)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(i, j)| {
            j.iter().map(move |(path, text)| {
                (
                    path.replace("migrations/0001_", &format!("migrations/{:04}_", i + 1)),
                    text.clone(),
                )
            })
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let p = TestProject::with_files(&files);
    p.ok(&["migrate"]);
    p
}

/// A daemon on `p` whose clock is `clock`, as a restarted process would build it.
pub(crate) async fn daemon(p: &TestProject, clock: &ManualClock) -> Daemon {
    let project = Project::load(&p.overrides()).unwrap();
    assert!(project.problems.is_empty(), "{:?}", project.problems);
    let catalog = Catalog::connect(&project.settings.catalog_url)
        .await
        .unwrap();
    let cx = Context::new(Arc::new(project), catalog, Arc::new(clock.clone()));
    cx.daemon(Arc::new(cx.runner().unwrap()), Options::default())
}

/// Moves the clock to `until` in steps, letting the daemon do all it can at each step.
pub(crate) async fn drive(
    d: &mut Daemon,
    clock: &ManualClock,
    until: DateTime<Utc>,
    step: chrono::Duration,
) {
    d.run_until_idle().await;
    while clock.now() < until {
        clock.advance(step);
        d.run_until_idle().await;
    }
}

/// Every run of every partition of `table` v1, by partition.
async fn runs(d: &Daemon, table: &str) -> BTreeMap<String, Vec<RunRow>> {
    let c = d.catalog();
    let mut out = BTreeMap::new();
    for p in c.partitions_of(table, 1).await.unwrap() {
        let r = c
            .runs_of_partition(table, 1, &p.partition_key)
            .await
            .unwrap();
        out.insert(p.partition_key, r);
    }
    out
}

/// Asserts `table` has exactly `days` partitions, each run once, successfully.
pub(crate) async fn assert_once_each(
    d: &Daemon,
    table: &str,
    days: &[&str],
) -> BTreeMap<String, Vec<RunRow>> {
    let r = runs(d, table).await;
    let got: Vec<&str> = r.keys().map(|k| k.as_str()).collect();
    assert_eq!(got, days, "{table}: partitions run");
    for (k, rs) in &r {
        let states: Vec<RunState> = rs.iter().map(|r| r.state).collect();
        assert_eq!(
            states,
            [RunState::Succeeded],
            "{table} {k}: one run, succeeded"
        );
    }
    r
}

fn started(r: &BTreeMap<String, Vec<RunRow>>, day: &str) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(r[day][0].started_at).unwrap()
}

#[tokio::test]
async fn daylight_saving_days_run_every_partition_once() {
    // Spring forward (2024-03-31 02:00 → 03:00 in Berlin: 02:30 does not exist) and fall
    // back (2024-10-27 03:00 → 02:00: 02:30 happens twice). `daily` ticks at 02:30;
    // `hourly` ticks every hour of every day, each tick naming yesterday.
    for (start, from, until, days) in [
        (
            "2024-03-28",
            utc(2024, 3, 28, 23, 0),
            utc(2024, 4, 2, 6, 0),
            [
                "2024-03-28",
                "2024-03-29",
                "2024-03-30",
                "2024-03-31",
                "2024-04-01",
            ],
        ),
        (
            "2024-10-24",
            utc(2024, 10, 24, 22, 0),
            utc(2024, 10, 29, 6, 0),
            [
                "2024-10-24",
                "2024-10-25",
                "2024-10-26",
                "2024-10-27",
                "2024-10-28",
            ],
        ),
    ] {
        let p = project_of(&[
            daily_job(
                "daily",
                "cron = \"30 2 * * *\"\ntime_zone = \"Europe/Berlin\"",
                start,
            ),
            daily_job(
                "hourly",
                "cron = \"0 * * * *\"\ntime_zone = \"Europe/Berlin\"",
                start,
            ),
        ]);
        let clock = ManualClock::new(from);
        let mut d = daemon(&p, &clock).await;
        drive(&mut d, &clock, until, chrono::Duration::minutes(10)).await;
        let daily = assert_once_each(&d, "daily", &days).await;
        assert_once_each(&d, "hourly", &days).await;
        // Each daily partition ran at its tick (within the 10-minute step), in Berlin time.
        let berlin = chrono_tz::Europe::Berlin;
        for day in days {
            let t = started(&daily, day).with_timezone(&berlin);
            let next = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .unwrap()
                .succ_opt()
                .unwrap();
            assert_eq!(t.date_naive(), next, "{day} runs the next morning, ran {t}");
            let local = t.format("%H:%M").to_string();
            // 02:30 → 02:40, or right after the gap on the spring-forward day.
            let ok = ("02:30".."02:40").contains(&local.as_str())
                || (day == "2024-03-30" && ("03:00".."03:10").contains(&local.as_str()));
            assert!(ok, "{day} ran at {t}");
        }
        // Rows as written: one per partition, read back by an independent reader.
        let rows = read_delta_rows(&p.warehouse_table("daily", 1), None).await;
        let want: Vec<String> = days.iter().map(|d| format!("p={d}|dt={d}")).collect();
        assert_eq!(rows, want);
    }
}

#[tokio::test]
async fn after_downtime_missed_partitions_run_once_in_order_per_policy() {
    let sched = |policy: &str| {
        format!("cron = \"30 2 * * *\"\ntime_zone = \"Europe/Berlin\"\ncatch_up = \"{policy}\"")
    };
    let p = project_of(&[
        daily_job("all_missed", &sched("all"), "2024-05-01"),
        daily_job(
            "capped",
            &format!("{}\nmax_catch_up = 2", sched("all")),
            "2024-05-01",
        ),
        daily_job("latest_only", &sched("latest"), "2024-05-01"),
        daily_job("none_missed", &sched("none"), "2024-05-01"),
    ]);
    // First start on 2024-05-03 at 04:00 Berlin, runs a day, stops.
    let clock = ManualClock::new(utc(2024, 5, 3, 2, 0));
    let mut d = daemon(&p, &clock).await;
    drive(
        &mut d,
        &clock,
        utc(2024, 5, 4, 2, 0),
        chrono::Duration::minutes(30),
    )
    .await;
    drop(d);
    // Four days down; restarted on 2024-05-08 at 04:00 Berlin.
    clock.set(utc(2024, 5, 8, 2, 0));
    let mut d = daemon(&p, &clock).await;
    d.run_until_idle().await;
    let restart = clock.now();
    drive(
        &mut d,
        &clock,
        utc(2024, 5, 9, 2, 0),
        chrono::Duration::minutes(30),
    )
    .await;

    let all = assert_once_each(
        &d,
        "all_missed",
        &[
            "2024-05-01",
            "2024-05-02",
            "2024-05-03",
            "2024-05-04",
            "2024-05-05",
            "2024-05-06",
            "2024-05-07",
            "2024-05-08",
        ],
    )
    .await;
    // In order: each partition's commit comes after the one before it.
    let versions: Vec<i64> = all.values().map(|r| r[0].delta_version.unwrap()).collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "commits out of order: {versions:?}"
    );
    for day in ["2024-05-04", "2024-05-05", "2024-05-06", "2024-05-07"] {
        assert_eq!(started(&all, day), restart, "{day} is caught up on restart");
    }
    assert_once_each(
        &d,
        "capped",
        &[
            "2024-05-01",
            "2024-05-02",
            "2024-05-03",
            "2024-05-06",
            "2024-05-07",
            "2024-05-08",
        ],
    )
    .await;
    assert_once_each(
        &d,
        "latest_only",
        &["2024-05-02", "2024-05-03", "2024-05-07", "2024-05-08"],
    )
    .await;
    assert_once_each(&d, "none_missed", &["2024-05-03", "2024-05-08"]).await;
}

#[tokio::test]
async fn new_sql_is_used_by_the_next_run_and_a_broken_spec_stops_only_its_job() {
    let sched = "cron = \"30 2 * * *\"\ntime_zone = \"Europe/Berlin\"";
    let mut code = daily_job("code", sched, "2024-06-01");
    code[1].1 = "SELECT 'v1' AS p".into();
    let p = project_of(&[code, daily_job("other", sched, "2024-06-01")]);
    let clock = ManualClock::new(utc(2024, 6, 2, 2, 0));
    let mut d = daemon(&p, &clock).await;
    d.run_until_idle().await;

    // New code while the daemon runs; and the other job's spec breaks.
    p.write("jobs/code.sql", "SELECT 'v2' AS p");
    let other = p.read("jobs/other.toml");
    p.write("jobs/other.toml", &format!("{other}\nretries = 3\n"));
    drive(
        &mut d,
        &clock,
        utc(2024, 6, 3, 2, 0),
        chrono::Duration::minutes(30),
    )
    .await;

    let rows = read_delta_rows(&p.warehouse_table("code", 1), None).await;
    assert_eq!(rows, ["p=v1|dt=2024-06-01", "p=v2|dt=2024-06-02"]);
    let status = p.ok(&["status", "code", "--output", "json"]).json();
    let fps: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(fps.len(), 2);
    assert_ne!(
        fps[0], fps[1],
        "each partition records the code that wrote it"
    );

    let other = runs(&d, "other").await;
    assert_eq!(other["2024-06-01"][0].state, RunState::Succeeded);
    let failed = &other["2024-06-02"][0];
    assert_eq!(failed.state, RunState::Failed);
    let why = failed.error.as_deref().unwrap();
    assert!(
        why.contains("jobs/other.toml") && why.contains("retries"),
        "{why}"
    );

    // Fixed: the next tick runs it again.
    p.write(
        "jobs/other.toml",
        &p.read("jobs/other.toml").replace("\nretries = 3\n", ""),
    );
    drive(
        &mut d,
        &clock,
        utc(2024, 6, 4, 2, 0),
        chrono::Duration::minutes(30),
    )
    .await;
    let other = runs(&d, "other").await;
    assert_eq!(other["2024-06-03"][0].state, RunState::Succeeded);
    assert_eq!(
        runs(&d, "code").await["2024-06-03"][0].state,
        RunState::Succeeded
    );
}

#[tokio::test]
async fn downstream_waits_for_upstream_and_files_wait_with_a_timeout() {
    let files = [
        (
            "jobs/landing.toml",
            "version = 1\nstart = \"2024-07-01\"\n[schedule]\ncron = \"30 2 * * *\"\ntime_zone = \"UTC\"\nwait_for_inputs = \"2h\"\n[partitioning]\ngranularity = \"daily\"\n[[inputs]]\nname = \"raw\"\npath = \"in/{partition}.csv\"\nformat = \"csv\"\nschema = [\"n BIGINT NOT NULL\"]\n[output]\ntable = \"landing\"\n",
        ),
        ("jobs/landing.sql", "SELECT n FROM raw"),
        (
            "jobs/summary.toml",
            "version = 1\nstart = \"2024-07-01\"\n[schedule]\ncron = \"0 1 * * *\"\ntime_zone = \"UTC\"\n[partitioning]\ngranularity = \"daily\"\n[[inputs]]\nname = \"landing\"\ntable = \"landing\"\n[output]\ntable = \"summary\"\n",
        ),
        ("jobs/summary.sql", "SELECT SUM(n) AS total FROM landing"),
        (
            "migrations/0001_tables.sql",
            "CREATE TABLE landing (n BIGINT, dt DATE NOT NULL) PARTITIONED BY (dt);\nCREATE TABLE summary (total BIGINT, dt DATE NOT NULL) PARTITIONED BY (dt);\n",
        ),
    ];
    let p = TestProject::with_files(&files);
    p.ok(&["migrate"]);
    let clock = ManualClock::new(utc(2024, 7, 2, 0, 0));
    let mut d = daemon(&p, &clock).await;
    // 01:00: summary's 07-01 is due, landing's is not done; 02:30: landing waits for its file.
    drive(
        &mut d,
        &clock,
        utc(2024, 7, 2, 3, 0),
        chrono::Duration::minutes(15),
    )
    .await;
    assert!(
        runs(&d, "summary").await.is_empty(),
        "summary ran before its upstream"
    );
    assert!(
        runs(&d, "landing").await.is_empty(),
        "landing ran without its file"
    );
    let mut queued = d.queued();
    queued.sort();
    assert_eq!(queued, ["landing/2024-07-01", "summary/2024-07-01"]);
    // The file arrives: landing runs, then summary right after.
    p.write("in/2024-07-01.csv", "n\n1\n2\n");
    drive(
        &mut d,
        &clock,
        utc(2024, 7, 2, 3, 30),
        chrono::Duration::minutes(15),
    )
    .await;
    let landing = runs(&d, "landing").await;
    let summary = runs(&d, "summary").await;
    assert_eq!(landing["2024-07-01"][0].state, RunState::Succeeded);
    assert_eq!(summary["2024-07-01"][0].state, RunState::Succeeded);
    assert!(summary["2024-07-01"][0].started_at >= landing["2024-07-01"][0].finished_at.unwrap());
    let rows = read_delta_rows(&p.warehouse_table("summary", 1), None).await;
    assert_eq!(rows, ["total=3|dt=2024-07-01"]);
    // The next file never comes: two hours after the tick the partition fails, saying why.
    drive(
        &mut d,
        &clock,
        utc(2024, 7, 3, 5, 0),
        chrono::Duration::minutes(15),
    )
    .await;
    let failed = &runs(&d, "landing").await["2024-07-02"][0];
    assert_eq!(failed.state, RunState::Failed);
    let why = failed.error.as_deref().unwrap();
    assert!(
        why.contains("in/2024-07-02.csv") && why.contains("did not arrive within 2h"),
        "{why}"
    );
    assert_eq!(
        d.queued(),
        ["summary/2024-07-02"],
        "summary still waits for its upstream"
    );
}

// ---- the real process --------------------------------------------------------------------

/// A free loopback port for the metrics endpoint.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn curl(url: &str) -> String {
    stdout_of(
        std::process::Command::new("curl").args(["-sS", "--max-time", "5", url]),
        &format!("curl {url} (bash .ci/run installs curl)"),
    )
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0.0)
}

/// A project whose one job, `ticks`, has `days` daily partitions due right away (catch-up
/// from `days` days ago, UTC), with 2-second leases so that takeovers happen quickly.
/// Returns the first and last partition due.
pub(crate) fn ticks_project(days: i64) -> (TestProject, String, String) {
    let today = Utc::now().date_naive();
    let from = (today - chrono::Duration::days(days)).to_string();
    let to = (today - chrono::Duration::days(1)).to_string();
    let job = daily_job("ticks", "cron = \"0 0 * * *\"\ntime_zone = \"UTC\"", &from);
    let p = project_of(&[job]);
    let t = p
        .read("jobs/ticks.toml")
        .replace("time_zone = \"Europe/Berlin\"\n\n[output]", "\n[output]");
    p.write("jobs/ticks.toml", &t);
    p.write("sluice.toml", "[runner]\nlease_ttl_seconds = 2\n");
    (p, from, to)
}

fn process_project() -> TestProject {
    ticks_project(3).0
}

/// `N` daemons on `p` (two partitions at a time each, no metrics endpoint), each run
/// pausing `commit_delay_ms` before its commit so that daemons hold leases for a while.
pub(crate) fn spawn_daemons<const N: usize>(
    p: &TestProject,
    commit_delay_ms: u64,
) -> [(std::process::Child, std::path::PathBuf); N] {
    let delay = commit_delay_ms.to_string();
    let args = [
        "daemon",
        "--metrics-address",
        "off",
        "--max-concurrency",
        "2",
    ];
    let env = [
        ("SLUICE_FAILPOINT", "slow_commit"),
        ("SLUICE_FAILPOINT_DELAY_MS", delay.as_str()),
    ];
    std::array::from_fn(|_| p.spawn(&args, &env))
}

/// `ticks`' partitions and their states, from `sluice status`.
pub(crate) fn states(p: &TestProject) -> BTreeMap<String, String> {
    p.ok(&["status", "ticks", "--output", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["partition"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits until `ticks` has `n` partitions, all complete.
pub(crate) fn wait_complete(p: &TestProject, n: usize, within: Duration) {
    let start = std::time::Instant::now();
    loop {
        let s = states(p);
        if s.len() == n && s.values().all(|v| v == "complete") {
            return;
        }
        assert!(
            start.elapsed() < within,
            "not done within {within:?}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn sigterm_finishes_or_cancels_cleanly_and_metrics_move() {
    let p = process_project();
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    // Each run takes 1.5 s before committing; one at a time.
    let env = [
        ("SLUICE_FAILPOINT", "slow_commit"),
        ("SLUICE_FAILPOINT_DELAY_MS", "1500"),
    ];
    let args = [
        "daemon",
        "--metrics-address",
        addr.as_str(),
        "--max-concurrency",
        "1",
        "--grace",
        "30",
    ];
    let (mut child, log) = p.spawn(&args, &env);
    wait_for_text(&log, "serving /metrics", Duration::from_secs(30));
    let before = curl(&format!("http://{addr}/metrics"));
    assert!(
        before.contains("# TYPE sluice_runs_total counter"),
        "{before}"
    );
    let health = curl(&format!("http://{addr}/health"));
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    wait_for_text(&log, "partition done", Duration::from_secs(60));
    let after = curl(&format!("http://{addr}/metrics"));
    let done = metric(
        &after,
        "sluice_runs_total{job=\"ticks\",state=\"succeeded\"}",
    );
    assert!(done >= 1.0, "the run counter moved:\n{after}");
    assert!(
        after.contains("sluice_run_duration_seconds_count{job=\"ticks\"}"),
        "{after}"
    );
    // SIGTERM while the next run is under way: it finishes within the grace period.
    wait_for_text(&log, "delaying at failpoint", Duration::from_secs(30));
    let running_before = states(&p).values().filter(|s| *s == "running").count();
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("stopping: starting nothing new") && l.contains("running=1")),
        "stopped while a run was under way:\n{text}"
    );
    let s = states(&p);
    assert!(
        s.values().all(|v| v == "complete"),
        "after a graceful stop: {s:?} (running before: {running_before})"
    );

    // SIGTERM with no grace: the run under way is cancelled, nothing of it is committed.
    // Long leases: only the release on stop lets the next run in at once.
    let p = process_project();
    p.write(
        "sluice.toml",
        "[runner]\nlease_ttl_seconds = 600\n[lineage]\ntransport = \"file\"\npath = \"lineage.ndjson\"\n",
    );
    let args = ["daemon", "--metrics-address", "off", "--grace", "0"];
    let (mut child, log) = p.spawn(&args, &[("SLUICE_FAILPOINT", "before_commit")]);
    wait_for_text(&log, "paused at failpoint", Duration::from_secs(60));
    let table = p.warehouse_table("ticks", 1);
    let version = delta_log_version(&table);
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("cancelled runs settled"), "{text}");
    assert_eq!(
        delta_log_version(&table),
        version,
        "nothing committed after the cancel"
    );
    let s = states(&p);
    assert!(
        s.values().all(|v| v == "failed"),
        "cancelled runs are recorded as such, not left running: {s:?}"
    );
    let status = p.ok(&["status", "ticks", "--output", "json"]).json();
    let why = status[0]["error"].as_str().unwrap_or_default();
    assert!(why.contains("cancelled by the daemon's shutdown"), "{why}");
    assert!(read_delta_rows(&table, None).await.is_empty());
    // OpenLineage heard of the cancel: the run's START, then ABORT, inside the daemon's run.
    let events: Vec<serde_json::Value> = p
        .read("lineage.ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kind = |e: &serde_json::Value| e["eventType"].as_str().unwrap().to_string();
    let daemon: Vec<String> = events
        .iter()
        .filter(|e| e["job"]["name"] == "sluice.daemon")
        .map(kind)
        .collect();
    assert_eq!(daemon, ["START", "COMPLETE"]);
    let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["job"]["name"] == "ticks") {
        let run = e["run"]["runId"].as_str().unwrap().to_string();
        runs.entry(run).or_default().push(kind(e));
    }
    assert!(!runs.is_empty(), "{events:?}");
    for (run, kinds) in &runs {
        assert_eq!(kinds, &["START", "ABORT"], "run {run}");
    }
    crate::lineage::assert_valid_openlineage(&p, &events);
    // Their leases were released: a run right away is not held.
    let day = s.keys().next().unwrap().clone();
    p.ok(&["run", "ticks", "--partition", &day]);
}

#[tokio::test]
async fn after_sigkill_a_restart_leaves_no_partial_partition() {
    let p = process_project();
    let args = ["daemon", "--metrics-address", "off"];
    let (mut child, log) = p.spawn(&args, &[("SLUICE_FAILPOINT", "before_commit")]);
    wait_for_text(&log, "paused at failpoint", Duration::from_secs(60));
    sigkill(&mut child);
    let table = p.warehouse_table("ticks", 1);
    assert!(
        read_delta_rows(&table, None).await.is_empty(),
        "a killed run left rows"
    );
    let (mut child, log) = p.spawn(&args, &[]);
    wait_complete(&p, 3, Duration::from_secs(90));
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 0);
    let rows = read_delta_rows(&table, None).await;
    assert_eq!(
        rows.len(),
        3,
        "one row per partition, no duplicates: {rows:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("marking it abandoned"),
        "the dead run is reconciled:\n{text}"
    );
    let status = p.ok(&["status", "ticks", "--output", "json"]).json();
    for s in status.as_array().unwrap() {
        assert_eq!(s["state"], "complete");
    }
}

#[test]
fn two_daemons_on_one_catalog_run_each_partition_once() {
    let p = process_project();
    let [(mut a, log_a), (mut b, log_b)] = spawn_daemons(&p, 300);
    wait_complete(&p, 3, Duration::from_secs(90));
    sigterm(&a);
    sigterm(&b);
    assert_eq!(wait_exit(&mut a, Duration::from_secs(30)), 0);
    assert_eq!(wait_exit(&mut b, Duration::from_secs(30)), 0);
    let logs = std::fs::read_to_string(&log_a).unwrap() + &std::fs::read_to_string(&log_b).unwrap();
    let ran = logs.matches("run succeeded").count();
    assert_eq!(
        ran, 3,
        "each partition written by exactly one daemon:\n{logs}"
    );
    let commits = logs.matches("run started").count();
    assert_eq!(commits, 3, "no partition started twice:\n{logs}");
}

#[test]
fn a_backfill_beside_the_daemon_never_runs_a_partition_twice() {
    let p = process_project();
    let env = [
        ("SLUICE_FAILPOINT", "slow_commit"),
        ("SLUICE_FAILPOINT_DELAY_MS", "300"),
    ];
    let (mut daemon, log) = p.spawn(&["daemon", "--metrics-address", "off"], &env);
    let today = Utc::now().date_naive();
    let from = (today - chrono::Duration::days(3)).to_string();
    let to = (today - chrono::Duration::days(1)).to_string();
    let mut backfill = p.command(&["backfill", "--from", &from, "--to", &to, "--output", "json"]);
    for (k, v) in env {
        backfill.env(k, v);
    }
    let out = backfill.output().unwrap();
    let summary: serde_json::Value = strict_json(&String::from_utf8_lossy(&out.stdout)).unwrap();
    wait_complete(&p, 3, Duration::from_secs(90));
    sigterm(&daemon);
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(30)), 0);
    let logs = std::fs::read_to_string(&log).unwrap() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        logs.matches("run started").count(),
        3,
        "each partition started once:\n{logs}"
    );
    assert_eq!(logs.matches("run succeeded").count(), 3, "{logs}");
    // The backfill's summary accounts for every partition: ran it, or found it done by the
    // daemon.
    let items = summary["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{summary:#}");
    for i in items {
        let o = i["outcome"].as_str().unwrap();
        assert!(o == "succeeded" || o == "done_elsewhere", "{summary:#}");
    }
}

#[tokio::test]
async fn while_a_new_version_shadows_the_live_one_both_are_written_and_readers_see_the_live_one() {
    let sched = "cron = \"30 2 * * *\"\ntime_zone = \"Europe/Berlin\"";
    let up = daily_job("up", sched, "2024-08-01");
    let mut down = daily_job(
        "down",
        "cron = \"0 3 * * *\"\ntime_zone = \"Europe/Berlin\"",
        "2024-08-01",
    );
    down[0].1 = down[0].1.replace(
        "[output]",
        "[[inputs]]\nname = \"up\"\ntable = \"up\"\n\n[output]",
    );
    down[1].1 = "SELECT max(p) AS p FROM up".into();
    let p = project_of(&[up, down]);
    let clock = ManualClock::new(utc(2024, 8, 2, 2, 0));
    let mut d = daemon(&p, &clock).await;
    d.run_until_idle().await;
    // v2 of `up`, with new SQL, deployed while the daemon runs; v1 stays live.
    let spec = p.read("jobs/up.toml").replace("version = 1", "version = 2");
    p.write("jobs/up.toml", &spec);
    p.write(
        "jobs/up.sql",
        "SELECT CAST($partition AS STRING) || '-v2' AS p",
    );
    drive(
        &mut d,
        &clock,
        utc(2024, 8, 3, 2, 0),
        chrono::Duration::minutes(30),
    )
    .await;

    let v1 = read_delta_rows(&p.warehouse_table("up", 1), None).await;
    assert_eq!(
        v1,
        ["p=2024-08-01|dt=2024-08-01", "p=2024-08-02|dt=2024-08-02"],
        "the live version got the new partition, from its own code"
    );
    let v2 = read_delta_rows(&p.warehouse_table("up", 2), None).await;
    assert_eq!(
        v2,
        ["p=2024-08-02-v2|dt=2024-08-02"],
        "the new version got it from the new code"
    );
    let down = read_delta_rows(&p.warehouse_table("down", 1), None).await;
    assert_eq!(
        down,
        ["p=2024-08-01|dt=2024-08-01", "p=2024-08-02|dt=2024-08-02"],
        "downstream still reads the live version"
    );
    assert_eq!(
        p.location_dir(p.ok(&["resolve", "up"]).stdout.trim()),
        p.warehouse_table("up", 1)
    );
}

/// A job on Ballista whose scheduler cannot be reached fails its partitions, each run
/// naming the scheduler; the daemon goes on with the other jobs, whose partitions all run.
#[tokio::test]
async fn an_unreachable_ballista_scheduler_fails_only_the_jobs_sent_to_it() {
    let cron = "cron = \"30 2 * * *\"\ntime_zone = \"Europe/Berlin\"";
    let mut remote = daily_job("remote", cron, "2024-05-01");
    remote[0].1.push_str("\n[engine]\nkind = \"ballista\"\n");
    let p = project_of(&[daily_job("local", cron, "2024-05-01"), remote]);
    p.write(
        "sluice.toml",
        "[engine]\nscheduler = \"df://127.0.0.1:9\"\n",
    );
    let clock = ManualClock::new(utc(2024, 5, 1, 23, 0));
    let mut d = daemon(&p, &clock).await;
    drive(
        &mut d,
        &clock,
        utc(2024, 5, 4, 6, 0),
        chrono::Duration::minutes(10),
    )
    .await;
    assert_once_each(&d, "local", &["2024-05-01", "2024-05-02", "2024-05-03"]).await;
    let remote = runs(&d, "remote").await;
    assert!(!remote.is_empty(), "the job on Ballista was not tried");
    for (day, rs) in &remote {
        for r in rs {
            assert_eq!(r.state, RunState::Failed, "remote {day}");
            let error = r.error.as_deref().unwrap_or_default();
            assert!(error.contains("127.0.0.1:9"), "remote {day}: {error}");
        }
    }
}
