//! The web view's actions (`--allow-actions`): each needs the token and the page's CSRF
//! token; a run, a backfill, a promote from the page leave what the CLI command leaves.

use crate::ui::{TOKEN, Ui, client, sample_with_a_failed_day};
use crate::util::{TestProject, wait_for_text};
use std::time::Duration;

/// POST a form as the browser would (bearer: signed in; none: not).
async fn post(ui: &Ui, path: &str, bearer: bool, form: &[(&str, &str)]) -> u16 {
    let mut req = client().post(format!("{}{path}", ui.url)).form(form);
    if bearer {
        req = req.header("authorization", format!("Bearer {TOKEN}"));
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn an_action_needs_the_token_and_the_page_s_csrf_token() {
    let p = sample_with_a_failed_day();
    // No token, no actions.
    let o = p.run(&["ui", "--address", "127.0.0.1:0", "--allow-actions"]);
    assert_eq!(o.code, 2, "{}", o.context());
    o.complains("--allow-actions needs a token");

    let ui = Ui::start_with(&p, &["--allow-actions"], &[("SLUICE_UI_TOKEN", TOKEN)]);
    let run = "/jobs/clean_orders/partitions/2024-01-05/run";
    let csrf = ui.csrf("/jobs/clean_orders/partitions/2024-01-05").await;
    assert_eq!(
        post(&ui, run, false, &[("csrf", &csrf)]).await,
        401,
        "no token"
    );
    assert_eq!(post(&ui, run, true, &[]).await, 403, "no CSRF token");
    assert_eq!(
        post(&ui, run, true, &[("csrf", "forged")]).await,
        403,
        "a forged one"
    );
    for (path, form) in [
        (
            "/backfill",
            vec![("from", "2024-01-01"), ("to", "2024-01-02")],
        ),
        ("/tables/clean_orders/flip", vec![("version", "1")]),
    ] {
        assert_eq!(post(&ui, path, false, &form).await, 401, "{path}");
        assert_eq!(post(&ui, path, true, &form).await, 403, "{path}");
    }
    // Nothing ran: the failed day is as it was.
    let status = p.ok(&["status", "clean_orders", "--output", "json"]).json();
    let day = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == "2024-01-05")
        .unwrap();
    assert_eq!(day["state"], "failed", "{day:#}");
    // A read-only server has no such routes at all.
    let ro = Ui::start(&p, &[]);
    assert_eq!(post(&ro, run, false, &[("csrf", &csrf)]).await, 404);
}

/// The day's state as `sluice status` gives it: state, rows, fingerprint.
fn day_status(p: &TestProject, day: &str) -> (String, i64, String) {
    let status = p.ok(&["status", "clean_orders", "--output", "json"]).json();
    let r = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == day)
        .unwrap_or_else(|| panic!("no {day} in {status:#}"))
        .clone();
    (
        r["state"].as_str().unwrap().to_string(),
        r["rows"].as_i64().unwrap_or(-1),
        r["fingerprint"].as_str().unwrap_or_default().to_string(),
    )
}

