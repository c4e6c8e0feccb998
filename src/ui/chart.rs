//! The job page's charts, drawn on the server as SVG (the pages work offline and run no
//! script for them): each partition's last run as bars of duration and of rows, and the
//! latest batch of runs (a backfill, a catch-up) as a Gantt chart.

use crate::catalog::{PartitionStatus, RunRow, RunState};
use crate::clock::shown_duration;

/// How many partitions the bar charts show, newest last.
pub const BAR_PARTITIONS: usize = 62;
/// How many runs the Gantt chart shows at most.
pub const GANTT_RUNS: usize = 120;
/// Runs further apart than this (ms) are of different batches.
const BATCH_GAP_MS: i64 = 60_000;

const WIDTH: f64 = 720.0;
const BAR_HEIGHT: f64 = 70.0;
const GANTT_ROW: f64 = 6.0;

/// One rectangle, in the chart's own units (its `viewBox`).
pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    /// A state class: `complete`, `failed` or `running`.
    pub state: &'static str,
    pub title: String,
    pub href: String,
}

pub struct Chart {
    pub title: String,
    pub width: f64,
    pub height: f64,
    pub bars: Vec<Bar>,
    /// The top of the scale, and the ends of the axis, for the labels around it.
    pub top: String,
    pub first: String,
    pub last: String,
}

fn px(v: f64) -> String {
    format!("{v:.1}")
}

fn href(job: &str, partition: &str) -> String {
    format!("/jobs/{job}/partitions/{partition}")
}

/// Duration and rows of each of the newest partitions' last run, oldest first.
pub fn last_runs(job: &str, partitions: &[PartitionStatus]) -> Vec<Chart> {
    let mut shown: Vec<&PartitionStatus> = partitions.iter().collect();
    shown.sort_by(|a, b| a.partition_key.cmp(&b.partition_key));
    let shown = &shown[shown.len().saturating_sub(BAR_PARTITIONS)..];
    if shown.is_empty() {
        return Vec::new();
    }
    let duration = |p: &PartitionStatus| match (p.started_at, p.finished_at) {
        (Some(s), Some(e)) => (e - s).max(0) as f64,
        _ => 0.0,
    };
    let rows = |p: &PartitionStatus| p.content_rows.unwrap_or(0) as f64;
    let chart =
        |title: &str, value: &dyn Fn(&PartitionStatus) -> f64, top: &dyn Fn(f64) -> String| {
            let max = shown.iter().map(|p| value(p)).fold(0.0, f64::max).max(1.0);
            let step = WIDTH / shown.len() as f64;
            let bars = shown
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let h = (value(p) / max * BAR_HEIGHT).max(1.0);
                    Bar {
                        x: px(i as f64 * step),
                        y: px(BAR_HEIGHT - h),
                        w: px((step - 1.0).max(1.0)),
                        h: px(h),
                        state: p.state.as_str(),
                        title: format!(
                            "{}: {}, {} rows, {}",
                            p.partition_key,
                            p.state,
                            rows(p),
                            shown_duration(p.started_at, p.finished_at)
                        ),
                        href: href(job, &p.partition_key),
                    }
                })
                .collect();
            Chart {
                title: title.to_string(),
                width: WIDTH,
                height: BAR_HEIGHT,
                bars,
                top: top(max),
                first: shown[0].partition_key.clone(),
                last: shown[shown.len() - 1].partition_key.clone(),
            }
        };
    vec![
        chart("duration of the last run", &duration, &|m| {
            shown_duration(Some(0), Some(m as i64))
        }),
        chart("rows", &rows, &|m| format!("{m:.0} rows")),
    ]
}

