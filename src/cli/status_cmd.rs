//! `sluice status [JOB]`: each partition's state, rows and last run, narrowed by
//! `--state` and `--from/--to`; `--partition P` shows one partition whole
//! (`status_partition`).

use super::status_json::PartitionJson;
use super::{EXIT_OK, Globals, Outcome, output};
use crate::app::status::{PartitionView, ShownState};
use crate::catalog::PartitionStatus;
use crate::job::Job;
use chrono::{DateTime, Utc};

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
    // A job at a time: memory holds a few jobs' partitions, whatever the project's size.
    let jobs: Vec<String> = match job {
        Some(j) => vec![j.to_string()],
        None => cx.catalog.jobs_with_partitions().await?,
    };
    let now = cx.clock.now();
    let mut shown = Shown::new(g.output == output::Format::Json);
    // The jobs' partitions are read in order by a task of their own (and the catalog's
    // blocking threads) while those read before are judged and printed: each side does
    // about half the work, side by side. It reads on while one job waits, so neither side
    // waits for the other's slower jobs, and memory holds at most three jobs' partitions.
    let (send, mut read) = tokio::sync::mpsc::channel(1);
    let reader = {
        let catalog = cx.catalog.clone();
        tokio::spawn(async move {
            for job in jobs {
                let rows = catalog.partition_statuses(Some(job.as_str())).await;
                let failed = rows.is_err();
                if send.send((job, rows)).await.is_err() || failed {
                    break;
                }
            }
        })
    };
    while let Some((job, rows)) = read.recv().await {
        let views = crate::app::status::views(project, &cx.catalog, rows?).await?;
        let views: Vec<PartitionView> = views.into_iter().filter(|v| args.keeps(v)).collect();
        shown.job(project.jobs.get(job.as_str()), &views, now)?;
    }
    // Every job was read, unless the reader stopped: then what was shown is not all.
    reader
        .await
        .map_err(|e| anyhow::anyhow!("reading the partitions stopped: {e}"))?;
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

    /// One job's partitions; `spec` is the job's, if the project has it.
    fn job(
        &mut self,
        spec: Option<&Job>,
        views: &[PartitionView],
        now: DateTime<Utc>,
    ) -> std::io::Result<()> {
        use std::io::Write as _;
        for v in views {
            if self.json {
                let says = SpecSays::of(spec, &v.status, now);
                let buf = self.out.buffer();
                buf.extend_from_slice(if self.partitions == 0 {
                    b"[\n  "
                } else {
                    b",\n  "
                });
                PartitionJson::of(v, says.declared, says.late).write(buf)?;
                self.out.appended()?;
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
            self.errors = print_table(&mut self.out, spec, views, now, self.errors)?;
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

/// What the job's spec says of a partition, its key parsed once.
struct SpecSays {
    /// Whether the spec still declares the partition's key (`None`: the job's spec is not
    /// loaded). A partition of a key the spec no longer declares keeps its data and its
    /// row here; it is marked, and nothing runs it.
    declared: Option<bool>,
    /// Not complete past the job's deadline (`schedule.deadline`).
    late: bool,
}

impl SpecSays {
    fn of(spec: Option<&Job>, r: &PartitionStatus, now: DateTime<Utc>) -> SpecSays {
        let Some(j) = spec else {
            return SpecSays {
                declared: None,
                late: false,
            };
        };
        let parsed = j.parse_partition(&r.partition_key);
        SpecSays {
            declared: Some(parsed.as_ref().is_ok_and(|p| j.declares(p))),
            late: r.state != crate::catalog::PartitionState::Complete
                && parsed.is_ok_and(|p| j.is_late(p.time, now)),
        }
    }
}

/// One job's partitions, a line each, narrow enough for a terminal; then each error whole,
/// once, numbered on from `numbered` (the errors of the jobs before). Returns the errors
/// numbered so far.
fn print_table(
    out: &mut impl std::io::Write,
    spec: Option<&Job>,
    views: &[PartitionView],
    now: DateTime<Utc>,
    numbered: usize,
) -> std::io::Result<usize> {
    let mut kept = false;
    let mut errors = Vec::new();
    let text: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            let r = &view.status;
            let says = SpecSays::of(spec, r, now);
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
                match (says.declared, &view.stale) {
                    (Some(false), _) => format!("{} (key no longer declared)", r.state),
                    (_, Some(why)) => format!("stale ({})", why.kind),
                    _ if says.late => format!("{}, late", r.state),
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
