//! Selecting partitions by key on the command line: a job whose partitions are its keys
//! (`granularity = "none"`) is backfilled by naming them, and an empty key list is refused
//! instead of selecting nothing and succeeding.

use crate::util::TestProject;

/// A reference table per country: its partitions are the countries.
fn countries_project() -> TestProject {
    let spec = r#"description = "a reference table per country"
version = 1

[schedule]
cron = "0 3 * * *"

[partitioning]
granularity = "none"
key_column = "country"
keys = ["DE", "FR", "IT"]

[[inputs]]
name = "ref"
path = "data/{key}.csv"
format = "csv"
schema = ["id BIGINT NOT NULL", "name STRING NOT NULL"]

[output]
table = "country_ref"
key = ["id"]
"#;
    let p = TestProject::with_files(&[
        ("jobs/country_ref.toml", spec),
        ("jobs/country_ref.sql", "SELECT id, name FROM ref"),
        (
            "migrations/0001_country_ref.sql",
            "CREATE TABLE country_ref (id BIGINT NOT NULL, name STRING NOT NULL, country STRING NOT NULL) PARTITIONED BY (country);\n",
        ),
    ]);
    for (i, c) in ["DE", "FR", "IT"].iter().enumerate() {
        p.write(
            &format!("data/{c}.csv"),
            &format!("id,name\n{i},{c}-name\n"),
        );
    }
    p.ok(&["migrate"]);
    p
}

fn complete(p: &TestProject) -> Vec<String> {
    let status = p.ok(&["status", "country_ref", "--output", "json"]).json();
    let mut out: Vec<String> = status
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|r| r["state"] == "complete")
        .filter_map(|r| r["partition"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

#[test]
fn a_job_whose_partitions_are_its_keys_is_backfilled_by_naming_them() {
    let p = countries_project();
    let dry = p.ok(&[
        "backfill",
        "country_ref",
        "--partitions",
        "DE,FR",
        "--dry-run",
    ]);
    assert!(
        dry.stdout.contains("2 partition(s) to run"),
        "{}",
        dry.context()
    );
    p.ok(&["backfill", "country_ref", "--partitions", "DE,FR"]);
    assert_eq!(complete(&p), ["DE", "FR"]);
    p.ok(&["backfill", "country_ref", "--partitions", ":IT"]);
    assert_eq!(complete(&p), ["DE", "FR", "IT"]);
    // A key the spec does not declare is named as such.
    let out = p.run(&["backfill", "country_ref", "--partitions", "ES"]);
    assert_eq!(out.code, 2, "{}", out.context());
    out.complains("ES");
}

#[test]
fn an_empty_key_list_is_refused_not_taken_for_nothing_to_do() {
    let p = countries_project();
    for args in [
        vec!["backfill", "country_ref", "--keys", ""],
        vec!["backfill", "country_ref", "--partitions", ":"],
        vec!["backfill", "country_ref", "--partitions", "all:"],
        vec![
            "backfill",
            "country_ref",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
            "--keys",
            " , ",
        ],
    ] {
        let out = p.run(&args);
        assert_eq!(out.code, 2, "{args:?} is refused{}", out.context());
        assert!(
            out.stderr.contains("no key is named"),
            "{args:?} says why{}",
            out.context()
        );
    }
    assert!(complete(&p).is_empty());
}

#[test]
fn keys_alone_for_a_job_partitioned_by_time_ask_for_its_range() {
    let p = TestProject::migrated();
    let out = p.run(&["backfill", "regional_orders", "--partitions", ":emea"]);
    assert_eq!(out.code, 2, "{}", out.context());
    assert!(
        out.stderr
            .contains("job `regional_orders` is partitioned by time"),
        "{}",
        out.context()
    );
}
