//! Tables that are not facts: a change feed merged by key (`write = "merge"`). Whatever the
//! order the days run in, with reruns and a SIGKILL, the table is the one an oracle
//! computes in Python from the exports, read back with Python's deltalake.

use crate::util::{TestProject, data_files, refresh, sigkill, stdout_of, wait_for_text};
use std::process::Command;
use std::time::Duration;

const DAYS: usize = 30;

fn day(d: usize) -> String {
    format!("2024-01-{:02}", d + 1)
}

/// A small random generator: the feed is the same in every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// 30 daily exports of changes to 40 customers: inserts, updates (one customer changes on
/// most days), deletes, re-inserts, an email to NULL and back, and a fifth of the changes a
/// day late (in the next day's export, older than that day's own changes).
fn feed(p: &TestProject) {
    let mut rng = Lcg(11);
    let mut days = vec![String::from("customer_id,name,email,updated_at,op\n"); DAYS + 1];
    let mut second = 0u64;
    for d in 0..DAYS {
        for i in 0..15 {
            second += 60 + rng.next(600);
            let key = if i == 0 { 7 } else { rng.next(40) };
            let op = match rng.next(10) {
                0..=1 => "D",
                2..=4 => "I",
                _ => "U",
            };
            let at = chrono::DateTime::from_timestamp(1_704_067_200 + second as i64, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S");
            let late = i > 0 && rng.next(5) == 0;
            // Names change now and then; emails seldom, to NULL and back.
            let name = ["ann", "bob", "cy"][rng.next(3) as usize];
            let email = match rng.next(8) {
                0 => String::new(),
                1 => format!("new{key}@example.com"),
                _ => format!("c{key}@example.com"),
            };
            days[d + usize::from(late)]
                .push_str(&format!("{key},{name}-{key},{email},{at},{op}\n"));
        }
    }
    for (d, text) in days.iter().enumerate().take(DAYS) {
        p.write(&format!("in/{}/customers.csv", day(d)), text);
    }
}

/// The two jobs over the feed. `customers` is partitioned by region (`customer_id % 4`):
/// each day's changes touch every region, so its merges run in lanes of partitions.
fn project() -> TestProject {
    let p = TestProject::with_files(&[
        (
            "jobs/customers.toml",
            "description = \"customers, from a daily export of their changes\"\nversion = 1\nstart = \"2024-01-01\"\n\n[partitioning]\ngranularity = \"daily\"\n\n[[inputs]]\nname = \"changes\"\npath = \"in/{partition}/customers.csv\"\nformat = \"csv\"\nschema = [\"customer_id BIGINT NOT NULL\", \"name STRING\", \"email STRING\", \"updated_at TIMESTAMP NOT NULL\", \"op STRING NOT NULL\"]\n\n[output]\ntable = \"customers\"\nwrite = \"merge\"\nkey = [\"region\", \"customer_id\"]\nsequence_by = \"updated_at\"\ndelete_when = \"op = 'D'\"\n",
        ),
        (
            "jobs/customers.sql",
            "SELECT customer_id % 4 AS region, customer_id, name, email, updated_at, op FROM changes",
        ),
        (
            "jobs/customers_history.toml",
            "description = \"every version of each customer's name and email\"\nversion = 1\nstart = \"2024-01-01\"\n\n[partitioning]\ngranularity = \"daily\"\n\n[[inputs]]\nname = \"changes\"\npath = \"in/{partition}/customers.csv\"\nformat = \"csv\"\nschema = [\"customer_id BIGINT NOT NULL\", \"name STRING\", \"email STRING\", \"updated_at TIMESTAMP NOT NULL\", \"op STRING NOT NULL\"]\n\n[output]\ntable = \"customers_history\"\nwrite = \"scd2\"\nkey = [\"customer_id\"]\nsequence_by = \"updated_at\"\ndelete_when = \"op = 'D'\"\ntrack = [\"name\", \"email\"]\n",
        ),
        (
            "jobs/customers_history.sql",
            "SELECT customer_id, name, email, updated_at, op FROM changes",
        ),
        (
            "migrations/0001_customers.sql",
            "CREATE TABLE customers (region BIGINT NOT NULL, customer_id BIGINT NOT NULL, name STRING, email STRING, updated_at TIMESTAMP, op STRING NOT NULL) PARTITIONED BY (region);\nCREATE TABLE customers_history (customer_id BIGINT NOT NULL, name STRING, email STRING, updated_at TIMESTAMP, op STRING NOT NULL, valid_from TIMESTAMP, valid_to TIMESTAMP, is_current BOOLEAN);\n",
        ),
    ]);
    feed(&p);
    p.ok(&["migrate"]);
    p
}

/// Compares both tables, read with Python's deltalake, with oracles computed from the
/// exports in time order: for `customers` each customer's change of the greatest
/// `updated_at` unless it is a delete; for `customers_history` every version of a
/// customer's name and email (a change of `op` alone is none), closed by the next version
/// or a delete.
fn assert_oracle(p: &TestProject, what: &str) {
    let dirs = [
        p.warehouse_table("customers", 1),
        p.warehouse_table("customers_history", 1),
    ];
    for d in &dirs {
        refresh(d);
    }
    let script = r#"
import sys, csv, glob, os
from deltalake import DeltaTable
merged, history, inputs = sys.argv[1], sys.argv[2], sys.argv[3]
changes = {}
for f in glob.glob(os.path.join(inputs, "*", "customers.csv")):
    for r in csv.DictReader(open(f)):
        c = (r["updated_at"], r["name"], r["email"] or None, r["op"])
        changes.setdefault(int(r["customer_id"]), set()).add(c)
want_m, want_h, deleted = [], [], 0
for k, cs in changes.items():
    cs = sorted(cs)
    at, name, email, op = cs[-1]
    if op == "D":
        deleted += 1
    else:
        want_m.append((k, name, email, at, op))
    open_v = None
    for at, name, email, op in cs:
        if op == "D":
            if open_v:
                want_h.append(tuple(open_v[:5]) + (at, False))
                open_v = None
            continue
        if open_v and (open_v[1], open_v[2]) == (name, email):
            continue
        if open_v:
            want_h.append(tuple(open_v[:5]) + (at, False))
        open_v = [k, name, email, op, at]
    if open_v:
        want_h.append(tuple(open_v) + (None, True))
t = lambda v: v.strftime("%Y-%m-%dT%H:%M:%S") if v is not None else None
rows_m = DeltaTable(merged).to_pyarrow_table().to_pylist()
got_m = [(r["customer_id"], r["name"], r["email"], t(r["updated_at"]), r["op"]) for r in rows_m]
got_h = [(r["customer_id"], r["name"], r["email"], r["op"], t(r["valid_from"]), t(r["valid_to"]), r["is_current"]) for r in DeltaTable(history).to_pyarrow_table().to_pylist()]
key = lambda r: tuple("" if v is None else str(v) for v in r)
ok = all(r["region"] == r["customer_id"] % 4 for r in rows_m)
if not ok:
    print("customers: a row outside its region's partition")
for name, got, want in (("customers", got_m, want_m), ("customers_history", got_h, want_h)):
    got, want = sorted(got, key=key), sorted(want, key=key)
    if got != want:
        ok = False
        print(name, "differs: got", len(got), "want", len(want))
        print("only in the table:", [g for g in got if g not in want][:5])
        print("only in the oracle:", [w for w in want if w not in got][:5])
if ok:
    print("same", len(got_m), len(got_h), deleted)
sys.stdout.flush(); os._exit(0)
"#;
    let out = stdout_of(
        Command::new("python3")
            .args(["-c", script])
            .args(&dirs)
            .arg(p.file("in")),
        "the Python deltalake reader",
    );
    assert!(out.starts_with("same "), "{what}: {out}");
    // Some customers live, some deleted, and more versions than customers.
    let n: Vec<usize> = out
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(n[0] > 10 && n[1] > n[0] && n[2] > 0, "{what}: {out}");
}

/// Both jobs' partition `d`, run (again) by one process.
fn run_day(p: &TestProject, d: usize) {
    let d = day(d);
    p.ok(&["backfill", "--from", &d, "--to", &d, "--force"]);
}

#[test]
fn a_change_feed_merged_in_time_order_in_reverse_and_shuffled_with_reruns_is_the_oracle_s_table() {
    // In time order: a backfill.
    let p = project();
    p.ok(&["backfill", "--from", &day(0), "--to", &day(DAYS - 1)]);
    assert_oracle(&p, "in time order");
    // Every day run again: nothing moves.
    p.ok(&[
        "backfill",
        "--from",
        &day(0),
        "--to",
        &day(DAYS - 1),
        "--force",
    ]);
    assert_oracle(&p, "rerun in time order");
    // The orders below exercise the merge's rule, which is the same whatever the store:
    // on a remote warehouse (the suite's second pass, where each run costs seconds of the
    // test server's time) the time-ordered runs above, the kills and the concurrent merges
    // of the other tests are what meets the store.
    if p.remote() {
        return;
    }

    // In reverse.
    let p = project();
    for d in (0..DAYS).rev() {
        run_day(&p, d);
    }
    assert_oracle(&p, "in reverse");

    // Shuffled, with a few days run twice, once before and once after the rest.
    let p = project();
    let mut order: Vec<usize> = (0..DAYS).collect();
    let mut rng = Lcg(3);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.next(i as u64 + 1) as usize);
    }
    for d in order.iter().take(6).copied().collect::<Vec<_>>() {
        order.push(d);
    }
    for d in order {
        run_day(&p, d);
    }
    assert_oracle(&p, "shuffled with reruns");
}

