//! A partition's page: its state, its runs and attempts, the last run's checks and profile
//! against the baseline of earlier partitions, and its dead letters.

use super::{Chrome, error_page, job_named, opt, render};
use crate::app::partition_detail::PartitionDetail;
use crate::clock::{shown_duration, shown_time};
use crate::partition::PartitionKey;
use crate::project::Project;
use crate::quality::Profile;
use crate::ui::UiError;
use crate::ui::grid::{self, CellState};
use crate::ui::state::UiState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use std::sync::Arc;

pub struct RunView {
    attempt: i64,
    state: String,
    trigger: String,
    worker: String,
    token: i64,
    started: String,
    duration: String,
    rows: String,
    delta_version: String,
    fingerprint: String,
    run_id: String,
    /// What it used (blank: not measured).
    cost: String,
    error: RunError,
}

/// A run's error in its row: the partition's error is shown once, above, and the rows of
/// the runs that failed with it point there; another error is shown by its first line.
pub enum RunError {
    None,
    AsAbove,
    Other { first_line: String, full: String },
}

pub struct CheckView {
    name: String,
    severity: String,
    passed: bool,
    /// Failing rows (keys, for `unique`); blank for a check that passed (volume and
    /// freshness count every row).
    failing: String,
    detail: String,
    samples: Vec<String>,
}

impl RunView {
    /// Run `r`'s row; `shown`: the error the page shows in its error block.
    fn of(r: &crate::catalog::RunRow, shown: Option<&str>) -> RunView {
        RunView {
            attempt: r.attempt,
            state: r.state.to_string(),
            trigger: r.trigger_kind.to_string(),
            worker: format!("{}:{}", r.host, r.pid),
            token: r.lease_token,
            started: shown_time(Some(r.started_at)),
            duration: shown_duration(Some(r.started_at), r.finished_at),
            rows: opt(r.rows_written),
            delta_version: opt(r.delta_version),
            fingerprint: r.fingerprint.clone(),
            run_id: r.run_id.clone(),
            cost: r
                .cost
                .cost()
                .map(|c| crate::text::cost(&c))
                .unwrap_or_default(),
            error: match r.error.as_deref().map(crate::redact::redact_text) {
                None => RunError::None,
                Some(e) if Some(e.as_str()) == shown => RunError::AsAbove,
                Some(e) => RunError::Other {
                    first_line: crate::text::one_line(&e, 90),
                    full: e,
                },
            },
        }
    }
}

impl CheckView {
    fn of(c: &crate::quality::CheckResult) -> CheckView {
        CheckView {
            name: c.name.clone(),
            severity: c.severity.as_str().to_string(),
            passed: c.passed,
            failing: match c.passed {
                true => String::new(),
                false => c.failing.to_string(),
            },
            detail: c.detail.clone(),
            samples: c.samples.clone(),
        }
    }
}

pub struct ColumnView {
    name: String,
    nulls: String,
    base_nulls: String,
    distinct: String,
    base_distinct: String,
    min: String,
    max: String,
    mean: String,
    base_mean: String,
}

#[derive(Template)]
#[template(path = "partition.html")]
struct PartitionPage {
    chrome: Chrome,
    /// The forms' CSRF token, when actions are on.
    csrf: Option<String>,
    job: String,
    key: String,
    state: CellState,
    table: String,
    version: u32,
    rows: String,
    /// The rows are an earlier run's: the last run failed and changed nothing.
    kept_earlier: bool,
    delta_version: String,
    content_fingerprint: String,
    current_fingerprint: String,
    stale: bool,
    /// Why a complete partition is stale (code, upstream or input, and what changed).
    stale_because: Option<String>,
    /// What the run that wrote the content read: upstream tables, then input files.
    read_tables: Vec<String>,
    read_files: Vec<crate::provenance::FileRead>,
    error: Option<String>,
    runs: Vec<RunView>,
    checks: Vec<CheckView>,
    profile: Vec<ColumnView>,
    profile_rows: u64,
    baseline_rows: String,
    baseline_count: usize,
    letters: Vec<crate::dead_letters::DeadLetter>,
    letters_error: Option<String>,
}

fn profile_views(p: &Profile, d: &PartitionDetail) -> Vec<ColumnView> {
    p.columns
        .iter()
        .map(|(name, c)| {
            let col = |f: fn(&crate::quality::ColumnProfile) -> Option<f64>| {
                crate::text::metric(d.baseline_of(|b| b.columns.get(name).and_then(f)))
            };
            ColumnView {
                name: name.clone(),
                nulls: format!("{:.4}", c.null_fraction),
                base_nulls: col(|c| Some(c.null_fraction)),
                distinct: c.distinct.to_string(),
                base_distinct: col(|c| Some(c.distinct as f64)),
                min: c.min.clone().unwrap_or_else(|| "-".into()),
                max: c.max.clone().unwrap_or_else(|| "-".into()),
                mean: crate::text::metric(c.mean),
                base_mean: col(|c| c.mean),
            }
        })
        .collect()
}

pub async fn partition(
    State(ui): State<Arc<UiState>>,
    Path((job, key)): Path<(String, String)>,
) -> Response {
    let project = ui.project();
    match partition_page(&ui, &project, &job, &key).await {
        Ok(page) => render(&page),
        Err(e) => error_page(&ui, &project, &e),
    }
}

async fn partition_page(
    ui: &UiState,
    project: &Project,
    job: &str,
    key: &str,
) -> Result<PartitionPage, UiError> {
    let job = job_named(project, job)?;
    // Parsed, so only a canonical key reaches the catalog and the dead-letter filter.
    let parsed: PartitionKey = crate::app::partition::parsed(job, key)?;
    let key = parsed.to_string();
    let d = crate::app::partition_detail::detail(project, &ui.catalog, job, parsed).await?;
    let queue = ui.queue();
    let queued = queue.get(&(job.name.to_string(), key.clone()));
    let state = grid::state_at(job, &parsed, d.status.as_ref(), queued, d.stale.as_ref());
    let error = d.error();
    let profile = d.quality.profile.clone().unwrap_or_default();
    let status = d.status.as_ref();
    Ok(PartitionPage {
        chrome: Chrome::of(ui, project),
        csrf: ui.csrf(),
        job: job.name.to_string(),
        key,
        state,
        table: job.table.to_string(),
        version: job.version,
        rows: opt(status.and_then(|s| s.content_rows)),
        kept_earlier: status.is_some_and(|s| s.keeps_earlier_content()),
        delta_version: opt(status.and_then(|s| s.content_delta_version)),
        content_fingerprint: opt(status.and_then(|s| s.content_fingerprint.clone())),
        stale: state == CellState::Stale,
        stale_because: d.stale.as_ref().map(|w| w.to_string()),
        read_tables: d.tables_read(),
        read_files: d.reads.files.clone(),
        current_fingerprint: d.current_fingerprint.clone(),
        runs: d
            .runs
            .iter()
            .rev()
            .map(|r| RunView::of(r, error.as_deref()))
            .collect(),
        error,
        checks: d.quality.checks.iter().map(CheckView::of).collect(),
        profile: d
            .quality
            .profile
            .as_ref()
            .map(|p| profile_views(p, &d))
            .unwrap_or_default(),
        profile_rows: profile.rows,
        baseline_rows: crate::text::metric(d.baseline_of(|b| Some(b.rows as f64))),
        baseline_count: d.baseline.len(),
        letters: d.letters,
        letters_error: d.letters_error,
    })
}
