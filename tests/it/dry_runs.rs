//! A dry run is the real command stopped short of its change: each `--dry-run` (and
//! `migrate --plan`) is run beside the real command on the same refusal, and must refuse
//! alike (the same errors, the same exit code) and change nothing; what it approves, the
//! real command does.

use crate::util::{Output, TestProject};

/// The `error:` lines of a command's stderr: what a refusal says.
fn errors(o: &Output) -> Vec<String> {
    o.stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_string)
        .collect()
}

/// `dry` and `real` were refused alike: the same exit code (not 0), the same errors.
fn refused_alike(dry: &Output, real: &Output) {
    assert_ne!(dry.code, 0, "{}", dry.context());
    assert_eq!(dry.code, real.code, "{}{}", dry.context(), real.context());
    assert!(!errors(dry).is_empty(), "{}", dry.context());
    assert_eq!(
        errors(dry),
        errors(real),
        "{}{}",
        dry.context(),
        real.context()
    );
}

fn set_version(p: &TestProject, job: &str, version: u32) {
    let spec = p.read(&format!("jobs/{job}.toml"));
    let spec: Vec<String> = spec
        .lines()
        .map(|l| match l.starts_with("version = ") {
            true => format!("version = {version}"),
            false => l.to_string(),
        })
        .collect();
    p.write(&format!("jobs/{job}.toml"), &spec.join("\n"));
}

#[test]
fn promote_dry_run_refuses_a_version_lacking_a_partition_as_promote_does() {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "daily_revenue",
        "--from",
        "2024-01-14",
        "--to",
        "2024-01-15",
        "-q",
    ]);
    set_version(&p, "daily_revenue", 2);
    p.ok(&[
        "backfill",
        "daily_revenue",
        "--from",
        "2024-01-14",
        "--to",
        "2024-01-14",
        "-q",
    ]);
    let alias = |p: &TestProject| p.ok(&["resolve", "daily_revenue"]).stdout;
    let before = alias(&p);

    let args = ["promote", "daily_revenue", "--version", "2"];
    let dry = p.run(&[&args[..], &["--dry-run"]].concat());
    let real = p.run(&args);
    refused_alike(&dry, &real);
    assert_eq!(dry.code, 1);
    dry.complains("v2 lacks 1 partition(s) that v1 has: 2024-01-15");
    dry.complains("the promote would be refused");
    assert!(!dry.stdout.contains("would promote"), "{}", dry.context());
    assert_eq!(alias(&p), before, "neither changed the alias");
    let json = p
        .run(&[&args[..], &["--dry-run", "--output", "json"]].concat())
        .json();
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["flipped"], false);
    assert_eq!(json["refusals"].as_array().map(Vec::len), Some(1), "{json}");

    // Built whole, the dry run approves, and changes nothing; then the promote does it.
    p.ok(&[
        "backfill",
        "daily_revenue",
        "--from",
        "2024-01-15",
        "--to",
        "2024-01-15",
        "-q",
    ]);
    let dry = p.ok(&[&args[..], &["--dry-run"]].concat());
    dry.says("would promote daily_revenue: v1 -> v2");
    assert_eq!(alias(&p), before);
    p.ok(&args).says("daily_revenue: v1 -> v2 (promote)");
    assert_ne!(alias(&p), before);
}

#[test]
fn rollback_dry_run_refuses_as_rollback_does_when_there_is_nothing_to_go_back_to() {
    let p = TestProject::migrated();
    let dry = p.run(&["rollback", "clean_orders", "--dry-run"]);
    let real = p.run(&["rollback", "clean_orders"]);
    refused_alike(&dry, &real);
    assert_eq!(dry.code, 2);
}

#[test]
fn migrate_plan_refuses_a_destructive_migration_as_migrate_does() {
    let p = TestProject::migrated();
    p.write(
        "migrations/0008_drop_quantity.sql",
        "ALTER TABLE clean_orders DROP COLUMN quantity;\n",
    );
    // Without the flag: refused for being destructive.
    let dry = p.run(&["migrate", "--plan"]);
    let real = p.run(&["migrate"]);
    refused_alike(&dry, &real);
    dry.says("0008_drop_quantity.sql (DESTRUCTIVE: needs --allow-destructive)");
    dry.complains("migrate would stop there");
    // With it: refused because a job still uses the column.
    let dry = p.run(&["migrate", "--plan", "--allow-destructive"]);
    let real = p.run(&["migrate", "--allow-destructive"]);
    refused_alike(&dry, &real);
    dry.complains("quantity");
    let status = p.ok(&["migrate", "status"]);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("0008_drop_quantity.sql") && l.contains("pending")),
        "{}",
        status.context()
    );
}

#[test]
fn backfill_dry_run_refuses_what_backfill_refuses() {
    let p = TestProject::migrated();
    for extra in [
        &["--version", "9"][..],
        &["--keys", "atlantis"][..],
        &["--from", "2024-02-01", "--to", "2024-01-01"][..],
    ] {
        let mut args = vec!["backfill", "regional_orders"];
        if extra[0] != "--from" {
            args.extend(["--from", "2024-01-01", "--to", "2024-01-02"]);
        }
        args.extend(extra);
        let real = p.run(&args);
        args.push("--dry-run");
        let dry = p.run(&args);
        refused_alike(&dry, &real);
    }
    // Nothing ran.
    let status = p.ok(&["status"]);
    status.says("no partitions have run yet");
}
