//! `sluice test`: the sample project's job tests, every option a test file has (each shown
//! to pass when it holds and to fail when it does not), `--update` and `--create` round
//! trips, and the promise that a test writes nothing but its report.

use crate::util::{TestProject, stdout_of};
use std::process::Command;

/// The files and folders at the top of the project.
fn top_level(p: &TestProject) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The line `sluice test` printed for test `name`.
fn line_of<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.contains(&format!(" / {name} ")))
        .unwrap_or_else(|| panic!("no line for test `{name}` in:\n{stdout}"))
}

#[test]
fn the_sample_projects_tests_pass_with_a_junit_report_and_leave_no_trace() {
    let p = TestProject::sample();
    let before = top_level(&p);
    let out = p.ok(&["test", "--junit", "report.xml"]);
    out.says("35 passed, 0 failed");
    // Nothing but the report: no catalog folder, no warehouse.
    let mut expected = before.clone();
    expected.push("report.xml".into());
    expected.sort();
    assert_eq!(top_level(&p), expected, "{}", out.context());
    assert!(!p.file(".sluice").exists() && !p.file("warehouse").exists());
    // An independent XML parser: one test case per test, by job and name.
    let cases = stdout_of(
        Command::new("python3").arg("-c").arg(format!(
            "import xml.etree.ElementTree as E\n\
             r = E.parse('{}').getroot()\n\
             assert r.tag == 'testsuites' and r.get('failures') == '0', r.attrib\n\
             for c in r.iter('testcase'): print(c.get('classname'), c.get('name'), len(list(c)))",
            p.file("report.xml").display()
        )),
        "parse the JUnit report",
    );
    let mut cases: Vec<&str> = cases.lines().collect();
    cases.sort();
    // The merge and scd2 rules' cases (jobs/tests/customers*.toml), each passed.
    for (job, n) in [("customers", 6), ("customers_history", 20)] {
        let of_job: Vec<&&str> = cases
            .iter()
            .filter(|c| c.starts_with(&format!("{job} ")))
            .collect();
        assert_eq!(of_job.len(), n, "{of_job:?}");
        assert!(of_job.iter().all(|c| c.ends_with(" 0")), "{of_job:?}");
    }
    cases.retain(|c| !c.starts_with("customers"));
    assert_eq!(
        cases,
        vec![
            "clean_orders a_broken_csv_row_becomes_a_dead_letter 0",
            "clean_orders amount_is_quantity_times_unit_price_to_the_cent 0",
            "clean_orders cancelled_orders_are_dropped 0",
            "daily_revenue negative_revenue_fails_its_check 0",
            "daily_revenue revenue_orders_and_customers_per_region_and_category 0",
            "exchange_rates only_the_day_s_rates_are_kept 0",
            "monthly_region_revenue a_month_rolls_up_its_days_per_region 0",
            "rolling_revenue a_day_sums_the_seven_days_up_to_it 0",
            "rolling_revenue the_first_day_has_only_itself 0",
        ]
    );
}

#[test]
fn a_changed_sql_fails_naming_the_job_the_test_and_the_differing_rows() {
    let p = TestProject::sample();
    let sql = p
        .read("jobs/clean_orders.sql")
        .replace("quantity * unit_price", "quantity * unit_price + 1");
    p.write("jobs/clean_orders.sql", &sql);
    let out = p.run(&["test", "--junit", "report.xml"]);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(
        out.stdout
            .contains("FAIL  clean_orders / amount_is_quantity_times_unit_price_to_the_cent (jobs/tests/clean_orders.toml)"),
        "{}",
        out.context()
    );
    assert!(
        out.stdout
            .contains("~ changed     order_id=1: amount expected 73.38, got 74.38"),
        "{}",
        out.context()
    );
    // Tests of other jobs still pass; the report carries the diff.
    out.says("ok    daily_revenue / ");
    let report = p.read("report.xml");
    assert!(report.contains("failures=\"2\""), "{report}");
    assert!(
        report.contains("amount expected 73.38, got 74.38"),
        "{report}"
    );
}

/// Each option, once where it holds (`pass_*`) and once where it does not (`fail_*`).
const OPTIONS_CLEAN: &str = r#"
job = "clean_orders"

