//! Where pipelines begin, from a database: `[[inputs]] type = "postgres"` against a real
//! PostgreSQL server (.ci/run starts one and names it in SLUICE_TEST_PG, its log in
//! SLUICE_TEST_PG_LOG), and `type = "mysql"` against a real MariaDB server (SLUICE_TEST_MYSQL,
//! its general log in SLUICE_TEST_MYSQL_LOG; .ci/run starts it in a time zone of +02:00, so
//! that a read that forgot UTC would move rows between days). The rows are compared with
//! the server's own answer through its own client, and the server's log shows what was
//! asked.

use crate::util::{TestProject, create_database, stdout_of};
use std::process::Command;

/// The server's admin URL and log file, as .ci/run gives them.
fn server() -> Option<(String, std::path::PathBuf)> {
    let url = std::env::var("SLUICE_TEST_PG")
        .ok()
        .filter(|v| !v.is_empty())?;
    let log = std::env::var("SLUICE_TEST_PG_LOG")
        .ok()
        .filter(|v| !v.is_empty())?;
    Some((url, log.into()))
}

fn psql(url: &str, sql: &str) -> String {
    stdout_of(
        Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-qtAc", sql]),
        "psql (installed with PostgreSQL by .ci/run)",
    )
}

/// Rows in the source table (SLUICE_TEST_PG_ROWS, default 30,000), over three days.
fn rows() -> u64 {
    std::env::var("SLUICE_TEST_PG_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000)
}

fn project(db: &str) -> TestProject {
    let p = TestProject::with_files(&[
        (
            "jobs/orders.toml",
            "description = \"the shop's orders, from its database\"\nversion = 1\nstart = \"2024-01-01\"\n\n[partitioning]\ngranularity = \"daily\"\n\n[[inputs]]\nname = \"orders\"\ntype = \"postgres\"\nconnection = \"env:SHOP_DATABASE_URL\"\nquery = \"SELECT id, amount, created_at, note, paid, day FROM orders WHERE created_at >= $partition_start AND created_at < $partition_end\"\nschema = [\"id BIGINT NOT NULL\", \"amount DECIMAL(12, 2)\", \"created_at TIMESTAMP\", \"note STRING\", \"paid BOOLEAN\", \"day DATE\"]\n\n[output]\ntable = \"orders_copy\"\n",
        ),
        (
            "jobs/orders.sql",
            "SELECT id, amount, created_at, note, paid, day FROM orders",
        ),
        (
            "migrations/0001_orders.sql",
            "CREATE TABLE orders_copy (id BIGINT NOT NULL, amount DECIMAL(12, 2), created_at TIMESTAMP, note STRING, paid BOOLEAN, day DATE, dt DATE NOT NULL) PARTITIONED BY (dt);\n",
        ),
    ]);
    p.ok(&["migrate"]);
    let n = rows();
    psql(
        db,
        &format!(
            "CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(12, 2), created_at timestamptz, note text, paid boolean, day date);
             INSERT INTO orders SELECT g, (g % 100000) / 100.0, timestamptz '2024-01-01 00:00:00+00' + make_interval(secs => g * 259200.0 / {n}),
                    CASE WHEN g % 7 = 0 THEN NULL ELSE 'note ' || g END, g % 3 = 0, date '2024-01-01' + (g * 3 / {n})::int
             FROM generate_series(0, {n} - 1) AS g;"
        ),
    );
    p
}

#[test]
fn a_postgres_input_asks_for_its_partition_s_rows_only_and_reads_them_as_the_server_has_them() {
    let Some((admin, log)) = server() else {
        eprintln!("skipped: no PostgreSQL server (SLUICE_TEST_PG; bash .ci/run starts one)");
        return;
    };
    let db = create_database(&admin);
    let p = project(&db);
    // Every statement on this database goes to the server's log.
    let name = db.rsplit('/').next().unwrap().to_string();
    psql(
        &admin,
        &format!("ALTER DATABASE {name} SET log_statement = 'all'"),
    );
    let env = [("SHOP_DATABASE_URL", db.as_str())];
    let out = p.run_env(
        &["backfill", "--from", "2024-01-01", "--to", "2024-01-03"],
        &env,
    );
    assert_eq!(out.code, 0, "{}", out.context());
    out.says("3 succeeded, 0 failed");
    // The password is never shown.
    let password = url::Url::parse(&db)
        .unwrap()
        .password()
        .unwrap()
        .to_string();
    assert!(!out.stderr.contains(&password) && !out.stdout.contains(&password));

    // The table, read by Python's deltalake, against the server's answer per day.
    let got = sums_per_day(
        &p,
        4,
        r#"d[0] += 1; d[1] += r["id"]; d[2] += int(r["amount"] * 100); d[3] += r["note"] is None"#,
    );
    let total = same_as_server(&got, |day| {
        psql(
            &db,
            &format!(
                "SELECT count(*) || ',' || sum(id) || ',' || sum((amount * 100)::bigint) || ',' || count(*) FILTER (WHERE note IS NULL) FROM orders WHERE created_at >= '{day}T00:00:00Z' AND created_at < timestamptz '{day}T00:00:00Z' + interval '1 day'"
            ),
        )
        .trim()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect()
    });
    assert_eq!(total, rows());
    // The server's log: each day's query went with that day's bounds as parameters.
    let logged = asked_for_each_day(&log, |from, to| {
        format!("$1 = '{from}T00:00:00.000000Z', $2 = '{to}T00:00:00.000000Z'")
    });
    // The bounds are bound as the parameters of a set_config each; the COPY that reads
    // the rows (it takes no parameters) reads them back, once per query.
    assert!(logged.contains(
        "SELECT set_config('sluice.partition_start', $1, false), set_config('sluice.partition_end', $2, false)"
    ));
    assert!(logged.contains(
        "created_at >= (SELECT NULLIF(current_setting('sluice.partition_start'), '')::timestamptz) AND created_at < (SELECT NULLIF(current_setting('sluice.partition_end'), '')::timestamptz)"
    ));
    assert!(logged.contains(") TO STDOUT (FORMAT binary)"));
}

#[test]
fn a_postgres_input_that_cannot_connect_fails_without_showing_its_password() {
    let Some((admin, _)) = server() else {
        eprintln!("skipped: no PostgreSQL server (SLUICE_TEST_PG; bash .ci/run starts one)");
        return;
    };
    let db = create_database(&admin);
    let p = project(&db);
    let mut wrong = url::Url::parse(&db).unwrap();
    wrong.set_password(Some("not-the-password-42")).unwrap();
    let out = p.run_env(
        &["run", "orders", "--partition", "2024-01-01"],
        &[("SHOP_DATABASE_URL", wrong.as_str())],
    );
    assert_ne!(out.code, 0, "{}", out.context());
    out.complains(
        "input `orders`: cannot connect to the database (environment variable SHOP_DATABASE_URL)",
    );
    assert!(
        !out.stderr.contains("not-the-password-42"),
        "{}",
        out.context()
    );
    // Unset, it says which variable to set.
    let out = p.run(&["run", "orders", "--partition", "2024-01-01"]);
    assert_ne!(out.code, 0, "{}", out.context());
    out.complains("environment variable SHOP_DATABASE_URL is not set");
    // A connection string in the spec is refused: it holds a password.
    let spec = p.read("jobs/orders.toml");
    p.write(
        "jobs/orders.toml",
        &spec.replace(
            "env:SHOP_DATABASE_URL",
            "postgres://u:secret@localhost/shop",
        ),
    );
    let out = p.run(&["validate"]);
    assert_ne!(out.code, 0, "{}", out.context());
    out.says("keep it out of the spec");
}

/// A job test gives a database input's rows: it never connects.
#[test]
fn a_job_test_gives_a_postgres_input_s_rows_and_never_connects() {
    let p = TestProject::with_files(&[
        (
            "jobs/orders.toml",
            "version = 1\nstart = \"2024-01-01\"\n\n[partitioning]\ngranularity = \"daily\"\n\n[[inputs]]\nname = \"orders\"\ntype = \"postgres\"\nconnection = \"env:NOWHERE_DATABASE_URL\"\nquery = \"SELECT id, amount FROM orders WHERE created_at >= $partition_start AND created_at < $partition_end\"\nschema = [\"id BIGINT NOT NULL\", \"amount DOUBLE\"]\n\n[output]\ntable = \"big_orders\"\n",
        ),
        (
            "jobs/orders.sql",
            "SELECT id, amount FROM orders WHERE amount > 10",
        ),
        (
            "migrations/0001_orders.sql",
            "CREATE TABLE big_orders (id BIGINT NOT NULL, amount DOUBLE, dt DATE NOT NULL) PARTITIONED BY (dt);\n",
        ),
        (
            "jobs/tests/orders.toml",
            "[[test]]\nname = \"only_big_orders\"\npartition = \"2024-01-02\"\n\n[test.inputs.orders]\nrows = [{ id = 1, amount = 5.0 }, { id = 2, amount = 50.0 }]\n\n[test.expect]\nrows = [{ id = 2, amount = 50.0 }]\n",
        ),
    ]);
    p.ok(&["validate"]);
    p.ok(&["test"]).says("1 passed, 0 failed");
    // A parameter sluice does not bind is refused by validate, naming the field.
    let spec = p.read("jobs/orders.toml");
    p.write("jobs/orders.toml", &spec.replace("$partition_end", "$1"));
    let out = p.run(&["validate"]);
    assert_ne!(out.code, 0, "{}", out.context());
    out.says("field `inputs[0].query`: `$1` is not a parameter sluice binds");
}

/// The MariaDB server's admin URL and general log, as .ci/run gives them.
fn mysql_server() -> Option<(String, std::path::PathBuf)> {
    let url = std::env::var("SLUICE_TEST_MYSQL")
        .ok()
        .filter(|v| !v.is_empty())?;
    let log = std::env::var("SLUICE_TEST_MYSQL_LOG")
        .ok()
        .filter(|v| !v.is_empty())?;
    Some((url, log.into()))
}

/// Runs `sql` with the server's own client, in UTC; its rows tab-separated.
fn mariadb(url: &str, sql: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    let mut cmd = Command::new("mariadb");
    cmd.args(["--no-defaults", "-N", "-B", "-h"])
        .arg(u.host_str().unwrap())
        .arg("-P")
        .arg(u.port().unwrap_or(3306).to_string())
        .arg("-u")
        .arg(u.username())
        .env("MYSQL_PWD", u.password().unwrap_or_default());
    let db = u.path().trim_start_matches('/');
    if !db.is_empty() {
        cmd.arg(db);
    }
    cmd.arg("-e")
        .arg(format!("SET time_zone = '+00:00'; {sql}"));
    stdout_of(&mut cmd, "the mariadb client (installed by .ci/run)")
}

#[test]
fn a_mysql_input_asks_for_its_partition_s_rows_only_and_reads_them_in_utc_as_the_server_has_them() {
    let Some((admin, log)) = mysql_server() else {
        eprintln!("skipped: no MariaDB server (SLUICE_TEST_MYSQL; bash .ci/run starts one)");
        return;
    };
    let name = format!("sluice_it_{}", uuid::Uuid::now_v7().simple());
    mariadb(&admin, &format!("CREATE DATABASE {name}"));
    let mut db = url::Url::parse(&admin).unwrap();
    db.set_path(&format!("/{name}"));
    let db = db.to_string();
    let n = rows();
    // Digits enough to count to n.
    let digits = n.max(2).ilog10() as usize + 1;
    let number: Vec<String> = (0..digits)
        .map(|i| format!("d{i}.d * {}", 10u64.pow(i as u32)))
        .collect();
    let tables: Vec<String> = (0..digits).map(|i| format!("digits d{i}")).collect();
    mariadb(
        &db,
        &format!(
            "CREATE TABLE digits (d INT);
             INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9);
             CREATE TABLE orders (id BIGINT PRIMARY KEY, amount DECIMAL(12, 2), created_at TIMESTAMP(6) NULL,
                                  note TEXT, paid BOOLEAN, day DATE, qty SMALLINT, weight DOUBLE);
             INSERT INTO orders
             SELECT g, (g % 100000) / 100.0, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (g * 259200 DIV {n}) SECOND,
                    CASE WHEN g % 7 = 0 THEN NULL ELSE CONCAT('note ', g) END, g % 3 = 0,
                    DATE '2024-01-01' + INTERVAL (g * 3 DIV {n}) DAY, g % 1000, g / 8.0
             FROM (SELECT {} AS g FROM {}) AS s WHERE g < {n};",
            number.join(" + "),
            tables.join(", ")
        ),
    );
    let p = TestProject::with_files(&[
        (
            "jobs/orders.toml",
            "description = \"the shop's orders, from its MySQL database\"\nversion = 1\nstart = \"2024-01-01\"\n\n[partitioning]\ngranularity = \"daily\"\n\n[[inputs]]\nname = \"orders\"\ntype = \"mysql\"\nconnection = \"file:secrets/shop.url\"\n# A comment with $partition in it, and a string too: left alone.\nquery = \"SELECT id, amount, created_at, note, paid, day, qty, weight, '$key' AS t FROM orders WHERE created_at >= $partition_start AND created_at < $partition_end # $partition\"\nschema = [\"id BIGINT NOT NULL\", \"amount DECIMAL(12, 2)\", \"created_at TIMESTAMP\", \"note STRING\", \"paid BOOLEAN\", \"day DATE\", \"qty SMALLINT\", \"weight DOUBLE\"]\n\n[output]\ntable = \"orders_copy\"\n",
        ),
        (
            "jobs/orders.sql",
            "SELECT id, amount, created_at, note, paid, day, qty, weight FROM orders",
        ),
        (
            "migrations/0001_orders.sql",
            "CREATE TABLE orders_copy (id BIGINT NOT NULL, amount DECIMAL(12, 2), created_at TIMESTAMP, note STRING, paid BOOLEAN, day DATE, qty SMALLINT, weight DOUBLE, dt DATE NOT NULL) PARTITIONED BY (dt);\n",
        ),
        ("secrets/shop.url", &db),
    ]);
    p.ok(&["validate"]);
    p.ok(&["migrate"]);
    let out = p.run(&["backfill", "--from", "2024-01-01", "--to", "2024-01-03"]);
    assert_eq!(out.code, 0, "{}", out.context());
    out.says("3 succeeded, 0 failed");

    // The table, read by Python's deltalake, against the server's answer per UTC day.
    let got = sums_per_day(
        &p,
        8,
        r#"d[0] += 1; d[1] += r["id"]; d[2] += int(r["amount"] * 100); d[3] += r["note"] is None
    d[4] += r["qty"]; d[5] += r["paid"]; d[6] += int(r["weight"] * 8)
    at = int(r["created_at"].timestamp() * 1000000)
    d[7] = at if d[7] == 0 else min(d[7], at)"#,
    );
    let total = same_as_server(&got, |day| {
        mariadb(
            &db,
            &format!(
                "SELECT COUNT(*), SUM(id), SUM(amount * 100), SUM(note IS NULL), SUM(qty), SUM(paid), SUM(weight * 8),
                        TIMESTAMPDIFF(MICROSECOND, TIMESTAMP '1970-01-01 00:00:00', MIN(created_at))
                 FROM orders WHERE created_at >= '{day} 00:00:00' AND created_at < TIMESTAMP '{day} 00:00:00' + INTERVAL 1 DAY"
            ),
        )
        .split_whitespace()
        .map(|v| v.trim_end_matches(".00").parse().unwrap())
        .collect()
    });
    assert_eq!(total, n);
    // The server's log: each day's query went with that day's UTC bounds as parameters.
    asked_for_each_day(&log, |from, to| {
        format!(
            "created_at >= CAST('{from} 00:00:00.000000' AS DATETIME(6)) AND created_at < CAST('{to} 00:00:00.000000' AS DATETIME(6))"
        )
    });

    // A wrong password: the run fails naming the file, never showing the password.
    let mut wrong = url::Url::parse(&db).unwrap();
    wrong.set_password(Some("not-the-password-42")).unwrap();
    p.write("secrets/shop.url", wrong.as_str());
    let out = p.run(&["run", "orders", "--partition", "2024-01-04"]);
    assert_ne!(out.code, 0, "{}", out.context());
    out.complains("input `orders`: cannot connect to the database (file secrets/shop.url)");
    assert!(
        !out.stderr.contains("not-the-password-42"),
        "{}",
        out.context()
    );
    // A PostgreSQL URL for a MySQL input is named as such.
    p.write("secrets/shop.url", "postgres://u@localhost/shop");
    let out = p.run(&["run", "orders", "--partition", "2024-01-04"]);
    assert_ne!(out.code, 0, "{}", out.context());
    out.complains("the file secrets/shop.url does not hold a mysql URL");
}

