//! Issue: environments, built. `apply --env` builds a plan into tables of the environment's
//! own while production's stay as they are; `env promote` flips production to them with
//! nothing recomputed; two environments built at once never meet.

use crate::environments::resolve;
use crate::util::*;

/// Adds `AND CONDITION` to clean_orders' filter, in `p`'s checkout.
fn narrow_clean_orders(p: &TestProject, condition: &str) {
    let sql = p.read("jobs/clean_orders.sql");
    let from = "WHERE status <> 'cancelled'";
    p.write(
        "jobs/clean_orders.sql",
        &sql.replace(from, &format!("{from} AND {condition}")),
    );
}

/// The sample project with three days in production and environment dev built from a
/// checkout whose clean_orders keeps only orders of 3 or more.
fn dev_applied() -> TestProject {
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-03");
    p.ok(&["env", "create", "dev"]);
    narrow_clean_orders(&p, "quantity >= 3");
    p.ok(&["apply", "--env", "dev"]);
    p
}

/// One number a query gives, in the environment `env` (production: `None`).
fn number(p: &TestProject, sql: &str, env: Option<&str>) -> i64 {
    let mut args = vec!["query", sql, "--output", "json"];
    args.extend(env.map(|e| ["--env", e]).into_iter().flatten());
    let out = p.ok(&args).json();
    out[0]["n"].as_i64().unwrap_or_else(|| panic!("{out:#}"))
}

