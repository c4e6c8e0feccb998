//! The grid: each job's partitions, newest first, each drawn in one state. A partition's
//! state comes from the catalog (the same `running`, `complete` and `failed` that `sluice
//! status` prints) and from the job as it is now: `stale` when complete but written by other
//! code than the current fingerprint, `upstream_changed` or `input_changed` when what it read
//! changed since (`provenance`), `missing` when due (from the job's start to the
//! partition its schedule's latest tick ran) and never run, `before_start` when a range
//! asked for reaches before the job's start. Served by the daemon, the grid also draws what
//! its queue holds: `queued`, or `waiting` on upstream partitions or input files.

use super::UiError;
use crate::catalog::{Catalog, PartitionState, PartitionStatus};
use crate::daemon::schedule::Cadence;
use crate::job::Job;
use crate::partition::{Granularity, PartitionKey, TimeKey};
use crate::project::Project;
use crate::provenance::{StaleBecause, StaleKind, Staleness};
use crate::spelling::spelled_enum;
use chrono::{DateTime, NaiveDateTime, Utc};
use std::collections::{BTreeMap, HashMap};

/// The daemon's queue: (job, partition) -> what it waits on (nothing: ready).
pub type Queue = BTreeMap<(String, String), Vec<String>>;

spelled_enum! {
    /// How a partition is drawn in the grid.
    pub enum CellState {
        Complete => "complete",
        Running => "running",
        /// Queued by the daemon serving the page, ready to start.
        Queued => "queued",
        /// Queued by the daemon, waiting for upstream partitions or input files.
        Waiting => "waiting",
        Failed => "failed",
        /// Complete, by code other than the job's current fingerprint (`backfill --stale`).
        Stale => "stale",
        /// Complete, but an upstream partition it read was rewritten since.
        UpstreamChanged => "upstream_changed",
        /// Complete, but an input file it read changed or went, or a new one matches.
        InputChanged => "input_changed",
        /// Due and never run.
        Missing => "missing",
        BeforeStart => "before_start",
    }
}

impl CellState {
    /// What the legend says of it.
    pub fn meaning(self) -> &'static str {
        match self {
            CellState::Complete => "complete: written by the current code",
            CellState::Running => {
                "running: a run holds its lease (or died and its lease has not lapsed)"
            }
            CellState::Queued => "queued: due, the daemon starts it when a slot is free",
            CellState::Waiting => "waiting: queued, for upstream partitions or input files",
            CellState::Failed => {
                "failed: its last run failed; earlier content, if any, is still there"
            }
            CellState::Stale => {
                "stale: complete, but written by other code than the job's current spec, SQL and schema"
            }
            CellState::UpstreamChanged => {
                "upstream changed: complete, but an upstream partition it read was rewritten since"
            }
            CellState::InputChanged => {
                "input changed: complete, but an input file it read changed or went, or a new one matches"
            }
            CellState::Missing => "missing: due, never run",
            CellState::BeforeStart => "before the job's start",
        }
    }

    /// A partition's row and, when complete, whether it is stale (`provenance`'s rule).
    fn of(p: Option<&PartitionStatus>, stale: Option<&StaleBecause>) -> CellState {
        match (p.map(|p| p.state), stale.map(|s| s.kind)) {
            (None, _) => CellState::Missing,
            (Some(PartitionState::Running), _) => CellState::Running,
            (Some(PartitionState::Failed), _) => CellState::Failed,
            (Some(PartitionState::Complete), None) => CellState::Complete,
            (Some(PartitionState::Complete), Some(StaleKind::Code)) => CellState::Stale,
            (Some(PartitionState::Complete), Some(StaleKind::Upstream)) => {
                CellState::UpstreamChanged
            }
            (Some(PartitionState::Complete), Some(StaleKind::Input)) => CellState::InputChanged,
        }
    }
}

/// The grid's filters, as the page's form sends them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct GridQuery {
    pub job: Option<String>,
    pub state: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub page: Option<usize>,
    pub per_page: Option<usize>,
}

const DEFAULT_PER_PAGE: usize = 400;
const MAX_PER_PAGE: usize = 20_000;
/// The most partitions of one job a range may hold (22 years of hours).
const MAX_RANGE: usize = 200_000;

pub struct Cell {
    pub key: String,
    pub state: CellState,
    pub rows: Option<i64>,
    /// What a waiting partition waits on, or why a stale one is stale.
    pub note: Option<String>,
}

