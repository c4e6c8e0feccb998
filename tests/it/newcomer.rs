//! What a newcomer meets first: `sluice init`, shell completions, a backfill's progress
//! bar on a terminal, the answer in the wrong folder or to a mistyped name, a failure said
//! once, and `status` narrowed to what was asked.

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

/// `init --template command`: the same job, its input a script's output; it validates,
/// tests (the test gives the rows: the script is not run) and backfills as created, with
/// the same rows as the files template.
#[test]
fn an_initialised_project_with_a_command_step_backfills_as_created() {
    let p = TestProject::empty();
    let created = p.ok(&["init", ".", "--template", "command"]);
    created.says("scripts/fetch_visits.sh");
    p.ok(&["validate"]);
    p.ok(&["test"]).says("1 passed, 0 failed");
    p.ok(&["migrate"]);
    let backfill = p.backfill("2024-01-01", "2024-01-03");
    backfill.says("3 succeeded, 0 failed");
    assert!(
        backfill.stderr.contains("fetching visits for 2024-01-02"),
        "{}",
        backfill.context()
    );
    let table = p.warehouse_table("page_visits", 1);
    let (rows, pages, visits) = python_delta_summary(&table, "dt", "2024-01-02", "page", "visits");
    assert_eq!((rows, pages, visits), (4, 4, 8.0));
    // A day not exported yet: the script says "try later" (75), and the day fails after
    // its tries, saying so.
    let out = p.run(&["run", "page_visits", "--partition", "2024-01-04"]);
    assert_ne!(out.code, 0, "{}", out.context());
    out.complains("exited with code 75");
    out.complains("no visits exported for 2024-01-04 yet");
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

    // And the project's names: jobs, tables, a job's partitions (from the catalog).
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
        "-q",
    ]);
    let complete = |words: &str| {
        let line = format!(
            "source '{}'; COMP_WORDS=('{BIN}' {words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); _sluice_names; echo \"${{COMPREPLY[*]}}\"",
            script.display()
        );
        let mut c = Command::new("bash");
        c.arg("-c").arg(line).current_dir(p.path());
        p.set_stores(&mut c);
        stdout_of(&mut c, "bash completing").trim().to_string()
    };
    assert_eq!(complete("status cle"), "clean_orders");
    assert_eq!(
        complete("backfill --from 2024-01-01 daily_"),
        "daily_revenue"
    );
    assert_eq!(complete("promote roll"), "rolling_revenue");
    assert_eq!(
        complete("run clean_orders -p 2024-01-0"),
        "2024-01-03 2024-01-02 2024-01-01"
    );
    assert_eq!(complete("dlq list reg"), "regional_orders");
    assert_eq!(
        complete("backfill --from 2024"),
        "",
        "a flag's value is not a name"
    );
    // Outside a project: nothing offered, nothing printed.
    let outside = TestProject::empty();
    let o = outside.run(&["__complete", "jobs"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "", ""));
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
    // A reader that leaves early (`| head`) ends the output quietly, not with a panic (the
    // bash script is larger than a pipe's buffer, so the write does meet the closed end).
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{BIN}' completions bash | head -c 10 >/dev/null; echo ${{PIPESTATUS[0]}}"
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "{stderr}");
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

