//! A table's page: its physical versions with their coverage, which one is live, the
//! history of its alias, and the migrations that touch it, applied or pending.

use super::{Chrome, error_page, render};
use crate::clock::shown_time;
use crate::project::Project;
use crate::ui::UiError;
use crate::ui::state::UiState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use std::sync::Arc;

pub(super) struct VersionView {
    version: i64,
    live: bool,
    location: String,
    created: String,
    partitions: i64,
    complete: i64,
    failed: i64,
    running: i64,
    rows: i64,
}

pub(super) struct FlipView {
    at: String,
    from: String,
    to: i64,
    by: String,
    message: String,
}

pub(super) struct MigrationView {
    name: String,
    applied: bool,
    at: String,
    by: String,
}

#[derive(Template)]
#[template(path = "table.html")]
struct TablePage {
    chrome: Chrome,
    /// The forms' CSRF token, when actions are on.
    csrf: Option<String>,
    table: String,
    writer: Option<String>,
    versions: Vec<VersionView>,
    /// Live and the newest other version: what the diff link compares.
    diff: Option<(i64, i64)>,
    flips: Vec<FlipView>,
    /// The version a rollback would go back to, when there is one.
    rollback_to: Option<i64>,
    /// The schema the catalog holds: name, type, nullable, default, comment.
    columns: Vec<[String; 5]>,
    partition_by: String,
    migrations: Vec<MigrationView>,
}

pub async fn table(State(ui): State<Arc<UiState>>, Path(name): Path<String>) -> Response {
    let project = ui.project();
    match table_page(&ui, &project, &name).await {
        Ok(page) => render(&page),
        Err(e) => error_page(&ui, &project, &e),
    }
}

/// The schema's columns as the page lists them: name, type, nullable, default, comment.
fn schema_rows(schema: &crate::schema::TableSchema) -> Vec<[String; 5]> {
    schema
        .columns
        .iter()
        .map(|c| {
            [
                c.name.to_string(),
                c.ty.to_string(),
                if c.nullable { "yes" } else { "no" }.to_string(),
                c.default.clone().unwrap_or_default(),
                c.comment.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

async fn table_page(ui: &UiState, project: &Project, name: &str) -> Result<TablePage, UiError> {
    let Some(row) = ui.catalog.table(name).await? else {
        return Err(UiError::NotFound(format!(
            "no table `{}` in the catalog (is it migrated? `sluice migrate`)",
            name.escape_debug()
        )));
    };
    // Offered only when the rollback would have somewhere to go (as planned for real).
    let rollback_to = crate::app::flip::plan(
        &ui.catalog,
        &[name.to_string()],
        crate::app::flip::FlipKind::Rollback,
    )
    .await
    .ok()
    .and_then(|f| f.first().map(|f| f.to));
    let coverage = crate::app::coverage::of_table(&ui.catalog, name).await?;
    let live = coverage.live;
    let versions: Vec<VersionView> = coverage
        .versions
        .into_iter()
        .map(|v| VersionView {
            version: v.version,
            live: live == Some(v.version),
            location: crate::warehouse::display_str(&v.uri),
            created: shown_time(Some(v.created_at)),
            partitions: v.partitions,
            complete: v.complete,
            failed: v.failed,
            running: v.running,
            rows: v.rows,
        })
        .collect();
    let newest_other = versions
        .iter()
        .map(|v| v.version)
        .filter(|v| Some(*v) != live)
        .max();
    let diff = live.zip(newest_other);
    let flips = ui
        .catalog
        .alias_history(name)
        .await?
        .into_iter()
        .rev()
        .map(|f| FlipView {
            at: shown_time(Some(f.at)),
            from: f
                .from_version
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "-".into()),
            to: f.to_version,
            by: f.by_whom,
            message: f.message.unwrap_or_default(),
        })
        .collect();
    let applied = ui.catalog.applied_migrations().await?;
    let migrations = project
        .migrations
        .iter()
        .filter(|m| m.statements.iter().any(|s| s.table().as_str() == name))
        .map(|m| {
            let done = applied.iter().find(|a| a.name == m.name);
            MigrationView {
                name: m.name.clone(),
                applied: done.is_some(),
                at: shown_time(done.map(|a| a.applied_at)),
                by: done.map(|a| a.applied_by.clone()).unwrap_or_default(),
            }
        })
        .collect();
    Ok(TablePage {
        chrome: Chrome::of(ui, project),
        csrf: ui.csrf(),
        table: name.to_string(),
        writer: project
            .graph
            .writer
            .iter()
            .find(|(t, _)| t.as_str() == name)
            .map(|(_, j)| j.to_string()),
        versions,
        diff,
        flips,
        rollback_to,
        columns: schema_rows(&row.schema),
        partition_by: row
            .schema
            .partition_by
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        migrations,
    })
}
