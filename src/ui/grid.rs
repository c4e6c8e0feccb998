//! The grid: each job's partitions on a time axis the jobs share (`grid_axis`), each drawn
//! in one state. A partition's state comes from the catalog (the same `running`, `complete`
//! and `failed` that `sluice status` prints) and from the job as it is now: `stale` when
//! complete but written by other code than the current fingerprint, `upstream_changed` or
//! `input_changed` when what it read changed since (`provenance`), `missing` when due (from
//! the job's start to the partition its schedule's latest tick ran) and never run,
//! `before_start` when a window reaches before the job's start; a partition not due yet is
//! left blank. Served by the daemon, the grid also draws what its queue holds: `queued`, or
//! `waiting` on upstream partitions or input files.

use super::UiError;
use crate::catalog::{Catalog, PartitionState, PartitionStatus};
use crate::daemon::schedule::Cadence;
use crate::job::Job;
use crate::partition::{Granularity, PartitionKey, TimeKey};
use crate::project::Project;
use crate::provenance::{StaleBecause, StaleKind, Staleness};
use crate::spelling::spelled_enum;
use crate::ui::grid_axis::{Axis, Unit, bound, lines_per_key};
use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
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
}

/// The most partitions of one job a window may hold.
const MAX_RANGE: usize = 200_000;

pub struct Cell {
    pub key: String,
    pub state: CellState,
    pub rows: Option<i64>,
    /// What a waiting partition waits on, or why a stale one is stale.
    pub note: Option<String>,
    /// Drawn faint: not in the state the filter asks for.
    pub dim: bool,
    /// Not complete, and past its job's deadline.
    pub late: bool,
}

impl Cell {
    /// What the square says of itself without hovering: its title and accessible label.
    pub fn label(&self, job: &str) -> String {
        let mut s = format!("{job} {}: {}", self.key, self.state);
        if let Some(r) = self.rows {
            s.push_str(&format!(", {r} rows"));
        }
        if let Some(n) = &self.note {
            s.push_str(&format!(", {n}"));
        }
        if self.late {
            s.push_str(", past its deadline");
        }
        s
    }
}

/// A stretch of one line: a partition spanning `span` columns, or nothing (not due yet,
/// or outside the job's time).
pub struct Slot {
    pub span: usize,
    pub cell: Option<Cell>,
}

/// One line of a job: a key, an hour of the day, both, or the job alone.
pub struct Line {
    pub label: String,
    pub slots: Vec<Slot>,
    /// The next column to fill.
    filled: usize,
}

impl Line {
    fn new(label: String) -> Line {
        Line {
            label,
            slots: Vec::new(),
            filled: 0,
        }
    }

    /// Places `cell` at `column` over `span` columns, the gap before it left empty.
    fn place(&mut self, column: usize, span: usize, cell: Option<Cell>) {
        if column < self.filled {
            return;
        }
        if column > self.filled {
            self.slots.push(Slot {
                span: column - self.filled,
                cell: None,
            });
        }
        self.slots.push(Slot { span, cell });
        self.filled = column + span;
    }

    /// Leaves the columns after the last partition empty.
    fn finish(&mut self, columns: usize) {
        if columns > self.filled {
            self.slots.push(Slot {
                span: columns - self.filled,
                cell: None,
            });
            self.filled = columns;
        }
    }
}

/// One job on the grid: its lines on the shared axis, and its counts.
pub struct JobRow {
    pub job: String,
    pub table: String,
    pub version: u32,
    pub granularity: Granularity,
    pub lines: Vec<Line>,
    /// Partitions in the window in the state asked for (all, without a filter).
    pub matching: usize,
    /// Per state, how many of the job's partitions in the window are in it (those with
    /// none are left out).
    pub counts: Vec<(CellState, usize)>,
}

pub struct Grid {
    pub axis: Axis,
    pub rows: Vec<JobRow>,
    pub running: bool,
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

/// The job's partition times in the window, oldest first.
fn times_in(job: &Job, axis: &Axis) -> Result<Vec<TimeKey>, UiError> {
    let g = job.granularity;
    let Some((start, end)) = axis.bounds().filter(|_| g != Granularity::None) else {
        return Ok(vec![TimeKey::All]);
    };
    let (first, last) = (
        g.key_at(start),
        g.key_at(end - chrono::Duration::seconds(1)),
    );
    let hours = (end - start).num_hours().max(0);
    let per = match g {
        Granularity::Hourly => 1,
        Granularity::Daily => 24,
        _ => 24 * 28,
    };
    let partitions = hours / per * job.keys().len().max(1) as i64;
    if partitions > MAX_RANGE as i64 {
        return Err(UiError::BadRequest(format!(
            "the range holds about {partitions} partitions of `{}`; the grid shows at most {MAX_RANGE} per job: narrow `from` and `to`",
            job.name
        )));
    }
    Ok(g.range(first, last))
}

/// Where partition time `t` of granularity `g` sits: (column, span, line within its key).
fn place_of(axis: &Axis, g: Granularity, t: TimeKey) -> (usize, usize, usize) {
    let columns = axis.columns.len();
    let (Some((s, e)), Some((ws, we))) = (t.bounds(), axis.bounds()) else {
        return (0, columns, 0);
    };
    let first = axis.column_of(s.max(ws));
    let last = axis.column_of(e.min(we) - chrono::Duration::seconds(1));
    let line = match (g, axis.unit) {
        (Granularity::Hourly, Unit::Day) => s.hour() as usize,
        _ => 0,
    };
    (first, last + 1 - first, line)
}

/// The newest partition time any of the jobs has run, else (nothing ran yet) the latest
/// due: where the default window ends, so that it shows the work done, not today.
async fn newest_of(
    jobs: &[&Job],
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Result<NaiveDateTime, UiError> {
    let mut ran: Option<NaiveDateTime> = None;
    for job in jobs {
        let t = catalog
            .newest_partition(job.table.as_str(), i64::from(job.version))
            .await?
            .and_then(|k| job.parse_partition(&k).ok())
            .and_then(|p| p.time.start());
        ran = ran.max(t);
    }
    let due = || jobs.iter().filter_map(|j| latest_due(j, now).start()).max();
    Ok(ran.or_else(due).unwrap_or_else(|| now.naive_utc()))
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
            UiError::NotFound(crate::names::unknown(
                "job",
                name,
                project.jobs.keys().map(|n| n.as_str()),
            ))
        })?],
        None => project
            .graph
            .order
            .iter()
            .filter_map(|n| project.jobs.get(n))
            .collect(),
    };
    let unit = Unit::of(jobs.iter().map(|j| j.granularity));
    let newest = match range {
        (None, None) => newest_of(&jobs, catalog, now).await?,
        _ => now.naive_utc(),
    };
    let axis = Axis::new(unit, range, newest)?;
    let mut grid = Grid {
        rows: Vec::new(),
        running: false,
        axis,
    };
    let mut staleness = Staleness::new(project, catalog);
    let view = View {
        axis: &grid.axis,
        now,
        queue,
        wanted,
    };
    let mut rows = Vec::new();
    for job in jobs {
        rows.push(job_row(job, catalog, &mut staleness, &view).await?);
    }
    grid.running = rows.iter().flat_map(|r| &r.lines).any(|l| {
        l.slots.iter().any(|s| {
            s.cell
                .as_ref()
                .is_some_and(|c| c.state == CellState::Running)
        })
    });
    grid.rows = rows;
    Ok(grid)
}

