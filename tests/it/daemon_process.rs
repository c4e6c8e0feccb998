//! The daemon as a real process: signals (SIGTERM with grace, SIGKILL and a restart), its
//! metrics and health, two daemons on one catalog, a backfill beside it, a shadow version,
//! and an unreachable Ballista scheduler.

use crate::daemon::{assert_once_each, daemon, daily_job, drive, project_of, runs, utc};
use crate::util::*;
use chrono::Utc;
use sluice::catalog::RunState;
use sluice::clock::ManualClock;
use std::collections::BTreeMap;
use std::time::Duration;

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
    // What the runs used, per job (counters that only grow).
    for counter in [
        "sluice_run_cpu_seconds_total",
        "sluice_run_object_store_requests_total",
        "sluice_run_written_bytes_total",
        "sluice_run_rows_total",
    ] {
        let v = metric(&after, &format!("{counter}{{job=\"ticks\"}}"));
        assert!(v > 0.0, "{counter} moved:\n{after}");
    }
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
