//! Issue: partitions beyond time. Static keys alone and with a day (`2024-01-05:emea`):
//! backfills, a killed backfill and its rerun, overlapping backfills, the daemon with a key
//! added, a volume baseline per key, and hostile keys refused. Content is read back by
//! readers that are not sluice (a fresh deltalake handle; Python's deltalake).

use crate::backfill::with_outcome;
use crate::util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const REGIONS: [&str; 8] = [
    "apac", "central", "east", "emea", "latam", "north", "south", "west",
];

fn january() -> Vec<String> {
    (1..=31).map(|d| format!("2024-01-{d:02}")).collect()
}

/// The sample's regional_orders, checked by Python's deltalake against clean_orders: each
/// row is one (day, region, customer) of clean_orders with its count, sum and first time.
/// Returns the (day, region) pairs the table holds.
fn python_checks_regional_orders(p: &TestProject) -> BTreeSet<(String, String)> {
    let script = r#"
import sys, os
from deltalake import DeltaTable
co = DeltaTable(sys.argv[1]).to_pyarrow_table()
ro = DeltaTable(sys.argv[2]).to_pyarrow_table()
g = co.group_by(['dt', 'region', 'customer_id']).aggregate(
    [('order_id', 'count'), ('amount', 'sum'), ('order_ts', 'min')])
want = sorted((str(r['dt']), r['region'], r['customer_id'], r['order_id_count'],
               str(r['amount_sum']), str(r['order_ts_min'])) for r in g.to_pylist())
got = sorted((str(r['dt']), r['region'], r['customer_id'], r['orders'],
              str(r['revenue']), str(r['first_order_ts'])) for r in ro.to_pylist())
print('same' if got == want else 'differ', len(got), len(want), flush=True)
for dt, region in sorted(set((r[0], r[1]) for r in got)):
    print(dt, region, flush=True)
os._exit(0)
"#;
    let co = p.warehouse_table("clean_orders", 1);
    let ro = p.warehouse_table("regional_orders", 1);
    refresh(&co);
    refresh(&ro);
    let out = stdout_of(
        std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&co)
            .arg(&ro),
        "the Python deltalake reader (bash .ci/run installs it)",
    );
    let mut lines = out.lines();
    let head = lines.next().unwrap_or_default();
    assert!(
        head.starts_with("same "),
        "regional_orders vs clean_orders: {head}"
    );
    lines
        .filter_map(|l| l.split_once(' '))
        .map(|(d, r)| (d.to_string(), r.to_string()))
        .collect()
}

/// The sample's two tables as a fresh deltalake handle reads them.
async fn rows(p: &TestProject) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for t in ["clean_orders", "regional_orders"] {
        out.insert(t, read_delta_rows(&p.warehouse_table(t, 1), None).await);
    }
    out
}

/// The rows of a clean, uninterrupted backfill of January for both jobs.
async fn clean_january() -> BTreeMap<&'static str, Vec<String>> {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "regional_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-31",
    ]);
    rows(&p).await
}

fn statuses(p: &TestProject, job: &str) -> BTreeMap<String, String> {
    partition_and(&p.ok(&["status", job, "--output", "json"]).json(), "state")
        .into_iter()
        .collect()
}

