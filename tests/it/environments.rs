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

/// Where `resolve` says clean_orders lives, in `env` (production: `None`).
pub(crate) fn resolve(p: &TestProject, env: Option<&str>) -> std::path::PathBuf {
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
    // The web view in dev says so on every page, and its table page reads dev's alias.
    let live_row = |v: u32| format!("<tr class=\"live\"><td>v{v}</td>");
    {
        let ui = crate::ui::Ui::start_with(&p, &["--env", "dev"], &[]);
        let table = ui.get("/tables/clean_orders", &[]).await;
        table.shows("dev's table page", &["environment dev", &live_row(1)]);
        ui.get("/", &[])
            .await
            .shows("dev's grid", &["environment dev"]);
    }
    let ui = crate::ui::Ui::start(&p, &[]);
    let table = ui.get("/tables/clean_orders", &[]).await;
    table.shows("production's table page", &[&live_row(2)]);
    assert!(!table.body.contains("environment dev"), "{}", table.body);
    drop(ui);

    // v3 live, v2 the previous: v1 stays only because dev points at it, until dev goes.
    build_clean_orders(&p, 3);
    p.ok(&["promote", "clean_orders", "--version", "3"]);
    let plan = p.ok(&["gc", "--keep", "0", "--dry-run"]);
    plan.says("keep clean_orders v1: the alias of environment(s) dev");
    // A copy of dev that lapses: once its --ttl has passed, it keeps nothing, and gc
    // drops it before it removes what only it pointed at.
    p.ok(&["env", "create", "brief", "--from", "dev", "--ttl", "0.5s"]);
    p.ok(&["env", "drop", "dev"])
        .says("dropped environment dev");
    std::thread::sleep(std::time::Duration::from_millis(700));
    let plan = p.ok(&["gc", "--keep", "0", "--dry-run"]);
    plan.says("would drop environment brief: its --ttl has passed");
    plan.says("would remove clean_orders v1");
    assert!(p.warehouse_table("clean_orders", 1).exists(), "a dry run");
    p.ok(&["gc", "--keep", "0"])
        .says("dropped environment brief: its --ttl had passed")
        .says("removed clean_orders v1");
    assert!(!p.warehouse_table("clean_orders", 1).exists());
    let listed = p.ok(&["env", "list", "--output", "json"]).json();
    assert_eq!(listed, serde_json::json!([]), "{listed:#}");
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

/// The jobs a plan's JSON builds, each as `job change`.
fn built(plan: &serde_json::Value) -> Vec<String> {
    let jobs = plan["build"].as_array().cloned().unwrap_or_default();
    jobs.iter()
        .map(|j| {
            format!(
                "{} {}",
                j["job"].as_str().unwrap_or("?"),
                j["change"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// `plan` compares the checkout with what built each table an environment reads: a changed
/// filter in clean_orders makes it changed and every job that reads it, directly or not,
/// affected, nothing else; the partitions are those the replaced versions hold, or a
/// range's. It writes nothing.
#[test]
fn plan_names_the_changed_job_what_reads_it_and_the_partitions_to_build() {
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-03");
    p.ok(&["env", "create", "dev"]);
    let plan = |args: &[&str]| {
        let mut all = vec!["plan", "--output", "json"];
        all.extend(args);
        p.ok(&all).json()
    };
    // Three days make no month: only monthly_region_revenue's table has nothing yet.
    let same = plan(&["--env", "dev"]);
    let only_new = serde_json::json!([{
        "job": "monthly_region_revenue",
        "table": "monthly_region_revenue",
        "change": "new",
        "replaces": null,
        "because": "table monthly_region_revenue has no version yet",
        "partitions": [],
    }]);
    assert_eq!(same["build"], only_new, "{same:#}");
    assert_eq!(same["env"], "dev", "{same:#}");

    let sql = p.read("jobs/clean_orders.sql");
    p.write(
        "jobs/clean_orders.sql",
        &sql.replace(
            "WHERE status <> 'cancelled'",
            "WHERE status <> 'cancelled' AND quantity > 0",
        ),
    );
    let before = files_under(&p.warehouse_root());
    let changed = plan(&["--env", "dev"]);
    let build = built(&changed);
    assert_eq!(
        build,
        [
            "clean_orders changed",
            "daily_revenue affected",
            "monthly_region_revenue new",
            "regional_orders affected",
            "rolling_revenue affected",
        ],
        "{changed:#}"
    );
    let job = |name: &str| {
        changed["build"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        job("clean_orders")["partitions"],
        serde_json::json!(["2024-01-01", "2024-01-02", "2024-01-03"]),
        "the partitions clean_orders v1 holds: {changed:#}"
    );
    assert_eq!(job("clean_orders")["replaces"], 1);
    assert_eq!(
        job("daily_revenue")["because"],
        "downstream of clean_orders"
    );
    assert_eq!(
        job("rolling_revenue")["because"],
        "downstream of clean_orders"
    );
    let unchanged = changed["unchanged"].as_array().unwrap();
    assert!(
        unchanged.contains(&serde_json::json!("customers")),
        "{changed:#}"
    );
    assert!(
        !unchanged.contains(&serde_json::json!("clean_orders")),
        "{changed:#}"
    );

    // A range gives its partitions (keys too), as a forced backfill selects them.
    let ranged = plan(&["--env", "dev", "--from", "2024-01-05", "--to", "2024-01-06"]);
    let regional = ranged["build"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "regional_orders")
        .unwrap()["partitions"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(regional, 2 * 8, "two days of eight regions: {ranged:#}");
    // People get the same, in lines; production (no --env) sees the same change.
    p.ok(&["plan", "--env", "dev"])
        .says("plan for environment dev: 1 job(s) changed, 1 new, 3 affected downstream")
        .says("changed  clean_orders (replaces clean_orders v1): its code differs from what wrote clean_orders v1 (breaking); 3 partition(s), 2024-01-01 .. 2024-01-03");
    p.ok(&["plan"])
        .says("plan for production: 1 job(s) changed");
    assert_eq!(
        files_under(&p.warehouse_root()),
        before,
        "a plan writes nothing"
    );

    // A column appended, nothing else: its readers take none of it (no `*`), so they
    // need no rebuild, nor what reads them.
    p.write(
        "jobs/clean_orders.sql",
        &sql.replace(
            "    status\nFROM orders",
            "    status,\n    quantity > 10 AS bulk\nFROM orders",
        ),
    );
    let added = plan(&["--env", "dev"]);
    let build = built(&added);
    assert_eq!(
        build,
        ["clean_orders changed", "monthly_region_revenue new"],
        "{added:#}"
    );
    assert_eq!(added["build"][0]["breaking"], false, "{added:#}");
    let skipped: Vec<&str> = added["not_rebuilt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["daily_revenue", "regional_orders"], "{added:#}");
    p.ok(&["plan", "--env", "dev"]).says("(non-breaking: it only adds columns)").says(
        "not rebuilt: daily_revenue (the change of clean_orders only adds columns, and it takes none of them (no `*`))",
    );
}

/// A graph of 50 jobs, each reading the one at half its number (a binary tree under j01),
/// every table built once.
pub(crate) fn tree_of_50() -> TestProject {
    let mut files: Vec<(String, String)> = Vec::new();
    let mut tables = String::new();
    for i in 1..=50 {
        let (spec, sql) = match i {
            1 => (String::new(), "SELECT CAST(1 AS BIGINT) AS x".to_string()),
            _ => (
                format!("[[inputs]]\nname = \"up\"\ntable = \"j{:02}\"\n", i / 2),
                "SELECT x + 1 AS x FROM up".to_string(),
            ),
        };
        let spec = format!(
            "version = 1\n[partitioning]\ngranularity = \"none\"\n{spec}[output]\ntable = \"j{i:02}\"\n"
        );
        files.push((format!("jobs/j{i:02}.toml"), spec));
        files.push((format!("jobs/j{i:02}.sql"), sql));
        tables.push_str(&format!("CREATE TABLE j{i:02} (x BIGINT);\n"));
    }
    files.push(("migrations/0001_tables.sql".into(), tables));
    let p = TestProject::with_owned_files(&files);
    p.ok(&["migrate"]);
    p.backfill("2024-01-01", "2024-01-01")
        .says("50 succeeded, 0 failed");
    p
}

/// The jobs a plan builds, by change.
fn planned(p: &TestProject) -> (Vec<String>, Vec<String>, Vec<String>) {
    let plan = p.ok(&["plan", "--output", "json"]).json();
    let of = |field: &str, change: Option<&str>| -> Vec<String> {
        plan[field]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| change.is_none_or(|c| j["change"] == c))
            .map(|j| j["job"].as_str().unwrap().to_string())
            .collect()
    };
    let (changed, affected) = (of("build", Some("changed")), of("build", Some("affected")));
    (changed, affected, of("not_rebuilt", None))
}

pub(crate) fn jobs(numbers: &[u32]) -> Vec<String> {
    numbers.iter().map(|i| format!("j{i:02}")).collect()
}

/// In a 50-job graph, a one-job change plans exactly that job and what its change reaches:
/// a breaking change everything below it; a column added only the readers that take `*`,
/// and everything below those.
#[test]
fn in_a_graph_of_50_jobs_a_change_plans_exactly_what_it_reaches() {
    let p = tree_of_50();
    assert_eq!(planned(&p), (vec![], vec![], vec![]));
    let below_3 = [
        6, 7, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31, 48, 49, 50,
    ];
    p.write("jobs/j03.sql", "SELECT x + 2 AS x FROM up");
    assert_eq!(planned(&p), (jobs(&[3]), jobs(&below_3), vec![]));
    // A column appended: j06 and j07 take only x, so nothing below j03 is rebuilt...
    p.write("jobs/j03.sql", "SELECT x + 1 AS x, 7 AS y FROM up");
    assert_eq!(planned(&p), (jobs(&[3]), vec![], jobs(&[6, 7])));
    // ... unless a reader takes every column: then it and what is below it are.
    p.write("jobs/j06.sql", "SELECT * FROM up");
    let (changed, affected, skipped) = planned(&p);
    assert_eq!(changed, jobs(&[3, 6]), "j06's own code changed too");
    assert_eq!(affected, jobs(&[12, 13, 24, 25, 26, 27, 48, 49, 50]));
    assert_eq!(skipped, jobs(&[7]));
}
