//! Issue 6: schema migrations as their own step. Additive changes are Delta metadata only and
//! old partitions read the new column as null through sluice and an independent reader;
//! destructive ones need `--allow-destructive` and no job using what they remove; the
//! ledger refuses edited or deleted history; concurrent `migrate` runs apply each file once.

use crate::util::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Per value of `group`: (rows, non-null values of `column`), and the Arrow type of
/// `column`, as the Python deltalake package reads the table.
fn python_nulls_by(
    dir: &Path,
    group: &str,
    column: &str,
) -> (BTreeMap<String, (u64, u64)>, String) {
    refresh(dir);
    let script = r#"
import sys
from deltalake import DeltaTable
path, group, column = sys.argv[1:4]
t = DeltaTable(path).to_pyarrow_table()
print(t.schema.field(column).type)
for g in t.group_by(group).aggregate([(column, "count"), (group, "count")]).to_pylist():
    print(g[group], g[group + "_count"], g[column + "_count"])
import os; os._exit(0)
"#;
    let text = stdout_of(
        Command::new("python3")
            .args(["-c", script])
            .arg(dir)
            .args([group, column]),
        "the Python deltalake reader",
    );
    let mut lines = text.lines();
    let ty = lines.next().unwrap_or_default().to_string();
    let mut by = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        by.insert(
            f[0].to_string(),
            (f[1].parse().unwrap(), f[2].parse().unwrap()),
        );
    }
    (by, ty)
}

const DAILY_REFUNDS_JOB: &str = r#"
version = 1
start = "2024-01-01"
[partitioning]
granularity = "daily"
[[inputs]]
name = "daily_revenue"
table = "daily_revenue"
[output]
table = "daily_refunds"
key = ["dt"]
"#;

/// The sample project, migrated, two days backfilled; then a code change (daily_revenue
/// writes `refunds`, a new job daily_refunds reads it) and its migrations (add `refunds`,
/// widen clean_orders.quantity and add `channel` with a default, create daily_refunds)
/// arrive together, not applied yet.
fn with_pending_additions() -> TestProject {
    let p = TestProject::migrated();
    p.backfill("2024-01-01", "2024-01-02");
    // The code change and its migration arrive together; the code runs first, by mistake.
    p.write(
        "migrations/0008_add_refunds.sql",
        "ALTER TABLE daily_revenue ADD COLUMN refunds DECIMAL(18,2) COMMENT 'refunded revenue';\n",
    );
    p.write(
        "migrations/0009_widen_quantity_add_channel.sql",
        "ALTER TABLE clean_orders ALTER COLUMN quantity TYPE BIGINT;\n\
         ALTER TABLE clean_orders ADD COLUMN channel STRING NOT NULL DEFAULT 'web';\n",
    );
    p.write(
        "migrations/0010_create_daily_refunds.sql",
        "CREATE TABLE daily_refunds (dt DATE NOT NULL, refunds DECIMAL(18,2), rows_without BIGINT NOT NULL) PARTITIONED BY (dt);\n",
    );
    let sql = p.read("jobs/daily_revenue.sql").replace(
        "AS customers",
        "AS customers,\n    CAST(SUM(CASE WHEN status = 'refunded' THEN amount ELSE 0 END) AS DECIMAL(18, 2)) AS refunds",
    );
    p.write("jobs/daily_revenue.sql", &sql);
    p.write("jobs/daily_refunds.toml", DAILY_REFUNDS_JOB);
    p.write(
        "jobs/daily_refunds.sql",
        "SELECT dt, CAST(SUM(refunds) AS DECIMAL(18, 2)) AS refunds, COUNT(*) - COUNT(refunds) AS rows_without FROM daily_revenue GROUP BY dt\n",
    );

    p
}