/// Each row's partition and its text field `field`, from a JSON array of rows.
pub(crate) fn partition_and(rows: &serde_json::Value, field: &str) -> Vec<(String, String)> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["partition"].as_str().unwrap().to_string(),
                r[field].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_backfill_of_31_days_by_8_regions_runs_each_day_and_region_once() {
    let p = TestProject::migrated();
    let summary = p
        .ok(&[
            "backfill",
            "clean_orders",
            "regional_orders",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-31",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(summary["failed"], 0, "{summary:#}");
    let ran = with_outcome(&summary, "succeeded");
    let want: BTreeSet<(String, String)> = january()
        .iter()
        .flat_map(|d| {
            REGIONS
                .iter()
                .map(move |r| ("regional_orders".to_string(), format!("{d}:{r}")))
        })
        .collect();
    let regional: BTreeSet<_> = ran
        .iter()
        .filter(|(j, _)| j == "regional_orders")
        .cloned()
        .collect();
    assert_eq!(regional, want, "every (day, region) once, named DAY:REGION");

    // status and the catalog name them the same way; each is complete.
    let st = statuses(&p, "regional_orders");
    assert_eq!(st.len(), 248);
    assert!(st.values().all(|s| s == "complete"), "{st:?}");
    assert_eq!(
        st.get("2024-01-05:emea").map(String::as_str),
        Some("complete")
    );

    // One Delta commit replaced each (day, region), under its own txn.
    let ro = p.warehouse_table("regional_orders", 1);
    let commits = commits_per_partition(&ro);
    assert_eq!(commits.len(), 248);
    assert!(commits.values().all(|&c| c == 1), "{commits:?}");
    assert!(commits.contains_key("2024-01-31:west"));
    // The table is partitioned by both columns, on disk too.
    assert!(ro.join("dt=2024-01-05").join("region=emea").is_dir());

    // Python's reader: the rows are clean_orders grouped per (day, region, customer),
    // and every (day, region) has rows.
    let pairs = python_checks_regional_orders(&p);
    assert_eq!(pairs.len(), 248);

    // A run of one (day, region) replaces exactly that partition.
    let before = read_delta_rows(&ro, Some("NOT (dt = '2024-01-05' AND region = 'emea')")).await;
    p.ok(&["run", "regional_orders", "--partition", "2024-01-05:emea"]);
    let after = read_delta_rows(&ro, Some("NOT (dt = '2024-01-05' AND region = 'emea')")).await;
    assert_same_rows("the other partitions", &after, &before);
    assert_eq!(commits_per_partition(&ro)["2024-01-05:emea"], 2);
    python_checks_regional_orders(&p);
}

#[tokio::test]
async fn a_killed_backfill_of_days_by_regions_reruns_to_a_clean_runs_rows() {
    let clean = clean_january().await;
    let p = TestProject::sample();
    let mut cfg = p.read("sluice.toml");
    cfg.push_str("\n[runner]\nlease_ttl_seconds = 2\n");
    p.write("sluice.toml", &cfg);
    p.ok(&["migrate"]);
    let args = [
        "backfill",
        "clean_orders",
        "regional_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-31",
    ];
    let (mut child, log) = p.spawn(&args, &[]);
    wait_for_text(&log, "progress=100/279", Duration::from_secs(180));
    sigkill(&mut child);
    let st = statuses(&p, "regional_orders");
    let done = st.values().filter(|s| *s == "complete").count();
    assert!(done < 248, "killed part-way: {done} of 248 done");

    let summary = p.ok(&[&args[..], &["--output", "json"]].concat()).json();
    assert_eq!(summary["failed"], 0, "{summary:#}");
    let got = rows(&p).await;
    for (t, want) in &clean {
        assert_same_rows(t, &got[t], want);
    }
    let st = statuses(&p, "regional_orders");
    assert_eq!(st.len(), 248);
    assert!(st.values().all(|s| s == "complete"));
    for (partition, tokens) in commit_tokens(&p.warehouse_table("regional_orders", 1)) {
        assert!(tokens.len() <= 2, "{partition} committed {tokens:?}");
    }
    assert_eq!(python_checks_regional_orders(&p).len(), 248);
}

#[tokio::test]
async fn overlapping_backfills_of_days_and_regions_write_each_partition_once() {
    let clean = clean_january().await;
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-31",
    ]);
    // A: days 1-20 of three regions; B: days 10-31 of three, two of them A's too.
    let a_args = [
        "backfill",
        "regional_orders",
        "--partitions",
        "2024-01-01..2024-01-20:apac,east,emea",
        "--output",
        "json",
    ];
    let b_args = [
        "backfill",
        "regional_orders",
        "--from",
        "2024-01-10",
        "--to",
        "2024-01-31",
        "--keys",
        "east,emea,west",
        "--newest-first",
        "--output",
        "json",
    ];
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| p.run(&a_args));
        let b = s.spawn(|| p.run(&b_args));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.code, 0, "{}", a.context());
    assert_eq!(b.code, 0, "{}", b.context());
    let (a, b) = (a.json(), b.json());
    let (ran_a, ran_b) = (with_outcome(&a, "succeeded"), with_outcome(&b, "succeeded"));
    assert!(
        ran_a.is_disjoint(&ran_b),
        "ran in both: {:?}",
        ran_a.intersection(&ran_b).collect::<Vec<_>>()
    );
    let selected = |d: &str, r: &str| {
        (d <= "2024-01-20" && ["apac", "east", "emea"].contains(&r))
            || (d >= "2024-01-10" && ["east", "emea", "west"].contains(&r))
    };
    let want: BTreeSet<(String, String)> = january()
        .iter()
        .flat_map(|d| REGIONS.iter().map(move |r| (d.clone(), r.to_string())))
        .filter(|(d, r)| selected(d, r))
        .map(|(d, r)| ("regional_orders".to_string(), format!("{d}:{r}")))
        .collect();
    let union: BTreeSet<_> = ran_a.union(&ran_b).cloned().collect();
    assert_eq!(union, want, "the union of both selections, each once");
    // Only the selected (day, region)s exist, each with one commit.
    let commits = commits_per_partition(&p.warehouse_table("regional_orders", 1));
    let committed: BTreeSet<_> = commits.keys().cloned().collect();
    let want_names: BTreeSet<_> = want.iter().map(|(_, k)| k.clone()).collect();
    assert_eq!(committed, want_names);
    assert!(commits.values().all(|&c| c == 1), "{commits:?}");
    // Their rows are the clean run's rows of those partitions.
    let got = read_delta_rows(&p.warehouse_table("regional_orders", 1), None).await;
    let want_rows: Vec<String> = clean["regional_orders"]
        .iter()
        .filter(|row| {
            let field = |name: &str| {
                row.split('|')
                    .find_map(|c| c.strip_prefix(&format!("{name}=")))
                    .unwrap_or_default()
                    .to_string()
            };
            selected(&field("dt"), &field("region"))
        })
        .cloned()
        .collect();
    assert!(!want_rows.is_empty());
    assert_same_rows("regional_orders", &got, &want_rows);
}