#[test]
fn merges_killed_between_their_commits_are_finished_by_the_next_backfill_as_the_oracle_s_table() {
    let p = project();
    p.ok(&["backfill", "--from", &day(0), "--to", &day(9)]);
    // Killed after the tombstones' commit, before the table's; then after the table's
    // commit, before the catalog heard of it.
    for (point, d) in [("merge_between_commits", 10), ("after_commit", 11)] {
        let (mut child, log) = p.spawn(
            &["backfill", "--from", &day(d), "--to", &day(DAYS - 1)],
            &[("SLUICE_FAILPOINT", point)],
        );
        wait_for_text(&log, "paused at failpoint", Duration::from_secs(120));
        sigkill(&mut child);
    }
    p.ok(&["backfill", "--from", &day(0), "--to", &day(DAYS - 1)]);
    assert_oracle(&p, "after two kills");
}

#[test]
fn a_merge_spec_that_cannot_work_is_refused_naming_the_field() {
    let p = project();
    let spec = p.read("jobs/customers.toml");
    for (from, to, said) in [
        (
            "sequence_by = \"updated_at\"\n",
            "",
            "needs `output.sequence_by`",
        ),
        (
            "write = \"merge\"",
            "write = \"merj\"",
            "did you mean \"merge\"?",
        ),
        (
            "sequence_by = \"updated_at\"",
            "sequence_by = \"changed_at\"",
            "output.sequence_by names column `changed_at`",
        ),
        (
            "delete_when = \"op = 'D'\"",
            "delete_when = \"operation = 'D'\"",
            "output.delete_when `operation = 'D'`:",
        ),
    ] {
        p.write("jobs/customers.toml", &spec.replace(from, to));
        let out = p.run(&["validate"]);
        assert_ne!(out.code, 0, "{}", out.context());
        out.says(said);
    }
    // A change without a sequence value is refused by the run, naming its key.
    p.write("jobs/customers.toml", &spec);
    p.write(
        "jobs/customers.sql",
        "SELECT customer_id % 4 AS region, customer_id, name, email, CASE WHEN customer_id = 7 THEN NULL ELSE updated_at END AS updated_at, op FROM changes",
    );
    let out = p.run(&["run", "customers", "--partition", &day(0)]);
    assert_ne!(out.code, 0, "{}", out.context());
    out.complains("customer_id=7");
}

