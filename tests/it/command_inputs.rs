//! Where pipelines begin: `[[inputs]] type = "command"`. Real Python programs as inputs, in
//! every format they may write; killed, failing, hanging and writing the wrong type; the
//! table read back with Python's deltalake.

use crate::util::{TestProject, python_rows};
use std::time::Duration;

/// A stand-in for an API: each day's exchange rates, which the script filters to the
/// partition it is given.
const API: &str = "day,currency,rate\n2024-01-01,USD,1.10\n2024-01-01,GBP,0.86\n2024-01-02,USD,1.09\n2024-01-02,GBP,0.87\n2024-01-03,USD,1.11\n";

/// The script: reads the stand-in, keeps the partition's days, writes them in the format
/// its first argument names. `BEHAVE` (a file in the project) makes an attempt fail in a
/// chosen way; every attempt is appended to `calls.txt` with its environment.
const SCRIPT: &str = r#"
import csv, io, json, os, signal, subprocess, sys, time
fmt = sys.argv[1]
env = {k: v for k, v in os.environ.items() if k.startswith("SLUICE_")}
with open("calls.txt", "a") as f:
    f.write(json.dumps(env) + "\n")
attempt = int(env["SLUICE_ATTEMPT"])
behave = open("BEHAVE").read().split() if os.path.exists("BEHAVE") else []
print(f"fetching rates for {env['SLUICE_PARTITION']} (attempt {attempt})", file=sys.stderr, flush=True)
start, end = env["SLUICE_PARTITION_START"][:10], env["SLUICE_PARTITION_END"][:10]
rows = [r for r in csv.DictReader(open("api/rates.csv")) if start <= r["day"] < end]
def out(data):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
if "tempfail" in behave and attempt == 1:
    print("the API said: try later", file=sys.stderr)
    sys.exit(75)
if "fail" in behave:
    print("the API said: no such account", file=sys.stderr)
    sys.exit(1)
if "hang" in behave:
    child = subprocess.Popen(["sleep", "300"])
    open("child.pid", "w").write(str(child.pid))
    time.sleep(300)
