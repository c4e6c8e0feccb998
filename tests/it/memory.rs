//! Bounded memory for a partition of any size: the audit keeps a partition's new rows only
//! while they fit its budget (an eighth of `[engine] memory_limit_mb`); past it the checks
//! read the uploaded files back, so they still see every row.

use crate::util::{TestProject, enlarge_orders, python_delta_summary};

#[test]
fn checks_of_a_partition_past_the_audit_budget_see_every_row_read_back() {
    let p = TestProject::sample();
    // 1 MB of engine memory: the audit keeps 128 KiB; the day's new rows are about 3 MB.
    let settings = p
        .read("sluice.toml")
        .replace("memory_limit_mb = 1024", "memory_limit_mb = 1");
    p.write("sluice.toml", &settings);
    enlarge_orders(&p, 40, Some("2024-01-05"));
    let rel = "sample-data/orders/dt=2024-01-05/orders.csv";
    p.ok(&["migrate"]);
    // One order twice: the unique check, run on the files read back, finds it.
    let text = p.read(rel);
    let first = text.lines().nth(1).unwrap().to_string();
    p.write(rel, &format!("{text}{first}\n"));
    let out = p.run(&["run", "clean_orders", "--partition", "2024-01-05"]);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(
        out.stderr.contains(
            "check `unique_order_id` (error) failed: 1 value(s) of (order_id) appear more than once"
        ),
        "{}",
        out.context()
    );
    // Without it, every row is there (an independent reader), and the checks over the
    // read-back rows pass (freshness saw the newest order, not nothing).
    p.write(rel, &text);
    let out = p.ok(&["run", "clean_orders", "--partition", "2024-01-05"]);
    assert!(!out.stderr.contains("freshness"), "{}", out.context());
    let paid_or_refunded = text
        .lines()
        .skip(1)
        .filter(|l| !l.ends_with(",cancelled"))
        .count() as u64;
    let (rows, ids, _) = python_delta_summary(
        &p.warehouse_table("clean_orders", 1),
        "dt",
        "2024-01-05",
        "order_id",
        "amount",
    );
    assert_eq!((rows, ids), (paid_or_refunded, paid_or_refunded));
    assert!(rows > 7000, "{rows}");
}