[[test]]
name = "pass_partial_columns_in_any_order"
partition = "2024-01-07"
[test.inputs.orders]
csv = """
order_id,order_ts,customer_id,region,category,quantity,unit_price,status
1,2024-01-07 09:00:00,10,emea,books,1,1.00,paid
2,2024-01-07 10:00:00,10,emea,books,1,2.00,paid
"""
[test.expect]
rows = [{ order_id = 2 }, { order_id = 1 }]

[[test]]
name = "fail_partial_columns"
partition = "2024-01-07"
[test.inputs.orders]
csv = """
order_id,order_ts,customer_id,region,category,quantity,unit_price,status
1,2024-01-07 09:00:00,10,emea,books,1,1.00,paid
"""
[test.expect]
rows = [{ order_id = 1, region = "apac" }]

[[test]]
name = "pass_expected_error"
partition = "2024-01-07"
[test.inputs.orders]
rows = [{ order_id = 1, order_ts = "2024-01-07 09:15:00", customer_id = 10, region = "emea", category = "books", quantity = 2000000000, unit_price = "99999999.99", status = "paid" }]
[test.expect]
error = "too large to store in a Decimal128"

[[test]]
name = "fail_expected_error_that_does_not_come"
partition = "2024-01-07"
[test.inputs.orders]
rows = [{ order_id = 1, order_ts = "2024-01-07 09:15:00", customer_id = 10, region = "emea", category = "books", quantity = 2, unit_price = "1.00", status = "paid" }]
[test.expect]
error = "too large to store in a Decimal128"

[[test]]
name = "fail_dead_letter_on_another_line"
partition = "2024-01-12"
[test.inputs.orders]
file = "fixtures/orders_broken.csv"
[test.expect]
rows = [{ order_id = 2238 }, { order_id = 2386 }]
dead_letters = [{ input = "orders", line = 4 }]

[[test]]
name = "pass_failing_check"
partition = "2024-01-07"
[test.inputs.orders]
rows = [
    { order_id = 1, order_ts = "2024-01-07 09:15:00", customer_id = 10, region = "emea", category = "books", quantity = 1, unit_price = "1.00", status = "paid" },
    { order_id = 1, order_ts = "2024-01-07 09:16:00", customer_id = 10, region = "emea", category = "books", quantity = 1, unit_price = "1.00", status = "paid" },
]
[test.expect]
failing_checks = ["unique_order_id"]

[[test]]
name = "fail_check_expected_to_fail_passes"
partition = "2024-01-07"
[test.inputs.orders]
rows = [{ order_id = 1, order_ts = "2024-01-07 09:15:00", customer_id = 10, region = "emea", category = "books", quantity = 1, unit_price = "1.00", status = "paid" }]
[test.expect]
failing_checks = ["unique_order_id"]
"#;

const OPTIONS_MONTHLY: &str = r#"
job = "monthly_region_revenue"

[[test]]
name = "pass_tolerance"
partition = "2024-01"
[test.inputs.daily_revenue]
rows = [
    { dt = 2024-01-01, region = "emea", category = "books", revenue = "10.00", orders = 1, customers = 1 },
    { dt = 2024-01-02, region = "emea", category = "books", revenue = "10.01", orders = 1, customers = 1 },
]
[test.expect]
tolerance = 0.01
rows = [{ region = "emea", revenue = 20.0, avg_daily_revenue = 10.0 }]

[[test]]
name = "fail_beyond_tolerance"
partition = "2024-01"
[test.inputs.daily_revenue]
rows = [
    { dt = 2024-01-01, region = "emea", category = "books", revenue = "10.00", orders = 1, customers = 1 },
    { dt = 2024-01-02, region = "emea", category = "books", revenue = "10.01", orders = 1, customers = 1 },
]
[test.expect]
tolerance = 0.001
rows = [{ region = "emea", revenue = 20.0, avg_daily_revenue = 10.0 }]

[[test]]
name = "fail_a_day_of_another_month_is_not_read"
partition = "2024-02"
[test.inputs.daily_revenue]
rows = [
    { dt = 2024-01-31, region = "emea", category = "books", revenue = "10.00", orders = 1, customers = 1 },
]
[test.expect]
rows = [{ region = "emea", revenue = "10.00" }]
"#;

