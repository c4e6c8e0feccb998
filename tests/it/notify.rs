//! Issue 38, first part: `[[notify]]` targets and `sluice notify test`. A webhook's
//! signature is checked by a receiver in Python (`webhook_receiver.py`, with Python's own
//! `hmac`); a Slack target gets a readable line; a command gets the JSON on its stdin; no
//! secret is ever printed; a bad target is refused naming what to fix.

use crate::util::{REPO, TestProject};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const SECRET: &str = "hook-secret-0123456789";

pub(crate) struct Receiver {
    child: Child,
    pub port: u16,
    log: PathBuf,
    /// Where the status it answers is written (none: 200).
    pub answer: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    pub fn start(dir: &Path) -> Receiver {
        let port_file = dir.join("receiver.port");
        let log = dir.join("received.jsonl");
        let answer = dir.join("answer");
        let child = Command::new("python3")
            .arg(Path::new(REPO).join("tests/it/webhook_receiver.py"))
            .args([port_file.to_str().unwrap(), log.to_str().unwrap(), SECRET])
            .arg(&answer)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 tests/it/webhook_receiver.py");
        let started = Instant::now();
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().parse().unwrap();
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no receiver");
            std::thread::sleep(Duration::from_millis(50));
        };
        Receiver {
            child,
            port,
            log,
            answer,
        }
    }

    /// What it received, one JSON object per request.
    pub fn received(&self) -> Vec<serde_json::Value> {
        json_lines(&self.log)
    }
}

/// The JSON objects of a file of one per line (none when it does not exist yet).
pub(crate) fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Makes clean_orders due by 07:00 (Berlin) the day after its partition.
pub(crate) fn with_deadline(p: &TestProject) -> String {
    let spec = p.read("jobs/clean_orders.toml");
    p.write(
        "jobs/clean_orders.toml",
        &spec.replace(
            "wait_for_inputs = \"6h\"",
            "wait_for_inputs = \"6h\"\ndeadline = \"07:00\"",
        ),
    );
    spec
}

fn project_with_targets(targets: &str) -> TestProject {
    let p = TestProject::migrated();
    let settings = p.read("sluice.toml");
    p.write("sluice.toml", &format!("{settings}\n{targets}"));
    p
}

#[test]
fn notify_test_reaches_a_signed_webhook_slack_and_a_command_and_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path());
    let slack_url = format!(
        "http://127.0.0.1:{}/services/T000/B000/slack-secret-path",
        rx.port
    );
    let out = dir.path().join("command.json");
    let p = project_with_targets(&format!(
        r#"
[ui]
public_url = "https://sluice.example.com/"

[[notify]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_env = "HOOK_SECRET"
events = ["failed", "deadline_missed"]

[[notify]]
type = "slack"
url_env = "SLACK_URL"

[[notify]]
type = "command"
command = ["python3", "-c", "import sys; open(sys.argv[1], 'w').write(sys.stdin.read())", "{out}"]
"#,
        port = rx.port,
        out = out.display()
    ));
    let env = [("HOOK_SECRET", SECRET), ("SLACK_URL", slack_url.as_str())];
    let o = p.run_env(&["notify", "test"], &env);
    assert_eq!(o.code, 0, "{}", o.context());
    for name in ["hook", "slack#2", "command#3"] {
        o.says(&format!("{name}: delivered (id "));
    }
    for secret in [SECRET, "slack-secret-path"] {
        assert!(
            !o.stdout.contains(secret) && !o.stderr.contains(secret),
            "{}",
            o.context()
        );
    }

    let got = rx.received();
    assert_eq!(got.len(), 2, "{got:#?}");
    let hook = got
        .iter()
        .find(|r| r["path"] == "/hook")
        .expect("the webhook's request");
    assert_eq!(
        hook["signature_ok"], true,
        "Python's hmac disagrees: {hook:#}"
    );
    let payload: serde_json::Value = serde_json::from_str(hook["body"].as_str().unwrap()).unwrap();
    assert_eq!(payload["version"], 1);
    assert_eq!(payload["event"], "test");
    assert_eq!(hook["headers"]["x-sluice-delivery"], payload["id"]);
    assert_eq!(payload["link"], "https://sluice.example.com/");
    assert!(chrono::DateTime::parse_from_rfc3339(payload["at"].as_str().unwrap()).is_ok());
    let slack = got.iter().find(|r| r["path"] != "/hook").unwrap();
    assert_eq!(
        slack["signature_ok"],
        serde_json::Value::Null,
        "Slack is not signed"
    );
    let text: serde_json::Value = serde_json::from_str(slack["body"].as_str().unwrap()).unwrap();
    assert!(
        text["text"]
            .as_str()
            .unwrap()
            .contains("a test message from sluice"),
        "{text}"
    );
    // The command got the same event on its stdin.
    let by_command: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(by_command["id"], payload["id"]);

    // A wrong key: the receiver refuses the signature, and sluice says so (exit 1).
    let o = p.run_env(
        &["notify", "test", "--target", "hook"],
        &[
            ("HOOK_SECRET", "not-the-key"),
            ("SLACK_URL", slack_url.as_str()),
        ],
    );
    assert_eq!(o.code, 1, "{}", o.context());
    o.says("hook: NOT delivered: the receiver answered 401 Unauthorized");
    assert_eq!(rx.received().last().unwrap()["signature_ok"], false);
    // The key unset: said without sending.
    let o = p.run_env(&["notify", "test", "--target", "hook"], &[]);
    assert_eq!(o.code, 1, "{}", o.context());
    o.says("the environment variable HOOK_SECRET is not set");
    // Nobody listening: not reached, and the Slack URL (its secret) is not in the message.
    drop(rx);
    let o = p.run_env(&["notify", "test", "--target", "slack#2"], &env);
    assert_eq!(o.code, 1, "{}", o.context());
    o.says("slack#2: NOT delivered");
    assert!(!o.stdout.contains("slack-secret-path"), "{}", o.context());
}