/// `apply --env dev` builds exactly what `plan` shows, each job into a physical table of
/// dev's own that dev's alias points at, reading the unchanged tables through dev's
/// aliases (production's tables). Production's tables get no commit; run again, apply
/// builds nothing.
#[tokio::test]
async fn apply_builds_the_plan_in_tables_of_the_environment_s_own_and_leaves_production_s_alone() {
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-03");
    p.ok(&["env", "create", "dev"]);
    let written = [
        "clean_orders",
        "daily_revenue",
        "regional_orders",
        "rolling_revenue",
    ];
    let commits: Vec<u64> = written
        .iter()
        .map(|t| delta_log_version(&p.warehouse_table(t, 1)))
        .collect();
    let prod_rows = python_rows(&p.warehouse_table("clean_orders", 1));
    narrow_clean_orders(&p, "quantity >= 3");
    let plan = p.ok(&["plan", "--env", "dev", "--output", "json"]).json();
    let to_build: u64 = plan["build"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["partitions"].as_array().unwrap().len() as u64)
        .sum();

    let applied = p.ok(&["apply", "--env", "dev", "--output", "json"]).json();
    assert_eq!(applied["summary"]["failed"], 0, "{applied:#}");
    assert_eq!(applied["summary"]["succeeded"], to_build, "{applied:#}");
    let built: Vec<(&str, i64)> = applied["built"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["job"].as_str().unwrap(), b["version"].as_i64().unwrap()))
        .collect();
    let names: Vec<&str> = built.iter().map(|b| b.0).collect();
    assert_eq!(
        names,
        [
            "clean_orders",
            "daily_revenue",
            "regional_orders",
            "rolling_revenue"
        ],
        "{applied:#}"
    );
    // Three days make no month: nothing to build for the new monthly table, no version.
    assert_eq!(
        applied["empty"],
        serde_json::json!(["monthly_region_revenue"])
    );
    assert!(built.iter().all(|b| b.1 >= 1_000_000), "{applied:#}");

    // dev's clean_orders is its own table, read by an independent reader: production's
    // rows less those the new filter drops.
    let dev_clean = resolve(&p, Some("dev"));
    assert_eq!(dev_clean, p.warehouse_table("clean_orders", 1_000_000));
    let kept: Vec<String> = prod_rows
        .iter()
        .filter(|r| {
            let row: serde_json::Value = serde_json::from_str(r).unwrap();
            row["quantity"].as_i64().unwrap() >= 3
        })
        .cloned()
        .collect();
    assert!(kept.len() < prod_rows.len(), "the filter drops rows");
    assert_same_rows("dev's clean_orders", &python_rows(&dev_clean), &kept);
    // Downstream read dev's clean_orders, not production's.
    let orders = "SELECT CAST(SUM(orders) AS BIGINT) AS n FROM daily_revenue";
    assert_eq!(number(&p, orders, Some("dev")), kept.len() as i64);
    assert_eq!(number(&p, orders, None), prod_rows.len() as i64);
    // status in dev shows dev's tables, current with the checkout; production's
    // clean_orders was written by the code before the change.
    let shown = shown_states(&p, Some("dev"));
    assert!(
        shown.contains(&"clean_orders 2024-01-01 complete".to_string()),
        "{shown:#?}"
    );
    assert!(shown.iter().all(|s| s.ends_with(" complete")), "{shown:#?}");
    let prod = shown_states(&p, None);
    assert!(
        prod.contains(&"clean_orders 2024-01-01 stale".to_string()),
        "{prod:#?}"
    );
    p.ok(&["tables"]).says("v1000000 (dev)");
    // What did not change is production's table, read where it is.
    let customers = |env: &[&str]| {
        let mut args = vec!["resolve", "customers"];
        args.extend(env);
        p.ok(&args).stdout
    };
    assert_eq!(customers(&["--env", "dev"]), customers(&[]));
    // Production's tables got no commit; its aliases did not move.
    let after: Vec<u64> = written
        .iter()
        .map(|t| delta_log_version(&p.warehouse_table(t, 1)))
        .collect();
    assert_eq!(
        after, commits,
        "production's tables of {written:?} untouched"
    );
    assert_eq!(resolve(&p, None), p.warehouse_table("clean_orders", 1));
    let listed = p.ok(&["env", "list", "--output", "json"]).json();
    assert_eq!(listed[0]["own_versions"], 4, "{listed:#}");

    // Nothing changed since: nothing to build. Changed again: dev's own versions (no one
    // else points at them) are rebuilt where they are, each partition once more.
    p.ok(&["apply", "--env", "dev"])
        .says("apply dev: nothing to build");
    narrow_clean_orders(&p, "TRUE");
    let again = p.ok(&["apply", "--env", "dev", "--output", "json"]).json();
    assert_eq!(again["built"][0]["version"], 1_000_000, "{again:#}");
    assert_eq!(again["built"][0]["replaces"], 1_000_000, "{again:#}");
    assert_eq!(again["summary"]["failed"], 0, "{again:#}");
    let commits = commits_per_partition(&dev_clean);
    assert!(commits.values().all(|n| *n == 2), "{commits:?}");
    assert_eq!(number(&p, orders, Some("dev")), kept.len() as i64);
    p.run(&["apply"])
        .complains("apply builds in an environment: give --env NAME");
}

/// Each partition `status` shows, as `job partition state` (production: `env` `None`).
fn shown_states(p: &TestProject, env: Option<&str>) -> Vec<String> {
    let mut args = vec!["status", "--output", "json"];
    args.extend(env.map(|e| ["--env", e]).into_iter().flatten());
    let status = p.ok(&args).json();
    let rows = status.as_array().cloned().unwrap_or_default();
    rows.iter()
        .map(|r| {
            let s = |f: &str| r[f].as_str().unwrap_or("?").to_string();
            format!("{} {} {}", s("job"), s("partition"), s("state"))
        })
        .collect()
}