/// A job whose SQL orders its rows: a test compares them in order.
const TOP_ORDERS: &[(&str, &str)] = &[
    (
        "migrations/0099_create_top_orders.sql",
        "CREATE TABLE top_orders (dt DATE NOT NULL, order_id BIGINT NOT NULL, amount DECIMAL(12,2) NOT NULL) PARTITIONED BY (dt);\n",
    ),
    (
        "jobs/top_orders.toml",
        "version = 1\nstart = \"2024-01-01\"\n[partitioning]\ngranularity = \"daily\"\n[[inputs]]\nname = \"clean_orders\"\ntable = \"clean_orders\"\n[output]\ntable = \"top_orders\"\nkey = [\"order_id\"]\n",
    ),
    (
        "jobs/top_orders.sql",
        "SELECT order_id, amount FROM clean_orders ORDER BY amount DESC, order_id\n",
    ),
];

const OPTIONS_TOP: &str = r#"
[[test]]
name = "pass_in_the_order_the_sql_gives"
partition = "2024-01-07"
[test.inputs.clean_orders]
rows = [
    { dt = 2024-01-07, order_id = 1, amount = "5.00" },
    { dt = 2024-01-07, order_id = 2, amount = "9.00" },
]
[test.expect]
rows = [{ order_id = 2 }, { order_id = 1 }]

[[test]]
name = "fail_out_of_the_order_the_sql_gives"
partition = "2024-01-07"
[test.inputs.clean_orders]
rows = [
    { dt = 2024-01-07, order_id = 1, amount = "5.00" },
    { dt = 2024-01-07, order_id = 2, amount = "9.00" },
]
[test.expect]
rows = [{ order_id = 1 }, { order_id = 2 }]

[[test]]
name = "pass_order_ignored_when_asked"
partition = "2024-01-07"
[test.inputs.clean_orders]
rows = [
    { dt = 2024-01-07, order_id = 1, amount = "5.00" },
    { dt = 2024-01-07, order_id = 2, amount = "9.00" },
]
[test.expect]
ordered = false
rows = [{ order_id = 1 }, { order_id = 2 }]
"#;

#[test]
fn every_option_passes_when_it_holds_and_fails_when_it_does_not() {
    let p = TestProject::sample();
    for (rel, text) in TOP_ORDERS {
        p.write(rel, text);
    }
    p.write("jobs/tests/options_clean.toml", OPTIONS_CLEAN);
    p.write("jobs/tests/options_monthly.toml", OPTIONS_MONTHLY);
    p.write("jobs/tests/top_orders.toml", OPTIONS_TOP);
    p.ok(&["validate"]);
    let out = p.run(&["test"]);
    assert_eq!(out.code, 1, "{}", out.context());
    let mut names = 0;
    for l in out.stdout.lines().filter(|l| l.contains(" / ")) {
        let name = l.split(" / ").nth(1).unwrap_or_default();
        if name.starts_with("fail_") {
            assert!(
                l.starts_with("FAIL  "),
                "`{name}` should fail:{}",
                out.context()
            );
            names += 1;
        } else {
            assert!(
                l.starts_with("ok    "),
                "`{name}` should pass:{}",
                out.context()
            );
        }
    }
    assert_eq!(names, 7, "{}", out.context());
    // Each failure says what differs.
    for (name, says) in [
        (
            "fail_partial_columns",
            "~ changed     order_id=1: region expected apac, got emea",
        ),
        (
            "fail_expected_error_that_does_not_come",
            "the run succeeded",
        ),
        (
            "fail_dead_letter_on_another_line",
            "expected a dead letter at input `orders` line 4",
        ),
        (
            "fail_check_expected_to_fail_passes",
            "expected check `unique_order_id` to fail; it passed",
        ),
        ("fail_beyond_tolerance", "revenue expected 20.00, got 20.01"),
        (
            "fail_a_day_of_another_month_is_not_read",
            "- missing     region=emea, revenue=10.00",
        ),
        (
            "fail_out_of_the_order_the_sql_gives",
            "~ changed     row 1: order_id expected 1, got 2",
        ),
    ] {
        let at = out.stdout.find(line_of(&out.stdout, name)).unwrap();
        let block: String = out.stdout[at..]
            .lines()
            .take(6)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            block.contains(says),
            "`{name}` should say `{says}`:\n{block}"
        );
    }
    out.says("unexpected dead letter: input `orders`, jobs/tests/fixtures/orders_broken.csv:3");
}