#[test]
fn new_sql_before_its_migration_fails_naming_the_file_to_apply() {
    let p = with_pending_additions();
    let early = p.run(&[
        "backfill",
        "clean_orders",
        "daily_revenue",
        "--from",
        "2024-01-03",
        "--to",
        "2024-01-03",
    ]);
    assert_ne!(early.code, 0, "{}", early.context());
    let text = format!("{}{}", early.stdout, early.stderr);
    assert!(
        text.contains("the SQL produces column `refunds`, which table `daily_revenue` does not have; it is added by migrations/0008_add_refunds.sql, not applied: run `sluice migrate`"),
        "{}",
        early.context()
    );
    let status = p.ok(&["status", "daily_revenue", "--output", "json"]);
    assert!(
        status
            .stdout
            .contains("it is added by migrations/0008_add_refunds.sql, not applied"),
        "status shows the failure with its reason{}",
        status.context()
    );
}

#[test]
fn additive_migrations_are_planned_and_applied_as_metadata_only() {
    let p = with_pending_additions();
    // The plan says what changes where; applying it rewrites no data file.
    let plan = p.ok(&["migrate", "--plan"]);
    assert!(
        plan.stdout.contains("table daily_revenue: add column refunds DECIMAL(18,2) [v1; Delta metadata only, no data rewritten]"),
        "{}",
        plan.context()
    );
    assert!(
        plan.stdout
            .contains("change the type of quantity to BIGINT"),
        "{}",
        plan.context()
    );
    let files_before = data_files(&p.warehouse_root());
    let log_before = delta_log_version(&p.warehouse_table("clean_orders", 1));
    let applied = p.ok(&["migrate"]);
    for f in [
        "0008_add_refunds.sql",
        "0009_widen_quantity_add_channel.sql",
        "0010_create_daily_refunds.sql",
    ] {
        assert!(
            applied.stdout.contains(&format!("applied {f}")),
            "{}",
            applied.context()
        );
    }
    assert_eq!(
        data_files(&p.warehouse_root()),
        files_before,
        "no data file rewritten"
    );
    assert_eq!(
        delta_log_version(&p.warehouse_table("clean_orders", 1)),
        log_before + 1,
        "one metadata commit for the two changes of one migration"
    );
    let again = p.ok(&["migrate"]);
    again.says("nothing to apply");
}

#[test]
fn old_partitions_read_an_added_column_as_null_through_sluice_a_job_and_python() {
    let p = with_pending_additions();
    let quantity_before = p.query("SELECT CAST(dt AS VARCHAR) AS dt, SUM(quantity) AS q FROM clean_orders GROUP BY dt ORDER BY dt",
    );
    p.ok(&["migrate"]);
    // New partitions with the new column; the downstream job reads old and new.
    p.backfill("2024-01-03", "2024-01-04");
    p.ok(&[
        "backfill",
        "daily_refunds",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-04",
    ]);

    // Through sluice.
    let rows = p.query("SELECT CAST(dt AS VARCHAR) AS dt, COUNT(*) AS n, COUNT(refunds) AS with_refunds FROM daily_revenue GROUP BY dt ORDER BY dt",
    );
    assert_eq!(rows.len(), 4, "{rows:?}");
    for r in &rows[..2] {
        assert_eq!(r["with_refunds"], 0, "old partitions read null: {r}");
    }
    for r in &rows[2..] {
        assert_eq!(
            r["with_refunds"], r["n"],
            "new partitions have the column: {r}"
        );
    }
    let channels = p.query("SELECT CAST(dt AS VARCHAR) AS dt, COUNT(channel) AS c, MIN(channel) AS m FROM clean_orders GROUP BY dt ORDER BY dt",
    );
    // Days 1 and 2 were written before the migration.
    for c in &channels[..2] {
        assert_eq!(c["c"], 0, "{channels:?}");
    }
    assert_eq!(
        channels[2]["m"], "web",
        "the default fills rows the SQL leaves it out of"
    );
    let quantity_after = p.query("SELECT CAST(dt AS VARCHAR) AS dt, SUM(quantity) AS q FROM clean_orders WHERE dt < DATE '2024-01-03' GROUP BY dt ORDER BY dt",
    );
    assert_eq!(
        quantity_after, quantity_before,
        "widened values read back unchanged"
    );

    // Through a downstream job.
    let down = p.query(
        "SELECT CAST(dt AS VARCHAR) AS dt, refunds, rows_without FROM daily_refunds ORDER BY dt",
    );
    assert!(
        down[0]["refunds"].is_null() && down[1]["refunds"].is_null(),
        "{down:?}"
    );
    assert_eq!(down[0]["rows_without"], rows[0]["n"], "{down:?}");
    assert_eq!(down[2]["rows_without"], 0, "{down:?}");
    assert!(!down[2]["refunds"].is_null(), "{down:?}");

    // Through an independent reader.
    let (by_day, ty) = python_nulls_by(&p.warehouse_table("daily_revenue", 1), "dt", "refunds");
    assert_eq!(ty, "decimal128(18, 2)");
    assert_eq!(by_day["2024-01-01"].1, 0, "{by_day:?}");
    assert_eq!(by_day["2024-01-02"].1, 0, "{by_day:?}");
    assert_eq!(by_day["2024-01-03"].1, by_day["2024-01-03"].0, "{by_day:?}");
    let (by_day, ty) = python_nulls_by(&p.warehouse_table("clean_orders", 1), "dt", "quantity");
    assert_eq!(ty, "int64", "the widened type");
    assert!(by_day.values().all(|(n, q)| n == q && *n > 0), "{by_day:?}");
}