#[test]
fn two_workers_and_a_backfill_merging_into_one_table_at_once_lose_no_change() {
    let p = project();
    p.ok(&["backfill", "--from", &day(0), "--to", &day(4)]);
    // Two workers rerun every day while a backfill fills in the missing ones: merges of
    // different days into one table from three processes at once, their commits
    // conflicting; each merges again from what the other committed. How often they meet
    // is the machine's timing, so the first worker's first merge also waits, its files
    // written, for another process's commit: at least one conflict on any machine.
    let range = ["--from", "2024-01-01", "--to", "2024-01-30"];
    let forced: Vec<&str> = ["backfill"]
        .iter()
        .chain(&range)
        .chain(&["--force"])
        .copied()
        .collect();
    let (mut a, a_log) = p.spawn(
        &forced,
        &[("SLUICE_FAILPOINT", "merge_after_another_commit")],
    );
    let (mut b, b_log) = p.spawn(&forced, &[]);
    let missing: Vec<&str> = ["backfill"].iter().chain(&range).copied().collect();
    let backfill = p.run(&missing);
    assert_eq!(backfill.code, 0, "{}", backfill.context());
    let mut again = Vec::new();
    for (c, log) in [(&mut a, a_log), (&mut b, b_log)] {
        let status = c.wait().unwrap();
        let said = std::fs::read_to_string(log).unwrap_or_default();
        assert!(status.success(), "a worker failed: {status}\n{said}");
        again.push(said.matches("merging again").count());
    }
    // The commits did meet: the held merge, at least, was made again from another's commit.
    assert!(
        again[0] > 0,
        "the held merge did not conflict: the test did not test what it says ({again:?} merges again)"
    );
    assert_oracle(&p, "two workers and a backfill");
}