#[test]
fn a_target_that_cannot_work_is_refused_naming_what_to_fix() {
    for (target, says) in [
        (
            "type = \"webhook\"\n",
            "needs `url`, or `url_env`/`url_file`",
        ),
        (
            "type = \"webhook\"\nurl = \"http://x/\"\nevents = [\"fialed\"]\n",
            "event `fialed` is not one of failed, check_failed",
        ),
        (
            "type = \"pager\"\nurl = \"http://x/\"\n",
            "type = `pager` is not one of webhook, slack, command",
        ),
        (
            "type = \"slack\"\nurl = \"http://x/\"\nsecret_env = \"K\"\n",
            "a Slack webhook is not signed",
        ),
        (
            "type = \"command\"\ncommand = []\n",
            "needs `command = [\"program\"",
        ),
        ("type = \"webhook\"\nurl = \"not a url\"\n", "is not a URL"),
        (
            "type = \"webhook\"\nurl = \"http://x/\"\nat_most_every = \"soon\"\n",
            "at_most_every = `soon`",
        ),
        (
            "type = \"webhook\"\nurl = \"http://x/\"\nbackfill = \"each\"\n",
            "backfill = `each` is not `summary`",
        ),
    ] {
        let p = project_with_targets(&format!("[[notify]]\n{target}"));
        let o = p.run(&["notify", "test"]);
        assert_eq!(o.code, 2, "{}", o.context());
        o.complains("sluice.toml: [[notify]]");
        o.complains(says);
    }
    let p = TestProject::migrated();
    let o = p.run(&["notify", "test"]);
    assert_eq!(o.code, 2, "{}", o.context());
    o.complains("sluice.toml has no [[notify]] target");
    // A job the target names that the project does not have: `validate` says so.
    let p = project_with_targets(
        "[[notify]]\ntype = \"command\"\ncommand = [\"true\"]\njobs = [\"clean_ordrs\"]\n",
    );
    let o = p.run(&["validate"]);
    assert_eq!(o.code, 1, "{}", o.context());
    o.says("sluice.toml: [[notify]] `command#1`: no job `clean_ordrs` in this project; did you mean `clean_orders`?");
}

/// The events the receiver got, parsed: (signature_ok, payload).
fn payloads(rx: &Receiver) -> Vec<(serde_json::Value, serde_json::Value)> {
    rx.received()
        .into_iter()
        .map(|r| {
            let body = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            (r["signature_ok"].clone(), body)
        })
        .collect()
}