/// A project whose job `sales` reads `data/{key}/{partition}.csv`, partitioned by day and
/// the keys of `jobs/keys.txt`, with a volume check (error) on a 3-partition baseline.
pub(crate) fn keyed_files_project(keys: &[&str]) -> TestProject {
    let spec = r#"description = "sales per source, by day"
version = 1
start = "2024-01-01"

[schedule]
cron = "0 3 * * *"

[partitioning]
granularity = "daily"
key_column = "source"
keys_file = "jobs/keys.txt"

[[inputs]]
name = "sales"
path = "data/{key}/{partition}.csv"
format = "csv"
schema = ["id BIGINT NOT NULL", "amount BIGINT NOT NULL"]

[output]
table = "sales"
key = ["id"]

[[checks]]
type = "volume"
baseline = 3
tolerance = 0.5
"#;
    let p = TestProject::with_files(&[
        ("jobs/sales.toml", spec),
        (
            "jobs/sales.sql",
            "SELECT id, amount, $key AS seen_key FROM sales",
        ),
        (
            "migrations/0001_sales.sql",
            "CREATE TABLE sales (id BIGINT NOT NULL, amount BIGINT NOT NULL, seen_key STRING NOT NULL, dt DATE NOT NULL, source STRING NOT NULL) PARTITIONED BY (dt, source);\n",
        ),
        ("jobs/keys.txt", &keys.join("\n")),
    ]);
    p.ok(&["migrate"]);
    p
}

/// Writes `rows` sales of `key` on `day`: ids unique per key and day.
pub(crate) fn write_sales(p: &TestProject, key: &str, day: &str, rows: u32) {
    let mut csv = String::from("id,amount\n");
    let base: u64 = day.replace('-', "").parse::<u64>().unwrap() * 10_000;
    for i in 0..rows {
        csv.push_str(&format!("{},{}\n", base + u64::from(i), i % 7 + 1));
    }
    p.write(&format!("data/{key}/{day}.csv"), &csv);
}

