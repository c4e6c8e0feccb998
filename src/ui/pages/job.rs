//! A job's page: its spec and SQL as written, its schedule with the next ticks in its own
//! zone, the jobs it reads from and that read from it, and its runs over time.

use super::{Chrome, current_fingerprint, error_page, job_named, render};
use crate::daemon::schedule::Cadence;
use crate::project::Project;
use crate::ui::UiError;
use crate::ui::chart;
use crate::ui::state::UiState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use std::sync::Arc;

/// How many coming ticks the page lists.
const NEXT_TICKS: usize = 5;

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    chrome: Chrome,
    job: String,
    description: Option<String>,
    table: String,
    version: u32,
    upstream: Vec<String>,
    downstream: Vec<String>,
    granularity: String,
    partition_zone: String,
    start: Option<String>,
    cron: Option<String>,
    schedule_zone: String,
    /// Each tick in the schedule's zone, with the partition it runs.
    next_ticks: Vec<(String, String)>,
    fingerprint: String,
    spec_file: String,
    spec_text: String,
    sql_file: String,
    sql: String,
    /// Duration and rows per partition, the latest batch of runs, CPU time per day.
    charts: Vec<crate::ui::chart::Chart>,
}

pub async fn job(State(ui): State<Arc<UiState>>, Path(name): Path<String>) -> Response {
    let project = ui.project();
    match job_page(&ui, &project, &name).await {
        Ok(page) => render(&page),
        Err(e) => error_page(&ui, &project, &e),
    }
}

async fn job_page(ui: &UiState, project: &Project, name: &str) -> Result<JobPage, UiError> {
    let job = job_named(project, name)?;
    let schema = ui
        .catalog
        .table(job.table.as_str())
        .await?
        .map(|t| t.schema);
    let mut next_ticks = Vec::new();
    if let Some(Ok(c)) = Cadence::of(job) {
        let mut t = ui.clock.now();
        while next_ticks.len() < NEXT_TICKS {
            let Some(n) = c.next_tick_after(t) else { break };
            let local = n.with_timezone(&c.schedule.time_zone);
            next_ticks.push((
                local.format("%Y-%m-%d %H:%M %Z").to_string(),
                c.partition_for(n).to_string(),
            ));
            t = n;
        }
    }
    let partitions = ui
        .catalog
        .partitions_of(job.table.as_str(), i64::from(job.version))
        .await?;
    let mut charts = chart::last_runs(job.name.as_str(), &partitions);
    let runs = ui
        .catalog
        .recent_runs_of_job(job.name.as_str(), chart::GANTT_RUNS as i64)
        .await?;
    charts.extend(chart::gantt(job.name.as_str(), &runs, ui.clock.now_ms()));
    if let Some(newest) = runs.first() {
        let since = chart::cost_window_start(newest.started_at);
        let days = ui.catalog.cost_per_day(job.name.as_str(), since).await?;
        charts.extend(chart::cost_per_day(job.name.as_str(), &days));
    }
    let root = &project.settings.root;
    Ok(JobPage {
        charts,
        chrome: Chrome::of(ui, project),
        job: job.name.to_string(),
        description: job.description.clone(),
        table: job.table.to_string(),
        version: job.version,
        upstream: project
            .graph
            .upstream
            .get(&job.name)
            .map(|u| u.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default(),
        downstream: project
            .graph
            .upstream
            .iter()
            .filter(|(_, ups)| ups.contains(&job.name))
            .map(|(d, _)| d.to_string())
            .collect(),
        granularity: job.granularity.to_string(),
        partition_zone: job.partition_time_zone.to_string(),
        start: job.start.map(|s| s.to_string()),
        cron: job.schedule.as_ref().map(|s| s.cron.clone()),
        schedule_zone: job
            .schedule
            .as_ref()
            .map(|s| s.time_zone.to_string())
            .unwrap_or_default(),
        next_ticks,
        fingerprint: current_fingerprint(job, schema.as_ref()),
        spec_file: job.spec_file(root),
        spec_text: job.spec_text.clone(),
        sql_file: job
            .sql_path
            .strip_prefix(root)
            .unwrap_or(&job.sql_path)
            .display()
            .to_string(),
        sql: job.sql.clone(),
    })
}