/// The sample project migrated, with a scratch table written by its own job and two new
/// columns on clean_orders (`note`, `coupon`), two days backfilled: the "expand" step
/// each destructive test then contracts.
fn expanded() -> TestProject {
    let p = TestProject::migrated();
    p.write(
        "migrations/0008_expand.sql",
        "CREATE TABLE scratch (dt DATE NOT NULL, n BIGINT NOT NULL) PARTITIONED BY (dt);\n\
         ALTER TABLE clean_orders ADD COLUMN note STRING;\n\
         ALTER TABLE clean_orders ADD COLUMN coupon STRING;\n",
    );
    p.write(
        "jobs/scratch.toml",
        &DAILY_REFUNDS_JOB
            .replace("daily_revenue", "clean_orders")
            .replace("daily_refunds", "scratch"),
    );
    p.write(
        "jobs/scratch.sql",
        "SELECT dt, COUNT(*) AS n FROM clean_orders GROUP BY dt\n",
    );
    p.ok(&["migrate"]);
    p.backfill("2024-01-01", "2024-01-02");
    p
}

/// `migrate` without the flag refuses `file` for `why`, pointing at expand/contract, and
/// leaves it pending.
fn refused_without_flag(p: &TestProject, file: &str, why: &str) {
    let o = p.run(&["migrate"]);
    assert_eq!(o.code, 1, "{}", o.context());
    assert!(
        o.stderr
            .contains(&format!("migrations/{file} is destructive: {why}")),
        "{}",
        o.context()
    );
    o.complains("expand/contract");
    o.complains("--allow-destructive");
    let status = p.ok(&["migrate", "status"]);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with(file) && l.contains("pending")),
        "{}",
        status.context()
    );
}

/// With the flag, still refused while a job uses what the change removes (`needles` name
/// it), and nothing changes.
fn refused_while_used(p: &TestProject, needles: &[&str]) {
    let o = p.run(&["migrate", "--allow-destructive"]);
    assert_eq!(o.code, 1, "{}", o.context());
    for needle in needles {
        assert!(o.stderr.contains(needle), "{needle}{}", o.context());
    }
    o.complains("nothing was changed");
}

fn applies_with_flag(p: &TestProject, file: &str) {
    let o = p.ok(&["migrate", "--allow-destructive"]);
    assert!(
        o.stdout.contains(&format!("applied {file}")),
        "{}",
        o.context()
    );
}

