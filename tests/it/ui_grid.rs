//! The grid as a newcomer reads it: one time axis with day labels shared by every job, a
//! job with keys as a matrix of keys by days, the window where the project's runs are (not
//! today), counts that link to their filtered view, squares that say what they are. The
//! README's pictures are made here (`SLUICE_UPDATE_SCREENSHOTS=1` writes them to docs/).

use crate::ui::{Browser, Ui, cells};
use crate::util::{REPO, TestProject};
use std::path::PathBuf;

/// The sample month backfilled: clean_orders 2024-01-05 failed (an order with a status
/// the `accepted_values` check refuses), and 2024-01-20's export rewritten since its run
/// (so that day is stale because its input changed).
fn a_month_with_a_failed_and_a_stale_day() -> TestProject {
    let p = TestProject::migrated();
    p.break_export("2024-01-05");
    let o = p.run(&[
        "backfill",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-31",
        "-q",
    ]);
    assert_eq!(o.code, 1, "{}", o.context());
    let f = "sample-data/orders/dt=2024-01-20/orders.csv";
    let text = p.read(f);
    let first = text.lines().nth(1).unwrap_or_default().to_string();
    p.write(f, &text.replacen(&format!("{first}\n"), "", 1));
    p
}

/// The text of every `<th>` in the grid's `<thead>`.
fn header_labels(html: &str) -> Vec<String> {
    let head = &html[html.find("<thead>").unwrap_or(0)..html.find("</thead>").unwrap_or(0)];
    head.split("<th")
        .skip(1)
        .filter_map(|t| {
            let text = &t[t.find('>')? + 1..];
            Some(text[..text.find("</th>")?].to_string())
        })
        .collect()
}

#[tokio::test]
async fn the_grid_opens_on_the_month_that_ran_with_days_on_one_axis_and_regions_as_lines() {
    let p = a_month_with_a_failed_and_a_stale_day();
    let ui = Ui::start(&p, &[]);
    // No range asked: the window ends at the newest partition run, 2024-01-31, not today.
    let page = ui.get("/", &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("name=\"from\" value=\"2024-01-01\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("name=\"to\" value=\"2024-01-31\""),
        "{}",
        page.body
    );
    let labels = header_labels(&page.body);
    assert!(labels.contains(&"January 2024".to_string()), "{labels:?}");
    let days: Vec<String> = (1..=31).map(|d| d.to_string()).collect();
    assert!(labels.ends_with(&days), "{labels:?}");

    let grid = cells(&page.body);
    assert_eq!(
        grid[&("clean_orders".into(), "2024-01-05".into())],
        "failed"
    );
    assert_eq!(
        grid[&("clean_orders".into(), "2024-01-20".into())],
        "input_changed"
    );
    assert_eq!(
        grid[&("daily_revenue".into(), "2024-01-05".into())],
        "missing"
    );
    // Every day of each daily job, the month once, and eight regions by 31 days.
    let of = |job: &str| grid.keys().filter(|(j, _)| j == job).count();
    assert_eq!(
        [
            of("clean_orders"),
            of("daily_revenue"),
            of("monthly_region_revenue"),
            of("regional_orders")
        ],
        [31, 31, 1, 248]
    );
    // regional_orders is a matrix: a line per region, its days in the columns.
    let line = |label: &str| {
        let at = page
            .body
            .find(&format!("<th scope=\"row\">{label}</th>"))
            .unwrap_or_else(|| panic!("no line {label}"));
        let row = &page.body[at..];
        row[..row.find("</tr>").unwrap_or(row.len())].to_string()
    };
    let emea = line("emea");
    assert_eq!(emea.matches("class=\"cell ").count(), 31, "{emea}");
    assert!(emea.contains("/partitions/2024-01-05:emea\""), "{emea}");
    // A monthly partition spans its days.
    let month = page
        .body
        .find("href=\"/jobs/monthly_region_revenue/partitions/2024-01\"")
        .expect("the month's square");
    let cell = &page.body[page.body[..month].rfind("<td").unwrap_or(0)..month];
    assert!(cell.starts_with("<td colspan=\"31\">"), "{cell}");

    // Each square says what it is without hovering.
    assert!(
        page.body
            .contains("aria-label=\"clean_orders 2024-01-05: failed\""),
        "{}",
        page.body
    );
    // A count links to its filtered view, where the rest is faint and the axis stays.
    let href = "/?job=clean_orders&#38;state=failed&#38;from=2024-01-01&#38;to=2024-01-31";
    assert!(
        page.body.contains(&format!("href=\"{href}\"")),
        "{}",
        page.body
    );
    let filtered = ui.get(&href.replace("&#38;", "&"), &[]).await;
    let grid = cells(&filtered.body);
    assert_eq!(grid.len(), 31, "{grid:?}");
    assert_eq!(
        filtered
            .body
            .matches("class=\"cell s-failed\" href")
            .count(),
        1
    );
    assert_eq!(
        filtered.body.matches(" dim\"").count(),
        30,
        "{}",
        filtered.body
    );
    assert!(
        filtered.body.contains("1 failed in this window"),
        "{}",
        filtered.body
    );
    // The arrows move the window by its width.
    assert!(
        page.body
            .contains("href=\"/?from=2023-12-01&#38;to=2023-12-31\" rel=\"prev\""),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn the_readme_pictures_are_the_grid_of_the_sample_month() {
    let p = a_month_with_a_failed_and_a_stale_day();
    let ui = Ui::start(&p, &[]);
    let browser = Browser::new();
    let to = match std::env::var("SLUICE_UPDATE_SCREENSHOTS").as_deref() {
        Ok("1") => PathBuf::from(REPO).join("docs"),
        _ => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"),
    };
    std::fs::create_dir_all(&to).unwrap();
    let grid = format!("{}/", ui.url);
    browser.screenshot(&grid, &to.join("ui-grid.png"));
    let regions = format!("{}/?job=regional_orders", ui.url);
    browser.screenshot(&regions, &to.join("ui-grid-regions.png"));
    let dom = browser.dom(&regions);
    assert!(dom.contains("<th scope=\"row\">west</th>"), "{dom}");
    let job = format!("{}/jobs/clean_orders", ui.url);
    browser.screenshot(&job, &to.join("ui-job.png"));
    assert!(browser.dom(&job).contains("duration of the last run"));
    eprintln!("screenshots in {}", to.display());
}