/// The newest batch of runs (runs less than a minute apart), as bars from start to end on
/// a shared clock, one line each in the order they started.
pub fn gantt(job: &str, newest_first: &[RunRow], now_ms: i64) -> Option<Chart> {
    let mut batch: Vec<&RunRow> = Vec::new();
    for r in newest_first.iter().take(GANTT_RUNS) {
        if let Some(earliest) = batch.last()
            && earliest.started_at - r.finished_at.unwrap_or(r.started_at) > BATCH_GAP_MS
        {
            break;
        }
        batch.push(r);
    }
    batch.reverse();
    let start = batch.first()?.started_at;
    let end = batch
        .iter()
        .map(|r| r.finished_at.unwrap_or(now_ms))
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let scale = WIDTH / (end - start) as f64;
    let bars = batch
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let finished = r.finished_at.unwrap_or(now_ms);
            Bar {
                x: px((r.started_at - start) as f64 * scale),
                y: px(i as f64 * GANTT_ROW),
                w: px(((finished - r.started_at) as f64 * scale).max(1.0)),
                h: px(GANTT_ROW - 1.0),
                state: match r.state {
                    RunState::Succeeded => "complete",
                    RunState::Running => "running",
                    _ => "failed",
                },
                title: format!(
                    "{} attempt {}: {}, {}",
                    r.partition_key,
                    r.attempt,
                    r.state,
                    shown_duration(Some(r.started_at), r.finished_at)
                ),
                href: href(job, &r.partition_key),
            }
        })
        .collect::<Vec<_>>();
    Some(Chart {
        title: format!(
            "the latest batch of runs ({} runs, {} trigger)",
            bars.len(),
            batch[0].trigger_kind
        ),
        width: WIDTH,
        height: bars.len() as f64 * GANTT_ROW,
        bars,
        top: String::new(),
        first: crate::clock::shown_time(Some(start)),
        last: format!("{} later", shown_duration(Some(start), Some(end))),
    })
}

/// Days the cost chart shows, ending on the day of the job's newest run.
pub const COST_DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;

/// The first day (ms) of the cost chart's window, given the job's newest run's start.
pub fn cost_window_start(newest_started_ms: i64) -> i64 {
    (newest_started_ms.div_euclid(DAY_MS) - (COST_DAYS - 1)) * DAY_MS
}

/// CPU time of the job's runs per day over [`COST_DAYS`] days, each bar titled with all
/// the day used; none when no run in the window measured its cost.
pub fn cost_per_day(job: &str, days: &[crate::catalog::DayCost]) -> Option<Chart> {
    let last = days.last()?.day;
    let first = last - (COST_DAYS - 1);
    let max = days.iter().map(|d| d.cpu_us).max().unwrap_or(0).max(1) as f64;
    let step = WIDTH / COST_DAYS as f64;
    let date = |day: i64| {
        chrono::DateTime::from_timestamp_millis(day * DAY_MS)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    let bars = days
        .iter()
        .filter(|d| d.day >= first)
        .map(|d| {
            let h = (d.cpu_us as f64 / max * BAR_HEIGHT).max(1.0);
            let used = crate::cost::RunCost {
                cpu_us: d.cpu_us.max(0) as u64,
                bytes_read: d.bytes_read.max(0) as u64,
                bytes_written: d.bytes_written.max(0) as u64,
                requests: d.requests.max(0) as u64,
                peak_memory_bytes: d.peak_memory_bytes.max(0) as u64,
            };
            Bar {
                x: px((d.day - first) as f64 * step),
                y: px(BAR_HEIGHT - h),
                w: px((step - 1.0).max(1.0)),
                h: px(h),
                state: "complete",
                title: format!(
                    "{}: {} run(s), {}",
                    date(d.day),
                    d.runs,
                    crate::text::cost(&used)
                ),
                href: format!("/jobs/{job}"),
            }
        })
        .collect();
    Some(Chart {
        title: "CPU time of the job's runs per day (UTC)".into(),
        width: WIDTH,
        height: BAR_HEIGHT,
        bars,
        top: format!("{:.3} s", max / 1e6),
        first: date(first),
        last: date(last),
    })
}