/// A merging job's checks see what its commit would publish: a delete (whose other columns
/// are NULL) publishes no row, and a change older than the row the table holds is not
/// published, so neither fails a check; a change that would publish a failing row stops
/// the run with the table and its tombstones as they were. sluice's own check, the key
/// unique over the current rows, is recorded with every merge.
#[test]
fn a_merge_s_checks_see_the_rows_it_would_publish_and_a_failing_one_publishes_nothing() {
    let head = "customer_id,name,email,updated_at,op\n";
    let p = TestProject::with_files(&[
        (
            "jobs/customers.toml",
            "description = \"customers\"\nversion = 1\nstart = \"2024-01-01\"\n\n[partitioning]\ngranularity = \"daily\"\n\n[[inputs]]\nname = \"changes\"\npath = \"in/{partition}/customers.csv\"\nformat = \"csv\"\nschema = [\"customer_id BIGINT NOT NULL\", \"name STRING\", \"email STRING\", \"updated_at TIMESTAMP NOT NULL\", \"op STRING NOT NULL\"]\n\n[output]\ntable = \"customers\"\nwrite = \"merge\"\nkey = [\"customer_id\"]\nsequence_by = \"updated_at\"\ndelete_when = \"op = 'D'\"\n\n[[checks]]\ntype = \"not_null\"\ncolumns = [\"email\"]\n\n[[checks]]\ntype = \"sql\"\nname = \"email_has_at\"\nquery = \"SELECT * FROM output WHERE email NOT LIKE '%@%'\"\n",
        ),
        (
            "jobs/customers.sql",
            "SELECT customer_id, name, email, updated_at, op FROM changes",
        ),
        (
            "migrations/0001_customers.sql",
            "CREATE TABLE customers (customer_id BIGINT NOT NULL, name STRING, email STRING, updated_at TIMESTAMP, op STRING NOT NULL);\n",
        ),
    ]);
    p.write(
        "in/2024-01-01/customers.csv",
        &format!("{head}1,ann,a@x,2024-01-01T10:00:00,I\n2,bob,b@x,2024-01-01T11:00:00,I\n"),
    );
    // A delete with no email, and a late change with a bad one that loses to the held row.
    p.write(
        "in/2024-01-02/customers.csv",
        &format!("{head}1,,,2024-01-02T09:00:00,D\n2,bob,late-and-bad,2024-01-01T09:00:00,U\n"),
    );
    // A change that would publish a bad email, and a delete that must not land either.
    p.write(
        "in/2024-01-03/customers.csv",
        &format!("{head}3,cy,not-an-email,2024-01-03T10:00:00,I\n2,,,2024-01-03T11:00:00,D\n"),
    );
    p.ok(&["migrate"]);
    // In time order: were the 2nd merged first, its late change would be the newest there
    // is of customer 2, published, and refused.
    for d in ["2024-01-01", "2024-01-02"] {
        p.ok(&["run", "customers", "--partition", d]);
    }
    let dir = p.warehouse_table("customers", 1);
    let after_two = crate::util::python_rows(&dir);
    assert_eq!(after_two.len(), 1, "{after_two:?}");
    assert!(after_two[0].contains("b@x"), "{after_two:?}");
    let tombstones = crate::util::python_rows(&dir.join("_sluice_tombstones"));
    assert_eq!(tombstones.len(), 1, "{tombstones:?}");
    let profile = p.ok(&["profile", "customers", "--output", "json"]).json();
    let parts = profile["partitions"].as_array().unwrap();
    for part in parts {
        let checks = part["checks"].as_array().unwrap();
        let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
        assert!(
            names.contains(&"key_unique_in_current_rows") && names.contains(&"email_has_at"),
            "{part}"
        );
        assert!(checks.iter().all(|c| c["passed"] == true), "{part}");
    }
    let out = p.run(&["run", "customers", "--partition", "2024-01-03"]);
    assert_ne!(out.code, 0, "{}", out.context());
    out.complains("email_has_at");
    assert_eq!(crate::util::python_rows(&dir), after_two);
    assert_eq!(
        crate::util::python_rows(&dir.join("_sluice_tombstones")),
        tombstones
    );
    // Fixed at the source, the day runs and publishes both changes.
    p.write(
        "in/2024-01-03/customers.csv",
        &format!("{head}3,cy,c@x,2024-01-03T10:00:00,I\n2,,,2024-01-03T11:00:00,D\n"),
    );
    p.ok(&["run", "customers", "--partition", "2024-01-03"]);
    let rows = crate::util::python_rows(&dir);
    assert!(rows.len() == 1 && rows[0].contains("c@x"), "{rows:?}");
}

