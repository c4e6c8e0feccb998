//! Issue 38, delivery under load and faults, with real daemons and the Python receiver
//! (`webhook_receiver.py`): a flood of failures is one message and then one digest per
//! window; three daemons on one catalog (PostgreSQL in CI's second pass), one of them
//! SIGKILLed mid-delivery, a receiver answering 503 for minutes: every event is answered
//! 200 exactly once.

use crate::notify::{Receiver, SECRET};
use crate::util::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A project whose one hourly job, `hours`, fails every partition (its SQL cannot run):
/// `n` partitions due at once (catch-up), told to the receiver's webhook with `window`
/// (`at_most_every`) and `events` (a TOML list, or empty for all).
fn failing_hours(n: i64, rx: &Receiver, window: &str, events: &str) -> TestProject {
    let start = (chrono::Utc::now() - chrono::Duration::hours(n + 3)).format("%Y-%m-%dT%H");
    let p = TestProject::with_files(&[
        (
            "jobs/hours.toml",
            &format!(
                "version = 1\nstart = \"{start}\"\n\n[schedule]\ncron = \"0 * * * *\"\ntime_zone = \"UTC\"\n\
                 max_catch_up = {n}\nmax_concurrency = 4\n\n[partitioning]\ngranularity = \"hourly\"\n\
                 time_zone = \"UTC\"\n\n[output]\ntable = \"hours\"\n\n[retry]\nmax_attempts = 1\n"
            ),
        ),
        (
            "jobs/hours.sql",
            "SELECT CAST('not a number' AS BIGINT) AS x\n",
        ),
        (
            "migrations/0001_create_hours.sql",
            "CREATE TABLE hours (x BIGINT, hour TIMESTAMP NOT NULL) PARTITIONED BY (hour);\n",
        ),
    ]);
    let settings = p.read("sluice.toml");
    p.write(
        "sluice.toml",
        &format!(
            "{settings}\n[[notify]]\nname = \"oncall\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n\
             secret_env = \"HOOK_SECRET\"\nat_most_every = \"{window}\"\n{events}\n",
            rx.port
        ),
    );
    p.ok(&["migrate"]);
    p
}

/// The messages the receiver answered 200, in the order they came.
fn delivered(rx: &Receiver) -> Vec<(f64, Value)> {
    rx.received()
        .into_iter()
        .filter(|r| r["status"] == 200)
        .map(|r| {
            assert_eq!(r["signature_ok"], true, "Python's hmac disagrees: {r}");
            let body = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            (r["at"].as_f64().unwrap(), body)
        })
        .collect()
}

/// The events a message carries: a digest's, or the message's own.
fn events_in(message: &Value) -> Vec<Value> {
    match message["event"].as_str() {
        Some("digest") => message["events"].as_array().unwrap().clone(),
        _ => vec![message.clone()],
    }
}

/// Every event the receiver got in a message it answered 200.
fn told(rx: &Receiver) -> Vec<Value> {
    delivered(rx)
        .iter()
        .flat_map(|(_, m)| events_in(m))
        .collect()
}