/// `env promote dev` flips production's aliases of the tables dev built, all in one
/// transaction behind promote's checks; nothing is recomputed: production's readers see
/// dev's rows, a daemon running the merged code finds every partition current, and a
/// rollback returns each alias.
#[test]
fn env_promote_flips_production_to_what_the_environment_built_and_nothing_reruns() {
    let p = dev_applied();
    let orders = "SELECT CAST(SUM(orders) AS BIGINT) AS n FROM daily_revenue";
    let (prod_before, dev) = (number(&p, orders, None), number(&p, orders, Some("dev")));
    assert!(dev < prod_before);
    // Built over one day (and the days its windows read), an environment lacks some of
    // production's partitions: refused, naming them.
    p.ok(&["env", "create", "short"]);
    p.ok(&[
        "apply",
        "--env",
        "short",
        "--from",
        "2024-01-03",
        "--to",
        "2024-01-03",
    ]);
    p.run(&["env", "promote", "short"])
        .complains("regional_orders: v1000001 lacks 16 partition(s) that v1 has: 2024-01-01:apac")
        .complains("nothing changed");
    assert_eq!(resolve(&p, None), p.warehouse_table("clean_orders", 1));

    // Behind a diff gate: dev's clean_orders differs from production's by more than 1%.
    let gated = p.run(&["env", "promote", "dev", "--fail-above", "0.01"]);
    assert_eq!(gated.code, 1, "{}", gated.context());
    gated
        .complains("of the rows differ between v1 and v1000000")
        .complains("above --fail-above 0.01: nothing changed");
    assert_eq!(resolve(&p, None), p.warehouse_table("clean_orders", 1));
    p.ok(&["env", "promote", "dev", "--dry-run", "--fail-above", "1"])
        .says("would promote clean_orders: v1 -> v1000000");
    assert_eq!(number(&p, orders, None), prod_before, "a dry run");
    let commits = commits_per_partition(&p.warehouse_table("clean_orders", 1_000_000));
    p.ok(&["env", "promote", "dev"])
        .says("clean_orders: v1 -> v1000000 (promote)")
        .says("daily_revenue: v1 -> v1000000 (promote)")
        .says("rolling_revenue: v1 -> v1000000 (promote)");
    assert_eq!(
        resolve(&p, None),
        p.warehouse_table("clean_orders", 1_000_000)
    );
    assert_eq!(
        number(&p, orders, None),
        dev,
        "production reads dev's tables"
    );
    // The merged code (the checkout) finds every partition current: a daemon's days run
    // nothing, and nothing is stale; no partition got a second commit.
    let shown = shown_states(&p, None);
    assert!(shown.iter().all(|s| s.ends_with(" complete")), "{shown:#?}");
    p.ok(&["daemon", "--replay", "2024-01-02..2024-01-04", "--quiet"])
        .says("0 succeeded, 0 failed");
    assert_eq!(
        commits_per_partition(&p.warehouse_table("clean_orders", 1_000_000)),
        commits,
        "nothing recomputed"
    );
    // Production's runs write the promoted table now, and its dead letters beside it.
    p.ok(&["run", "clean_orders", "--partition", "2024-01-28"]);
    p.ok(&["dlq", "list", "clean_orders", "--partition", "2024-01-28"])
        .says("sample-data/orders/dt=2024-01-28/orders.csv:122");
    let written = commits_per_partition(&p.warehouse_table("clean_orders", 1_000_000));
    assert_eq!(written.get("2024-01-28"), Some(&1), "{written:?}");
    // Rolled back, production reads its own tables again: refused while v1 lacks the day
    // written since, unless --partial.
    let tables = [
        "clean_orders",
        "daily_revenue",
        "regional_orders",
        "rolling_revenue",
    ];
    let mut rollback = vec!["rollback"];
    rollback.extend(tables);
    p.run(&rollback)
        .complains("clean_orders: v1 lacks 1 partition(s) that v1000000 has: 2024-01-28");
    rollback.push("--partial");
    p.ok(&rollback);
    assert_eq!(resolve(&p, None), p.warehouse_table("clean_orders", 1));
    assert_eq!(number(&p, orders, None), prod_before);
}

