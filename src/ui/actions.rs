//! What the pages can do when the server was started with `--allow-actions`: run a
//! partition again, backfill a range, promote a version, roll back. Each is a POST that
//! needs the token (the guard checks it: 401) and the page's CSRF token (checked here:
//! 403), and each calls the application layer its CLI command calls (`app`), with the same checks and
//! the same leases: `Runner::run` (`sluice run`), `backfill::plan` and
//! `backfill::execute` (`sluice backfill`), `app::flip`
//! (`sluice promote`, `sluice rollback`). Runs and backfills go on in the background; the
//! answer sends the browser to the page that shows them.

use super::UiError;
use super::pages::{error_page, job_named};
use super::state::{Actions, UiState};
use crate::backfill;
use crate::run::{RunRequest, Trigger};
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::Arc;
use tracing::{info, warn};

/// Every action's form carries the page's CSRF token.
#[derive(serde::Deserialize)]
pub struct Rerun {
    #[serde(default)]
    csrf: String,
}

#[derive(serde::Deserialize)]
pub struct BackfillForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    job: String,
    from: String,
    to: String,
    /// `missing` (missing and failed, the CLI's default), `failed`, `stale` or `force`.
    #[serde(default)]
    selection: String,
}

#[derive(serde::Deserialize)]
pub struct FlipForm {
    #[serde(default)]
    csrf: String,
    /// Promote to this version; none: roll back.
    version: Option<i64>,
}

/// The actions, or why the request may not act: 404 when the server does not allow
/// actions, 403 when the CSRF token is not this session's.
fn allowed<'a>(ui: &'a UiState, csrf: &str) -> Result<&'a Actions, (StatusCode, &'static str)> {
    let Some(actions) = &ui.actions else {
        return Err((
            StatusCode::NOT_FOUND,
            "actions are off: start with --allow-actions",
        ));
    };
    if !ui.access.is_csrf(csrf) {
        return Err((
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or not this server's: reload the page and try again",
        ));
    }
    Ok(actions)
}

pub async fn rerun(
    State(ui): State<Arc<UiState>>,
    Path((job, key)): Path<(String, String)>,
    Form(f): Form<Rerun>,
) -> Response {
    let actions = match allowed(&ui, &f.csrf) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let project = ui.project();
    let declared = job_named(&project, &job)
        .and_then(|_| crate::app::partition::declared(&project, &job, &key).map_err(UiError::from));
    let (job, key) = match declared {
        Ok(found) => found,
        Err(e) => return error_page(&ui, &project, &e),
    };
    let runner = actions.runner.clone();
    let page = format!("/jobs/{}/partitions/{key}", job.name);
    info!(job = %job.name, partition = %key, "run asked from the web view");
    tokio::spawn(async move {
        let report = runner.run(RunRequest::new(&job, key, Trigger::Run)).await;
        info!(job = %report.job, partition = %report.partition, state = %report.state, "run from the web view ended");
    });
    Redirect::to(&page).into_response()
}

pub async fn backfill(State(ui): State<Arc<UiState>>, Form(f): Form<BackfillForm>) -> Response {
    let actions = match allowed(&ui, &f.csrf) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let project = ui.project();
    let selection = match crate::app::backfill::selection_named(&f.selection) {
        Ok(s) => s,
        Err(e) => return error_page(&ui, &project, &UiError::BadRequest(e.to_string())),
    };
    let job = (!f.job.is_empty()).then(|| f.job.clone());
    let request = crate::app::backfill::range(job, &f.from, &f.to, selection);
    let plan = match backfill::plan(&project, &ui.catalog, &request).await {
        Ok(p) => p,
        Err(e) => return error_page(&ui, &project, &UiError::BadRequest(e.to_string())),
    };
    info!(partitions = plan.items.len(), from = %request.from, to = %request.to, "backfill asked from the web view");
    let (runner, catalog, clock) = (actions.runner.clone(), ui.catalog.clone(), ui.clock.clone());
    tokio::spawn(async move {
        let opts = backfill::Options {
            concurrency: 2,
            fail_fast: false,
        };
        let summary = backfill::execute(&plan, runner, &catalog, &clock, &opts, &Quiet).await;
        info!(
            succeeded = summary.succeeded,
            failed = summary.failed,
            "backfill from the web view ended"
        );
    });
    let mut grid = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("job", &f.job), ("from", &f.from), ("to", &f.to)] {
        if !v.is_empty() {
            grid.append_pair(k, v.trim());
        }
    }
    Redirect::to(&format!("/?{}", grid.finish())).into_response()
}

/// A backfill from the pages reports through the log only.
struct Quiet;

impl backfill::Progress for Quiet {
    fn item_done(&self, _: &backfill::PlanItem, _: &backfill::Outcome, _: usize, _: usize) {}
}

pub async fn flip(
    State(ui): State<Arc<UiState>>,
    Path(table): Path<String>,
    Form(f): Form<FlipForm>,
) -> Response {
    if let Err(r) = allowed(&ui, &f.csrf) {
        return r.into_response();
    }
    let project = ui.project();
    match flip_table(&ui, &table, f.version).await {
        Ok(()) => Redirect::to(&format!("/tables/{table}")).into_response(),
        Err(e) => error_page(&ui, &project, &e),
    }
}

async fn flip_table(ui: &UiState, table: &str, version: Option<i64>) -> Result<(), UiError> {
    use crate::app::flip::{self, FlipKind};
    let kind = match version {
        Some(v) => FlipKind::Promote {
            version: Some(v),
            expect: None,
        },
        None => FlipKind::Rollback,
    };
    let verb = kind.verb();
    let flips = flip::plan(&ui.catalog, &[table.to_string()], kind)
        .await
        .map_err(|e| UiError::BadRequest(e.to_string()))?;
    let message = format!("{verb} from the web view");
    let refusals = flip::flip(&ui.catalog, &ui.clock, &flips, false, &message, false).await?;
    if !refusals.is_empty() {
        let why: Vec<String> = refusals.iter().map(|r| r.for_the_web()).collect();
        warn!(
            table,
            "{verb} from the web view refused: {}",
            why.join("; ")
        );
        return Err(UiError::Conflict(format!(
            "nothing changed: {}",
            why.join("; ")
        )));
    }
    info!(table, "{verb} from the web view");
    Ok(())
}
