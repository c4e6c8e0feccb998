//! Two versions of a table compared (`sluice diff`'s comparison): schema, rows per
//! partition, rows by key with samples, column sums, means and null fractions.

use super::{Chrome, error_page, render};
use crate::diff::Diff;
use crate::project::Project;
use crate::ui::UiError;
use crate::ui::state::UiState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use std::sync::Arc;

#[derive(serde::Deserialize)]
pub struct Versions {
    from: i64,
    to: i64,
}

pub(super) struct KeyView {
    key: String,
    added: u64,
    removed: u64,
    changed: u64,
    samples: Vec<(String, Vec<String>)>,
}

#[derive(Template)]
#[template(path = "diff.html")]
struct DiffPage {
    chrome: Chrome,
    table: String,
    from: i64,
    to: i64,
    changed: String,
    schema: Vec<(String, String, String)>,
    rows_from: u64,
    rows_to: u64,
    /// Partitions whose row counts differ: name, rows in `from`, rows in `to` (`absent`
    /// when a version has none of the partition).
    partitions: Vec<(String, String, String)>,
    /// Partitions with as many rows in both, not listed.
    same_partitions: usize,
    by_key: Option<KeyView>,
    /// Per column, as `ColumnStats::shown` gives it.
    columns: Vec<Vec<String>>,
}

pub async fn diff(
    State(ui): State<Arc<UiState>>,
    Path(table): Path<String>,
    Query(v): Query<Versions>,
) -> Response {
    let project = ui.project();
    match diff_page(&ui, &project, &table, v).await {
        Ok(page) => render(&page),
        Err(e) => error_page(&ui, &project, &e),
    }
}

async fn diff_page(
    ui: &UiState,
    project: &Project,
    table: &str,
    v: Versions,
) -> Result<DiffPage, UiError> {
    let key: Vec<String> = project
        .writer_of(table)
        .map(|j| j.key.iter().map(|k| k.to_string()).collect())
        .unwrap_or_default();
    let d = crate::diff::diff(&ui.catalog, &ui.engine, table, v.from, v.to, None, &key)
        .await
        .map_err(|e| UiError::BadRequest(e.to_string()))?;
    Ok(view(ui, project, d))
}

/// A partition's rows in one version: a partition with none is not in that version.
fn rows(n: u64) -> String {
    match n {
        0 => "absent".into(),
        n => n.to_string(),
    }
}

fn view(ui: &UiState, project: &Project, d: Diff) -> DiffPage {
    let absent = |c: &Option<String>| c.clone().unwrap_or_else(|| "(absent)".into());
    DiffPage {
        chrome: Chrome::of(ui, project),
        changed: format!("{:.2}%", d.changed_fraction() * 100.0),
        table: d.table.clone(),
        from: d.from,
        to: d.to,
        schema: d
            .schema
            .iter()
            .map(|c| (c.column.clone(), absent(&c.from), absent(&c.to)))
            .collect(),
        rows_from: d.rows_from,
        rows_to: d.rows_to,
        partitions: d
            .rows_per_partition
            .iter()
            .filter(|p| p.from != p.to)
            .map(|p| (p.partition.clone(), rows(p.from), rows(p.to)))
            .collect(),
        same_partitions: d
            .rows_per_partition
            .iter()
            .filter(|p| p.from == p.to)
            .count(),
        by_key: d.rows.as_ref().map(|r| KeyView {
            key: r.key.join(", "),
            added: r.added,
            removed: r.removed,
            changed: r.changed,
            samples: r
                .samples
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }),
        columns: d.columns.iter().map(|c| c.shown()).collect(),
    }
}