#[test]
fn outside_a_project_every_command_says_so_and_creates_nothing() {
    let p = TestProject::empty();
    for args in [
        &["status"][..],
        &["tables"][..],
        &["validate"][..],
        &["ui", "--address", "127.0.0.1:0"][..],
        &["backfill", "--from", "2024-01-01", "--to", "2024-01-02"][..],
    ] {
        let o = p.run(args);
        assert_eq!(o.code, 2, "{}", o.context());
        o.complains("is not a sluice project: it has no sluice.toml");
        o.complains("sluice init DIR");
    }
    let left: Vec<_> = std::fs::read_dir(p.path()).unwrap().collect();
    assert!(left.is_empty(), "the folder gained {left:?}");
    // --project naming a folder without one says the same of that folder.
    let o = TestProject::sample().run(&["status", "--project", p.path().to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.context());
    o.complains("has no sluice.toml");

    // Inside a project, any folder below its root finds it, as git and cargo do.
    let p = TestProject::migrated();
    let mut c = p.command(&["validate"]);
    c.current_dir(p.file("jobs"));
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_mistyped_name_gets_one_answer_with_a_suggestion_from_every_command() {
    let p = TestProject::migrated();
    let job = "no job `clean_ordrs` in this project; did you mean `clean_orders`?";
    let table = "no table `clean_ordrs` in this project; did you mean `clean_orders`?";
    for (args, says) in [
        (&["status", "clean_ordrs"][..], job),
        (&["test", "clean_ordrs"][..], job),
        (&["run", "clean_ordrs", "-p", "2024-01-01"][..], job),
        (
            &[
                "backfill",
                "clean_ordrs",
                "--from",
                "2024-01-01",
                "--to",
                "2024-01-01",
            ][..],
            job,
        ),
        (&["dlq", "list", "clean_ordrs"][..], job),
        (&["profile", "clean_ordrs"][..], table),
        (&["diff", "clean_ordrs"][..], table),
        (&["resolve", "clean_ordrs"][..], table),
        (&["history", "clean_ordrs"][..], table),
        (&["promote", "clean_ordrs", "--version", "2"][..], table),
    ] {
        let o = p.run(args);
        assert_eq!(o.code, 2, "{}", o.context());
        o.complains(says);
    }
    // Spelled right, a run names the job once, then where its rows went.
    let run = p.ok(&["run", "clean_orders", "-p", "2024-01-01"]);
    assert!(
        run.stdout.starts_with("clean_orders 2024-01-01: ")
            && run
                .stdout
                .contains(" rows written to clean_orders v1, Delta version "),
        "{}",
        run.context()
    );
}

#[test]
fn each_command_lists_its_own_options_before_the_global_ones() {
    let help = TestProject::sample().ok(&["backfill", "--help"]).stdout;
    let at = |s: &str| help.find(s).unwrap_or_else(|| panic!("no {s} in\n{help}"));
    assert!(
        at("--from <FROM>") < at("--to <TO>") && at("--to <TO>") < at("Global options:"),
        "{help}"
    );
    assert!(at("Global options:") < at("--project <DIR>"), "{help}");
}

/// The sample with clean_orders 2024-01-02 complete, then failed by a repeated order: the
/// table still holds the first run's rows.
fn with_a_failed_day_that_keeps_its_rows() -> (TestProject, crate::util::Output) {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
        "-q",
    ]);
    let f = "sample-data/orders/dt=2024-01-02/orders.csv";
    let csv = p.read(f);
    let paid = csv
        .lines()
        .find(|l| l.ends_with(",paid"))
        .unwrap()
        .to_string();
    p.write(f, &format!("{csv}{paid}\n"));
    let o = p.run(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-02",
        "--to",
        "2024-01-02",
        "--force",
    ]);
    assert_eq!(o.code, 1, "{}", o.context());
    (p, o)
}

#[test]
fn a_failed_check_is_said_once_per_stream_and_status_shows_the_rows_kept() {
    let (p, o) = with_a_failed_day_that_keeps_its_rows();
    // stderr: one line for the failure (the run's), cut to a line; stdout: the summary,
    // whole, with the sample row.
    assert_eq!(
        o.stderr.matches("unique_order_id").count(),
        1,
        "{}",
        o.context()
    );
    assert_eq!(
        o.stdout.matches("unique_order_id").count(),
        1,
        "{}",
        o.context()
    );
    o.says("appear more than once; e.g. {\"order_id\"");

    let status = p.ok(&["status", "clean_orders"]);
    let line = status
        .stdout
        .lines()
        .find(|l| l.contains("2024-01-02"))
        .unwrap_or_default();
    assert!(
        line.contains("failed") && line.contains("*") && line.contains("error 1 below"),
        "{}",
        status.context()
    );
    status.says("* rows an earlier run wrote, kept: the last run failed and changed nothing");
    status.says("error 1: clean_orders 2024-01-02");
    status.says("nothing was published, the previous content stays");
    status.says("3 partition(s): 2 complete, 1 failed");
    let json = p.ok(&["status", "clean_orders", "--output", "json"]).json();
    let day = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == "2024-01-02")
        .unwrap();
    assert_eq!(day["rows_from_earlier_run"], true, "{day}");
    assert!(day["rows"].as_i64().unwrap_or(0) > 0, "{day}");

    // Narrowed: by state, by range (a month holds its days), both.
    let failed = p.ok(&["status", "--state", "failed"]);
    failed.says("1 partition(s): 1 failed");
    let range = p.ok(&["status", "--from", "2024-01-02", "--to", "2024-01"]);
    range.says("2 partition(s): 1 complete, 1 failed");
    p.ok(&["status", "--state", "stale"])
        .says("no partition matches");
    let bad = p.run(&["status", "--state", "broken"]);
    assert_eq!(bad.code, 2);
    bad.complains("use one of running, complete, failed, stale");

    // One partition whole: its error once, its runs pointing at it, the check's sample.
    let one = p.ok(&["status", "clean_orders", "--partition", "2024-01-02"]);
    one.says("clean_orders 2024-01-02: failed");
    one.says("(written by an earlier run and kept: the last run failed and changed nothing)");
    one.says("(the error above)");
    one.says("FAILED unique_order_id (error)");
    one.says("sample: {\"order_id\"");
    one.says("dead letters: none");
    assert_eq!(
        one.stdout.matches("nothing was published").count(),
        1,
        "{}",
        one.context()
    );
    let json = p
        .ok(&[
            "status",
            "clean_orders",
            "-p",
            "2024-01-02",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(json["runs"].as_array().map(Vec::len), Some(2), "{json}");
    assert_eq!(
        json["checks"]
            .as_array()
            .map(|c| c.iter().any(|c| c["passed"] == false)),
        Some(true)
    );
}