/// One job's row of cells: the page asked for, newest first.
pub struct JobRow {
    pub job: String,
    pub table: String,
    pub version: u32,
    pub granularity: Granularity,
    pub cells: Vec<Cell>,
    /// Cells matching the filters, over all pages.
    pub matching: usize,
    /// Per state, how many of the job's partitions in the range are in it.
    pub counts: Vec<(CellState, usize)>,
}

pub struct Grid {
    pub rows: Vec<JobRow>,
    pub page: usize,
    pub per_page: usize,
    /// Whether a later page has cells for some job.
    pub more: bool,
    pub running: bool,
}

/// A range bound the user typed, as the wall-clock start of the partition it names (any
/// granularity): `from` at its start, `to` at its end.
fn bound(name: &str, text: Option<&str>, end: bool) -> Result<Option<NaiveDateTime>, UiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let key = [Granularity::Hourly, Granularity::Daily, Granularity::Monthly]
        .into_iter()
        .find_map(|g| g.parse_time(text).ok())
        .ok_or_else(|| {
            UiError::BadRequest(format!(
                "{name} = `{}` is not a partition: use a day (2024-01-05), a month (2024-01) or an hour (2024-01-05T03)",
                text.escape_debug()
            ))
        })?;
    Ok(key.bounds().map(|(s, e)| if end { e } else { s }))
}

/// The partition the job's latest due tick ran (or, unscheduled, the one before now's).
fn latest_due(job: &Job, now: DateTime<Utc>) -> TimeKey {
    if let Some(Ok(c)) = Cadence::of(job)
        && let Some(t) = c.latest_tick(now)
    {
        return c.partition_for(t);
    }
    let local = now.with_timezone(&job.partition_time_zone).naive_local();
    let k = job.granularity.key_at(local);
    k.prev().unwrap_or(k)
}

/// The job's partitions the grid shows, oldest first: due ones from its start (or its
/// first run) on, those the catalog has beyond them, and, when the range reaches before the
/// start, those too.
fn keys_of(
    job: &Job,
    rows: &HashMap<String, PartitionStatus>,
    now: DateTime<Utc>,
    (from, to): (Option<NaiveDateTime>, Option<NaiveDateTime>),
) -> Result<Vec<PartitionKey>, UiError> {
    let g = job.granularity;
    if g == Granularity::None {
        return Ok(job.partitions_at(TimeKey::All));
    }
    let known: Vec<TimeKey> = rows
        .keys()
        .filter_map(|k| job.parse_partition(k).ok())
        .map(|p| p.time)
        .collect();
    let latest = known
        .iter()
        .copied()
        .chain([latest_due(job, now)])
        .max()
        .unwrap_or(TimeKey::All);
    let first = job
        .start
        .or_else(|| known.iter().copied().min())
        .unwrap_or(latest);
    // A range that starts before the job's start shows the partitions before it too.
    let first = from.map(|f| g.key_at(f)).unwrap_or(first);
    let last = match to {
        Some(t) => g.key_at(t - chrono::Duration::seconds(1)).min(latest),
        None => latest,
    };
    let hours = match (first.start(), last.start()) {
        (Some(a), Some(b)) => (b - a).num_hours().max(0),
        _ => 0,
    };
    let per_key = match g {
        Granularity::Hourly => 1,
        Granularity::Daily => 24,
        _ => 24 * 28,
    };
    let partitions = hours / per_key * job.keys().len().max(1) as i64;
    if partitions > MAX_RANGE as i64 {
        return Err(UiError::BadRequest(format!(
            "the range holds about {partitions} partitions of `{}`; the grid shows at most {MAX_RANGE} per job: narrow `from` and `to`",
            job.name
        )));
    }
    Ok(g.range(first, last)
        .into_iter()
        .filter(|k| match k.bounds() {
            Some((s, e)) => from.is_none_or(|f| e > f) && to.is_none_or(|t| s < t),
            None => true,
        })
        .flat_map(|t| job.partitions_at(t))
        .collect())
}

/// The state filter, parsed.
fn wanted_state(text: Option<&str>) -> Result<Option<CellState>, UiError> {
    let Some(s) = text.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    s.parse().map(Some).map_err(|_| {
        let known: Vec<&str> = CellState::ALL.iter().map(|c| c.as_str()).collect();
        UiError::BadRequest(format!(
            "state = `{}` is not one of {}",
            s.escape_debug(),
            known.join(", ")
        ))
    })
}