#[test]
fn validate_names_what_a_test_file_gets_wrong() {
    let p = TestProject::sample();
    p.write(
        "jobs/tests/daily_revenue_typos.toml",
        "job = \"daily_revenue\"\n[[test]]\nname = \"t\"\npartition = \"2024-01-07\"\n[test.inputs.clean_order]\nrows = []\n[test.expect]\nrows = []\n\n[[test]]\nname = \"u\"\npartition = \"2024-01-07\"\n[test.inputs.clean_orders]\nrows = [{ dt = 2024-01-07, amount_ = \"1.00\" }]\n[test.expect]\nrows = [{ revenu = \"1.00\" }]\n",
    );
    p.write(
        "jobs/tests/nope.toml",
        "[[test]]\nname = \"t\"\npartition = \"2024-01-07\"\n",
    );
    let out = p.run(&["validate"]);
    assert_eq!(out.code, 1, "{}", out.context());
    for says in [
        "jobs/tests/daily_revenue_typos.toml: test `t`: job `daily_revenue` has no input `clean_order`; its inputs are `clean_orders`",
        "jobs/tests/daily_revenue_typos.toml: test `u`: input `clean_orders`: no column `amount_`",
        "jobs/tests/nope.toml: job `nope` is not a job of this project",
    ] {
        assert!(
            out.stdout.contains(says),
            "should say `{says}`{}",
            out.context()
        );
    }
}

#[test]
fn update_and_create_round_trip_through_the_job_s_code() {
    let p = TestProject::migrated();
    p.ok(&[
        "backfill",
        "clean_orders",
        "daily_revenue",
        "--from",
        "2024-01-12",
        "--to",
        "2024-01-12",
    ]);
    for job in ["clean_orders", "daily_revenue"] {
        let made = p.ok(&[
            "test",
            "--create",
            job,
            "--partition",
            "2024-01-12",
            "--rows",
            "30",
        ]);
        assert!(
            made.stdout.contains(&format!(
                "wrote test `sampled_2024-01-12` to jobs/tests/{job}.toml"
            )),
            "{}",
            made.context()
        );
    }
    let created = p.read("jobs/tests/daily_revenue.toml");
    assert!(
        created.contains("name = \"sampled_2024-01-12\""),
        "{created}"
    );
    // Passes as created.
    let out = p.ok(&["test"]);
    out.says("37 passed, 0 failed");
    assert!(line_of(&out.stdout, "sampled_2024-01-12").starts_with("ok"));

    // Fails after the SQL changes ...
    let original = p.read("jobs/daily_revenue.sql");
    p.write(
        "jobs/daily_revenue.sql",
        &original.replace(
            "COUNT(*)                            AS orders",
            "COUNT(*) + 1 AS orders",
        ),
    );
    let out = p.run(&["test", "daily_revenue"]);
    assert_eq!(out.code, 1, "{}", out.context());
    assert!(
        line_of(&out.stdout, "sampled_2024-01-12").starts_with("FAIL"),
        "{}",
        out.context()
    );
    // ... --update writes what it makes now as expected (and passes) ...
    let updated = p.ok(&["test", "daily_revenue", "--update"]);
    updated.says("0 failed");
    assert!(
        updated
            .stderr
            .contains("updated the expected rows of 2 test(s)"),
        "{}",
        updated.context()
    );
    // ... keeping the file's comments, and then the original SQL fails against it.
    let rewritten = p.read("jobs/tests/daily_revenue.toml");
    assert!(
        rewritten.contains("# Tests of jobs/daily_revenue"),
        "{rewritten}"
    );
    p.write("jobs/daily_revenue.sql", &original);
    let out = p.run(&["test", "daily_revenue"]);
    assert_eq!(out.code, 1, "{}", out.context());
    out.says("~ changed");
    out.says("orders expected");
}
