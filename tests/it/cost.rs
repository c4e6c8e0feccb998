//! Issue 39, cost per run: every run records what it used (CPU time, bytes read and
//! written, object-store requests, peak of the engine's memory), measured as it runs.
//! Checked against what others count: the OS's CPU time of the process, the input file's
//! size on disk, and the sizes of the data files in the Delta log as Python's deltalake
//! reads it.

use crate::util::*;
use serde_json::Value;
use std::process::Command;

/// The bytes of the data files of one partition (`dt=DAY`) of a table, as Python's
/// deltalake reads its log.
fn python_partition_bytes(dir: &std::path::Path, day: &str) -> u64 {
    let script = r#"
import sys
import pyarrow as pa
from deltalake import DeltaTable
adds = pa.table(DeltaTable(sys.argv[1]).get_add_actions(flatten=True)).to_pylist()
print(sum(a["size_bytes"] for a in adds if a["path"].startswith("dt=" + sys.argv[2] + "/")), flush=True)
import os; os._exit(0)
"#;
    stdout_of(
        Command::new("python3")
            .args(["-c", script])
            .arg(dir)
            .arg(day),
        "the Python deltalake reader",
    )
    .trim()
    .parse()
    .unwrap()
}

fn partition<'a>(status: &'a Value, day: &str) -> &'a Value {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partition"] == day)
        .unwrap_or_else(|| panic!("no partition {day} in {status:#}"))
}

#[test]
fn a_run_records_what_it_used_as_the_os_and_the_delta_log_count_it() {
    let p = TestProject::migrated();
    let day = "2024-01-06";
    // Big enough that the run's compute is most of the process's CPU time, with the
    // process's own start (a PostgreSQL catalog's connections, an object store's client)
    // at about 0.13 s: 300 times the day gave a run of 0.12 s, too close to half.
    enlarge_orders(&p, 1000, Some(day));
    let (out, usage) = p.run_measuring(&["run", "clean_orders", "--partition", day]);
    assert_eq!(out.code, 0, "{}", out.context());
    let status = p.ok(&["status", "clean_orders", "--output", "json"]).json();
    let cost = &partition(&status, day)["cost"];
    let n = |k: &str| {
        cost[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {cost:#}"))
    };
    // CPU: measured inside the process, so never more than the OS counted for all of it;
    // and the run's tasks on every thread are counted, so it is most of it (the rest is
    // starting, reading the project and the catalog, committing).
    let cpu = n("cpu_us") as f64 / 1e6;
    assert!(
        cpu <= usage.cpu_seconds * 1.02 + 0.01,
        "the run's CPU {cpu:.3} s is more than its process's {:.3} s",
        usage.cpu_seconds
    );
    assert!(
        cpu >= usage.cpu_seconds * 0.5,
        "the run's CPU {cpu:.3} s is less than half its process's {:.3} s: {cost:#}",
        usage.cpu_seconds
    );
    // Bytes read: at least the day's export, read whole (its size on disk).
    let export = std::fs::metadata(p.file(&format!("sample-data/orders/dt={day}/orders.csv")))
        .unwrap()
        .len();
    assert!(n("bytes_read") >= export, "{cost:#} (export: {export})");
    // Bytes written: exactly the partition's data files as the Delta log lists them.
    let table = p.warehouse_table("clean_orders", 1);
    assert_eq!(
        n("bytes_written"),
        python_partition_bytes(&table, day),
        "{cost:#}"
    );
    // A read of the export and an upload at least; the rows kept for the checks.
    assert!(n("requests") >= 2, "{cost:#}");
    assert!(n("peak_memory_bytes") > 0, "{cost:#}");

    // The partition's runs say the same, in JSON and in text.
    let detail = p
        .ok(&[
            "status",
            "clean_orders",
            "--partition",
            day,
            "--output",
            "json",
        ])
        .json();
    assert_eq!(&detail["runs"][0]["cost"], cost, "{detail:#}");
    let text = p.ok(&["status", "clean_orders", "--partition", day]);
    text.says(&format!("{cpu:.3} s"));

    // A partition of another day, a sixth of the size or less, costs less.
    p.ok(&["run", "clean_orders", "--partition", "2024-01-05"]);
    let status = p.ok(&["status", "clean_orders", "--output", "json"]).json();
    let small = &partition(&status, "2024-01-05")["cost"];
    for k in ["cpu_us", "bytes_read", "bytes_written"] {
        assert!(
            small[k].as_u64().unwrap() < n(k),
            "{k}: {small:#} against {cost:#}"
        );
    }
}
