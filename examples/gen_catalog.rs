//! A synthetic catalog for the scale figures: a project of `--jobs` hourly jobs (every fifth
//! reads the one before it; each has checks), whose catalog holds `--partitions` partitions
//! of each job, all complete up to the last hour, with `--runs` runs each: reruns that a
//! later run superseded, failures retried, and a few partitions whose last run failed.
//!
//! ```text
//! cargo run --release --example gen_catalog -- --out /tmp/scale --jobs 100 --partitions 10000 --runs 10
//! ```
//! `--catalog URL` puts the catalog on PostgreSQL (a fresh database) instead of SQLite in
//! the project; `--sluice PATH` names the binary (default: the `sluice` built beside this
//! example).
//!
//! The project and one partition of each job are made by the real binary (`migrate`, then
//! a `backfill` of the first hour), so that the tables, aliases, code, fingerprints,
//! profiles, check results and reads are sluice's own. Every other partition's runs are
//! copies of that first real run with their partition, times and states changed, written
//! many rows to a statement (`Catalog::insert_history`); a partition's data version is
//! recomputed from what it read, so that nothing is stale and a daemon started on the
//! project finds only the new hours to run.

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use sluice::catalog::{Catalog, HistoryPartition, HistoryRun, PartitionState, RunState, Trigger};
use sluice::provenance::Reads;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Args {
    out: PathBuf,
    jobs: usize,
    partitions: usize,
    runs: usize,
    catalog: Option<String>,
    sluice: PathBuf,
    /// When the generator started.
    now: DateTime<Utc>,
}

fn parse_args() -> Args {
    let mut a = Args {
        out: PathBuf::from("/tmp/sluice-scale"),
        jobs: 100,
        partitions: 10_000,
        runs: 10,
        catalog: None,
        now: Utc::now(),
        sluice: std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("sluice")))
            .unwrap_or_else(|| PathBuf::from("sluice")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = |v: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| usage(&format!("{flag}: `{v}` is not a positive number")))
        };
        match flag.as_str() {
            "--out" => a.out = PathBuf::from(value),
            "--jobs" => a.jobs = number(&value),
            "--partitions" => a.partitions = number(&value),
            "--runs" => a.runs = number(&value),
            "--catalog" => a.catalog = Some(value),
            "--sluice" => a.sluice = PathBuf::from(value),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!(
        "gen_catalog: {why}\nusage: gen_catalog --out DIR [--jobs 100] [--partitions 10000] [--runs 10] [--catalog URL] [--sluice PATH]"
    );
    std::process::exit(2)
}

fn job_name(i: usize) -> String {
    format!("g{i:03}")
}

/// Every fifth job reads the job before it, hour by hour.
fn upstream_of(i: usize) -> Option<usize> {
    (i % 5 == 4).then(|| i - 1)
}

fn write_project(a: &Args, start: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(a.out.join("jobs"))?;
    std::fs::create_dir_all(a.out.join("migrations"))?;
    let catalog = a
        .catalog
        .clone()
        .unwrap_or_else(|| "sqlite://.sluice/catalog.db".into());
    std::fs::write(
        a.out.join("sluice.toml"),
        format!("[catalog]\nurl = \"{catalog}\"\n\n[warehouse]\nurl = \"warehouse\"\n"),
    )?;
    for i in 0..a.jobs {
        let name = job_name(i);
        std::fs::write(
            a.out
                .join(format!("migrations/{:04}_create_{name}.sql", i + 1)),
            format!(
                "CREATE TABLE {name} (\n    hour TIMESTAMP NOT NULL,\n    n BIGINT NOT NULL,\n    v DOUBLE\n)\nPARTITIONED BY (hour);\n"
            ),
        )?;
        let (input, sql) = match upstream_of(i) {
            Some(u) => (
                format!("\n[[inputs]]\nname = \"up\"\ntable = \"{}\"\n", job_name(u)),
                "SELECT n, v * 2 AS v FROM up\n".to_string(),
            ),
            None => (
                String::new(),
                "SELECT n, CAST(n AS DOUBLE) * 1.5 AS v FROM (VALUES (1), (2), (3)) AS t(n)\n"
                    .to_string(),
            ),
        };
        std::fs::write(
            a.out.join(format!("jobs/{name}.toml")),
            format!(
                "description = \"synthetic job {i}\"\nversion = 1\nstart = \"{start}\"\n\n\
                 [schedule]\ncron = \"5 * * * *\"\n\n[partitioning]\ngranularity = \"hourly\"\n{input}\n\
                 [output]\ntable = \"{name}\"\nkey = [\"n\"]\n\n\
                 [[checks]]\ntype = \"not_null\"\ncolumns = [\"n\"]\n\n\
                 [[checks]]\ntype = \"unique\"\n\n\
                 [[checks]]\ntype = \"volume\"\nbaseline = 7\ntolerance = 0.5\n"
            ),
        )?;
        std::fs::write(a.out.join(format!("jobs/{name}.sql")), sql)?;
    }
    Ok(())
}

