//! `sluice backfill [JOB...] --from D --to D`: plan, print (`--dry-run`) or run, summarise.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};
use crate::backfill::{
    self, Options, Outcome as ItemOutcome, Plan, PlanItem, Progress, Request, Summary,
};
use crate::partition::{PartitionsArg, TimesArg};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal as _;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs to backfill; none means every job.
    jobs: Vec<String>,
    /// First partition: a day (2024-01-05), month (2024-01) or hour (2024-01-05T03).
    /// Not needed for jobs whose partitions are their keys (`--keys DE,FR`).
    #[arg(long, required_unless_present_any = ["partitions", "keys"])]
    from: Option<String>,
    /// Last partition, included.
    #[arg(long, required_unless_present_any = ["partitions", "keys"])]
    to: Option<String>,
    /// Instead of --from/--to: a list (2024-01-03,2024-01-09) or a range (A..B, both
    /// included), e.g. the partitions a canary builds; `:KEYS` after it narrows the
    /// jobs with a static dimension to those keys (2024-01-01..2024-01-31:emea,apac);
    /// keys alone (`DE,FR` or `:DE,FR`) for a job whose partitions are its keys.
    #[arg(long, conflicts_with_all = ["from", "to", "keys"], value_name = "LIST|RANGE[:KEYS]")]
    partitions: Option<String>,
    /// Only these keys of the jobs with a static dimension (emea,apac); default: every
    /// declared key.
    #[arg(long, value_name = "KEYS")]
    keys: Option<String>,
    /// The table version the named jobs must be building (their spec's `version`): a
    /// guard for canaries.
    #[arg(long, value_name = "N")]
    version: Option<u32>,
    /// Print the plan (what would run, why, what it waits on) and run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Redo complete partitions too.
    #[arg(long, conflicts_with_all = ["only_failed", "stale"])]
    force: bool,
    /// Only failed (or interrupted) partitions.
    #[arg(long, conflicts_with = "stale")]
    only_failed: bool,
    /// Also redo complete partitions written by other code than the current.
    #[arg(long)]
    stale: bool,
    /// Latest partitions first.
    #[arg(long)]
    newest_first: bool,
    /// Add the jobs that read the named jobs' tables, and theirs, and so on.
    #[arg(long)]
    downstream: bool,
    /// Partitions run at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Stop starting partitions after the first failure.
    #[arg(long)]
    fail_fast: bool,
}

impl Args {
    /// The planner's request: `--partitions` or `--keys` read into times and keys, the
    /// selection from the flags.
    fn request(&self) -> anyhow::Result<Request> {
        let arg = match (&self.partitions, &self.keys) {
            (Some(p), _) => Some(PartitionsArg::parse(p)),
            (None, Some(k)) => Some(PartitionsArg::parse(&format!(":{k}"))),
            (None, None) => None,
        };
        let keys = match arg.as_ref().map(PartitionsArg::static_keys).transpose() {
            Ok(k) => k.flatten(),
            Err(m) => anyhow::bail!("--partitions or --keys: {m}"),
        };
        let (from, to, only) = match arg.and_then(|a| a.times) {
            None => (
                self.from.clone().unwrap_or_default(),
                self.to.clone().unwrap_or_default(),
                None,
            ),
            Some(TimesArg::Range(a, b)) => (a, b, None),
            Some(TimesArg::List(set)) => {
                let first = set.first().cloned().unwrap_or_default();
                let last = set.last().cloned().unwrap_or_default();
                (first, last, Some(set))
            }
        };
        if from.is_empty() != to.is_empty() {
            anyhow::bail!("give both --from and --to, or neither");
        }
        Ok(Request {
            jobs: self.jobs.clone(),
            downstream: self.downstream,
            from,
            to,
            only,
            keys,
            version: self.version,
            selection: crate::app::backfill::selection_of_flags(
                self.force,
                self.only_failed,
                self.stale,
            ),
            newest_first: self.newest_first,
            exactly: None,
        })
    }
}