#[test]
fn a_daemon_tells_each_event_once_to_the_targets_that_want_it() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path());
    let all = dir.path().join("all.jsonl");
    let p = project_with_targets(&format!(
        r#"
[[notify]]
name = "oncall"
type = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_env = "HOOK_SECRET"
events = ["check_failed", "failed", "recovered"]
# Each event alone: the digests have a test of their own.
at_most_every = "0s"

[[notify]]
name = "all"
type = "command"
command = ["python3", "-c", "import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')", "{all}"]
"#,
        port = rx.port,
        all = all.display()
    ));
    let env = [("HOOK_SECRET", SECRET)];
    // 2024-01-05's export has an order whose status the `accepted_values` check refuses.
    let f = "sample-data/orders/dt=2024-01-05/orders.csv";
    let good = p.break_export("2024-01-05");
    let o = p.run_env(&["daemon", "--replay", "2024-01-01..2024-01-08"], &env);
    assert_eq!(o.code, 1, "{}", o.context());
    let got = payloads(&rx);
    assert_eq!(got.len(), 1, "one event for the on-call target: {got:#?}");
    let (signed, first) = &got[0];
    assert_eq!(*signed, true, "Python's hmac disagrees");
    assert_eq!(
        (&first["event"], &first["job"], &first["partition"]),
        (
            &"check_failed".into(),
            &"clean_orders".into(),
            &"2024-01-05".into()
        )
    );
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .contains("accepted_values_status"),
        "{first}"
    );
    assert_eq!(
        first["at"], "2024-01-06T01:30:00.000Z",
        "the event's time is the run's (simulated)"
    );
    // The target of every event also heard of the warning checks, each once.
    let everything: Vec<serde_json::Value> = json_lines(&all);
    let kinds: Vec<&str> = everything
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"check_failed") && kinds.contains(&"check_warned"),
        "{kinds:?}"
    );
    let mut ids: Vec<&str> = everything
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        everything.len(),
        "an event told twice: {everything:#?}"
    );

    // A backfill's failures are one message at its end, sent by the backfill itself.
    let o = p.run_env(
        &[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-04",
            "--to",
            "2024-01-05",
            "--force",
        ],
        &env,
    );
    assert_eq!(o.code, 1, "{}", o.context());
    let got = payloads(&rx);
    assert_eq!(got.len(), 2, "{got:#?}");
    let summary = &got[1].1;
    assert_eq!(
        (&summary["event"], &summary["job"], &summary["partition"]),
        (
            &"failed".into(),
            &"clean_orders".into(),
            &serde_json::Value::Null
        )
    );
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .starts_with("backfill: 1 of 2 partition(s) failed: clean_orders 2024-01-05 ("),
        "{summary}"
    );

    // The export fixed, a backfill reruns the day: `recovered`, once, with an id of its
    // own (the failure was told; who fixed it does not matter).
    p.write(f, &good);
    let o = p.run_env(
        &[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-05",
            "--to",
            "2024-01-05",
        ],
        &env,
    );
    assert_eq!(o.code, 0, "{}", o.context());
    let got = payloads(&rx);
    assert_eq!(got.len(), 3, "{got:#?}");
    let recovered = &got[2].1;
    assert_eq!(
        (&recovered["event"], &recovered["partition"]),
        (&"recovered".into(), &"2024-01-05".into())
    );
    assert_ne!(recovered["id"], first["id"]);

    // The target of everything heard of the failure minutes ago (the backfill's summary):
    // its `recovered` waits for its window (`at_most_every`, 10 minutes); a daemon sends
    // it then (a replay's clock, in 2024, is not the window's: it opens at once).
    let list = p.ok(&["notify", "list", "--output", "json"]).json();
    let waiting: Vec<&serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] != "delivered")
        .collect();
    assert_eq!(waiting.len(), 1, "{list:#}");
    assert_eq!(
        (&waiting[0]["target"], &waiting[0]["kind"]),
        (&"all".into(), &"recovered".into())
    );
    p.ok(&["notify", "list"]).says("waiting for its window");
    let o = p.run_env(&["daemon", "--replay", "2024-01-06..2024-01-07"], &env);
    assert_eq!(o.code, 0, "{}", o.context());
    assert_eq!(
        payloads(&rx).len(),
        3,
        "the on-call target has nothing more"
    );
    // `notify list` says how each went.
    let list = p.ok(&["notify", "list", "--output", "json"]).json();
    let rows = list.as_array().unwrap();
    assert!(rows.iter().all(|r| r["state"] == "delivered"), "{list:#}");
    assert_eq!(
        rows.iter().filter(|r| r["target"] == "oncall").count(),
        3,
        "{list:#}"
    );
}

#[test]
fn a_clean_replay_tells_nobody_anything() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path());
    let p = project_with_targets(&format!(
        "[[notify]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\nevents = [\"failed\", \"check_failed\", \"recovered\"]\n",
        rx.port
    ));
    p.ok(&["daemon", "--replay", "2024-01-01..2024-01-04"]);
    assert!(rx.received().is_empty(), "{:#?}", rx.received());
    p.ok(&["notify", "list"]).says("no events yet");
}