fn sum(p: &TestProject, sql: &str) -> serde_json::Value {
    p.query(sql)[0]["s"].clone()
}

/// The jobs still run on the contracted schemas.
fn next_day_runs(p: &TestProject) {
    p.backfill("2024-01-03", "2024-01-03");
}

#[test]
fn dropping_a_column_no_job_uses_needs_the_flag_and_keeps_every_row() {
    let p = expanded();
    p.write(
        "migrations/0009_drop_note.sql",
        "ALTER TABLE clean_orders DROP COLUMN note;\n",
    );
    let log = delta_log_version(&p.warehouse_table("clean_orders", 1));
    refused_without_flag(
        &p,
        "0009_drop_note.sql",
        "it drops column `note` of `clean_orders`",
    );
    assert_eq!(
        delta_log_version(&p.warehouse_table("clean_orders", 1)),
        log,
        "nothing changed"
    );
    let amount = sum(&p, "SELECT SUM(amount) AS s FROM clean_orders");
    applies_with_flag(&p, "0009_drop_note.sql");
    let (_, ty) = python_nulls_by(&p.warehouse_table("clean_orders", 1), "dt", "amount");
    assert_eq!(ty, "decimal128(12, 2)");
    let cols = p.query("SELECT * FROM clean_orders LIMIT 1");
    assert!(cols[0].get("note").is_none(), "{cols:?}");
    assert!(
        cols[0].get("coupon").is_some(),
        "nulls are in the JSON: {cols:?}"
    );
    assert_eq!(
        sum(&p, "SELECT SUM(amount) AS s FROM clean_orders"),
        amount,
        "rows kept"
    );
    next_day_runs(&p);
}

#[test]
fn renaming_a_column_a_job_writes_waits_until_the_job_uses_the_new_name() {
    let p = expanded();
    p.write(
        "migrations/0009_rename_customers.sql",
        "ALTER TABLE daily_revenue RENAME COLUMN customers TO buyers;\n",
    );
    refused_without_flag(
        &p,
        "0009_rename_customers.sql",
        "it renames column `customers` of `daily_revenue` to `buyers`",
    );
    refused_while_used(&p, &["daily_revenue", "`customers`"]);
    let customers = sum(&p, "SELECT SUM(customers) AS s FROM daily_revenue");
    p.write(
        "jobs/daily_revenue.sql",
        &p.read("jobs/daily_revenue.sql")
            .replace("AS customers", "AS buyers"),
    );
    applies_with_flag(&p, "0009_rename_customers.sql");
    assert_eq!(
        sum(&p, "SELECT SUM(buyers) AS s FROM daily_revenue"),
        customers
    );
    let (by_day, _) = python_nulls_by(&p.warehouse_table("daily_revenue", 1), "dt", "buyers");
    assert!(by_day.values().all(|(n, b)| n == b), "{by_day:?}");
    next_day_runs(&p);
}

#[test]
fn narrowing_a_type_waits_until_the_job_casts_to_it() {
    let p = expanded();
    p.write(
        "migrations/0009_narrow_quantity.sql",
        "ALTER TABLE clean_orders ALTER COLUMN quantity TYPE SMALLINT;\n",
    );
    refused_without_flag(
        &p,
        "0009_narrow_quantity.sql",
        "it changes column `quantity` from INT to SMALLINT",
    );
    refused_while_used(
        &p,
        &["the SQL produces INT but table `clean_orders` declares SMALLINT"],
    );
    let quantity = sum(&p, "SELECT SUM(quantity) AS s FROM clean_orders");
    p.write(
        "jobs/clean_orders.sql",
        &p.read("jobs/clean_orders.sql").replace(
            "    quantity,",
            "    CAST(quantity AS SMALLINT) AS quantity,",
        ),
    );
    applies_with_flag(&p, "0009_narrow_quantity.sql");
    let (_, ty) = python_nulls_by(&p.warehouse_table("clean_orders", 1), "dt", "quantity");
    assert_eq!(ty, "int16");
    assert_eq!(
        sum(&p, "SELECT SUM(quantity) AS s FROM clean_orders"),
        quantity
    );
    next_day_runs(&p);
}