#[test]
fn a_flood_of_500_failures_is_at_most_one_message_per_window() {
    let n = 500;
    let window = 15.0;
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path());
    let p = failing_hours(n, &rx, "15s", "events = [\"failed\"]");
    let env = [("HOOK_SECRET", SECRET)];
    let args = [
        "daemon",
        "--metrics-address",
        "off",
        "--max-concurrency",
        "4",
    ];
    let (mut daemon, log) = p.spawn(&args, &env);
    let started = Instant::now();
    while told(&rx).len() < n as usize {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{} of {n} failures told:\n{}",
            told(&rx).len(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    sigterm(&daemon);
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(60)), 0);

    // Every failure told once, as itself or in a digest.
    let events = told(&rx);
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "an event told twice");
    assert!(
        events
            .iter()
            .all(|e| e["event"] == "failed" && e["job"] == "hours")
    );
    let partitions: BTreeSet<&str> = events
        .iter()
        .map(|e| e["partition"].as_str().unwrap())
        .collect();
    assert!(partitions.len() >= n as usize, "{}", partitions.len());

    // At most one message per window: what waits when one opens goes as one digest.
    let messages = delivered(&rx);
    for pair in messages.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= window - 1.0, "two messages {gap:.1} s apart");
    }
    let spread = messages[messages.len() - 1].0 - messages[0].0;
    assert!(messages.len() as f64 <= 1.0 + spread / (window - 1.0));
    let digest = &messages
        .iter()
        .find(|(_, m)| m["event"] == "digest")
        .expect("a digest")
        .1;
    let summary = digest["summary"].as_str().unwrap();
    let carried = digest["events"].as_array().unwrap().len();
    assert!(
        summary.starts_with(&format!("{carried} partitions of hours failed: ")),
        "{summary}"
    );
    p.ok(&["notify", "list", "--limit", "1000"])
        .says("delivered (in a digest)");
    eprintln!(
        "{} failures told in {} messages over {spread:.0} s",
        events.len(),
        messages.len()
    );
}

/// How long the receiver answers 503: five minutes on PostgreSQL (CI's second pass), half
/// a minute on SQLite; `SLUICE_TEST_OUTAGE_SECS` sets it.
fn outage(p: &TestProject) -> Duration {
    let secs = std::env::var("SLUICE_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if p.catalog.is_some() { 300 } else { 30 });
    Duration::from_secs(secs)
}

/// Each delivery `notify list` shows, by event id, and its state.
fn deliveries(p: &TestProject) -> BTreeMap<String, (String, String)> {
    p.ok(&["notify", "list", "--limit", "100000", "--output", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let field = |k: &str| d[k].as_str().unwrap().to_string();
            (field("event_id"), (field("kind"), field("state")))
        })
        .collect()
}

#[test]
fn three_daemons_one_killed_mid_delivery_and_a_receiver_down_for_minutes_tell_each_event_once() {
    let n = 40;
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path());
    // Down, and slow about it: a request is held a second, for a sender to die meanwhile.
    std::fs::write(&rx.answer, "503 1").unwrap();
    let down_since = Instant::now();
    // Every event a message of its own: the most messages for the daemons to race for.
    let p = failing_hours(n, &rx, "0s", "");
    let outage = outage(&p);
    let env = [("HOOK_SECRET", SECRET), ("SLUICE_NOTIFY_RETRY_MS", "1000")];
    let args = ["daemon", "--metrics-address", "off"];
    let killed_env = [env[0], env[1], ("SLUICE_FAILPOINT", "notify_after_send")];
    let (mut a, log_a) = p.spawn(&args, &killed_env);
    let (mut b, log_b) = p.spawn(&args, &env);
    let (mut c, log_c) = p.spawn(&args, &env);
    // `a` has sent a message (answered 503) and not recorded how it went: killed there,
    // its claim lapses and another daemon sends the message again.
    wait_for_text(&log_a, "paused at failpoint", Duration::from_secs(120));
    sigkill(&mut a);
    let left = outage.saturating_sub(down_since.elapsed());
    std::thread::sleep(left);
    let tries_while_down = rx.received().len();
    std::fs::write(&rx.answer, "200").unwrap();

    // Up again: everything recorded is delivered, the failures and the three starts at
    // least (a daemon may also find the killed one's runs and tell `lease_lost`).
    let up = Instant::now();
    loop {
        let d = deliveries(&p);
        let failed = d.values().filter(|(k, _)| k == "failed").count();
        let started = d.values().filter(|(k, _)| k == "daemon_started").count();
        if failed >= n as usize && started == 3 && d.values().all(|(_, s)| s == "delivered") {
            break;
        }
        assert!(
            up.elapsed() < Duration::from_secs(600),
            "not all delivered 10 minutes after the receiver came back: {d:#?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    sigterm(&b);
    sigterm(&c);
    assert_eq!(wait_exit(&mut b, Duration::from_secs(90)), 0);
    assert_eq!(wait_exit(&mut c, Duration::from_secs(90)), 0);

    // Each event the catalog recorded was answered 200 exactly once, and nothing else was.
    let d = deliveries(&p);
    assert!(d.values().all(|(_, s)| s == "delivered"), "{d:#?}");
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for e in told(&rx) {
        *times
            .entry(e["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    // A second 200 is right only where a sender never had the first answer (the request
    // timed out or its connection broke after the receiver had it): it cannot know, and
    // sends again under the same X-Sluice-Delivery for the receiver to drop.
    let unanswered = unanswered_deliveries(&[&log_a, &log_b, &log_c]);
    let twice: Vec<_> = times
        .iter()
        .filter(|(id, n)| **n > 1 && !answer_lost(&rx, id, &unanswered))
        .collect();
    let warned = |log: &std::path::Path| -> String {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("notification"));
        lines.collect::<Vec<_>>().join("\n")
    };
    assert!(
        twice.is_empty(),
        "answered 200 more than once: {twice:?}\nwhat the live daemons said of it:\n{}\n---\n{}",
        warned(&log_b),
        warned(&log_c)
    );
    let recorded: BTreeSet<&String> = d.keys().collect();
    let answered: BTreeSet<&String> = times.keys().collect();
    assert_eq!(recorded, answered);
    // A partition one daemon failed is not failed again by the others (each queued it
    // before); only one queued after another had failed it runs it again.
    let failed = d.values().filter(|(k, _)| k == "failed").count();
    assert!(
        failed < 2 * n as usize,
        "{failed} failures of {n} partitions"
    );
    let stopped = d.values().filter(|(k, _)| k == "daemon_stopped").count();
    assert_eq!(
        stopped, 2,
        "the two daemons stopped cleanly said so: {d:#?}"
    );
    assert!(
        tries_while_down > d.len(),
        "the outage was retried: {tries_while_down} tries for {} events",
        d.len()
    );
    eprintln!(
        "{} events, {tries_while_down} tries while down for {:.0} s, each answered 200 once",
        d.len(),
        outage.as_secs_f64()
    );
}

/// The messages a daemon's log says it sent and had no answer to (a transport error, not a
/// status the receiver answered).
fn unanswered_deliveries(logs: &[&std::path::Path]) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            if !line.contains("notification not delivered") || line.contains("receiver answered") {
                continue;
            }
            let id = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("delivery="));
            ids.extend(id.map(|i| i.trim_matches('"').to_string()));
        }
    }
    ids
}

