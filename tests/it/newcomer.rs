//! What a newcomer meets first: `sluice init`, shell completions, and a backfill's progress
//! bar on a terminal.

use crate::util::{BIN, TestProject, python_delta_summary, stdout_of};
use std::process::Command;

#[test]
fn an_initialised_project_validates_migrates_and_backfills_as_created() {
    let p = TestProject::empty();
    let created = p.ok(&["init", "."]);
    created.says("jobs/page_visits.toml");
    assert!(
        created
            .stdout
            .contains("sluice backfill --from 2024-01-01 --to 2024-01-03")
    );
    p.ok(&["validate"]);
    let tested = p.ok(&["test"]);
    tested.says("1 passed, 0 failed");
    p.ok(&["migrate"]);
    let backfill = p.backfill("2024-01-01", "2024-01-03");
    backfill.says("3 succeeded, 0 failed");
    // An independent reader: 2024-01-02 has 8 visits on 4 pages.
    let table = p.warehouse_table("page_visits", 1);
    let (rows, pages, visits) = python_delta_summary(&table, "dt", "2024-01-02", "page", "visits");
    assert_eq!((rows, pages, visits), (4, 4, 8.0));

    // JSON reads like the text: times are RFC 3339 (UTC), the actor has one form.
    let rfc3339 = |v: &serde_json::Value| {
        let t = v
            .as_str()
            .unwrap_or_else(|| panic!("not a time string: {v}"));
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap_or_else(|e| panic!("`{t}` is not RFC 3339: {e}"));
        assert!(t.ends_with('Z'), "{t}");
    };
    let status = p.ok(&["status", "--output", "json"]).json();
    for r in status.as_array().unwrap() {
        rfc3339(&r["started_at"]);
        rfc3339(&r["finished_at"]);
    }
    let migrations = p.ok(&["migrate", "status", "--output", "json"]).json();
    rfc3339(&migrations[0]["applied_at"]);
    let history = p.ok(&["history", "page_visits", "--output", "json"]).json();
    rfc3339(&history[0]["at"]);
    assert_eq!(migrations[0]["applied_by"], history[0]["by_whom"]);
}

#[test]
fn init_refuses_a_folder_that_holds_files_and_changes_none() {
    let p = TestProject::sample();
    let before = p.read("jobs/clean_orders.sql");
    let out = p.run(&["init", "."]);
    assert_eq!(out.code, 2, "{}", out.context());
    out.complains("is not empty");
    out.complains("name another folder");
    assert_eq!(p.read("jobs/clean_orders.sql"), before);
    assert!(!p.file("jobs/page_visits.toml").exists());
}

#[test]
fn bash_accepts_the_completion_script() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sluice.bash");
    let text = stdout_of(
        Command::new(BIN).args(["completions", "bash"]),
        "sluice completions bash",
    );
    std::fs::write(&script, text).unwrap();
    let registered = stdout_of(
        Command::new("bash").arg("-c").arg(format!(
            "source '{}' && complete -p sluice",
            script.display()
        )),
        "bash sourcing the completion script",
    );
    assert!(registered.contains("sluice"), "{registered}");
    // Subcommands are offered: the script knows `backfill` and its flags.
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("backfill") && text.contains("--concurrency"));
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_one_is_refused() {
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let text = stdout_of(
            Command::new(BIN).args(["completions", shell]),
            &format!("sluice completions {shell}"),
        );
        assert!(text.contains("backfill"), "{shell}: {text}");
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

/// Runs `args` under a pseudo-terminal (util-linux `script`), so that stderr is a terminal
/// and the progress bar shows; returns everything the terminal received.
fn on_a_terminal(p: &TestProject, args: &[&str]) -> String {
    let line = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = Command::new("script");
    c.args(["-q", "-e", "-f", "-c", &line, "/dev/null"])
        .current_dir(p.path())
        .env("TERM", "xterm")
        .env_remove("SLUICE_LOG")
        .env_remove("RUST_LOG");
    p.set_stores(&mut c);
    stdout_of(&mut c, "sluice under `script` (util-linux)")
}

#[test]
fn on_a_terminal_the_bar_is_not_interleaved_with_per_partition_lines() {
    let p = TestProject::migrated();
    let screen = on_a_terminal(
        &p,
        &[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-14",
        ],
    );
    assert!(screen.contains("/14"), "no progress bar:\n{screen}");
    assert!(
        !screen.contains("run started") && !screen.contains("run succeeded"),
        "per-partition lines under the bar:\n{screen}"
    );
    // Warnings still show: 2024-01-07 has a row that cannot be read (bad_rows = "skip").
    assert!(
        screen.contains("skipping bad input row"),
        "the warning is missing:\n{screen}"
    );
    assert!(screen.contains("14 succeeded, 0 failed"), "{screen}");

    // -v asks for debug detail: the per-partition lines are back.
    let screen = on_a_terminal(
        &p,
        &[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-15",
            "--to",
            "2024-01-16",
            "-v",
        ],
    );
    assert!(screen.contains("run succeeded"), "{screen}");

    // Without a terminal nothing changes: each run's lines are there.
    let piped = p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-17",
        "--to",
        "2024-01-18",
    ]);
    assert!(
        piped.stderr.contains("run started") && piped.stderr.contains("run succeeded"),
        "{}",
        piped.context()
    );
}