#[test]
fn not_null_over_existing_nulls_commits_nothing_until_a_backfill_fills_them() {
    let p = expanded();
    p.write(
        "migrations/0009_coupon_not_null.sql",
        "ALTER TABLE clean_orders ALTER COLUMN coupon SET NOT NULL;\n",
    );
    refused_without_flag(
        &p,
        "0009_coupon_not_null.sql",
        "it makes the existing column `coupon` NOT NULL",
    );
    p.write(
        "jobs/clean_orders.sql",
        &p.read("jobs/clean_orders.sql")
            .replace("    status\n", "    status,\n    'none' AS coupon\n"),
    );
    let log = delta_log_version(&p.warehouse_table("clean_orders", 1));
    let o = p.run(&["migrate", "--allow-destructive"]);
    assert_eq!(o.code, 1, "{}", o.context());
    assert!(
        o.stderr
            .contains("column `coupon` holds null values in the rows already written"),
        "{}",
        o.context()
    );
    o.complains("not recorded as applied");
    assert_eq!(
        delta_log_version(&p.warehouse_table("clean_orders", 1)),
        log,
        "nothing committed"
    );
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
        "--force",
    ]);
    applies_with_flag(&p, "0009_coupon_not_null.sql");
    let (by_day, _) = python_nulls_by(&p.warehouse_table("clean_orders", 1), "dt", "coupon");
    assert!(by_day.values().all(|(n, c)| n == c), "{by_day:?}");
}

#[test]
fn dropping_a_table_waits_until_no_job_writes_it_and_deletes_its_files() {
    let p = expanded();
    p.write("migrations/0009_drop_scratch.sql", "DROP TABLE scratch;\n");
    assert!(p.warehouse_table("scratch", 1).exists());
    refused_without_flag(&p, "0009_drop_scratch.sql", "it drops table `scratch`");
    refused_while_used(&p, &["jobs/scratch.toml"]);
    std::fs::remove_file(p.file("jobs/scratch.toml")).unwrap();
    std::fs::remove_file(p.file("jobs/scratch.sql")).unwrap();
    applies_with_flag(&p, "0009_drop_scratch.sql");
    let tables = p.ok(&["tables"]);
    assert!(!tables.stdout.contains("scratch"), "{}", tables.context());
    assert!(
        !p.warehouse_table("scratch", 1).exists(),
        "the dropped table's files are gone"
    );
    next_day_runs(&p);
}

#[test]
fn a_file_mixing_additive_and_destructive_changes_is_refused_whole() {
    let p = expanded();
    p.write(
        "migrations/0009_mixed.sql",
        "ALTER TABLE clean_orders ADD COLUMN x INT;\nALTER TABLE clean_orders DROP COLUMN coupon;\n",
    );
    let o = p.run(&["migrate", "--allow-destructive"]);
    assert_eq!(o.code, 1, "{}", o.context());
    o.complains("mixes additive and destructive changes");
}

