//! Issue: beyond one machine. Several workers share one catalog and one warehouse; the
//! suite runs these on whatever the rest runs on, so in CI's second pass they are real
//! daemons on PostgreSQL and an S3-compatible server, killed and paused with real signals.

use crate::daemon_process::{spawn_daemons, states, ticks_project, wait_complete};
use crate::util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The rows of the same partitions written by one clean backfill on a fresh project.
async fn clean_rows(days: i64, from: &str, to: &str) -> Vec<String> {
    let (clean, _, _) = ticks_project(days);
    clean.ok(&["backfill", "ticks", "--from", from, "--to", to]);
    read_delta_rows(&clean.warehouse_table("ticks", 1), None).await
}

/// Partitions named on the log's lines that contain `what` (the run span names them).
fn partitions_logged(log: &str, what: &str) -> BTreeSet<String> {
    log.lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| {
            let rest = &l[l.find("partition=")? + "partition=".len()..];
            Some(rest.split(['}', ' ', ':']).next()?.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_daemons_share_the_work_and_a_killed_one_loses_nothing() {
    let days = 12;
    let (p, from, to) = ticks_project(days);
    // Each run waits 700 ms before its commit, so that every daemon holds leases a while.
    let [(mut a, log_a), (mut b, log_b), (mut c, log_c)] = spawn_daemons(&p, 700);
    // Kill `a` while it holds leases: it has claimed a partition and is about to commit it.
    wait_for_text(&log_a, "delaying at failpoint", Duration::from_secs(60));
    sigkill(&mut a);
    let text_a = std::fs::read_to_string(&log_a).unwrap();
    let started = partitions_logged(&text_a, "run started");
    let finished = partitions_logged(&text_a, "run succeeded");
    let orphaned: BTreeSet<_> = started.difference(&finished).cloned().collect();
    assert!(
        !orphaned.is_empty(),
        "the killed daemon held no lease:\n{text_a}"
    );

    wait_complete(&p, days as usize, Duration::from_secs(180));
    sigterm(&b);
    sigterm(&c);
    assert_eq!(wait_exit(&mut b, Duration::from_secs(60)), 0);
    assert_eq!(wait_exit(&mut c, Duration::from_secs(60)), 0);

    let table = p.warehouse_table("ticks", 1);
    let tokens = commit_tokens(&table);
    assert_eq!(tokens.len(), days as usize, "{tokens:?}");
    for (partition, t) in &tokens {
        assert_eq!(
            t.len(),
            1,
            "{partition} written {} times: {tokens:?}",
            t.len()
        );
    }
    // What the killed daemon left in flight was taken over after its lease expired: the
    // commit carries a later fencing token than the dead worker's.
    for partition in &orphaned {
        let t = &tokens[partition];
        assert!(t[0] >= 2, "{partition} was not taken over: {tokens:?}");
    }
    // Every live daemon did some of the work.
    let text_b = std::fs::read_to_string(&log_b).unwrap();
    let text_c = std::fs::read_to_string(&log_c).unwrap();
    for (name, text) in [("b", &text_b), ("c", &text_c)] {
        assert!(
            text.contains("run succeeded"),
            "daemon {name} ran nothing:\n{text}"
        );
    }
    // Each tick is seen by every daemon, yet the live ones started each partition once
    // between them.
    let mut starts: BTreeMap<String, usize> = BTreeMap::new();
    for text in [&text_b, &text_c] {
        for partition in text
            .lines()
            .filter(|l| l.contains("run started"))
            .flat_map(|l| partitions_logged(l, "run started"))
        {
            *starts.entry(partition).or_default() += 1;
        }
    }
    assert!(
        starts.values().all(|n| *n == 1) && starts.len() + finished.len() == days as usize,
        "partitions started more than once, or never: {starts:?} (the killed daemon finished {finished:?})"
    );
    let rows = read_delta_rows(&table, None).await;
    assert_same_rows(
        "ticks after a killed daemon",
        &rows,
        &clean_rows(days, &from, &to).await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_worker_cannot_commit_over_the_one_that_took_its_partition() {
    let (p, _from, day) = ticks_project(3);
    // `a` claims the partition and stops just before its commit, with its files written.
    let (mut a, log_a) = p.spawn(
        &["run", "ticks", "--partition", &day],
        &[
            ("SLUICE_FAILPOINT", "slow_commit"),
            ("SLUICE_FAILPOINT_DELAY_MS", "1500"),
        ],
    );
    wait_for_text(&log_a, "delaying at failpoint", Duration::from_secs(60));
    signal(&a, "STOP");
    // `b` is refused while the lease holds (exit 3), then takes the partition over once the
    // paused worker's lease has expired.
    let start = Instant::now();
    let b = loop {
        let o = p.run(&["run", "ticks", "--partition", &day, "--output", "json"]);
        if o.code != 3 {
            break o;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the paused worker's lease never expired{}",
            o.context()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(b.code, 0, "{}", b.context());
    assert_eq!(b.json()["state"], "succeeded", "{}", b.context());
    signal(&a, "CONT");
    let code = wait_exit(&mut a, Duration::from_secs(60));
    let text_a = std::fs::read_to_string(&log_a).unwrap();
    assert_ne!(code, 0, "the paused worker claims success:\n{text_a}");
    assert!(
        text_a.contains("taken over by another worker"),
        "the paused worker does not say why it stopped:\n{text_a}"
    );

    // One commit, the taker's (fencing token 2); its rows; and the partition still complete.
    let table = p.warehouse_table("ticks", 1);
    let tokens = commit_tokens(&table);
    assert_eq!(tokens.get(&day), Some(&vec![2]), "{tokens:?}");
    let rows = read_delta_rows(&table, None).await;
    assert_same_rows(
        "ticks after a takeover",
        &rows,
        &clean_rows(3, &day, &day).await,
    );
    assert_eq!(states(&p).get(&day).map(String::as_str), Some("complete"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_lease_lapsed_but_was_not_taken_still_commits() {
    let (p, _from, day) = ticks_project(3);
    // No heartbeat and a 3 s pause before the commit: the 2 s lease lapses with nobody
    // waiting for it, as when a loaded machine starves the heartbeat. The commit renews it
    // first, so the run still lands, once, under its own token.
    let o = p.run_env(
        &["run", "ticks", "--partition", &day, "--output", "json"],
        &[
            ("SLUICE_FAILPOINT", "slow_commit,no_heartbeat"),
            ("SLUICE_FAILPOINT_DELAY_MS", "3000"),
        ],
    );
    assert_eq!(o.code, 0, "{}", o.context());
    assert_eq!(o.json()["state"], "succeeded", "{}", o.context());
    let table = p.warehouse_table("ticks", 1);
    assert_eq!(commit_tokens(&table).get(&day), Some(&vec![1]));
    assert_same_rows(
        "ticks after a lapsed lease",
        &read_delta_rows(&table, None).await,
        &clean_rows(3, &day, &day).await,
    );
    assert_eq!(states(&p).get(&day).map(String::as_str), Some("complete"));
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn no_secret_appears_in_logs_errors_or_status() {
    let p = TestProject::sample();
    // The real secrets of this run (the catalog's password, the object store's keys), and
    // wrong ones handed to commands that must fail.
    let mut secrets: Vec<String> = Vec::new();
    if let Some(url) = &p.catalog {
        let u = url::Url::parse(url).unwrap();
        secrets.extend(u.password().map(str::to_string));
    }
    for k in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
    ] {
        secrets.extend(std::env::var(k).ok().filter(|v| v.len() >= 6));
    }
    let wrong_password = "pw-Wrong-7c1e95";
    let wrong_key_id = "AKIAWRONG7C1E95";
    let wrong_secret = "s3-Wrong-Secret-7c1e95";
    secrets.extend([wrong_password, wrong_key_id, wrong_secret].map(String::from));

    let mut outputs = vec![
        p.run(&["migrate", "-vv"]),
        p.run(&[
            "backfill",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-03",
            "-vv",
        ]),
        p.run(&["status"]),
        p.run(&["status", "--output", "json", "-vv"]),
        p.run(&["status", "clean_orders", "--output", "json"]),
        p.run(&["tables", "--output", "json"]),
        p.run(&["query", "SELECT count(*) AS n FROM clean_orders", "-vv"]),
        p.run(&["dlq", "list", "clean_orders", "-vv"]),
    ];
    for o in &outputs[..2] {
        assert_eq!(o.code, 0, "{}", o.context());
    }
    // A failing run: its error lands in the catalog and in `status`.
    p.write(
        "jobs/daily_revenue.sql",
        "SELECT no_such_column FROM clean_orders",
    );
    outputs.push(p.run(&["run", "daily_revenue", "--partition", "2024-01-02", "-vv"]));
    outputs.push(p.run(&["status", "daily_revenue", "--output", "json"]));

    // The catalog with a wrong password: on the real server if there is one, else a port
    // where nothing answers. Either way a clear error, with the password hidden.
    let bad_catalog = match &p.catalog {
        Some(url) => {
            let mut u = url::Url::parse(url).unwrap();
            u.set_password(Some(wrong_password)).unwrap();
            u.to_string()
        }
        None => format!(
            "postgres://sluice:{wrong_password}@127.0.0.1:{}/cat",
            closed_port()
        ),
    };
    let o = p.run(&["status", "--catalog", &bad_catalog, "-vv"]);
    assert_eq!(o.code, 2, "{}", o.context());
    o.complains("sluice:***@");
    outputs.push(o);

    // The warehouse with wrong keys: on the real S3-compatible server if there is one.
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .unwrap_or_else(|_| format!("http://127.0.0.1:{}", closed_port()));
    let o = p.run_env(
        &[
            "run",
            "clean_orders",
            "--partition",
            "2024-01-02",
            "--warehouse",
            "s3://sluice-no-such-bucket/lake",
            "-vv",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", wrong_key_id),
            ("AWS_SECRET_ACCESS_KEY", wrong_secret),
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    assert_ne!(o.code, 0, "{}", o.context());
    outputs.push(o);

    // The daemon's own log, at the most detailed level.
    let (mut d, log) = p.spawn(&["daemon", "--metrics-address", "off", "-vv"], &[]);
    wait_for_text(&log, "daemon", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&d);
    wait_exit(&mut d, Duration::from_secs(60));
    let daemon_log = std::fs::read_to_string(&log).unwrap();

    for s in &secrets {
        for o in &outputs {
            assert!(
                !o.stdout.contains(s.as_str()) && !o.stderr.contains(s.as_str()),
                "a secret ({} characters) appears in the output{}",
                s.len(),
                o.context().replace(s.as_str(), "<SECRET>")
            );
        }
        assert!(
            !daemon_log.contains(s.as_str()),
            "a secret appears in the daemon's log:\n{}",
            daemon_log.replace(s.as_str(), "<SECRET>")
        );
    }
}

#[test]
fn an_object_store_that_cannot_commit_atomically_is_refused_unless_allowed() {
    let p = TestProject::sample();
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .unwrap_or_else(|_| format!("http://127.0.0.1:{}", closed_port()));
    let warehouse = p
        .warehouse
        .clone()
        .unwrap_or_else(|| "s3://sluice-no-such-bucket/lake/".into());
    let base = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("SLUICE_WAREHOUSE", warehouse.as_str()),
    ];
    let run = |extra: &[(&str, &str)]| {
        let mut env = base.to_vec();
        env.extend_from_slice(extra);
        p.run_env(&["migrate"], &env)
    };
    let o = run(&[("AWS_S3_ALLOW_UNSAFE_RENAME", "true")]);
    assert_eq!(o.code, 2, "{}", o.context());
    assert!(
        o.stderr.contains("Delta commits would not be atomic")
            && o.stderr.contains("AWS_S3_ALLOW_UNSAFE_RENAME")
            && o.stderr.contains("allow_unsafe_commits"),
        "{}",
        o.context()
    );
    // With conditional put off, the S3 client cannot commit at all: refused up front, opt-out
    // or not, instead of failing every commit later.
    for opt_out in [&[][..], &[("SLUICE_ALLOW_UNSAFE_COMMITS", "1")][..]] {
        let mut env = vec![("AWS_CONDITIONAL_PUT", "disabled")];
        env.extend_from_slice(opt_out);
        let o = run(&env);
        assert_eq!(o.code, 2, "{opt_out:?}{}", o.context());
        assert!(
            o.stderr.contains("no Delta commit could succeed")
                && o.stderr.contains("unset AWS_CONDITIONAL_PUT"),
            "{opt_out:?}{}",
            o.context()
        );
    }
    // On a real store, an explicit opt-out lets the unsafe-rename setup write, and commit.
    if p.remote() {
        let unsafe_rename = [
            ("AWS_S3_ALLOW_UNSAFE_RENAME", "true"),
            ("SLUICE_ALLOW_UNSAFE_COMMITS", "1"),
        ];
        let o = run(&unsafe_rename);
        assert_eq!(o.code, 0, "{}", o.context());
        let mut env = base.to_vec();
        env.extend_from_slice(&unsafe_rename);
        let o = p.run_env(&["run", "clean_orders", "--partition", "2024-01-02"], &env);
        assert_eq!(o.code, 0, "{}", o.context());
    }
}

/// A partition whose compute holds both cores (every worker thread of the runtime) for
/// several times its 2-second lease: its heartbeat, on a thread of its own, still renews
/// the lease, so a second worker asking for the partition meanwhile is told it is held,
/// and the first commits once, under its own token. On the shared runtime the heartbeat
/// starved, the lease lapsed, and the second worker took a live partition over.
#[test]
fn a_partition_that_holds_both_cores_past_its_lease_is_not_taken_over() {
    let job = crate::daemon::daily_job("heavy", "cron = \"0 0 * * *\"", "2024-01-01");
    let mut files: Vec<(&str, &str)> = job.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    // Two generated streams summed in two tasks: both cores, for some seconds.
    let sql = "SELECT CAST($partition AS STRING) AS p FROM (SELECT sum(value % 7) AS s FROM (SELECT value FROM range(0, 2000000000) UNION ALL SELECT value FROM range(0, 2000000000))) WHERE s >= 0";
    files[1].1 = sql;
    files.push((
        "sluice.toml",
        "[engine]\ntarget_partitions = 2\n[runner]\nlease_ttl_seconds = 2\n",
    ));
    let p = TestProject::with_files(&files);
    p.ok(&["migrate"]);
    let day = "2024-01-01";
    let (mut first, log) = p.spawn(&["run", "heavy", "--partition", day], &[]);
    wait_for_text(&log, "run started", Duration::from_secs(60));
    // Twice the lease into the compute.
    std::thread::sleep(Duration::from_secs(4));
    let second = p.run(&["run", "heavy", "--partition", day, "--output", "json"]);
    let code = wait_exit(&mut first, Duration::from_secs(300));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        second.json()["state"],
        "held",
        "the second worker finds the partition held{}\nfirst worker's log:\n{text}",
        second.context()
    );
    assert_eq!(code, 0, "the first worker's run succeeds:\n{text}");
    assert!(!text.contains("lease lost"), "{text}");
    let table = p.warehouse_table("heavy", 1);
    assert_eq!(
        commit_tokens(&table).get(day),
        Some(&vec![1]),
        "one commit, under token 1"
    );
}
