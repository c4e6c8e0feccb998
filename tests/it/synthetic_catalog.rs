//! The synthetic catalog of the scale benchmark (`examples/gen_catalog.rs`, issue 39) is one
//! sluice itself would have written: over it, `status` counts what the generator wrote and
//! finds nothing stale, a daemon runs only the hours after it and finds every other one
//! complete, and retention finds the superseded runs to prune.

use crate::util::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The generator `cargo test` built beside the binary under test.
fn generator() -> PathBuf {
    let bin = Path::new(BIN);
    let exe = bin.parent().unwrap().join("examples").join("gen_catalog");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    assert!(
        exe.exists()
            && modified(&exe) >= modified(bin).map(|t| t - std::time::Duration::from_secs(3600)),
        "{} is missing or older than the binary: `cargo test` builds it (or `cargo build --example gen_catalog`)",
        exe.display()
    );
    exe
}

fn sluice(project: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN)
        .arg("--project")
        .arg(project)
        .args(args)
        .env_remove("SLUICE_CATALOG")
        .env_remove("SLUICE_WAREHOUSE")
        .output()
        .unwrap();
    assert!(
        out.status.success() || args[0] == "daemon",
        "sluice {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_generated_catalog_is_one_sluice_itself_would_have_written() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("scale");
    let (jobs, partitions, runs) = (5, 48, 3);
    let mut generate = Command::new(generator());
    generate
        .arg("--out")
        .arg(&project)
        .args(["--jobs", &jobs.to_string()])
        .args(["--partitions", &partitions.to_string()])
        .args(["--runs", &runs.to_string()])
        .arg("--sluice")
        .arg(BIN)
        .env_remove("SLUICE_CATALOG")
        .env_remove("SLUICE_WAREHOUSE");
    if let Some(admin) = remote_catalog() {
        generate.args(["--catalog", &create_database(&admin)]);
    }
    let out = generate.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let status: Value =
        serde_json::from_slice(&sluice(&project, &["status", "--output", "json"]).stdout).unwrap();
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len(), jobs * partitions);
    let count = |state: &str| rows.iter().filter(|r| r["state"] == state).count();
    // About one partition in two hundred ends failed; none is stale or running.
    assert_eq!(
        count("complete") + count("failed"),
        rows.len(),
        "{status:#}"
    );
    assert!(count("complete") > rows.len() * 9 / 10);
    // Every fifth job read the one before it, and what it read is what is there now.
    let downstream: Vec<&Value> = rows.iter().filter(|r| r["job"] == "g004").collect();
    assert_eq!(downstream.len(), partitions);
    assert!(
        downstream
            .iter()
            .filter(|r| r["state"] == "complete")
            .all(|r| r["read"]["upstream"][0]["partitions"]
                .as_object()
                .is_some_and(|p| p.contains_key(r["partition"].as_str().unwrap()))),
        "{downstream:#?}"
    );

    // A daemon from the next hour on runs the new hours only, and says how long its polls took.
    let from = chrono::Utc::now().format("%Y-%m-%dT%H:00:00Z").to_string();
    let to = (chrono::Utc::now() + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    let replay = sluice(&project, &["daemon", "--replay", &format!("{from}..{to}")]);
    let said = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{said}");
    let ran: usize = said
        .lines()
        .find_map(|l| l.strip_suffix(" succeeded, 0 failed, 0 not run"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(ran >= jobs && ran <= 2 * jobs, "{said}");
    assert!(!said.contains("started again (stale)"), "{said}");
    assert!(
        said.lines().any(|l| l.contains(" poll(s): median ")),
        "{said}"
    );

    // Retention finds the runs the later ones superseded (all but each partition's content
    // and last run). The first hour's runs, real ones, may be too new for the cut-off.
    let gc: Value = serde_json::from_slice(
        &sluice(
            &project,
            &[
                "gc",
                "--runs",
                "--older-than",
                "1s",
                "--dry-run",
                "--output",
                "json",
            ],
        )
        .stdout,
    )
    .unwrap();
    let removable = gc["runs_removed"].as_u64().unwrap() as usize;
    let kept = gc["runs_kept"].as_u64().unwrap() as usize;
    assert!(
        kept >= jobs * (partitions - 1) && kept <= 2 * jobs * partitions,
        "{gc:#}"
    );
    assert!(removable + kept >= jobs * (partitions - 1) * runs, "{gc:#}");
}