#[test]
fn an_applied_migration_that_was_edited_or_deleted_is_refused() {
    let p = TestProject::migrated();
    let original = p.read("migrations/0002_create_daily_revenue.sql");
    p.write(
        "migrations/0008_add_note.sql",
        "ALTER TABLE clean_orders ADD COLUMN note STRING;\n",
    );

    p.write(
        "migrations/0002_create_daily_revenue.sql",
        &original.replace("NOT NULL COMMENT 'distinct", "COMMENT 'distinct"),
    );
    let o = p.run(&["migrate"]);
    assert_eq!(o.code, 1, "{}", o.context());
    assert!(
        o.stderr
            .contains("migrations/0002_create_daily_revenue.sql was applied on")
            && o.stderr.contains("but the file has changed")
            && o.stderr.contains("put the change in a new migration"),
        "{}",
        o.context()
    );
    let status = p.ok(&["migrate", "status"]);
    status.says("applied, file changed");
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("0008_add_note.sql") && l.contains("pending")),
        "later migrations wait{}",
        status.context()
    );

    p.write("migrations/0002_create_daily_revenue.sql", &original);
    std::fs::remove_file(p.file("migrations/0003_create_monthly_region_revenue.sql")).unwrap();
    let o = p.run(&["migrate"]);
    assert_eq!(o.code, 1, "{}", o.context());
    assert!(
        o.stderr
            .contains("migrations/0003_create_monthly_region_revenue.sql was applied on")
            && o.stderr.contains("but the file is gone"),
        "{}",
        o.context()
    );

    let sample = std::fs::read_to_string(
        Path::new(REPO).join("migrations/0003_create_monthly_region_revenue.sql"),
    )
    .unwrap();
    p.write("migrations/0003_create_monthly_region_revenue.sql", &sample);
    let o = p.ok(&["migrate"]);
    o.says("applied 0008_add_note.sql");
}

#[test]
fn concurrent_migrates_apply_every_migration_once() {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-02",
    ]);
    // A second physical version beside the live one: migrations change both.
    p.write(
        "jobs/clean_orders.toml",
        &p.read("jobs/clean_orders.toml")
            .replace("version = 1", "version = 2"),
    );
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-01",
    ]);
    for round in 0..3 {
        let mut names = Vec::new();
        for i in 0..5 {
            let n = 8 + round * 5 + i;
            let name = format!("{n:04}_add_c{n}.sql");
            p.write(
                &format!("migrations/{name}"),
                &format!(
                    "ALTER TABLE clean_orders ADD COLUMN c{n} BIGINT;\nALTER TABLE daily_revenue ADD COLUMN c{n} BIGINT;\n"
                ),
            );
            names.push(name);
        }
        if round == 0 {
            let plan = p.ok(&["migrate", "--plan"]);
            plan.says("table clean_orders: add column c8 BIGINT [v1, v2; Delta metadata only");
        }
        let children: Vec<_> = (0..3)
            .map(|_| {
                p.command(&["migrate"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut applied: Vec<String> = Vec::new();
        for c in children {
            let out = c.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "round {round}: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            applied.extend(
                stdout
                    .lines()
                    .filter_map(|l| l.strip_prefix("applied "))
                    .map(str::to_string),
            );
        }
        applied.sort();
        assert_eq!(
            applied, names,
            "round {round}: each migration applied by exactly one process"
        );
        let status = p.ok(&["migrate", "status", "--output", "json"]).json();
        let rows = status.as_array().unwrap();
        for n in &names {
            let matching: Vec<_> = rows.iter().filter(|r| r["name"] == n.as_str()).collect();
            assert_eq!(matching.len(), 1, "{n}: {rows:?}");
            assert_eq!(matching[0]["state"], "applied", "{n}");
        }
    }
    // Every column is there once, in file order, and the tables still take writes.
    let cols = p.query("SELECT * FROM clean_orders LIMIT 1");
    let keys: Vec<&String> = cols[0].as_object().unwrap().keys().collect();
    for n in 8..23 {
        assert!(
            keys.iter().any(|k| **k == format!("c{n}")),
            "c{n} in {keys:?}"
        );
    }
    for v in [1, 2] {
        let (_, ty) = python_nulls_by(&p.warehouse_table("clean_orders", v), "dt", "c19");
        assert_eq!(ty, "int64", "v{v} has the last column");
    }
    p.ok(&[
        "backfill",
        "clean_orders",
        "daily_revenue",
        "--from",
        "2024-01-03",
        "--to",
        "2024-01-03",
    ]);
}