pub async fn run(g: &Globals, args: Args) -> Outcome {
    let request = args.request()?;
    let mut cx = Context::open_for_writing(&g.overrides).await?;
    let plan = backfill::plan(&cx.project, &cx.catalog, &request).await?;
    if args.dry_run {
        if g.output == output::Format::Json {
            output::print_json(&plan)?;
        } else {
            print_plan(&plan);
        }
        return Ok(EXIT_OK);
    }
    let bar = (g.output == output::Format::Text && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new(plan.items.len() as u64);
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let shown = bar.as_ref().map(crate::logging::show_bar);
    let progress = Reporter { bar: bar.clone() };
    cx.lineage_parent("sluice.backfill");
    let runner = Arc::new(
        cx.runner()?
            .with_compute_limit(usize::from(args.concurrency)),
    );
    let summary = backfill::execute(
        &plan,
        runner,
        &cx.catalog,
        &cx.clock,
        &Options {
            concurrency: usize::from(args.concurrency),
            fail_fast: args.fail_fast,
        },
        &progress,
    )
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    drop(shown);
    cx.lineage_parent_end((!summary.ok()).then(|| {
        format!(
            "{} of {} partition(s) failed",
            summary.failed,
            plan.items.len()
        )
    }));
    let made_stale = made_stale_by(&cx, &summary).await?;
    cx.deliver_now().await;
    cx.close().await;
    if g.output == output::Format::Json {
        // Written as it is serialized: no tree of values of a large backfill in memory.
        #[derive(serde::Serialize)]
        struct Ended<'a> {
            #[serde(flatten)]
            summary: &'a Summary,
            made_stale: &'a [String],
        }
        let ended = Ended {
            summary: &summary,
            made_stale: &made_stale,
        };
        output::print_json(&ended)?;
    } else {
        print_summary(&plan, &summary, &made_stale);
    }
    Ok(if summary.ok() { EXIT_OK } else { EXIT_FAILED })
}

/// A backfill's end, as text: what did not succeed, the counts, what it made stale.
pub(super) fn print_summary(plan: &Plan, summary: &Summary, made_stale: &[String]) {
    let rows: Vec<Vec<String>> = summary
        .items
        .iter()
        .filter(|i| !matches!(i.outcome, ItemOutcome::Succeeded { .. }))
        .map(|i| {
            let (what, detail) = describe(&i.outcome);
            vec![
                i.job.to_string(),
                format!("v{}", i.version),
                i.partition.clone(),
                what,
                detail,
            ]
        })
        .collect();
    if !rows.is_empty() {
        print!(
            "{}",
            output::table(&["job", "version", "partition", "outcome", "detail"], &rows)
        );
    }
    println!(
        "backfill {}: {} succeeded, {} failed, {} skipped, {} done by another worker, {} not selected; {} rows in {}",
        plan.range_shown(),
        summary.succeeded,
        summary.failed,
        summary.skipped,
        summary.done_elsewhere,
        summary.not_selected,
        summary.rows,
        output::duration(Some(0), Some(summary.elapsed_ms as i64)),
    );
    if !made_stale.is_empty() {
        println!(
            "made stale downstream ({}): {}; `sluice backfill --stale` over their dates reruns them (and what they make stale), and so does a daemon",
            made_stale.len(),
            crate::text::shorten(made_stale, 10),
        );
    }
}

/// The downstream partitions outside the backfill that its rewrites made stale, as
/// `job partition`.
async fn made_stale_by(cx: &Context, summary: &Summary) -> anyhow::Result<Vec<String>> {
    let written: Vec<_> = summary
        .items
        .iter()
        .filter(|i| matches!(i.outcome, ItemOutcome::Succeeded { .. }))
        .filter_map(|i| {
            let job = cx.project.jobs.get(i.job.as_str())?;
            Some((job.name.clone(), job.parse_partition(&i.partition).ok()?))
        })
        .collect();
    let stale = crate::app::downstream::made_stale_by(&cx.project, &cx.catalog, &written).await?;
    Ok(stale
        .iter()
        .map(|s| format!("{} {}", s.job.name, s.key))
        .collect())
}