/// A new version of a merging job is built as any job's is: by a backfill from its start,
/// into a table of its own beside the live one (its own tombstones and change log), which
/// readers do not see until `promote` flips the alias; `rollback` flips it back.
#[test]
fn a_new_version_of_a_merging_job_is_built_beside_the_live_one_and_promoted() {
    let p = project();
    let (from, to) = (day(0), day(9));
    p.ok(&["backfill", "--from", &from, "--to", &to]);
    let jobs = ["customers", "customers_history"];
    let live: Vec<Vec<String>> = jobs
        .iter()
        .map(|t| crate::util::python_rows(&p.warehouse_table(t, 1)))
        .collect();
    for job in jobs {
        let spec = p.read(&format!("jobs/{job}.toml"));
        p.write(
            &format!("jobs/{job}.toml"),
            &spec.replace("version = 1", "version = 2"),
        );
        let sql = p.read(&format!("jobs/{job}.sql"));
        p.write(
            &format!("jobs/{job}.sql"),
            &sql.replace(" name,", " upper(name) AS name,"),
        );
    }
    // Promoting before the new version has every live partition is refused.
    p.ok(&["backfill", "--from", &from, "--to", &day(4)]);
    let early = p.run(&["promote", "customers", "--version", "2"]);
    assert_ne!(early.code, 0, "{}", early.context());
    early.complains("v2 lacks 5 partition(s) that v1 has: 2024-01-06");
    p.ok(&["backfill", "--from", &from, "--to", &to]);
    let resolved = |t: &str| p.location_dir(p.ok(&["resolve", t]).stdout.trim());
    for (t, rows) in jobs.iter().zip(&live) {
        assert_eq!(&crate::util::python_rows(&p.warehouse_table(t, 1)), rows);
        assert_eq!(resolved(t), p.warehouse_table(t, 1));
    }
    for job in jobs {
        p.ok(&["promote", job, "--version", "2"]);
    }
    for (t, rows) in jobs.iter().zip(&live) {
        assert_eq!(resolved(t), p.warehouse_table(t, 2));
        let upper = |rows: &[String]| -> Vec<serde_json::Value> {
            let mut v: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut r: serde_json::Value = serde_json::from_str(r).unwrap();
                    if let Some(n) = r["name"].as_str() {
                        r["name"] = n.to_uppercase().into();
                    }
                    r
                })
                .collect();
            v.sort_by_key(|r| r.to_string());
            v
        };
        let built = crate::util::python_rows(&p.warehouse_table(t, 2));
        assert_eq!(upper(&built), upper(rows), "{t} v2");
        assert!(
            built.iter().all(|r| !r.contains("\"ann-")),
            "{t}: {built:?}"
        );
    }
    p.ok(&["rollback", "customers"]);
    assert_eq!(resolved("customers"), p.warehouse_table("customers", 1));
}

/// A merge rewrites its tombstones and change log as it rewrites the table: `gc` vacuums
/// them with the table (their folders start with `_`, which the table's own vacuum passes
/// over), after the retention the table sets, which they take from it.
#[test]
fn gc_vacuums_a_merging_table_s_tombstones_and_change_log_with_it() {
    let p = project();
    p.write(
        "migrations/0002_keep_nothing.sql",
        "ALTER TABLE customers SET TBLPROPERTIES ('delta.deletedFileRetentionDuration' = 'interval 0 seconds');\nALTER TABLE customers_history SET TBLPROPERTIES ('delta.deletedFileRetentionDuration' = 'interval 0 seconds');\n",
    );
    p.ok(&["migrate"]);
    p.ok(&["backfill", "--from", &day(0), "--to", &day(DAYS - 1)]);
    let sidecars = [
        p.warehouse_table("customers", 1).join("_sluice_tombstones"),
        p.warehouse_table("customers_history", 1)
            .join("_sluice_changes"),
    ];
    let referenced = |dir: &std::path::Path| crate::util::python_rows(dir).len();
    let before: Vec<usize> = sidecars.iter().map(|d| data_files(d).len()).collect();
    let rows: Vec<usize> = sidecars.iter().map(|d| referenced(d)).collect();
    let out = p.ok(&["gc"]);
    out.says("file(s) vacuumed");
    for ((d, before), rows) in sidecars.iter().zip(before).zip(rows) {
        let after = data_files(d).len();
        assert!(
            after < before,
            "{}: {before} files before, {after} after",
            d.display()
        );
        assert_eq!(referenced(d), rows, "{}", d.display());
    }
    assert_oracle(&p, "after gc");
}
