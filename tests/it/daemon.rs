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
pub(crate) async fn runs(d: &Daemon, table: &str) -> BTreeMap<String, Vec<RunRow>> {
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

#[tokio::test]
async fn a_partition_another_daemon_failed_meanwhile_is_not_failed_again() {
    // Both daemons queue 2024-08-01 at 02:30 and wait for its file; it lands a minute
    // later; the first runs it, and it fails (its SQL cannot run).
    let mut job = daily_job(
        "broken",
        "cron = \"30 2 * * *\"\ntime_zone = \"Europe/Berlin\"\nwait_for_inputs = \"6h\"",
        "2024-08-01",
    );
    job[0].1 = job[0].1.replace(
        "[output]",
        "[[inputs]]\nname = \"src\"\npath = \"data/{partition}.csv\"\nformat = \"csv\"\nschema = [\"n BIGINT\"]\n\n[retry]\nmax_attempts = 1\n\n[output]",
    );
    job[1].1 =
        "SELECT CAST('not a number' AS BIGINT) AS n, CAST($partition AS STRING) AS p FROM src"
            .into();
    let p = project_of(&[job]);
    let clock = ManualClock::new(utc(2024, 8, 2, 0, 30));
    let mut first = daemon(&p, &clock).await;
    let mut second = daemon(&p, &clock).await;
    first.run_until_idle().await;
    second.run_until_idle().await;
    assert_eq!(first.queued(), ["broken/2024-08-01"]);
    assert_eq!(second.queued(), ["broken/2024-08-01"]);
    clock.advance(chrono::Duration::minutes(1));
    p.write("data/2024-08-01.csv", "n\n1\n");
    first.run_until_idle().await;
    let r = runs(&first, "broken").await;
    assert_eq!(r["2024-08-01"].len(), 1, "{r:#?}");
    assert_eq!(r["2024-08-01"][0].state, RunState::Failed);
    // The second finds it tried since it queued it: not run (nor failed, nor told) again.
    second.run_until_idle().await;
    assert!(second.queued().is_empty(), "{:?}", second.queued());
    let r = runs(&second, "broken").await;
    assert_eq!(r["2024-08-01"].len(), 1, "run twice: {r:#?}");
}

/// Between two polls the daemon judges again only what changed, and misses nothing: a day
/// another process rewrote under it is rerun downstream (that day only), and new code read
/// without a restart makes every partition of its job stale by code.
#[tokio::test]
async fn between_polls_the_daemon_sees_each_change_of_data_and_of_code() {
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-31");
    // Between two ticks: nothing is due but what is stale.
    let clock = ManualClock::new(utc(2024, 2, 1, 0, 10));
    let mut d = daemon(&p, &clock).await;
    d.run_until_idle().await;
    let stale = |d: &Daemon, job: &str, kind: &str| {
        let line = format!("sluice_stale_partitions{{job=\"{job}\",because=\"{kind}\"}} ");
        let metrics = d.metrics.render();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .unwrap_or_else(|| panic!("{line} in:\n{metrics}"))
            .to_string()
    };
    assert_eq!(stale(&d, "daily_revenue", "upstream"), "0");
    let before = runs(&d, "daily_revenue").await;

    crate::data_changes::double_quantities(&p, "2024-01-05");
    p.ok(&["run", "clean_orders", "--partition", "2024-01-05"]);
    d.run_until_idle().await;
    let after = runs(&d, "daily_revenue").await;
    let rerun: Vec<&String> = after
        .iter()
        .filter(|(k, r)| r.len() != before[k.as_str()].len())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(rerun, ["2024-01-05"], "the days run again");
    assert_eq!(
        after["2024-01-05"].last().unwrap().state,
        RunState::Succeeded
    );
    assert_eq!(stale(&d, "daily_revenue", "upstream"), "0");

    let sql = p.read("jobs/daily_revenue.sql");
    p.write(
        "jobs/daily_revenue.sql",
        &sql.replace("COUNT(*)", "COUNT(order_id)"),
    );
    d.run_until_idle().await;
    assert_eq!(stale(&d, "daily_revenue", "code"), "31");
    assert_eq!(stale(&d, "clean_orders", "code"), "0");
}