#[test]
fn a_receiver_that_stays_away_is_retried_for_an_hour_then_given_up_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path());
    std::fs::write(&rx.answer, "503").unwrap();
    let p = project_with_targets(&format!(
        "[[notify]]\nname = \"oncall\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\nevents = [\"check_failed\"]\n",
        rx.port
    ));
    p.break_export("2024-01-05");
    // Days of simulated time after the failure: the retries' waits pass, then the hour.
    let o = p.run(&["daemon", "--replay", "2024-01-05..2024-01-09"]);
    assert_eq!(o.code, 1, "{}", o.context());
    let tries = rx.received();
    assert!(tries.len() >= 2, "retried: {tries:#?}");
    let ids: std::collections::BTreeSet<String> = tries
        .iter()
        .map(|r| {
            let b: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            b["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every try carries the event's one id");
    let list = p.ok(&["notify", "list", "--output", "json"]).json();
    let d = &list[0];
    assert_eq!(d["state"], "undelivered", "{list:#}");
    assert_eq!(d["attempts"].as_u64(), Some(tries.len() as u64), "{list:#}");
    assert!(
        d["last_error"].as_str().unwrap().contains("503"),
        "{list:#}"
    );
    o.complains("notification given up");
    // Back up, the given-up event stays given up: nothing is sent twice later.
    std::fs::write(&rx.answer, "200").unwrap();
    p.run(&["daemon", "--replay", "2024-01-10..2024-01-11"]);
    assert_eq!(rx.received().len(), tries.len());
    // A running daemon counts it in /metrics.
    let addr = format!("127.0.0.1:{}", crate::daemon_process::free_port());
    let (mut daemon, _) = p.spawn(&["daemon", "--metrics-address", &addr], &[]);
    let started = Instant::now();
    let metrics = || {
        Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{addr}/metrics")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    while !metrics().contains("\nsluice_notifications_undelivered 1\n") {
        assert!(started.elapsed() < Duration::from_secs(60), "no metric");
        std::thread::sleep(Duration::from_millis(200));
    }
    crate::util::sigkill(&mut daemon);
}

#[test]
fn a_lease_taken_over_from_a_killed_worker_and_the_daemon_s_start_and_stop_are_told() {
    use crate::util::{sigkill, sigterm, wait_for_text};
    let dir = tempfile::tempdir().unwrap();
    let told = dir.path().join("told.jsonl");
    let p = project_with_targets(&format!(
        r#"
[runner]
lease_ttl_seconds = 1

[[notify]]
type = "command"
command = ["python3", "-c", "import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')", "{told}"]
events = ["lease_lost", "daemon_started", "daemon_stopped"]
"#,
        told = told.display()
    ));
    // A worker killed with its files uploaded and nothing committed.
    let (mut worker, log) = p.spawn(
        &["run", "clean_orders", "-p", "2024-01-02"],
        &[("SLUICE_FAILPOINT", "before_commit")],
    );
    wait_for_text(&log, "paused at failpoint", Duration::from_secs(60));
    sigkill(&mut worker);
    std::thread::sleep(Duration::from_millis(1500));
    // The next run takes the lease over and finds the dead run: abandoned, and told.
    p.ok(&["run", "clean_orders", "-p", "2024-01-02"]);

    let (daemon, dlog) = p.spawn(&["daemon", "--metrics-address", "off"], &[]);
    wait_for_text(&told, "daemon_started", Duration::from_secs(60));
    wait_for_text(&told, "lease_lost", Duration::from_secs(60));
    sigterm(&daemon);
    let mut daemon = daemon;
    let status = daemon.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&dlog).unwrap_or_default()
    );
    let events: Vec<serde_json::Value> = json_lines(&told);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["daemon_started", "daemon_stopped", "lease_lost"],
        "{events:#?}"
    );
    let lost = events.iter().find(|e| e["event"] == "lease_lost").unwrap();
    assert_eq!(
        (&lost["job"], &lost["partition"]),
        (&"clean_orders".into(), &"2024-01-02".into())
    );
}

