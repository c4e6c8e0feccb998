//! Issue 38, first part: `[[notify]]` targets and `sluice notify test`. A webhook's
//! signature is checked by a receiver in Python (`webhook_receiver.py`, with Python's own
//! `hmac`); a Slack target gets a readable line; a command gets the JSON on its stdin; no
//! secret is ever printed; a bad target is refused naming what to fix.

use crate::util::{REPO, TestProject};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "hook-secret-0123456789";

struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(dir: &Path) -> Receiver {
        let port_file = dir.join("receiver.port");
        let log = dir.join("received.jsonl");
        let child = Command::new("python3")
            .arg(Path::new(REPO).join("tests/it/webhook_receiver.py"))
            .args([port_file.to_str().unwrap(), log.to_str().unwrap(), SECRET])
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
        Receiver { child, port, log }
    }

    /// What it received, one JSON object per request.
    fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
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
