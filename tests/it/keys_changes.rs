//! Keys that change: a canary of a few keys diffed against the live version and finished
//! by a backfill, and a key added to a job (only its partitions are missing, none stale).

use crate::backfill::with_outcome;
use crate::keys::{keyed_files_project, partition_and, write_sales};
use crate::util::*;
use std::collections::BTreeSet;

#[test]
fn a_canary_of_a_few_keys_is_diffed_per_day_and_region_and_finished_by_a_backfill() {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "regional_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-03",
    ]);
    // v2 counts an order twice: a canary of two regions on one day.
    let spec = p
        .read("jobs/regional_orders.toml")
        .replace("version = 1", "version = 2");
    p.write("jobs/regional_orders.toml", &spec);
    let sql = p
        .read("jobs/regional_orders.sql")
        .replace("count(*)      AS orders", "count(*) * 2  AS orders");
    p.write("jobs/regional_orders.sql", &sql);
    let canary = p
        .ok(&[
            "backfill",
            "regional_orders",
            "--partitions",
            "2024-01-02:emea,apac",
            "--version",
            "2",
            "--output",
            "json",
        ])
        .json();
    let ran = with_outcome(&canary, "succeeded");
    assert_eq!(ran.len(), 2, "{canary:#}");
    let d = p
        .ok(&[
            "diff",
            "regional_orders",
            "--partitions",
            "2024-01-02:emea,apac",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(
        d["partitions"],
        serde_json::json!(["2024-01-02:apac", "2024-01-02:emea"])
    );
    let per: BTreeSet<String> = d["rows_per_partition"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["partition"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        per,
        BTreeSet::from(["2024-01-02:apac".to_string(), "2024-01-02:emea".to_string()]),
        "{d:#}"
    );
    assert_eq!(d["rows"]["removed"], 0, "{d:#}");
    assert!(d["rows"]["changed"].as_u64().unwrap() > 0, "{d:#}");
    // The rest of v2: every (day, region) but the canary's two.
    let rest = p
        .ok(&[
            "backfill",
            "regional_orders",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-03",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(rest["succeeded"], 22, "{rest:#}");
    let v2 = commits_per_partition(&p.warehouse_table("regional_orders", 2));
    assert_eq!(v2.len(), 24);
    assert!(v2.values().all(|&c| c == 1));
}

#[test]
fn adding_a_key_makes_only_its_partitions_missing_none_stale() {
    let p = keyed_files_project(&["big"]);
    let spec = p
        .read("jobs/sales.toml")
        .replace("keys_file = \"jobs/keys.txt\"", "keys = [\"big\"]");
    p.write("jobs/sales.toml", &spec);
    for key in ["big", "new"] {
        write_sales(&p, key, "2024-01-01", 4);
        write_sales(&p, key, "2024-01-02", 4);
    }
    p.ok(&[
        "backfill",
        "sales",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
    ]);
    p.write(
        "jobs/sales.toml",
        &spec.replace("keys = [\"big\"]", "keys = [\"big\", \"new\"]"),
    );
    let plan = p
        .ok(&[
            "backfill",
            "sales",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
            "--stale",
            "--dry-run",
            "--output",
            "json",
        ])
        .json();
    let items = partition_and(&plan["items"], "reason");
    assert_eq!(
        items,
        [
            ("2024-01-01:new".to_string(), "missing".to_string()),
            ("2024-01-02:new".to_string(), "missing".to_string())
        ],
        "{plan:#}"
    );
}
