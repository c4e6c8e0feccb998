//! `sluice status [JOB]`: each partition's state, rows and last run, narrowed by
//! `--state` and `--from/--to`; `--partition P` shows one partition whole
//! (`status_partition`).

use super::{EXIT_OK, Globals, Outcome, output};
use crate::app::status::{PartitionView, ShownState};
use crate::catalog::PartitionStatus;
use crate::project::Project;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this job.
    job: Option<String>,
    /// Only partitions in this state: running, complete, failed or stale.
    #[arg(long, value_name = "STATE", value_parser = state_arg)]
    state: Option<ShownState>,
    /// Only partitions from this time on: a day (2024-01-05), a month (2024-01) or an
    /// hour (2024-01-05T03).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    from: Option<String>,
    /// Only partitions up to this time, included (a month includes its days).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    to: Option<String>,
    /// Show this partition of JOB whole: its runs, the last run's checks with their
    /// sample rows, its profile against the baseline, what it read, its dead letters.
    #[arg(long, short, value_name = "PARTITION", requires = "job", conflicts_with_all = ["state", "from", "to"])]
    partition: Option<String>,
}

fn state_arg(text: &str) -> Result<ShownState, String> {
    text.parse().map_err(|_| {
        let known: Vec<&str> = ShownState::ALL.iter().map(|s| s.as_str()).collect();
        format!("`{text}` is not a state; use one of {}", known.join(", "))
    })
}

/// A partition time as written; checked only for its shape, since it is compared as text
/// (ISO times sort as text) with the partitions' times.
fn time_arg(text: &str) -> Result<String, String> {
    let year = text
        .get(..4)
        .is_some_and(|y| y.bytes().all(|b| b.is_ascii_digit()));
    let rest = text
        .bytes()
        .all(|b| b.is_ascii_digit() || b"-T:".contains(&b));
    match year && rest {
        true => Ok(text.to_string()),
        false => Err(format!(
            "`{text}` is not a partition time; write a day (2024-01-05), a month (2024-01) or an hour (2024-01-05T03)"
        )),
    }
}

impl Args {
    /// Whether `view` is one the filters keep.
    fn keeps(&self, view: &PartitionView) -> bool {
        if self.state.is_some_and(|s| s != view.state()) {
            return false;
        }
        if self.from.is_none() && self.to.is_none() {
            return true;
        }
        // The time part of `2024-01-05:emea`; a partition of keys alone has none.
        let key = &view.status.partition_key;
        let time = key
            .split(crate::partition::KEY_SEPARATOR)
            .next()
            .unwrap_or(key);
        if !time.starts_with(|c: char| c.is_ascii_digit()) {
            return false;
        }
        let after_from = self.from.as_deref().is_none_or(|f| time >= f);
        let before_to = self
            .to
            .as_deref()
            .is_none_or(|t| time <= t || time.starts_with(t));
        after_from && before_to
    }
}

pub async fn run(g: &Globals, args: Args) -> Outcome {
    let cx = super::context::Context::open(&g.overrides).await?;
    let project = &cx.project;
    let job = args.job.as_deref();
    if let Some(j) = job {
        project.knows_job(j).map_err(anyhow::Error::msg)?;
    }
    if let (Some(j), Some(p)) = (job, &args.partition) {
        return super::status_partition::show(g, &cx, j, p).await;
    }
    // A job at a time, each printed before the next is read: memory holds one job's
    // partitions, whatever the project's size.
    let jobs: Vec<String> = match job {
        Some(j) => vec![j.to_string()],
        None => cx.catalog.jobs_with_partitions().await?,
    };
    let now = cx.clock.now();
    let late = |v: &PartitionView| late(project, &v.status, now);
    let mut shown = Shown::new(g.output == output::Format::Json);
    // The next job's partitions are read (by a task of their own, and the catalog's
    // worker thread) while this one's are judged and printed: each side does about half
    // the work, side by side.
    let read = |j: &String| {
        let (catalog, job) = (cx.catalog.clone(), j.clone());
        tokio::spawn(async move { catalog.partition_statuses(Some(job.as_str())).await })
    };
    let mut next = jobs.first().map(read);
    for (i, job) in jobs.iter().enumerate() {
        let Some(reading) = next.take() else { break };
        let rows = reading
            .await
            .map_err(|e| anyhow::anyhow!("reading the partitions of {job} stopped: {e}"))??;
        next = jobs.get(i + 1).map(read);
        let views = crate::app::status::views(project, &cx.catalog, rows).await?;
        let views: Vec<PartitionView> = views.into_iter().filter(|v| args.keeps(v)).collect();
        shown.job(project, &views, &late)?;
    }
    let filtered = args.state.is_some() || args.from.is_some() || args.to.is_some();
    shown.end(filtered)?;
    Ok(EXIT_OK)
}