/// The (table, version) pairs of its own the environment `env` points at.
fn own_versions(p: &TestProject, env: &str) -> std::collections::BTreeSet<(String, i64)> {
    let tables = p.ok(&["tables", "--env", env, "--output", "json"]).json();
    let rows = tables.as_array().cloned().unwrap_or_default();
    rows.iter()
        .filter(|t| t["live"] == true && t["version"].as_i64() >= Some(1_000_000))
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["version"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Two pull requests' environments, built at once from two checkouts on one production
/// while production's daemon runs: each writes only tables of its own, each reads what it
/// did not change from production, and production's tables get only the daemon's days.
#[test]
fn two_environments_built_at_once_touch_neither_each_other_s_tables_nor_production_s() {
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-03");
    let (a, b) = (p.checkout(), p.checkout());
    narrow_clean_orders(&a, "quantity >= 3");
    let sql = b.read("jobs/daily_revenue.sql");
    b.write(
        "jobs/daily_revenue.sql",
        &sql.replace(
            "COUNT(*)                            AS orders",
            "COUNT(*) * 10 AS orders",
        ),
    );
    a.ok(&["env", "create", "pr_a"]);
    b.ok(&["env", "create", "pr_b"]);
    let prod_commits = commits_per_partition(&p.warehouse_table("clean_orders", 1));
    let (apply_a, _) = a.spawn(&["apply", "--env", "pr_a"], &[]);
    let (apply_b, _) = b.spawn(&["apply", "--env", "pr_b"], &[]);
    let daemon = p.run(&["daemon", "--replay", "2024-01-04..2024-01-06", "--quiet"]);
    daemon.says("0 failed");
    for (who, c) in [("pr_a", apply_a), ("pr_b", apply_b)] {
        let out = c.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{who}: {said}");
    }
    let (own_a, own_b) = (own_versions(&p, "pr_a"), own_versions(&p, "pr_b"));
    assert!(own_a.iter().any(|(t, _)| t == "clean_orders"), "{own_a:?}");
    assert!(!own_b.iter().any(|(t, _)| t == "clean_orders"), "{own_b:?}");
    assert!(own_b.iter().any(|(t, _)| t == "daily_revenue"), "{own_b:?}");
    assert!(own_a.is_disjoint(&own_b), "{own_a:?} {own_b:?}");
    // pr_b reads production's clean_orders; pr_a its own, filtered.
    assert_eq!(
        resolve(&p, Some("pr_b")),
        p.warehouse_table("clean_orders", 1)
    );
    let days = "dt <= DATE '2024-01-03'";
    let count = |env: Option<&str>| {
        number(
            &p,
            &format!("SELECT COUNT(*) AS n FROM clean_orders WHERE {days}"),
            env,
        )
    };
    let orders = |env: Option<&str>| {
        let sql =
            format!("SELECT CAST(SUM(orders) AS BIGINT) AS n FROM daily_revenue WHERE {days}");
        number(&p, &sql, env)
    };
    assert_eq!(orders(Some("pr_a")), count(Some("pr_a")));
    assert!(count(Some("pr_a")) < count(None));
    assert_eq!(orders(Some("pr_b")), 10 * count(None));
    assert_eq!(orders(None), count(None), "production's rows as they were");
    // Production's days before the daemon's have their one commit each; the daemon's
    // days are there too.
    let after = commits_per_partition(&p.warehouse_table("clean_orders", 1));
    for (day, n) in &prod_commits {
        assert_eq!(after.get(day), Some(n), "{day}: {after:?}");
    }
    assert!(after.contains_key("2024-01-04"), "{after:?}");
}

/// The README's recipe for a pull request, as written there (`$env` is the pull request's
/// environment): each line is checked to be in the README, then run on the sample project
/// with a change to clean_orders. The gate stops the change (exit 1); a table it does not
/// reach passes; once dropped, `gc` removes what the environment built.
#[test]
fn the_readme_s_pull_request_recipe_builds_diffs_gates_and_cleans_up() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let recipe = [
        "sluice env create \"$env\" --ttl 7d",
        "sluice plan --env \"$env\"",
        "sluice apply --env \"$env\" --from 2024-01-29 --to 2024-01-31",
        "sluice diff \"$t\" --env \"$env\" --fail-above 0.01",
        "sluice env drop \"$env\"",
    ];
    for line in recipe {
        assert!(readme.contains(line), "the README's recipe lacks `{line}`");
    }
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-31");
    narrow_clean_orders(&p, "quantity >= 3");
    let started = std::time::Instant::now();
    let run = |line: &str, table: &str| {
        let line = line.replace("\"$env\"", "pr_1").replace("\"$t\"", table);
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        p.run(&args)
    };
    assert_eq!(run(recipe[0], "").code, 0);
    run(recipe[1], "").says("plan for environment pr_1: 1 job(s) changed");
    let applied = run(recipe[2], "");
    assert_eq!(applied.code, 0, "{}", applied.context());
    let gate = run(recipe[3], "clean_orders");
    assert_eq!(gate.code, 1, "{}", gate.context());
    gate.complains("above --fail-above 0.01");
    gate.says("clean_orders v1 -> v1000000");
    let untouched = run(recipe[3], "customers");
    assert_eq!(untouched.code, 0, "{}", untouched.context());
    untouched.says("environment pr_1 reads production's v1; nothing differs");
    assert_eq!(run(recipe[4], "").code, 0);
    eprintln!(
        "the recipe took {:.1} s (debug build)",
        started.elapsed().as_secs_f64()
    );
    p.ok(&["gc", "--keep", "0"])
        .says("removed clean_orders v1000000");
    assert!(!p.warehouse_table("clean_orders", 1_000_000).exists());
    assert!(p.warehouse_table("clean_orders", 1).exists());
}

/// A promote killed after its first alias changed, inside its transaction: every alias
/// is where it was; promoted again, every one flips.
#[test]
fn an_env_promote_killed_midway_flips_no_alias_and_then_all() {
    let p = dev_applied();
    let live = |table: &str| {
        let out = p.ok(&["resolve", table, "--output", "json"]).json();
        out["version"].as_i64().unwrap_or_else(|| panic!("{out:#}"))
    };
    let tables = [
        "clean_orders",
        "daily_revenue",
        "regional_orders",
        "rolling_revenue",
    ];
    let (mut child, log) = p.spawn(
        &["env", "promote", "dev"],
        &[("SLUICE_FAILPOINT", "flip_midway")],
    );
    wait_for_text(
        &log,
        "paused at failpoint",
        std::time::Duration::from_secs(120),
    );
    sigkill(&mut child);
    for t in tables {
        assert_eq!(live(t), 1, "{t}: no alias flipped");
    }
    let history = p
        .ok(&["history", "clean_orders", "--output", "json"])
        .json();
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history:#}");
    p.ok(&["env", "promote", "dev"]);
    for t in tables {
        assert_eq!(live(t), 1_000_000, "{t}: every alias flipped");
    }
}

/// In a 50-job graph, `apply` after a one-job change builds exactly that job and the 17
/// below it, each in a table of the environment's own; the other 32 are production's,
/// read where they are, and what is built computes from the change.
#[test]
fn in_a_graph_of_50_jobs_apply_builds_exactly_what_a_change_reaches() {
    let p = crate::environments::tree_of_50();
    p.ok(&["env", "create", "dev"]);
    p.write("jobs/j03.sql", "SELECT x + 2 AS x FROM up");
    let applied = p.ok(&["apply", "--env", "dev", "--output", "json"]).json();
    let mut ran: Vec<String> = applied["summary"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] == "succeeded")
        .map(|i| i["job"].as_str().unwrap().to_string())
        .collect();
    ran.sort();
    let below_3 = [
        3, 6, 7, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31, 48, 49, 50,
    ];
    assert_eq!(ran, crate::environments::jobs(&below_3), "{applied:#}");
    assert_eq!(applied["summary"]["planned"], 18, "{applied:#}");
    let listed = p.ok(&["env", "list", "--output", "json"]).json();
    assert_eq!(listed[0]["own_versions"], 18, "{listed:#}");
    let x =
        |table: &str, env: Option<&str>| number(&p, &format!("SELECT x AS n FROM {table}"), env);
    // j50 lies below j03 (50, 25, 12, 6, 3): one more; j20 does not: the same.
    assert_eq!(x("j50", Some("dev")), x("j50", None) + 1);
    assert_eq!(x("j20", Some("dev")), x("j20", None));
}