/// Waits until the day is no longer failed or running.
fn wait_settled(p: &TestProject, day: &str) -> (String, i64, String) {
    let started = std::time::Instant::now();
    loop {
        let s = day_status(p, day);
        if s.0 == "complete" {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{day} stays {s:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn a_run_from_the_page_leaves_what_sluice_run_leaves_and_a_racing_backfill_does_not_write_again()
 {
    let fix = |p: &TestProject| {
        let f = "sample-data/orders/dt=2024-01-05/orders.csv";
        let text = p.read(f).replace("<script>alert(1)</script>", "paid");
        p.write(f, &text);
    };
    // The CLI's way.
    let cli = sample_with_a_failed_day();
    fix(&cli);
    cli.ok(&["run", "clean_orders", "--partition", "2024-01-05"]);
    let by_cli = day_status(&cli, "2024-01-05");

    // The page's way, with a backfill of the same day started while it runs.
    let p = sample_with_a_failed_day();
    fix(&p);
    let table = p.warehouse_table("clean_orders", 1);
    let before = crate::util::commit_tokens(&table)
        .get("2024-01-05")
        .cloned()
        .unwrap_or_default();
    let ui = Ui::start_with(
        &p,
        &["--allow-actions"],
        &[
            ("SLUICE_UI_TOKEN", TOKEN),
            ("SLUICE_FAILPOINT", "slow_commit"),
            ("SLUICE_FAILPOINT_DELAY_MS", "1500"),
        ],
    );
    let csrf = ui.csrf("/jobs/clean_orders/partitions/2024-01-05").await;
    let status = post(
        &ui,
        "/jobs/clean_orders/partitions/2024-01-05/run",
        true,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 303, "{}", ui.log());
    // The page's run holds the lease (its files written, its commit delayed) when the
    // backfill of the same day starts.
    wait_for_text(&ui.log, "delaying at failpoint", Duration::from_secs(60));
    let raced = p.run(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-05",
        "--to",
        "2024-01-05",
        "--output",
        "json",
    ]);
    assert_eq!(raced.code, 0, "{}", raced.context());
    assert_eq!(raced.json()["done_elsewhere"], 1, "{}", raced.context());
    let by_page = wait_settled(&p, "2024-01-05");
    assert_eq!(
        by_page, by_cli,
        "the page's run and `sluice run` left different partitions"
    );
    // One more commit of the day between the two of them.
    let after = crate::util::commit_tokens(&table)
        .get("2024-01-05")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        after.len(),
        before.len() + 1,
        "{before:?} -> {after:?}\n{}",
        ui.log()
    );
    // The same rows as the CLI's run wrote, read by a fresh reader.
    let day = "order_ts >= '2024-01-05' AND order_ts < '2024-01-06'";
    crate::util::assert_same_rows(
        "2024-01-05",
        &crate::util::read_delta_rows(&table, Some(day)).await,
        &crate::util::read_delta_rows(&cli.warehouse_table("clean_orders", 1), Some(day)).await,
    );
}

/// The sample with a failed day, and v2 of clean_orders built from 2024-01-01 to `last`
/// beside the live v1.
fn with_clean_orders_v2(last: &str) -> TestProject {
    let p = sample_with_a_failed_day();
    let spec = p
        .read("jobs/clean_orders.toml")
        .replace("version = 1", "version = 2");
    p.write("jobs/clean_orders.toml", &spec);
    p.ok(&[
        "backfill",
        "clean_orders",
        "--from",
        "2024-01-01",
        "--to",
        last,
    ]);
    p
}

#[tokio::test]
async fn the_table_page_links_to_the_diff_of_live_and_the_newest_version() {
    // v2 of clean_orders, built for three days beside the live v1.
    let p = with_clean_orders_v2("2024-01-03");
    let ui = Ui::start(&p, &[]);
    let table = ui.get("/tables/clean_orders", &[]).await;
    let href = "/tables/clean_orders/diff?from=1&amp;to=2";
    assert!(
        table.body.contains(href),
        "no link to the diff:\n{}",
        table.body
    );
    let diff = ui.get("/tables/clean_orders/diff?from=1&to=2", &[]).await;
    assert_eq!(diff.status, 200, "{}", diff.body);
    // v2 lacks the days after the 3rd: their rows are v1's only.
    assert!(diff.body.contains("<td>2024-01-04</td>"), "{}", diff.body);
    assert!(diff.body.contains("removed"), "{}", diff.body);
    let none = ui.get("/tables/clean_orders/diff?from=1&to=9", &[]).await;
    assert_eq!(none.status, 400, "{}", none.body);
    // A partition v2 does not have is absent, not 0 rows; the equal ones are counted; the
    // changed share is a percentage.
    let day = diff
        .body
        .split("<tr>")
        .find(|r| r.starts_with("<td>2024-01-04</td>"))
        .unwrap_or_default();
    assert!(day.contains("</td><td>absent</td>"), "{}", diff.body);
    assert!(
        diff.body
            .contains("and 3 partition(s) with as many rows in both, not listed"),
        "{}",
        diff.body
    );
    assert!(diff.body.contains("%</b> of the rows"), "{}", diff.body);
}

#[tokio::test]
async fn the_pages_offer_only_what_can_be_done_and_say_it_as_a_page_can() {
    let p = with_clean_orders_v2("2024-01-02");
    let ui = Ui::start_with(&p, &["--allow-actions"], &[("SLUICE_UI_TOKEN", TOKEN)]);
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    // The table page shows the schema, and no rollback while the alias never moved.
    let table = ui.get("/tables/clean_orders", &auth).await;
    assert!(
        table
            .body
            .contains("<td><code>order_id</code></td><td><code>BIGINT</code></td><td>no</td>"),
        "{}",
        table.body
    );
    assert!(table.body.contains("partitioned by dt"), "{}", table.body);
    assert!(!table.body.contains("roll back"), "{}", table.body);
    // A promote the coverage check refuses says what to do without a flag the form lacks.
    let csrf = ui.csrf("/tables/clean_orders").await;
    let refused = client()
        .post(format!("{}/tables/clean_orders/flip", ui.url))
        .header("authorization", &bearer)
        .form(&[("csrf", csrf.as_str()), ("version", "2")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    let body = refused.text().await.unwrap();
    assert!(body.contains("v2 lacks"), "{body}");
    assert!(
        body.contains("run `sluice promote clean_orders --version 2 --partial`")
            && !body.contains("or pass --partial"),
        "{body}"
    );
    // A passed check reads as passed: freshness says "within", and no failing count.
    let page = ui
        .get("/jobs/clean_orders/partitions/2024-01-02", &auth)
        .await;
    assert!(
        page.body.contains("within 86400s before the partition end"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("more than 86400s"), "{}", page.body);
    let volume = page
        .body
        .split("<tr>")
        .find(|r| r.contains("<td>volume"))
        .unwrap_or_else(|| panic!("no volume check:\n{}", page.body));
    assert!(volume.contains("passed</span></td><td></td>"), "{volume}");
}

#[tokio::test]
async fn the_daemon_acts_only_with_a_token() {
    let p = TestProject::migrated();
    let o = p.run(&[
        "daemon",
        "--metrics-address",
        "127.0.0.1:0",
        "--allow-actions",
    ]);
    assert_eq!(o.code, 2, "{}", o.context());
    o.complains("--allow-actions needs");
    // With one, its partition pages carry the form.
    let addr = format!("127.0.0.1:{}", crate::daemon_process::free_port());
    let (mut daemon, log) = p.spawn(
        &["daemon", "--metrics-address", &addr, "--allow-actions"],
        &[("SLUICE_UI_TOKEN", TOKEN)],
    );
    let page = format!("http://{addr}/jobs/clean_orders/partitions/2024-01-05");
    let started = std::time::Instant::now();
    let body = loop {
        let r = client()
            .get(&page)
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await;
        if let Ok(r) = r
            && r.status().as_u16() == 200
        {
            break r.text().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.contains("run again"), "{body}");
    crate::util::sigkill(&mut daemon);
}