/// What `status` has printed so far: JSON items of one array, or a table per job with the
/// counts kept for the summary at the end.
struct Shown {
    json: bool,
    out: super::stdout_thread::StdoutThread,
    partitions: usize,
    counts: Vec<usize>,
    errors: usize,
}

impl Shown {
    fn new(json: bool) -> Shown {
        Shown {
            json,
            out: super::stdout_thread::StdoutThread::start(),
            partitions: 0,
            counts: vec![0; ShownState::ALL.len()],
            errors: 0,
        }
    }

    fn job(
        &mut self,
        project: &Project,
        views: &[PartitionView],
        late: &dyn Fn(&PartitionView) -> bool,
    ) -> std::io::Result<()> {
        use std::io::Write as _;
        for v in views {
            if self.json {
                use serde::Serialize as _;
                let sep = if self.partitions == 0 { "[" } else { "," };
                write!(self.out, "{sep}\n  ")?;
                let mut item = serde_json::Serializer::with_formatter(
                    &mut self.out,
                    output::ElementFormatter::one_level_in(),
                );
                json_of(v, declared(project, &v.status), late(v)).serialize(&mut item)?;
            }
            self.partitions += 1;
            if let Some(i) = ShownState::ALL.iter().position(|s| *s == v.state()) {
                self.counts[i] += 1;
            }
        }
        if !self.json && !views.is_empty() {
            if self.partitions > views.len() {
                writeln!(self.out)?;
            }
            self.errors = print_table(&mut self.out, project, views, late, self.errors)?;
        }
        self.out.flush()
    }

    fn end(mut self, filtered: bool) -> std::io::Result<()> {
        use std::io::Write as _;
        if self.json {
            let end = if self.partitions == 0 { "[]" } else { "\n]" };
            writeln!(self.out, "{end}")?;
            return self.out.finish();
        }
        if self.partitions == 0 {
            match filtered {
                true => writeln!(self.out, "no partition matches")?,
                false => writeln!(self.out, "no partitions have run yet")?,
            }
            return self.out.finish();
        }
        let counts: Vec<String> = ShownState::ALL
            .iter()
            .zip(&self.counts)
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        writeln!(
            self.out,
            "\n{} partition(s): {}",
            self.partitions,
            counts.join(", ")
        )?;
        self.out.finish()
    }
}

/// Whether `r` is not complete past its job's deadline (`schedule.deadline`).
fn late(project: &Project, r: &PartitionStatus, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(j) = project.jobs.get(r.job.as_str()) else {
        return false;
    };
    r.state != crate::catalog::PartitionState::Complete
        && j.parse_partition(&r.partition_key)
            .is_ok_and(|p| j.is_late(p.time, now))
}

/// Whether the spec still declares the partition's key (`None`: the job's spec is not
/// loaded). A partition of a key the spec no longer declares keeps its data and its row
/// here; it is marked, and nothing runs it.
fn declared(project: &Project, r: &PartitionStatus) -> Option<bool> {
    let j = project.jobs.get(r.job.as_str())?;
    Some(
        j.parse_partition(&r.partition_key)
            .is_ok_and(|p| j.declares(&p)),
    )
}