#[test]
fn the_volume_baseline_of_a_key_is_its_own_past() {
    let p = keyed_files_project(&["big", "small"]);
    let days: Vec<String> = (1..=7).map(|d| format!("2024-01-{d:02}")).collect();
    for (i, d) in days.iter().enumerate() {
        write_sales(&p, "big", d, 200 + i as u32);
        // The small key's last day falls to a tenth of its usual volume.
        write_sales(&p, "small", d, if i == 6 { 1 } else { 10 });
    }
    // Day by day, as the daemon would: each partition's baseline is complete when it runs.
    for d in &days[..6] {
        for key in ["big", "small"] {
            p.ok(&["run", "sales", "--partition", &format!("{d}:{key}")]);
        }
    }
    let out = p.run(&[
        "backfill",
        "sales",
        "--from",
        "2024-01-07",
        "--to",
        "2024-01-07",
        "--output",
        "json",
    ]);
    assert_eq!(out.code, 1, "one partition fails{}", out.context());
    let failed = with_outcome(&out.json(), "failed");
    assert_eq!(
        failed,
        BTreeSet::from([("sales".to_string(), "2024-01-07:small".to_string())]),
        "only the small key's drop fails"
    );
    let status = p.ok(&["status", "sales", "--output", "json"]).json();
    let row = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == "2024-01-07:small")
        .cloned()
        .unwrap();
    assert!(
        row["error"].as_str().unwrap_or_default().contains("volume"),
        "{row:#}"
    );
    // Python's reader sees every big day and the six published small days, with their key.
    let script = r#"
import sys, os
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1]).to_pyarrow_table().to_pylist()
per = {}
for r in t:
    assert r['seen_key'] == r['source'], r
    k = (str(r['dt']), r['source'])
    per[k] = per.get(k, 0) + 1
for k in sorted(per):
    print(k[0], k[1], per[k], flush=True)
os._exit(0)
"#;
    let dir = p.warehouse_table("sales", 1);
    refresh(&dir);
    let out = stdout_of(
        std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&dir),
        "the Python deltalake reader",
    );
    let mut want = Vec::new();
    for (i, d) in days.iter().enumerate() {
        want.push(format!("{d} big {}", 200 + i));
        if i < 6 {
            want.push(format!("{d} small 10"));
        }
    }
    want.sort();
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, want);
}

#[test]
fn hostile_keys_are_refused_where_they_enter() {
    // In the spec.
    let p = keyed_files_project(&["good"]);
    let spec = p.read("jobs/sales.toml").replace(
        "keys_file = \"jobs/keys.txt\"",
        r#"keys = ["ok", "../up", "a/b", "o'brien", "x; DROP TABLE sales; --", "a b", "..", "dot.ted"]"#,
    );
    p.write("jobs/sales.toml", &spec);
    let out = p.run(&["validate"]);
    assert_ne!(out.code, 0, "{}", out.context());
    for bad in [
        "../up",
        "a/b",
        r"o\'brien",
        "DROP TABLE",
        "a b",
        "`..`",
        "dot.ted",
    ] {
        assert!(out.stdout.contains(bad), "names `{bad}`{}", out.context());
    }
    assert_eq!(
        out.stdout.matches("field `partitioning.keys`").count(),
        7,
        "{}",
        out.context()
    );

    // In a keys file, by line.
    let p = keyed_files_project(&["good"]);
    p.write("jobs/keys.txt", "good\n# a comment\n../../etc\nfine\n");
    let out = p.run(&["validate"]);
    assert_ne!(out.code, 0);
    out.says("jobs/keys.txt, line 3");
    // A keys file outside the project.
    let spec = p
        .read("jobs/sales.toml")
        .replace("jobs/keys.txt", "../keys.txt");
    p.write("jobs/sales.toml", &spec);
    let out = p.run(&["validate"]);
    out.says("inside the project");

    // On the command line: nothing runs, nothing is written.
    let p = keyed_files_project(&["good"]);
    write_sales(&p, "good", "2024-01-01", 3);
    for args in [
        vec!["run", "sales", "--partition", "2024-01-01:../good"],
        vec!["run", "sales", "--partition", "2024-01-01:a'b"],
        vec!["run", "sales", "--partition", "2024-01-01"],
        vec![
            "backfill",
            "sales",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-01",
            "--keys",
            "a/b",
        ],
        vec!["backfill", "sales", "--partitions", "2024-01-01:x;y"],
    ] {
        let out = p.run(&args);
        assert_eq!(out.code, 2, "{args:?} refused{}", out.context());
        assert!(out.stderr.contains("key") || out.stderr.contains("partition"));
    }
    // A well-formed key the spec does not declare.
    let out = p.run(&["run", "sales", "--partition", "2024-01-01:other"]);
    assert_eq!(out.code, 2, "{}", out.context());
    assert!(
        out.stderr.contains("good"),
        "names the declared keys{}",
        out.context()
    );
    assert!(!p.warehouse_table("sales", 1).join("_delta_log").exists());
    // The good key runs.
    p.ok(&["run", "sales", "--partition", "2024-01-01:good"]);
}