/// What every job's row is drawn against.
struct View<'a> {
    axis: &'a Axis,
    now: DateTime<Utc>,
    queue: &'a Queue,
    wanted: Option<CellState>,
}

/// One job's lines over the axis: a line per key (per key and hour, for hourly jobs), each
/// partition in its column, those not due yet left blank.
async fn job_row(
    job: &Job,
    catalog: &Catalog,
    staleness: &mut Staleness<'_>,
    view: &View<'_>,
) -> Result<JobRow, UiError> {
    let fingerprint = match catalog.table(job.table.as_str()).await? {
        Some(t) => crate::fingerprint::fingerprint(job, &t.schema),
        // Not migrated yet: nothing of it can be complete by the current code.
        None => String::new(),
    };
    // Only the window's partitions are read: a job's history can be far longer.
    let mut window: Vec<String> = Vec::new();
    for t in times_in(job, view.axis)? {
        window.extend(job.partitions_at(t).iter().map(|k| k.to_string()));
    }
    let statuses = catalog
        .partitions_named(job.table.as_str(), i64::from(job.version), &window)
        .await?;
    let stale = staleness.of_job(job, &fingerprint, &statuses).await?;
    let rows: HashMap<String, PartitionStatus> = statuses
        .into_iter()
        .map(|p| (p.partition_key.clone(), p))
        .collect();
    let due = latest_due(job, view.now);
    let per_key = lines_per_key(job.granularity, view.axis.unit) as usize;
    let mut lines: Vec<Line> = (0..job.keys().len().max(1) * per_key)
        .map(|i| {
            let key = job.keys().get(i / per_key).map(|k| k.to_string());
            let hour = (per_key > 1).then(|| format!("{:02}h", i % per_key));
            Line::new(
                [key, hour]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        })
        .collect();
    let mut counts: HashMap<CellState, usize> = HashMap::new();
    let mut matching = 0;
    let queues_job = view.queue.keys().any(|(j, _)| j == job.name.as_str());
    for t in times_in(job, view.axis)? {
        let (column, span, sub) = place_of(view.axis, job.granularity, t);
        for (k, key) in job.partitions_at(t).into_iter().enumerate() {
            let text = key.to_string();
            let row = rows.get(&text);
            let Some(line) = lines.get_mut(k * per_key + sub) else {
                continue;
            };
            if row.is_none() && t > due {
                line.place(column, span, None);
                continue;
            }
            // No daemon beside the pages, or none of its queue this job's: no lookup
            // (and no key made for it) per cell.
            let queued = match queues_job {
                true => view.queue.get(&(job.name.to_string(), text.clone())),
                false => None,
            };
            let why = stale.get(&text);
            let state = state_at(job, &key, row, queued, why);
            *counts.entry(state).or_default() += 1;
            let dim = view.wanted.is_some_and(|w| w != state);
            matching += usize::from(!dim);
            let waits = queued
                .filter(|on| !on.is_empty())
                .map(|on| format!("waiting on {}", on.join("; ")));
            let done = matches!(state, CellState::Complete | CellState::BeforeStart);
            let cell = Cell {
                key: text,
                state,
                rows: row.and_then(|r| r.content_rows),
                note: waits.or_else(|| why.map(|w| w.to_string())),
                dim,
                late: !done && job.is_late(t, view.now),
            };
            line.place(column, span, Some(cell));
        }
    }
    for l in &mut lines {
        l.finish(view.axis.columns.len());
    }
    Ok(JobRow {
        job: job.name.to_string(),
        table: job.table.to_string(),
        version: job.version,
        granularity: job.granularity,
        lines,
        matching,
        counts: CellState::ALL
            .iter()
            .filter_map(|s| Some((*s, counts.get(s).copied().filter(|n| *n > 0)?)))
            .collect(),
    })
}
