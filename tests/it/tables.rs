//! Issue: versioned tables and blue-green cutover (promote, rollback, history, resolve).

use crate::util::*;

/// Sets `version = N` in a job's spec, and optionally new SQL.
fn bump(p: &TestProject, job: &str, version: u32, sql: Option<&str>) {
    let spec = p.read(&format!("jobs/{job}.toml"));
    let spec = spec
        .lines()
        .map(|l| {
            if l.starts_with("version = ") {
                format!("version = {version}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    p.write(&format!("jobs/{job}.toml"), &spec);
    if let Some(sql) = sql {
        p.write(&format!("jobs/{job}.sql"), sql);
    }
}

fn resolve(p: &TestProject, table: &str) -> std::path::PathBuf {
    let uri = p.ok(&["resolve", table]).stdout.trim().to_string();
    p.location_dir(&uri)
}

/// clean_orders v1 live for three days, v2 (only paid orders) built beside it.
fn blue_and_green(green_days: &str) -> TestProject {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
    ]);
    let sql = p.read("jobs/clean_orders.sql");
    bump(
        &p,
        "clean_orders",
        2,
        Some(&sql.replace("<> 'cancelled'", "= 'paid'")),
    );
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        green_days,
    ]);
    p
}

#[tokio::test]
async fn building_a_new_version_leaves_readers_on_the_live_one() {
    let p = blue_and_green("2024-01-03");
    let v1 = read_delta_rows(&p.warehouse_table("clean_orders", 1), None).await;
    let v2 = read_delta_rows(&p.warehouse_table("clean_orders", 2), None).await;
    assert!(
        v2.len() < v1.len() && !v2.is_empty(),
        "v2 keeps only paid orders"
    );
    // Building v2 left the alias on v1.
    assert_eq!(
        resolve(&p, "clean_orders"),
        p.warehouse_table("clean_orders", 1)
    );
    let tables = p.ok(&["tables", "--output", "json"]).json();
    let live: Vec<i64> = tables
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["table"] == "clean_orders" && t["live"] == true)
        .map(|t| t["version"].as_i64().unwrap())
        .collect();
    assert_eq!(live, [1]);
}