#[test]
fn a_late_day_is_told_at_its_deadline_once() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path());
    let p = project_with_targets(&format!(
        "[[notify]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\nevents = [\"deadline_missed\"]\n",
        rx.port
    ));
    // clean_orders must be complete by 07:00 Berlin the day after; 2024-01-10's export
    // never lands, and the day waits its 6 hours from 02:30 for it.
    let spec = with_deadline(&p);
    std::fs::remove_dir_all(p.file("sample-data/orders/dt=2024-01-10")).unwrap();
    p.ok(&["validate"]);
    let o = p.run(&["daemon", "--replay", "2024-01-01..2024-01-12"]);
    assert_eq!(o.code, 1, "{}", o.context());
    let got = payloads(&rx);
    assert_eq!(got.len(), 1, "{got:#?}");
    let missed = &got[0].1;
    assert_eq!(
        (&missed["event"], &missed["job"], &missed["partition"]),
        (
            &"deadline_missed".into(),
            &"clean_orders".into(),
            &"2024-01-10".into()
        )
    );
    // Told at the deadline itself (07:00 CET is 06:00 UTC), in simulated time.
    assert_eq!(missed["at"], "2024-01-11T06:00:00.000Z", "{missed}");
    assert!(
        missed["error"]
            .as_str()
            .unwrap()
            .contains("not complete by 2024-01-11 07:00 CET"),
        "{missed}"
    );
    // `status` and the grid say it: not complete, past its deadline.
    let st = p.ok(&["status", "clean_orders", "--output", "json"]).json();
    let late: Vec<&str> = st
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["late"] == true)
        .map(|r| r["partition"].as_str().unwrap())
        .collect();
    assert_eq!(late, ["2024-01-10"], "{st:#}");
    p.ok(&["status", "clean_orders", "--state", "failed"])
        .says("failed, late");
    let ui = crate::ui::Ui::start(&p, &[]);
    let grid = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(ui.get("/?job=clean_orders&from=2024-01-01&to=2024-01-12", &[]));
    assert!(
        grid.body.contains("class=\"cell s-failed late\"")
            && grid
                .body
                .contains("aria-label=\"clean_orders 2024-01-10: failed, past its deadline\""),
        "{}",
        grid.body
    );
    // And the 12th, never run (the replay ended before its tick), is late too.
    assert!(
        grid.body
            .contains("aria-label=\"clean_orders 2024-01-12: missing, past its deadline\"")
    );
    assert_eq!(grid.body.matches(" late\"").count(), 2, "{}", grid.body);
    drop(ui);
    // A bad deadline is refused naming the field.
    p.write(
        "jobs/clean_orders.toml",
        &spec.replace("wait_for_inputs = \"6h\"", "deadline = \"7 am\""),
    );
    let o = p.run(&["validate"]);
    assert_eq!(o.code, 1, "{}", o.context());
    o.says("field `schedule.deadline`");
}

#[test]
fn dead_letters_are_told_over_each_target_s_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let told = dir.path().join("told.jsonl");
    let many = dir.path().join("many.jsonl");
    let append = |f: &Path| {
        format!(
            "command = [\"python3\", \"-c\", \"import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\\\n')\", \"{}\"]",
            f.display()
        )
    };
    let p = project_with_targets(&format!(
        "[[notify]]\nname = \"any\"\ntype = \"command\"\n{}\nevents = [\"dead_letters\"]\nat_most_every = \"0s\"\n\n\
         [[notify]]\nname = \"many\"\ntype = \"command\"\n{}\nevents = [\"dead_letters\"]\ndead_letters_over = 1000\n",
        append(&told),
        append(&many)
    ));
    p.ok(&["daemon", "--replay", "2024-01-01..2024-01-08"]);
    // The export has a few rows that do not fit (bad_rows = "skip"): each day with some is
    // told once to the target of any, and not to the one that waits for a thousand.
    let letters = p
        .ok(&["dlq", "list", "clean_orders", "--output", "json"])
        .json();
    let with_letters: std::collections::BTreeSet<&str> = letters
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["partition"].as_str().unwrap())
        .collect();
    assert!(!with_letters.is_empty(), "{letters:#}");
    let events: Vec<serde_json::Value> = json_lines(&told);
    let days: Vec<&str> = events
        .iter()
        .map(|e| e["partition"].as_str().unwrap())
        .collect();
    assert_eq!(
        days.iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        with_letters,
        "{events:#?}"
    );
    assert_eq!(days.len(), with_letters.len(), "told twice: {days:?}");
    assert!(
        events.iter().all(|e| e["event"] == "dead_letters"
            && e["error"]
                .as_str()
                .unwrap()
                .contains("row(s) set aside in the dead letters")),
        "{events:#?}"
    );
    assert!(!many.exists(), "under the threshold: nothing");
}