/// A failure its run has already logged (with its run id): the progress does not repeat
/// it, and the summary says it whole.
fn said_by_run(o: &ItemOutcome) -> bool {
    matches!(
        o,
        ItemOutcome::Failed {
            run_id: Some(_),
            ..
        }
    )
}

fn describe(o: &ItemOutcome) -> (String, String) {
    match o {
        ItemOutcome::Succeeded { rows, .. } => ("succeeded".into(), format!("{rows} rows")),
        ItemOutcome::Failed { error, run_id, .. } => (
            "failed".into(),
            format!("{} (run {})", error, run_id.as_deref().unwrap_or("-")),
        ),
        ItemOutcome::Skipped { reason } => ("skipped".into(), reason.clone()),
        ItemOutcome::DoneElsewhere { held_by, .. } => (
            "done elsewhere".into(),
            format!("held and completed by {held_by}"),
        ),
    }
}

fn print_plan(plan: &Plan) {
    let rows: Vec<Vec<String>> = plan
        .items
        .iter()
        .map(|i| {
            let waits: Vec<String> = i
                .waits_on
                .iter()
                .map(|&d| format!("{} {}", plan.items[d].job, plan.items[d].partition))
                .chain(
                    i.reads_outside_plan
                        .iter()
                        .map(|d| format!("{} {} (outside the plan)", d.table, d.partition)),
                )
                .collect();
            vec![
                i.job.to_string(),
                format!("v{}", i.version),
                i.partition.clone(),
                i.reason.to_string(),
                shorten(&waits),
            ]
        })
        .collect();
    println!(
        "backfill plan {}{}: {} partition(s) to run, {} not selected",
        plan.range_shown(),
        if plan.from.is_empty() {
            ""
        } else {
            " (both included)"
        },
        plan.items.len(),
        plan.not_selected.len()
    );
    if !rows.is_empty() {
        print!(
            "{}",
            output::table(&["job", "version", "partition", "why", "waits on"], &rows)
        );
    }
    let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
    for n in &plan.not_selected {
        *reasons.entry(n.why.as_str()).or_default() += 1;
    }
    for (why, count) in reasons {
        println!("not selected: {count} ({why})");
    }
}

fn shorten(items: &[String]) -> String {
    match items.len() {
        0 => "-".into(),
        _ => crate::text::shorten(items, 3),
    }
}

pub(super) struct Reporter {
    pub(super) bar: Option<ProgressBar>,
}

impl Progress for Reporter {
    fn item_done(&self, item: &PlanItem, outcome: &ItemOutcome, done: usize, total: usize) {
        let (what, detail) = describe(outcome);
        match &self.bar {
            Some(b) => {
                b.set_position(done as u64);
                b.set_message(format!("{} {} {what}", item.job, item.partition));
                if !said_by_run(outcome) && !matches!(outcome, ItemOutcome::Succeeded { .. }) {
                    b.println(format!("{} {}: {what}: {detail}", item.job, item.partition));
                }
            }
            None if said_by_run(outcome) => tracing::info!(
                job = %item.job, partition = %item.partition, outcome = %what,
                progress = %format!("{done}/{total}"),
                "partition done"
            ),
            None => tracing::info!(
                job = %item.job, partition = %item.partition, outcome = %what, detail = %detail,
                progress = %format!("{done}/{total}"),
                "partition done"
            ),
        }
    }

    fn item_waiting(&self, item: &PlanItem, held_by: &str) {
        tracing::info!(job = %item.job, partition = %item.partition, held_by, "held by another worker; waiting for it");
    }
}