#[tokio::test]
async fn the_daemon_runs_each_key_at_a_tick_and_catches_up_a_key_added_between_ticks() {
    use crate::daemon::{assert_once_each, daemon, drive, utc};
    use sluice::clock::ManualClock;
    let p = keyed_files_project(&["big", "small"]);
    for day in ["2024-01-01", "2024-01-02"] {
        for key in ["big", "small", "added"] {
            write_sales(&p, key, day, 5);
        }
    }
    // 04:00 on the 2nd: the tick of 03:00 UTC ran the 1st (lag 1), for both keys.
    let clock = ManualClock::new(utc(2024, 1, 2, 4, 0));
    let mut d = daemon(&p, &clock).await;
    drive(
        &mut d,
        &clock,
        utc(2024, 1, 2, 4, 0),
        chrono::Duration::minutes(30),
    )
    .await;
    assert_once_each(&d, "sales", &["2024-01-01:big", "2024-01-01:small"]).await;

    // A key is added: the daemon re-reads the project, catches up the new key's missed
    // day, and the next tick runs the 2nd for all three.
    p.write("jobs/keys.txt", "big\nsmall\nadded\n");
    drive(
        &mut d,
        &clock,
        utc(2024, 1, 3, 4, 0),
        chrono::Duration::minutes(30),
    )
    .await;
    let all = [
        "2024-01-01:added",
        "2024-01-01:big",
        "2024-01-01:small",
        "2024-01-02:added",
        "2024-01-02:big",
        "2024-01-02:small",
    ];
    assert_once_each(&d, "sales", &all).await;

    // A key is removed: its partitions are not run any more, its data stays, and status
    // says it is no longer declared.
    p.write("jobs/keys.txt", "big\nadded\n");
    write_sales(&p, "big", "2024-01-03", 5);
    write_sales(&p, "added", "2024-01-03", 5);
    write_sales(&p, "small", "2024-01-03", 5);
    drive(
        &mut d,
        &clock,
        utc(2024, 1, 4, 4, 0),
        chrono::Duration::minutes(30),
    )
    .await;
    let mut more = all.to_vec();
    more.extend(["2024-01-03:added", "2024-01-03:big"]);
    more.sort();
    assert_once_each(&d, "sales", &more).await;
    let status = p.ok(&["status", "sales", "--output", "json"]).json();
    for r in status.as_array().unwrap() {
        let small = r["partition"].as_str().unwrap().ends_with(":small");
        assert_eq!(r["declared"], !small, "{r:#}");
    }
    let text = p.ok(&["status", "sales"]).stdout;
    assert!(text.contains("complete (key no longer declared)"), "{text}");

    // The content equals a backfill's on another copy, read by a fresh deltalake handle.
    let q = keyed_files_project(&["big", "small", "added"]);
    for day in ["2024-01-01", "2024-01-02", "2024-01-03"] {
        for key in ["big", "small", "added"] {
            write_sales(&q, key, day, 5);
        }
    }
    q.ok(&[
        "backfill",
        "sales",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
    ]);
    q.ok(&["backfill", "sales", "--partitions", "2024-01-03:big,added"]);
    let want = read_delta_rows(&q.warehouse_table("sales", 1), None).await;
    let got = read_delta_rows(&p.warehouse_table("sales", 1), None).await;
    assert_same_rows("sales", &got, &want);
}