if fmt == "csv":
    text = "day,currency,rate\n" + "".join(f"{r['day']},{r['currency']},{r['rate']}\n" for r in rows)
    if "bad_row" in behave:
        text += f"{start},CHF,not-a-rate\n"
    if "killed" in behave and attempt == 1:
        out(text[: len(text) // 2].encode())
        os.kill(os.getpid(), signal.SIGKILL)
    out(text.encode())
elif fmt == "ndjson":
    out("".join(json.dumps({"day": r["day"], "currency": r["currency"], "rate": float(r["rate"])}) + "\n" for r in rows).encode())
else:
    import datetime, pyarrow as pa, pyarrow.parquet as pq
    rate = [r["rate"] for r in rows] if "text_rates" in behave else [float(r["rate"]) for r in rows]
    t = pa.table({
        "day": pa.array([datetime.date.fromisoformat(r["day"]) for r in rows], pa.date32()),
        "currency": pa.array([r["currency"] for r in rows]),
        "rate": pa.array(rate),
    })
    sink = pa.BufferOutputStream()
    if fmt == "arrow":
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
    else:
        pq.write_table(t, sink)
    out(sink.getvalue().to_pybytes())
sys.stdout.flush()
os._exit(0)
"#;

fn job(format: &str, more: &str) -> String {
    format!(
        "description = \"exchange rates, fetched by a script\"\nversion = 1\nstart = \"2024-01-01\"\n\n[partitioning]\ngranularity = \"daily\"\n\n[retry]\nmax_attempts = 2\nbackoff_seconds = 0\n\n[[inputs]]\nname = \"rates\"\ntype = \"command\"\ncommand = [\"python3\", \"scripts/rates.py\", \"{format}\"]\nformat = \"{format}\"\nschema = [\"day DATE\", \"currency STRING\", \"rate DOUBLE\"]\n{more}\n[output]\ntable = \"rates_{format}\"\n"
    )
}

fn project(formats: &[&str], more: &str) -> TestProject {
    let mut files = vec![
        ("scripts/rates.py".to_string(), SCRIPT.to_string()),
        ("api/rates.csv".to_string(), API.to_string()),
    ];
    let mut ddl = String::new();
    for f in formats {
        files.push((format!("jobs/rates_{f}.toml"), job(f, more)));
        files.push((
            format!("jobs/rates_{f}.sql"),
            "SELECT day, currency, rate FROM rates".to_string(),
        ));
        ddl.push_str(&format!("CREATE TABLE rates_{f} (day DATE, currency STRING, rate DOUBLE, dt DATE NOT NULL) PARTITIONED BY (dt);\n"));
    }
    files.push(("migrations/0001_rates.sql".to_string(), ddl));
    let p = TestProject::with_owned_files(&files);
    p.ok(&["migrate"]);
    p
}

/// Runs `job`'s `partition`, which must fail saying each of `said`.
fn fails_saying(p: &TestProject, job: &str, partition: &str, said: &[&str]) {
    let out = p.run(&["run", job, "--partition", partition]);
    assert_ne!(out.code, 0, "{}", out.context());
    for s in said {
        out.complains(s);
    }
}

/// Each attempt's environment, as the script recorded it.
fn calls(p: &TestProject) -> Vec<serde_json::Value> {
    p.read("calls.txt")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_command_input_in_each_format_gives_the_partition_s_rows_and_learns_its_partition() {
    let formats = ["csv", "ndjson", "arrow", "parquet"];
    let p = project(&formats, "");
    p.write(
        "sluice.toml",
        "[lineage]\ntransport = \"file\"\npath = \"lineage/events.ndjson\"\n",
    );
    let out = p.ok(&["backfill", "--from", "2024-01-02", "--to", "2024-01-02"]);
    // Its standard error is the run's log, under the run's id.
    let said = out
        .stderr
        .lines()
        .find(|l| l.contains("fetching rates for 2024-01-02"))
        .unwrap_or_else(|| panic!("{}", out.context()));
    assert!(said.contains("run_id="), "{said}");
    for f in formats {
        let rows = python_rows(&p.warehouse_table(&format!("rates_{f}"), 1));
        assert_eq!(rows.len(), 2, "{f}: {rows:?}");
        assert!(
            rows.iter().all(|r| r.contains("\"day\": \"2024-01-02\"")
                && r.contains("\"rate\": 1.09") == r.contains("USD")),
            "{f}: {rows:?}"
        );
    }
    let envs = calls(&p);
    assert_eq!(envs.len(), formats.len());
    for e in &envs {
        assert_eq!(e["SLUICE_PARTITION"], "2024-01-02");
        assert_eq!(e["SLUICE_PARTITION_START"], "2024-01-02T00:00:00Z");
        assert_eq!(e["SLUICE_PARTITION_END"], "2024-01-03T00:00:00Z");
        assert_eq!(e["SLUICE_ATTEMPT"], "1");
        assert!(
            e["SLUICE_RUN_ID"].as_str().is_some_and(|r| r.len() > 10),
            "{e}"
        );
    }
    // Lineage names the command as the run's input, with its script's version.
    let events = p.read("lineage/events.ndjson");
    let complete: serde_json::Value = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["eventType"] == "COMPLETE" && e["job"]["name"] == "rates_csv")
        .unwrap_or_else(|| panic!("{events}"));
    let input = &complete["inputs"][0];
    assert_eq!(input["namespace"], "command", "{complete}");
    assert_eq!(input["name"], "python3 scripts/rates.py csv", "{complete}");
    let version = input["facets"]["version"]["datasetVersion"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(version.len(), 16, "{complete}");
}

#[test]
fn a_command_killed_mid_output_or_saying_try_later_is_retried_and_one_that_fails_is_not() {
    let p = project(&["csv"], "");
    let table = p.warehouse_table("rates_csv", 1);
    // Killed by a signal halfway through its output: nothing of it is written; the retry
    // writes the day whole, once.
    p.write("BEHAVE", "killed");
    p.ok(&["run", "rates_csv", "--partition", "2024-01-01"]);
    assert_eq!(calls(&p).len(), 2);
    assert_eq!(python_rows(&table).len(), 2);
    // Exit 75 (EX_TEMPFAIL): tried again.
    p.write("BEHAVE", "tempfail");
    p.ok(&["run", "rates_csv", "--partition", "2024-01-02"]);
    let envs = calls(&p);
    assert_eq!(envs.len(), 4);
    assert_eq!(envs[3]["SLUICE_ATTEMPT"], "2");
    assert_eq!(python_rows(&table).len(), 4);
    // Exit 1: failed, not retried, its standard error in the failure.
    p.write("BEHAVE", "fail");
    fails_saying(
        &p,
        "rates_csv",
        "2024-01-03",
        &["exited with code 1", "no such account"],
    );
    assert_eq!(calls(&p).len(), 5);
    assert_eq!(python_rows(&table).len(), 4);
}

#[test]
fn a_command_writing_the_wrong_type_fails_naming_the_column() {
    let p = project(&["arrow"], "");
    p.write("BEHAVE", "text_rates");
    fails_saying(
        &p,
        "rates_arrow",
        "2024-01-01",
        &["column `rate` is Utf8 in the output, declared DOUBLE"],
    );
    // Not retried: the program would write the same again.
    assert_eq!(calls(&p).len(), 1);
}

#[test]
fn a_command_past_its_timeout_is_killed_with_the_processes_it_started() {
    let p = project(&["csv"], "timeout = \"2s\"\n");
    p.write("BEHAVE", "hang");
    fails_saying(
        &p,
        "rates_csv",
        "2024-01-01",
        &["ran longer than its timeout"],
    );
    // A timeout is worth another try: both attempts ran, each killed.
    assert_eq!(calls(&p).len(), 2);
    let child: i32 = p.read("child.pid").trim().parse().unwrap();
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        // A zombie that init has not reaped yet is gone too.
        std::fs::read_to_string(format!("/proc/{child}/stat"))
            .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
    });
    assert!(gone, "the command's child {child} is still running");
}

#[test]
fn a_command_input_spec_that_cannot_work_is_refused_naming_the_field() {
    let p = project(&["csv"], "");
    let spec = p.read("jobs/rates_csv.toml");
    for (from, to, said) in [
        (
            "command = [\"python3\", \"scripts/rates.py\", \"csv\"]\n",
            "",
            "field `inputs[0].command`: a command input needs the program",
        ),
        (
            "format = \"csv\"\n",
            "",
            "field `inputs[0].format`: a command input says what it writes",
        ),
        (
            "schema = [\"day DATE\", \"currency STRING\", \"rate DOUBLE\"]\n",
            "",
            "field `inputs[0].schema`: a command input declares its columns",
        ),
        (
            "type = \"command\"",
            "type = \"comand\"",
            "an input is of type",
        ),
        (
            "format = \"csv\"\n",
            "format = \"csv\"\npath = \"x.csv\"\n",
            "`path` does not apply to a command input",
        ),
    ] {
        p.write("jobs/rates_csv.toml", &spec.replace(from, to));
        let out = p.run(&["validate"]);
        assert_ne!(out.code, 0, "{}", out.context());
        out.says(said);
    }
    p.write(
        "jobs/rates_csv.toml",
        &spec.replace("scripts/rates.py", "scripts/nowhere.py"),
    );
    p.ok(&["validate"]);
    fails_saying(
        &p,
        "rates_csv",
        "2024-01-01",
        &["exited with code 2", "nowhere.py"],
    );
}

/// A partition's data version includes the hash of what its command wrote: a rerun of the
/// extract that gives the same rows changes nothing downstream; one that gives other rows
/// makes what read that day stale.
#[test]
fn a_rerun_extract_that_gives_other_rows_makes_what_read_it_stale() {
    let p = project(&["csv"], "");
    p.write(
        "jobs/rate_report.toml",
        "description = \"the day's rates, for the report\"\nversion = 1\nstart = \"2024-01-01\"\n\n[partitioning]\ngranularity = \"daily\"\n\n[[inputs]]\nname = \"rates\"\ntable = \"rates_csv\"\n\n[output]\ntable = \"rate_report\"\n",
    );
    p.write("jobs/rate_report.sql", "SELECT currency, rate FROM rates");
    p.write(
        "migrations/0002_report.sql",
        "CREATE TABLE rate_report (currency STRING, rate DOUBLE, dt DATE NOT NULL) PARTITIONED BY (dt);\n",
    );
    p.ok(&["migrate"]);
    p.ok(&["backfill", "--from", "2024-01-01", "--to", "2024-01-02"]);
    let stale = |p: &TestProject| -> Vec<String> {
        p.ok(&["status", "--output", "json"])
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] != "complete")
            .map(|r| format!("{} {} {}", r["job"], r["partition"], r["state"]))
            .collect()
    };
    // What the program wrote is among what the partition read.
    p.ok(&["status", "rates_csv", "-p", "2024-01-01"])
        .says("input rates (");
    let again = p.ok(&["run", "rates_csv", "--partition", "2024-01-01"]);
    assert!(!again.stdout.contains("made stale"), "{}", again.context());
    assert_eq!(stale(&p), Vec::<String>::new());
    p.write(
        "api/rates.csv",
        &API.replace("2024-01-01,USD,1.10", "2024-01-01,USD,1.20"),
    );
    let changed = p.ok(&["run", "rates_csv", "--partition", "2024-01-01"]);
    changed.says("made stale downstream (1): rate_report 2024-01-01");
    assert_eq!(
        stale(&p),
        vec!["\"rate_report\" \"2024-01-01\" \"stale\"".to_string()]
    );
}

/// A row of a command's output that does not fit the declared schema is a dead letter, as
/// a file's would be, named by the command and its line.
#[test]
fn an_unusable_row_of_a_command_s_output_is_a_dead_letter_named_by_the_command() {
    let p = project(&["csv"], "");
    let spec = p.read("jobs/rates_csv.toml");
    p.write(
        "jobs/rates_csv.toml",
        &spec.replace("version = 1\n", "version = 1\nbad_rows = \"skip\"\n"),
    );
    p.write("BEHAVE", "bad_row");
    p.ok(&["run", "rates_csv", "--partition", "2024-01-01"]);
    assert_eq!(
        python_rows(&p.warehouse_table("rates_csv", 1)).len(),
        2,
        "the two usable rows"
    );
    let letters = p
        .ok(&["dlq", "list", "rates_csv", "--output", "json"])
        .json();
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        letters[0]["file"],
        "the output of `python3 scripts/rates.py csv`"
    );
    assert_eq!(letters[0]["line"], 4);
    assert_eq!(letters[0]["raw"], "2024-01-01,CHF,not-a-rate");
}
