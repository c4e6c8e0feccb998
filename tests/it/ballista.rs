//! Jobs on Apache Ballista: the same SQL, the same rows. `[engine] kind = "ballista"` sends
//! a job's query to a scheduler (`scheduler = "standalone"`: one in the sluice process);
//! upstream tables reach it as their snapshot's Parquet files.

use crate::util::{TestProject, stdout_of};
use std::path::Path;
use std::process::Command;

const TABLES: [&str; 4] = [
    "clean_orders",
    "daily_revenue",
    "monthly_region_revenue",
    "regional_orders",
];

/// Every row of a Delta table as Python's deltalake reads it, one JSON text per row,
/// sorted: an independent reader's view of the table.
fn python_rows(dir: &Path) -> Vec<String> {
    crate::util::refresh(dir);
    let script = r#"
import sys, json
from deltalake import DeltaTable
rows = DeltaTable(sys.argv[1]).to_pyarrow_table().to_pylist()
for line in sorted(json.dumps(r, sort_keys=True, default=str) for r in rows):
    print(line)
import os, sys; sys.stdout.flush(); os._exit(0)
"#;
    stdout_of(
        Command::new("python3").args(["-c", script]).arg(dir),
        "the Python deltalake reader (bash .ci/run installs it: pip install deltalake pyarrow)",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// The sample month, every job, once on the embedded engine and once on Ballista's
/// standalone mode: each table holds the same rows, read by Python's deltalake.
#[test]
fn the_sample_month_on_ballista_writes_what_the_embedded_engine_writes() {
    let embedded = TestProject::sample();
    let cluster = TestProject::sample();
    cluster.write(
        "sluice.toml",
        &format!(
            "{}kind = \"ballista\"\nscheduler = \"standalone\"\n",
            cluster.read("sluice.toml")
        ),
    );
    for p in [&embedded, &cluster] {
        p.ok(&["migrate"]);
        p.ok(&["backfill", "--from", "2024-01-01", "--to", "2024-01-31"]);
    }
    for t in TABLES {
        let want = python_rows(&embedded.warehouse_table(t, 1));
        assert!(!want.is_empty(), "{t} is empty on the embedded engine");
        let got = python_rows(&cluster.warehouse_table(t, 1));
        crate::util::assert_same_rows(t, &got, &want);
    }
}

/// A scheduler that cannot be reached fails the partition naming its address, and
/// nothing is written.
#[test]
fn an_unreachable_scheduler_is_named() {
    let p = TestProject::sample();
    p.write(
        "sluice.toml",
        &format!(
            "{}kind = \"ballista\"\nscheduler = \"df://127.0.0.1:9\"\n",
            p.read("sluice.toml")
        ),
    );
    p.ok(&["migrate"]);
    let out = p.run(&["run", "clean_orders", "--partition", "2024-01-05"]);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(out.stderr.contains("127.0.0.1:9"), "{}", out.context());
    assert!(
        crate::util::data_files(&p.warehouse_table("clean_orders", 1)).is_empty(),
        "{}",
        out.context()
    );
}

/// `kind = "ballista"` without a scheduler, or a scheduler that is not an address, is
/// refused when the settings are read, saying what to write.
#[test]
fn a_ballista_engine_without_a_scheduler_is_refused() {
    let p = TestProject::sample();
    let base = p.read("sluice.toml");
    p.write("sluice.toml", &format!("{base}kind = \"ballista\"\n"));
    let out = p.run(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.context());
    assert!(out.stderr.contains("engine.scheduler"), "{}", out.context());
    p.write(
        "sluice.toml",
        &format!("{base}kind = \"ballista\"\nscheduler = \"scheduler-host\"\n"),
    );
    let out = p.run(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.context());
    assert!(out.stderr.contains("df://HOST:PORT"), "{}", out.context());
}