/// One job's partitions, a line each, narrow enough for a terminal; then each error whole,
/// once, numbered on from `numbered` (the errors of the jobs before). Returns the errors
/// numbered so far.
fn print_table(
    out: &mut impl std::io::Write,
    project: &Project,
    views: &[PartitionView],
    late: &dyn Fn(&PartitionView) -> bool,
    numbered: usize,
) -> std::io::Result<usize> {
    let mut kept = false;
    let mut errors = Vec::new();
    let text: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            let r = &view.status;
            let mut rows = output::opt(&r.content_rows);
            if r.keeps_earlier_content() {
                rows.push('*');
                kept = true;
            }
            let note = match (&view.stale, &r.error) {
                (Some(why), _) => crate::text::one_line(&why.to_string(), 60),
                (None, Some(e)) if r.state != crate::catalog::PartitionState::Complete => {
                    errors.push((view, e));
                    format!("error {} below", numbered + errors.len())
                }
                _ => String::new(),
            };
            vec![
                r.job.clone(),
                format!("v{}", r.table_version),
                r.partition_key.clone(),
                match (declared(project, r), &view.stale) {
                    (Some(false), _) => format!("{} (key no longer declared)", r.state),
                    (_, Some(why)) => format!("stale ({})", why.kind),
                    _ if late(view) => format!("{}, late", r.state),
                    _ => r.state.to_string(),
                },
                rows,
                output::duration(r.started_at, r.finished_at),
                output::time(r.finished_at),
                note,
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        output::table(
            &[
                "job",
                "version",
                "partition",
                "state",
                "rows",
                "duration",
                "finished (UTC)",
                "why stale, or error"
            ],
            &text
        )
    )?;
    if kept {
        writeln!(
            out,
            "* rows an earlier run wrote, kept: the last run failed and changed nothing"
        )?;
    }
    for (i, (view, e)) in errors.iter().enumerate() {
        let r = &view.status;
        writeln!(
            out,
            "\nerror {}: {} {} (run {}, attempt {}):\n  {}",
            numbered + i + 1,
            r.job,
            r.partition_key,
            r.last_run_id,
            output::opt(&r.attempt),
            crate::redact::redact_text(e).replace('\n', "\n  ")
        )?;
    }
    Ok(numbered + errors.len())
}

/// One partition as `status --output json` shows it.
/// One partition as `status --output json` prints it. Its fields are in the order of their
/// names, as the JSON object once built for each partition printed them; written straight
/// from the row, with no tree of values per partition.
#[derive(serde::Serialize)]
struct PartitionJson<'a> {
    attempt: Option<i64>,
    content_run_id: Option<&'a str>,
    cost: Option<crate::cost::RunCost>,
    data_version: Option<&'a str>,
    declared: Option<bool>,
    delta_version: Option<i64>,
    duration_ms: Option<i64>,
    error: Option<&'a str>,
    finished_at: Option<String>,
    fingerprint: Option<&'a str>,
    job: &'a str,
    late: bool,
    partition: &'a str,
    read: Option<&'a crate::provenance::Reads>,
    rows: Option<i64>,
    rows_from_earlier_run: bool,
    run_id: &'a str,
    stale_because: Option<&'a crate::provenance::StaleBecause>,
    started_at: Option<String>,
    state: ShownState,
    table: &'a str,
    table_version: i64,
}

fn json_of(view: &PartitionView, declared: Option<bool>, late: bool) -> PartitionJson<'_> {
    let r = &view.status;
    PartitionJson {
        attempt: r.attempt,
        content_run_id: r.content_run_id.as_deref(),
        cost: r.last_run_cost.cost(),
        data_version: r.content_version.as_deref(),
        declared,
        delta_version: r.content_delta_version,
        duration_ms: match (r.started_at, r.finished_at) {
            (Some(s), Some(e)) => Some(e - s),
            _ => None,
        },
        error: r.error.as_deref(),
        finished_at: r.finished_at.map(crate::clock::rfc3339),
        fingerprint: r.content_fingerprint.as_deref(),
        job: &r.job,
        late,
        partition: &r.partition_key,
        read: view.reads.as_ref(),
        rows: r.content_rows,
        rows_from_earlier_run: r.keeps_earlier_content(),
        run_id: &r.last_run_id,
        stale_because: view.stale.as_ref(),
        started_at: r.started_at.map(crate::clock::rfc3339),
        state: view.state(),
        table: &r.table_name,
        table_version: r.table_version,
    }
}