#[tokio::test]
async fn diff_compares_versions_whole_per_partition_and_as_a_ci_gate() {
    let p = blue_and_green("2024-01-03");
    let v1 = read_delta_rows(&p.warehouse_table("clean_orders", 1), None).await;
    let v2 = read_delta_rows(&p.warehouse_table("clean_orders", 2), None).await;
    // The diff, before promoting: v2 drops the refunded orders and changes nothing else.
    let d = p
        .ok(&[
            "diff",
            "clean_orders",
            "--from",
            "v1",
            "--to",
            "v2",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(d["rows_from"].as_u64().unwrap() as usize, v1.len());
    assert_eq!(d["rows_to"].as_u64().unwrap() as usize, v2.len());
    assert_eq!(
        d["rows"]["removed"].as_u64().unwrap() as usize,
        v1.len() - v2.len()
    );
    assert_eq!(d["rows"]["added"], 0);
    assert_eq!(d["rows"]["changed"], 0);
    assert_eq!(d["schema"].as_array().unwrap().len(), 0);
    let refunded = v1.iter().filter(|r| r.contains("status=refunded")).count();
    assert_eq!(refunded, v1.len() - v2.len());
    // On chosen partitions only (a canary), and as a CI gate.
    let d = p
        .ok(&[
            "diff",
            "clean_orders",
            "--partitions",
            "2024-01-02",
            "--output",
            "json",
        ])
        .json();
    let day = v1.iter().filter(|r| r.contains("dt=2024-01-02")).count();
    assert_eq!(d["rows_from"].as_u64().unwrap() as usize, day);
    assert_eq!(d["rows_per_partition"].as_array().unwrap().len(), 1);
    let gate = p.run(&["diff", "clean_orders", "--fail-above", "0.01"]);
    assert_eq!(gate.code, 1, "{}", gate.context());
    gate.says("removed: order_id=");
}

/// Promotes v2 (with a dry run first) and rolls back; returns the alias history as JSON.
async fn promote_then_rollback(p: &TestProject, v1: &[String], v2: &[String]) -> serde_json::Value {
    let dry = p.ok(&["promote", "clean_orders", "--version", "2", "--dry-run"]);
    dry.says("would promote clean_orders: v1 -> v2");
    assert_eq!(
        resolve(p, "clean_orders"),
        p.warehouse_table("clean_orders", 1)
    );

    p.ok(&[
        "promote",
        "clean_orders",
        "--version",
        "2",
        "-m",
        "paid orders only",
    ]);
    let through_alias = read_delta_rows(&resolve(p, "clean_orders"), None).await;
    assert_eq!(through_alias, v2);
    // A downstream job reads the new version through the alias.
    p.ok(&["run", "daily_revenue", "--partition", "2024-01-02"]);
    let orders: usize = read_delta_rows(&p.warehouse_table("daily_revenue", 1), None)
        .await
        .iter()
        .map(|r| {
            let o = r.split('|').find(|c| c.starts_with("orders=")).unwrap();
            o["orders=".len()..].parse::<usize>().unwrap()
        })
        .sum();
    let paid_on_day = v2.iter().filter(|r| r.contains("dt=2024-01-02")).count();
    assert_eq!(orders, paid_on_day);

    p.ok(&["rollback", "clean_orders", "-m", "back"]);
    assert_eq!(read_delta_rows(&resolve(p, "clean_orders"), None).await, v1);
    p.ok(&["history", "clean_orders", "--output", "json"])
        .json()
}

#[tokio::test]
async fn promote_flips_readers_and_downstream_jobs_and_rollback_flips_them_back() {
    let p = blue_and_green("2024-01-03");
    let v1 = read_delta_rows(&p.warehouse_table("clean_orders", 1), None).await;
    let v2 = read_delta_rows(&p.warehouse_table("clean_orders", 2), None).await;
    let history = promote_then_rollback(&p, &v1, &v2).await;
    let flips: Vec<(Option<i64>, i64, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["from_version"].as_i64(),
                h["to_version"].as_i64().unwrap(),
                h["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        flips,
        [
            (None, 1, "first version of the table".to_string()),
            (Some(1), 2, "paid orders only".to_string()),
            (Some(2), 1, "back".to_string()),
        ]
    );
    // One form of actor, the first version's (made by a run) as the flips' (made by a
    // person): USER@HOST.
    let actors: std::collections::BTreeSet<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["by_whom"].as_str().unwrap())
        .collect();
    assert_eq!(actors.len(), 1, "{history:#}");
    let actor = actors.first().unwrap();
    assert!(
        actor.split('@').count() == 2 && !actor.contains(':'),
        "{actor}"
    );
}

#[tokio::test]
async fn query_reads_through_the_alias_now_or_as_of_a_time() {
    let p = blue_and_green("2024-01-03");
    let v1 = read_delta_rows(&p.warehouse_table("clean_orders", 1), None).await;
    let v2 = read_delta_rows(&p.warehouse_table("clean_orders", 2), None).await;
    let history = promote_then_rollback(&p, &v1, &v2).await;
    // `sluice query` reads through the alias, now or as it was.
    let count = |extra: &[&str]| -> usize {
        let mut args = vec![
            "query",
            "SELECT count(*) AS n FROM clean_orders",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        p.ok(&args).json()[0]["n"].as_u64().unwrap() as usize
    };
    assert_eq!(count(&[]), v1.len());
    // Times in JSON are RFC 3339 strings in UTC, with milliseconds.
    let ms = |v: &serde_json::Value| {
        let text = v
            .as_str()
            .unwrap_or_else(|| panic!("`at` is not a string: {v}"));
        assert!(text.ends_with('Z') && text.contains('T'), "{text}");
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("`{text}` is not RFC 3339: {e}"))
            .timestamp_millis()
    };
    let promoted_at = ms(&history[1]["at"]);
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let rolled_back_at = ms(&history[2]["at"]);
    assert_eq!(count(&["--as-of", &at(promoted_at - 1)]), v1.len());
    if rolled_back_at > promoted_at + 1 {
        assert_eq!(count(&["--as-of", &at(promoted_at + 1)]), v2.len());
    }
    let bad = p.run(&["query", "SELECT * FROM nope"]);
    assert_eq!(bad.code, 2, "{}", bad.context());
    assert!(
        bad.stderr
            .contains("table `nope` is not known; known tables: clean_orders"),
        "{}",
        bad.context()
    );
}

#[test]
fn promote_refuses_a_version_that_lacks_partitions_and_names_them() {
    let p = blue_and_green("2024-01-02");
    let out = p.run(&["promote", "clean_orders", "--version", "2"]);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(
        out.stderr
            .contains("v2 lacks 1 partition(s) that v1 has: 2024-01-03"),
        "{}",
        out.context()
    );
    out.complains("--partial");
    assert_eq!(
        resolve(&p, "clean_orders"),
        p.warehouse_table("clean_orders", 1)
    );
    // Said explicitly, a partial promote goes through.
    p.ok(&["promote", "clean_orders", "--version", "2", "--partial"]);
    assert_eq!(
        resolve(&p, "clean_orders"),
        p.warehouse_table("clean_orders", 2)
    );
}

#[test]
fn racing_promotes_exactly_one_wins() {
    let p = blue_and_green("2024-01-03");
    bump(&p, "clean_orders", 3, None);
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
    ]);
    for round in 0..3 {
        // Both saw v1 live (round 0), or what the last round left.
        let live = resolve(&p, "clean_orders");
        let live_v = live.file_name().unwrap().to_string_lossy()[1..].to_string();
        let targets: Vec<&str> = ["1", "2", "3"]
            .into_iter()
            .filter(|v| *v != live_v)
            .collect();
        let racers: Vec<_> = targets
            .iter()
            .map(|v| {
                p.command(&[
                    "promote",
                    "clean_orders",
                    "--version",
                    v,
                    "--expect",
                    &live_v,
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        let outs: Vec<_> = racers
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let won: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: exactly one promote wins: {outs:?}"
        );
        let lost = outs.iter().find(|o| !o.status.success()).unwrap();
        let err = String::from_utf8_lossy(&lost.stderr);
        assert!(
            err.contains("another promote or rollback changed it first"),
            "round {round}: {err}"
        );
        assert_ne!(resolve(&p, "clean_orders"), live);
    }
}

#[test]
fn a_multi_table_promote_with_one_failing_precondition_changes_no_alias() {
    let p = blue_and_green("2024-01-03");
    p.ok(&[
        "backfill",
        "daily_revenue",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
    ]);
    bump(&p, "daily_revenue", 2, None);
    p.ok(&[
        "backfill",
        "daily_revenue",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
    ]);
    let out = p.run(&["promote", "clean_orders@2", "daily_revenue@2"]);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(
        out.stderr
            .contains("daily_revenue: v2 lacks 1 partition(s) that v1 has: 2024-01-03"),
        "{}",
        out.context()
    );
    out.complains("nothing changed");
    assert_eq!(
        resolve(&p, "clean_orders"),
        p.warehouse_table("clean_orders", 1)
    );
    assert_eq!(
        resolve(&p, "daily_revenue"),
        p.warehouse_table("daily_revenue", 1)
    );
    // With the missing partition built, both flip together.
    p.ok(&[
        "backfill",
        "daily_revenue",
        "--from",
        "2024-01-03",
        "--to",
        "2024-01-03",
    ]);
    p.ok(&["promote", "clean_orders@2", "daily_revenue@2"]);
    assert_eq!(
        resolve(&p, "clean_orders"),
        p.warehouse_table("clean_orders", 2)
    );
    assert_eq!(
        resolve(&p, "daily_revenue"),
        p.warehouse_table("daily_revenue", 2)
    );
}

#[test]
fn a_canary_builds_the_new_version_for_chosen_partitions_only() {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-05",
    ]);
    bump(&p, "clean_orders", 2, None);
    let wrong = p.run(&[
        "backfill",
        "clean_orders",
        "--version",
        "3",
        "--partitions",
        "2024-01-02",
    ]);
    assert_eq!(wrong.code, 2, "{}", wrong.context());
    wrong.complains("builds version 2, not 3");
    let out = p.ok(&[
        "backfill",
        "clean_orders",
        "--version",
        "2",
        "--partitions",
        "2024-01-02,2024-01-04",
        "--output",
        "json",
    ]);
    let summary = out.json();
    let ran: Vec<&str> = summary["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["partition"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["2024-01-02", "2024-01-04"]);
    let status = p.ok(&["tables", "--output", "json"]).json();
    let v2 = status
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "clean_orders" && t["version"] == 2)
        .unwrap()
        .clone();
    assert_eq!(v2["complete"], 2);
    assert_eq!(v2["live"], false);
    // Same code: the canary's partitions equal the live ones.
    let d = p
        .ok(&[
            "diff",
            "clean_orders",
            "--partitions",
            "2024-01-02,2024-01-04",
            "--fail-above",
            "0",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(d["rows"]["changed"], 0);
    assert_eq!(d["rows"]["added"], 0);
    assert_eq!(d["rows"]["removed"], 0);
    let refused = p.run(&["promote", "clean_orders", "--version", "2"]);
    assert!(
        refused
            .stderr
            .contains("v2 lacks 3 partition(s) that v1 has: 2024-01-01, 2024-01-03, 2024-01-05"),
        "{}",
        refused.context()
    );
}

#[tokio::test]
async fn gc_removes_only_versions_no_reader_or_rollback_needs() {
    let p = TestProject::migrated();
    for v in 1..=4u32 {
        if v > 1 {
            bump(&p, "clean_orders", v, None);
        }
        let to = if v == 4 { "2024-01-01" } else { "2024-01-02" };
        p.ok(&[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-01",
            "--to",
            to,
        ]);
        if (2..=3).contains(&v) {
            p.ok(&["promote", "clean_orders", "--version", &v.to_string()]);
        }
    }
    // Live v3, previous v2, v4 being built, v1 nobody's.
    let dry = p.ok(&["gc", "--keep", "0", "--dry-run"]);
    dry.says("would remove clean_orders v1");
    for v in 2..=4 {
        assert!(
            !dry.stdout
                .contains(&format!("would remove clean_orders v{v}")),
            "{}",
            dry.context()
        );
    }
    assert!(
        p.warehouse_table("clean_orders", 1).exists(),
        "a dry run removes nothing"
    );
    let out = p.ok(&["gc", "--keep", "0"]);
    assert!(
        out.stdout.contains("1 version(s) removed"),
        "{}",
        out.context()
    );
    assert!(!p.warehouse_table("clean_orders", 1).exists());
    let versions: Vec<i64> = p
        .ok(&["tables", "--output", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["table"] == "clean_orders")
        .map(|t| t["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [2, 3, 4]);
    // What stays still works: a rollback to the previous version reads its rows.
    p.ok(&["rollback", "clean_orders"]);
    let rows = read_delta_rows(&resolve(&p, "clean_orders"), None).await;
    assert_eq!(
        rows,
        read_delta_rows(&p.warehouse_table("clean_orders", 2), None).await
    );
    assert!(!rows.is_empty());
}