/// The copied table (`orders_copy`) read by Python's deltalake, summed per day (`dt`) by
/// `sums`: Python statements adding row `r` into `d`, the day's `width` sums.
fn sums_per_day(p: &TestProject, width: usize, sums: &str) -> serde_json::Value {
    let script = format!(
        r#"
import sys, json
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1]).to_pyarrow_table().to_pylist()
days = {{}}
for r in t:
    d = days.setdefault(str(r["dt"]), [0] * {width})
    {sums}
print(json.dumps(days, sort_keys=True))
import os; sys.stdout.flush(); os._exit(0)
"#
    );
    serde_json::from_str(&stdout_of(
        Command::new("python3")
            .args(["-c", &script])
            .arg(p.warehouse_table("orders_copy", 1)),
        "the Python deltalake reader",
    ))
    .unwrap()
}

/// Each of the three days' sums as read equal to the server's (`want`); the rows in all.
fn same_as_server(got: &serde_json::Value, want: impl Fn(&str) -> Vec<u64>) -> u64 {
    let mut total = 0;
    for day in ["2024-01-01", "2024-01-02", "2024-01-03"] {
        let want = want(day);
        let have: Vec<u64> = got[day]
            .as_array()
            .unwrap_or_else(|| panic!("{got}"))
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(have, want, "{day}");
        total += want[0];
    }
    total
}

/// The server's log, which has a query with each day's bounds (`bounds(from, to)`).
fn asked_for_each_day(log: &std::path::Path, bounds: impl Fn(&str, &str) -> String) -> String {
    let logged = std::fs::read_to_string(log).unwrap();
    for (from, to) in [
        ("2024-01-01", "2024-01-02"),
        ("2024-01-02", "2024-01-03"),
        ("2024-01-03", "2024-01-04"),
    ] {
        let b = bounds(from, to);
        assert!(
            logged.contains(&b),
            "the server's log has no query with {b}"
        );
    }
    logged
}