/// How partition `key` of `job` is drawn: its catalog row (if any), what the daemon's queue
/// says of it (if served by one), the job's start and why it is stale (if it is).
pub(super) fn state_at(
    job: &Job,
    key: &PartitionKey,
    row: Option<&PartitionStatus>,
    queued: Option<&Vec<String>>,
    stale: Option<&StaleBecause>,
) -> CellState {
    match (job.start, queued) {
        (Some(s), _) if key.time < s && row.is_none() => CellState::BeforeStart,
        (_, Some(_)) if row.is_some_and(|r| r.state == PartitionState::Running) => {
            CellState::Running
        }
        (_, Some(on)) if on.is_empty() => CellState::Queued,
        (_, Some(_)) => CellState::Waiting,
        _ => CellState::of(row, stale),
    }
}

pub async fn build(
    project: &Project,
    catalog: &Catalog,
    now: DateTime<Utc>,
    q: &GridQuery,
    queue: &Queue,
) -> Result<Grid, UiError> {
    let range = (
        bound("from", q.from.as_deref(), false)?,
        bound("to", q.to.as_deref(), true)?,
    );
    let wanted = wanted_state(q.state.as_deref())?;
    let jobs: Vec<&Job> = match q.job.as_deref().filter(|j| !j.is_empty()) {
        Some(name) => vec![project.jobs.get(name).ok_or_else(|| {
            UiError::NotFound(format!("no job `{}` in this project", name.escape_debug()))
        })?],
        None => project
            .graph
            .order
            .iter()
            .filter_map(|n| project.jobs.get(n))
            .collect(),
    };
    let per_page = q
        .per_page
        .unwrap_or(DEFAULT_PER_PAGE)
        .clamp(1, MAX_PER_PAGE);
    let page = q.page.unwrap_or(0);
    let mut grid = Grid {
        rows: Vec::new(),
        page,
        per_page,
        more: false,
        running: false,
    };
    let mut staleness = Staleness::new(project, catalog);
    for job in jobs {
        let fingerprint = match catalog.table(job.table.as_str()).await? {
            Some(t) => crate::fingerprint::fingerprint(job, &t.schema),
            // Not migrated yet: nothing of it can be complete by the current code.
            None => String::new(),
        };
        let statuses = catalog
            .partitions_of(job.table.as_str(), i64::from(job.version))
            .await?;
        let stale = staleness.of_job(job, &fingerprint, &statuses).await?;
        let rows: HashMap<String, PartitionStatus> = statuses
            .into_iter()
            .map(|p| (p.partition_key.clone(), p))
            .collect();
        let mut counts: HashMap<CellState, usize> = HashMap::new();
        let mut matching = Vec::new();
        for key in keys_of(job, &rows, now, range)?.into_iter().rev() {
            let text = key.to_string();
            let row = rows.get(&text);
            let queued = queue.get(&(job.name.to_string(), text.clone()));
            let why = stale.get(&text);
            let state = state_at(job, &key, row, queued, why);
            *counts.entry(state).or_default() += 1;
            if wanted.is_none_or(|w| w == state) {
                let waits = queued
                    .filter(|on| !on.is_empty())
                    .map(|on| format!("waiting on {}", on.join("; ")));
                matching.push(Cell {
                    key: text,
                    state,
                    rows: row.and_then(|r| r.content_rows),
                    note: waits.or_else(|| why.map(|w| w.to_string())),
                });
            }
        }
        let total = matching.len();
        // Saturating: the page number comes from the address.
        let skip = page.saturating_mul(per_page);
        grid.more |= total > skip.saturating_add(per_page);
        let cells: Vec<Cell> = matching.into_iter().skip(skip).take(per_page).collect();
        grid.running |= cells.iter().any(|c| c.state == CellState::Running);
        grid.rows.push(JobRow {
            job: job.name.to_string(),
            table: job.table.to_string(),
            version: job.version,
            granularity: job.granularity,
            cells,
            matching: total,
            counts: CellState::ALL
                .iter()
                .map(|s| (*s, counts.get(s).copied().unwrap_or(0)))
                .collect(),
        });
    }
    Ok(grid)
}