/// Whether event `id` was answered 200 in a message one of whose sends had no answer.
fn answer_lost(rx: &Receiver, id: &str, unanswered: &BTreeSet<String>) -> bool {
    rx.received().iter().any(|r| {
        let delivery = r["headers"]["x-sluice-delivery"]
            .as_str()
            .unwrap_or_default();
        let body: Value =
            serde_json::from_str(r["body"].as_str().unwrap_or("null")).unwrap_or_default();
        unanswered.contains(delivery) && events_in(&body).iter().any(|e| e["id"] == id)
    })
}

/// The sample project with the receiver's webhook for failures, checks, deadlines and
/// recoveries, and clean_orders due by 07:00 the day after.
fn sample_month(rx: &Receiver) -> TestProject {
    let p = TestProject::migrated();
    let settings = p.read("sluice.toml");
    p.write(
        "sluice.toml",
        &format!(
            "{settings}\n[[notify]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\nsecret_env = \"HOOK_SECRET\"\n\
             events = [\"failed\", \"check_failed\", \"deadline_missed\", \"recovered\"]\n",
            rx.port
        ),
    );
    crate::notify::with_deadline(&p);
    p
}

#[test]
fn a_month_replayed_with_failures_and_a_late_day_tells_each_event_once_and_a_clean_one_none() {
    let env = [("HOOK_SECRET", SECRET)];
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("clean")).unwrap();
    let clean_rx = Receiver::start(&dir.path().join("clean"));
    let clean = sample_month(&clean_rx);
    clean.run_env(&["daemon", "--replay", "2024-01-01..2024-02-01"], &env);
    assert!(clean_rx.received().is_empty(), "{:#?}", clean_rx.received());

    let rx = Receiver::start(dir.path());
    let p = sample_month(&rx);
    // The 5th's export has a status the check refuses; the 12th's never lands (its day
    // waits 6 hours from 02:30 for it, past its 07:00 deadline, then fails).
    p.break_export("2024-01-05");
    std::fs::remove_dir_all(p.file("sample-data/orders/dt=2024-01-12")).unwrap();
    let o = p.run_env(&["daemon", "--replay", "2024-01-01..2024-02-01"], &env);
    assert_eq!(o.code, 1, "{}", o.context());
    let got: Vec<(String, String, String, String)> = told(&rx)
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
            (s("event"), s("job"), s("partition"), s("at"))
        })
        .collect();
    let expected = [
        ("check_failed", "2024-01-05", "2024-01-06T01:30:00.000Z"),
        // Failed, so not complete by its deadline either: 07:00 CET is 06:00 UTC.
        ("deadline_missed", "2024-01-05", "2024-01-06T06:00:00.000Z"),
        ("deadline_missed", "2024-01-12", "2024-01-13T06:00:00.000Z"),
        // 02:30 CET and 6 hours of waiting for the export.
        ("failed", "2024-01-12", "2024-01-13T07:30:00.000Z"),
    ];
    let expected: Vec<(String, String, String, String)> = expected
        .iter()
        .map(|(e, p, at)| {
            (
                e.to_string(),
                "clean_orders".into(),
                p.to_string(),
                at.to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    let ids: BTreeSet<String> = told(&rx).iter().map(|e| e["id"].to_string()).collect();
    assert_eq!(ids.len(), got.len(), "an event told twice: {got:#?}");
}

#[test]
fn a_backfill_s_failures_are_one_message_unless_a_target_asks_for_each() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, each) = (
        dir.path().join("summary.jsonl"),
        dir.path().join("each.jsonl"),
    );
    let append = |f: &std::path::Path| {
        format!(
            "type = \"command\"\ncommand = [\"python3\", \"-c\", \"import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\\\n')\", \"{}\"]\nevents = [\"failed\", \"check_failed\"]\n",
            f.display()
        )
    };
    let p = TestProject::migrated();
    let settings = p.read("sluice.toml");
    p.write(
        "sluice.toml",
        &format!(
            "{settings}\n[[notify]]\nname = \"summary\"\n{}\n[[notify]]\nname = \"each\"\n{}backfill = \"per_partition\"\nat_most_every = \"0s\"\n",
            append(&summary),
            append(&each)
        ),
    );
    p.break_export("2024-01-05");
    p.break_export("2024-01-07");
    let o = p.run(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-04",
        "--to",
        "2024-01-08",
    ]);
    assert_eq!(o.code, 1, "{}", o.context());
    let one = crate::notify::json_lines(&summary);
    assert_eq!(one.len(), 1, "{one:#?}");
    let said = one[0]["error"].as_str().unwrap();
    assert_eq!(
        (&one[0]["event"], &one[0]["partition"]),
        (&"failed".into(), &Value::Null)
    );
    assert!(
        said.starts_with("backfill: 2 of 5 partition(s) failed: clean_orders 2024-01-05 (")
            && said.contains("; clean_orders 2024-01-07 ("),
        "{said}"
    );
    let each: Vec<(String, String)> = crate::notify::json_lines(&each)
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().into(),
                e["partition"].as_str().unwrap().into(),
            )
        })
        .collect();
    let days: BTreeSet<(String, String)> = each.iter().cloned().collect();
    assert_eq!(each.len(), 2, "{each:?}");
    assert_eq!(
        days,
        BTreeSet::from([
            ("check_failed".into(), "2024-01-05".into()),
            ("check_failed".into(), "2024-01-07".into())
        ])
    );
}