fn sluice(a: &Args, args: &[&str]) -> String {
    let out = Command::new(&a.sluice)
        .arg("--project")
        .arg(&a.out)
        .args(args)
        .output()
        .unwrap_or_else(|e| usage(&format!("cannot run {}: {e}", a.sluice.display())));
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        usage(&format!("`sluice {}` failed", args.join(" ")));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A number from (job, partition, run) that looks random and is always the same.
fn h(job: usize, partition: usize, run: usize) -> u64 {
    let mut x = (job as u64) << 40 ^ (partition as u64) << 8 ^ run as u64;
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 32)
}

fn run_id(job: usize, partition: usize, run: usize) -> String {
    let x = h(job, partition, run);
    format!(
        "{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
        job,
        partition >> 16,
        partition & 0xfff,
        (partition >> 12) & 0xf,
        (x & 0xffff_ffff_ff00) | run as u64
    )
}

/// The runs and row of partition `p` (hours after the first) of job `j`, copied from its
/// first partition's real run.
fn partition_history(
    a: &Args,
    j: usize,
    p: usize,
    template: &HistoryRun,
    hour: DateTime<Utc>,
) -> (Vec<HistoryRun>, HistoryPartition) {
    let t = &template.row;
    let key = hour.format("%Y-%m-%dT%H").to_string();
    let moved = |text: &Option<String>| text.as_ref().map(|s| s.replace(&t.partition_key, &key));
    let reads_json = moved(&template.reads_json);
    let data_version =
        Reads::from_json(reads_json.as_deref()).map(|r| r.data_version(&t.fingerprint));
    let mut runs = Vec::with_capacity(a.runs);
    let mut content: Option<usize> = None;
    for k in 0..a.runs {
        let last = k + 1 == a.runs;
        let roll = h(j, p, k) % 1000;
        // About one run in twenty failed and was retried; one partition in two hundred
        // ends failed (its content, if any, an earlier run's).
        let failed = if last { roll < 5 } else { roll < 50 };
        // At the hour's tick, then reruns minutes apart; never after the generator ran.
        let latest = a.now - Duration::minutes((a.runs - k) as i64);
        let started = (hour + Duration::hours(1) + Duration::minutes(7 * k as i64)).min(latest);
        let mut row = t.clone();
        row.run_id = run_id(j, p, k);
        row.partition_key = key.clone();
        row.attempt = if k > 0
            && runs
                .last()
                .is_some_and(|r: &HistoryRun| r.row.state == RunState::Failed)
        {
            2
        } else {
            1
        };
        row.trigger_kind = if k == 0 {
            Trigger::Daemon
        } else {
            Trigger::Backfill
        };
        row.lease_token = k as i64 + 1;
        row.started_at = started.timestamp_millis();
        row.finished_at = Some(row.started_at + 1500 + (h(j, p, k) % 3000) as i64);
        if failed {
            row.state = RunState::Failed;
            row.rows_written = None;
            row.delta_version = None;
            row.error = Some(format!(
                "Execution error: the query over {} failed for partition {key}: object store request timed out after 30s (attempt {})",
                t.table_name, row.attempt
            ));
        } else {
            row.state = RunState::Succeeded;
            row.delta_version = Some((p * a.runs + k + 1) as i64);
            content = Some(k);
        }
        runs.push(HistoryRun {
            quality_json: if failed {
                None
            } else {
                moved(&template.quality_json)
            },
            reads_json: reads_json.clone(),
            data_version: data_version.clone(),
            row,
        });
    }
    let newest = &runs[a.runs - 1].row;
    let content_row = content.map(|k| &runs[k].row);
    let partition = HistoryPartition {
        table_name: t.table_name.clone(),
        table_version: t.table_version,
        partition_key: key,
        job: t.job.clone(),
        state: if newest.state == RunState::Failed {
            PartitionState::Failed
        } else {
            PartitionState::Complete
        },
        last_run_id: newest.run_id.clone(),
        content_run_id: content_row.map(|r| r.run_id.clone()),
        content_fingerprint: content_row.map(|r| r.fingerprint.clone()),
        content_rows: content_row.and_then(|r| r.rows_written),
        content_delta_version: content_row.and_then(|r| r.delta_version),
        error: newest.error.clone(),
        updated_at: newest.finished_at.unwrap_or(newest.started_at),
        lease_token: a.runs as i64,
    };
    (runs, partition)
}

