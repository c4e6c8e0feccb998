//! A partition's page: its state, its runs and attempts, the last run's checks and profile
//! against the baseline of earlier partitions, and its dead letters.

use super::{Chrome, current_fingerprint, error_page, job_named, opt, render};
use crate::catalog::PartitionState;
use crate::clock::{shown_duration, shown_time};
use crate::partition::PartitionKey;
use crate::project::Project;
use crate::provenance::{Reads, Staleness};
use crate::quality::{Profile, Quality, median, profiles_from_json};
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
    error: String,
}

pub struct CheckView {
    name: String,
    severity: String,
    passed: bool,
    failing: u64,
    detail: String,
    samples: Vec<String>,
}

impl RunView {
    fn of(r: &crate::catalog::RunRow) -> RunView {
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
            error: r
                .error
                .as_deref()
                .map(crate::redact::redact_text)
                .unwrap_or_default(),
        }
    }
}

impl CheckView {
    fn of(c: &crate::quality::CheckResult) -> CheckView {
        CheckView {
            name: c.name.clone(),
            severity: format!("{:?}", c.severity).to_lowercase(),
            passed: c.passed,
            failing: c.failing,
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

fn num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.4}"),
    }
}

/// The median of a metric over the baseline's profiles, when any has it.
fn baseline_of(base: &[Profile], metric: impl Fn(&Profile) -> Option<f64>) -> Option<f64> {
    let mut v: Vec<f64> = base.iter().filter_map(metric).collect();
    (!v.is_empty()).then(|| median(&mut v))
}

/// How many earlier partitions the profile is compared with.
const BASELINE_PARTITIONS: u32 = 7;

fn profile_views(p: &Profile, base: &[Profile]) -> Vec<ColumnView> {
    p.columns
        .iter()
        .map(|(name, c)| {
            let col = |f: fn(&crate::quality::ColumnProfile) -> Option<f64>| {
                num(baseline_of(base, |b| b.columns.get(name).and_then(f)))
            };
            ColumnView {
                name: name.clone(),
                nulls: format!("{:.4}", c.null_fraction),
                base_nulls: col(|c| Some(c.null_fraction)),
                distinct: c.distinct.to_string(),
                base_distinct: col(|c| Some(c.distinct as f64)),
                min: c.min.clone().unwrap_or_else(|| "-".into()),
                max: c.max.clone().unwrap_or_else(|| "-".into()),
                mean: num(c.mean),
                base_mean: col(|c| c.mean),
            }
        })
        .collect()
}

/// The upstream tables a run read, one line each: version, partitions and their data
/// versions.
fn tables_read(reads: &Reads) -> Vec<String> {
    reads
        .upstream
        .iter()
        .map(|t| {
            let which = match &t.partitions {
                Some(p) => {
                    let shown: Vec<String> = p
                        .iter()
                        .map(|(k, v)| format!("{k} (data version {v})"))
                        .collect();
                    crate::text::shorten(&shown, 8)
                }
                None => format!(
                    "every partition (data version {})",
                    t.whole.as_deref().unwrap_or("-")
                ),
            };
            format!("{} v{}: {which}", t.table, t.version)
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
        Err(e) => error_page(&project, &e),
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
    let (table, version) = (job.table.as_str(), i64::from(job.version));
    let schema = ui.catalog.table(table).await?.map(|t| t.schema);
    let current = current_fingerprint(job, schema.as_ref());
    let status = ui.catalog.partition_status(table, version, &key).await?;
    let queue = ui.queue();
    let queued = queue.get(&(job.name.to_string(), key.clone()));
    let reads = match status.as_ref().and_then(|s| s.content_run_id.as_deref()) {
        Some(run) => Reads::from_json(ui.catalog.run_reads(run).await?.as_deref()),
        None => None,
    };
    let stale_because = match &status {
        Some(s) => {
            Staleness::new(project, &ui.catalog)
                .of(job, &current, s, reads.as_ref())
                .await?
        }
        None => None,
    };
    let state = grid::state_at(
        job,
        &parsed,
        status.as_ref(),
        queued,
        stale_because.as_ref(),
    );
    let reads = reads.unwrap_or_default();
    let runs = ui.catalog.runs_of_partition(table, version, &key).await?;
    let quality: Quality = match runs.last() {
        Some(r) => ui
            .catalog
            .run_quality(&r.run_id)
            .await?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
        None => Quality::default(),
    };
    let base = profiles_from_json(
        &ui.catalog
            .quality_before(table, version, &parsed, BASELINE_PARTITIONS)
            .await?,
    );
    let (letters, letters_error) = {
        let url = crate::dead_letters::table_url(&project.settings.warehouse, &job.name);
        match crate::dead_letters::list(&url, Some(&key)).await {
            Ok(l) => (l, None),
            Err(e) => (Vec::new(), Some(crate::redact::redact_text(&e.to_string()))),
        }
    };
    let profile = quality.profile.clone().unwrap_or_default();
    Ok(PartitionPage {
        chrome: Chrome::of(project),
        csrf: ui.csrf(),
        job: job.name.to_string(),
        key,
        state,
        table: table.to_string(),
        version: job.version,
        rows: opt(status.as_ref().and_then(|s| s.content_rows)),
        delta_version: opt(status.as_ref().and_then(|s| s.content_delta_version)),
        content_fingerprint: opt(status.as_ref().and_then(|s| s.content_fingerprint.clone())),
        stale: state == CellState::Stale,
        stale_because: stale_because.map(|w| w.to_string()),
        read_tables: tables_read(&reads),
        read_files: reads.files,
        current_fingerprint: current,
        error: status
            .as_ref()
            .filter(|s| s.state != PartitionState::Complete)
            .and_then(|s| s.error.clone())
            .map(|e| crate::redact::redact_text(&e)),
        runs: runs.iter().rev().map(RunView::of).collect(),
        checks: quality.checks.iter().map(CheckView::of).collect(),
        profile: quality
            .profile
            .as_ref()
            .map(|p| profile_views(p, &base))
            .unwrap_or_default(),
        profile_rows: profile.rows,
        baseline_rows: num(baseline_of(&base, |b| Some(b.rows as f64))),
        baseline_count: base.len(),
        letters,
        letters_error,
    })
}
