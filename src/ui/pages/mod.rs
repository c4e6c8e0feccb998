//! The pages: each handler reads the catalog (and the project as it is now) into a view of
//! plain, already formatted values, and renders its template. Every value reaches the page
//! through the template's HTML escaping; nothing is marked safe.

mod diff;
mod job;
mod partition;
mod table;

pub use diff::diff;
pub use job::job;
pub use partition::partition;
pub use table::table;

use super::UiError;
use super::grid::{self, CellState, GridQuery};
use super::state::UiState;
use crate::job::Job;
use crate::project::Project;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;

/// What every page shows around its content.
pub(super) struct Chrome {
    pub project_name: String,
    /// The environment whose aliases the pages read (`ui --env NAME`); none: production.
    pub env: Option<String>,
    pub tables: Vec<String>,
}

impl Chrome {
    fn of(ui: &UiState, project: &Project) -> Chrome {
        Chrome {
            project_name: project.settings.project_name(),
            env: ui.catalog.env().map(str::to_string),
            tables: project.graph.writer.keys().map(|t| t.to_string()).collect(),
        }
    }
}

/// Renders a page, or the error page when the template fails (it should not: templates are
/// checked when sluice is built).
pub(super) fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the page: {e}"),
        )
            .into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: String,
    message: String,
}

impl UiError {
    fn status(&self) -> StatusCode {
        match self {
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error as a page, with the project's chrome.
pub fn error_page(ui: &UiState, project: &Project, e: &UiError) -> Response {
    let status = e.status();
    let page = ErrorPage {
        chrome: Chrome::of(ui, project),
        status: status.to_string(),
        message: crate::redact::redact_text(&e.to_string()),
    };
    (status, render(&page)).into_response()
}

pub struct LegendEntry {
    pub name: &'static str,
    pub meaning: &'static str,
}

#[derive(Template)]
#[template(path = "grid.html")]
struct GridPage {
    chrome: Chrome,
    /// The forms' CSRF token, when actions are on.
    csrf: Option<String>,
    job_names: Vec<String>,
    filter_job: String,
    filter_state: String,
    legend: Vec<LegendEntry>,
    axis: super::grid_axis::Axis,
    rows: Vec<grid::JobRow>,
    running: bool,
    /// The address of the window before and after this one, the filters kept.
    earlier: Option<String>,
    later: Option<String>,
}

impl GridPage {
    /// The grid's address with these filters: what the counts and the arrows link to.
    fn address(&self, job: &str, state: &str, (from, to): (&str, &str)) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("job", job), ("state", state), ("from", from), ("to", to)] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        format!("/?{}", s.finish())
    }

    /// Where a job's count of `state` links: that job, that state, this window.
    fn count_link(&self, job: &str, state: &CellState) -> String {
        self.address(job, state.as_str(), (&self.axis.from, &self.axis.to))
    }
}

pub async fn grid(State(ui): State<Arc<UiState>>, Query(q): Query<GridQuery>) -> Response {
    let started = Instant::now();
    let project = ui.project();
    let g = match grid::build(&project, &ui.catalog, ui.clock.now(), &q, &ui.queue()).await {
        Ok(g) => g,
        Err(e) => return error_page(&ui, &project, &e),
    };
    let built = started.elapsed();
    let mut page = GridPage {
        chrome: Chrome::of(&ui, &project),
        csrf: ui.csrf(),
        job_names: project.graph.order.iter().map(|n| n.to_string()).collect(),
        filter_job: q.job.clone().unwrap_or_default(),
        filter_state: q.state.clone().unwrap_or_default(),
        legend: CellState::ALL
            .iter()
            .map(|s| LegendEntry {
                name: s.as_str(),
                meaning: s.meaning(),
            })
            .collect(),
        running: g.running,
        axis: g.axis,
        rows: g.rows,
        earlier: None,
        later: None,
    };
    let (job, state) = (page.filter_job.clone(), page.filter_state.clone());
    let window =
        |w: &Option<(String, String)>| w.as_ref().map(|(f, t)| page.address(&job, &state, (f, t)));
    (page.earlier, page.later) = (window(&page.axis.earlier), window(&page.axis.later));
    let mut response = render(&page);
    // How long the server took, for the browser's developer tools and for tests.
    let timing = format!("render;dur={:.1}", started.elapsed().as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&timing) {
        response.headers_mut().insert("server-timing", v);
    }
    // Of which the cells (the catalog's rows and each partition's state), apart from
    // drawing them: a header of its own, so that `render` stays the whole.
    let cells = format!("cells;dur={:.1}", built.as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&cells) {
        response.headers_mut().append("server-timing", v);
    }
    response
}

/// A job of the project by the name in the address.
pub(super) fn job_named<'a>(project: &'a Project, name: &str) -> Result<&'a Job, UiError> {
    project.jobs.get(name).ok_or_else(|| {
        UiError::NotFound(format!("no job `{}` in this project", name.escape_debug()))
    })
}

pub(super) fn current_fingerprint(
    job: &Job,
    schema: Option<&crate::schema::TableSchema>,
) -> String {
    schema
        .map(|s| crate::fingerprint::fingerprint(job, s))
        .unwrap_or_else(|| "-".into())
}

/// A value for a table cell; `-` for none.
pub(super) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}