/// The real run of each job's first partition, by job name.
fn templates(status: &str) -> std::collections::BTreeMap<String, String> {
    let rows: serde_json::Value =
        serde_json::from_str(status).unwrap_or_else(|e| usage(&format!("status JSON: {e}")));
    rows.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["job"].as_str()?.to_string(),
                r["run_id"].as_str()?.to_string(),
            ))
        })
        .collect()
}

async fn generate(a: &Args, catalog: &Catalog, first: DateTime<Utc>) {
    let runs = sluice(a, &["status", "--output", "json"]);
    let by_job = templates(&runs);
    let started = std::time::Instant::now();
    let per_batch = (20_000 / a.runs).max(1);
    for j in 0..a.jobs {
        let name = job_name(j);
        let Some(id) = by_job.get(&name) else {
            usage(&format!("{name} has no run to copy"));
        };
        let template = match catalog.history_run(id).await {
            Ok(Some(t)) => t,
            other => usage(&format!("{name}'s run {id}: {other:?}")),
        };
        let mut p = 1;
        while p < a.partitions {
            let end = (p + per_batch).min(a.partitions);
            let mut runs = Vec::new();
            let mut partitions = Vec::new();
            for i in p..end {
                let (r, row) =
                    partition_history(a, j, i, &template, first + Duration::hours(i as i64));
                runs.extend(r);
                partitions.push(row);
            }
            if let Err(e) = catalog.insert_history(&runs, &partitions).await {
                usage(&format!("writing {name}'s history: {e}"));
            }
            p = end;
        }
        eprintln!(
            "{name}: {} partitions, {} runs ({:.0} s so far)",
            a.partitions,
            a.partitions * a.runs,
            started.elapsed().as_secs_f64()
        );
    }
}

fn catalog_url(a: &Args) -> String {
    a.catalog.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            Path::new(&a.out).join(".sluice/catalog.db").display()
        )
    })
}

fn main() {
    let a = parse_args();
    if a.out.join("sluice.toml").exists() {
        usage(&format!("{} already holds a project", a.out.display()));
    }
    let now = a
        .now
        .duration_trunc(Duration::hours(1))
        .unwrap_or_else(|e| usage(&format!("the time: {e}")));
    // The newest partition is the last complete hour's.
    let first = now - Duration::hours(a.partitions as i64);
    let start = first.format("%Y-%m-%dT%H").to_string();
    if let Err(e) = write_project(&a, &start) {
        usage(&format!("writing the project: {e}"));
    }
    sluice(&a, &["migrate"]);
    sluice(&a, &["backfill", "--from", &start, "--to", &start, "-q"]);
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| usage(&format!("{e}")));
    runtime.block_on(async {
        let catalog = Catalog::connect(&catalog_url(&a))
            .await
            .unwrap_or_else(|e| usage(&format!("the catalog: {e}")));
        generate(&a, &catalog, first).await;
    });
    println!(
        "{}: {} jobs x {} partitions, {} runs each",
        a.out.display(),
        a.jobs,
        a.partitions,
        a.runs
    );
}
