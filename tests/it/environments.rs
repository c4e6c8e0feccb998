//! Issue: environments. An environment is a named set of aliases made by copying
//! production's pointers: no data written, its readers unmoved when production moves, its
//! versions kept by gc until it is dropped.

use crate::util::*;

/// Sets `version = N` in clean_orders' spec and backfills two days into it.
fn build_clean_orders(p: &TestProject, version: u32) {
    let spec = p.read("jobs/clean_orders.toml");
    let spec: Vec<String> = spec
        .lines()
        .map(|l| match l.starts_with("version = ") {
            true => format!("version = {version}"),
            false => l.to_string(),
        })
        .collect();
    p.write("jobs/clean_orders.toml", &spec.join("\n"));
    let (from, to) = ("2024-01-01", "2024-01-02");
    p.ok(&["backfill", "clean_orders", "--from", from, "--to", to]);
}

fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.path().is_dir() {
            true => files_under(&e.path()),
            false => 1,
        })
        .sum()
}

fn resolve(p: &TestProject, env: Option<&str>) -> std::path::PathBuf {
    let mut args = vec!["resolve", "clean_orders"];
    args.extend(env.map(|e| ["--env", e]).into_iter().flatten());
    p.location_dir(p.ok(&args).stdout.trim())
}

#[tokio::test]
async fn an_environment_copies_pointers_only_and_stays_put_when_production_moves() {
    let p = TestProject::migrated();
    build_clean_orders(&p, 1);
    let tables = p.ok(&["tables", "--output", "json"]).json();
    let aliased: std::collections::BTreeSet<&str> = tables
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["live"] == true)
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    let before = files_under(&p.warehouse_root());
    p.ok(&["env", "create", "dev"]).says(&format!(
        "created environment dev from prod: {} table alias(es) copied, no data written",
        aliased.len()
    ));
    assert_eq!(files_under(&p.warehouse_root()), before, "no file written");
    let listed = p.ok(&["env", "list", "--output", "json"]).json();
    assert_eq!(listed[0]["name"], "dev", "{listed:#}");
    assert_eq!(listed[0]["tables"], aliased.len() as i64, "{listed:#}");
    assert_eq!(listed[0]["own_versions"], 0, "{listed:#}");
    assert_eq!(resolve(&p, Some("dev")), resolve(&p, None));

    // Production moves to v2; the environment still reads v1, by resolve and by query.
    let v1 = read_delta_rows(&p.warehouse_table("clean_orders", 1), None).await;
    build_clean_orders(&p, 2);
    p.ok(&["promote", "clean_orders", "--version", "2"]);
    assert_eq!(resolve(&p, None), p.warehouse_table("clean_orders", 2));
    assert_eq!(
        resolve(&p, Some("dev")),
        p.warehouse_table("clean_orders", 1)
    );
    let count = |env: &[&str]| {
        let mut args = vec![
            "query",
            "SELECT count(*) AS n FROM clean_orders",
            "--output",
            "json",
        ];
        args.extend(env);
        p.ok(&args).json()[0]["n"].as_i64().unwrap()
    };
    assert_eq!(count(&["--env", "dev"]), v1.len() as i64);
    assert_eq!(count(&["--env", "prod"]), count(&[]));

    // v3 live, v2 the previous: v1 stays only because dev points at it, until dev goes.
    build_clean_orders(&p, 3);
    p.ok(&["promote", "clean_orders", "--version", "3"]);
    let plan = p.ok(&["gc", "--keep", "0", "--dry-run"]);
    plan.says("keep clean_orders v1: the alias of environment(s) dev");
    p.ok(&["env", "drop", "dev"])
        .says("dropped environment dev");
    p.ok(&["gc", "--keep", "0", "--dry-run"])
        .says("would remove clean_orders v1");
    p.run(&["resolve", "clean_orders", "--env", "dev"])
        .complains("no environment `dev`");
}

#[test]
fn environment_commands_refuse_what_cannot_work_naming_it() {
    let p = TestProject::migrated();
    p.ok(&["env", "create", "dev"]);
    let refused = |args: &[&str], says: &str| {
        let o = p.run(args);
        assert_eq!(o.code, 2, "{}", o.context());
        o.complains(says);
    };
    refused(
        &["env", "create", "dev"],
        "environment `dev` exists already",
    );
    refused(
        &["env", "create", "pr_1", "--from", "deb"],
        "no environment `deb`",
    );
    refused(&["env", "create", "prod"], "`prod` is production's aliases");
    refused(&["env", "create", "Pr-1"], "environment name `Pr-1`");
    refused(&["env", "create", "x", "--ttl", "soon"], "--ttl soon");
    refused(&["env", "drop", "deb"], "no environment `deb`");
    refused(
        &["resolve", "clean_orders", "--env", "deb"],
        "did you mean `dev`?",
    );
    // Commands that change production take no --env.
    for args in [
        &[
            "run",
            "clean_orders",
            "--partition",
            "2024-01-01",
            "--env",
            "dev",
        ][..],
        &[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-01",
            "--env",
            "dev",
        ],
        &["promote", "clean_orders", "--version", "1", "--env", "dev"],
        &["migrate", "--env", "dev"],
        &["gc", "--env", "dev"],
    ] {
        refused(args, "--env dev: this command changes production");
    }
    // A lapsed environment is refused to readers, and can be dropped.
    p.ok(&["env", "create", "brief", "--ttl", "0.2s"]);
    std::thread::sleep(std::time::Duration::from_millis(400));
    refused(&["resolve", "clean_orders", "--env", "brief"], "lapsed");
    p.ok(&["env", "drop", "brief"]);
}
