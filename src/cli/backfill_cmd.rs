//! `sluice backfill [JOB...] --from D --to D`: plan, print (`--dry-run`) or run, summarise.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};
use crate::backfill::{self, Options, Outcome as ItemOutcome, Plan, PlanItem, Progress, Request};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal as _;
use std::sync::Arc;

pub struct Args {
    pub request: Request,
    pub dry_run: bool,
    pub concurrency: usize,
    pub fail_fast: bool,
}

pub async fn run(g: &Globals, args: Args) -> Outcome {
    let mut cx = Context::open_for_writing(&g.overrides).await?;
    let plan = backfill::plan(&cx.project, &cx.catalog, &args.request).await?;
    if args.dry_run {
        if g.output == output::Format::Json {
            println!("{}", output::json(&plan));
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
    let runner = Arc::new(cx.runner()?.with_compute_limit(args.concurrency));
    let summary = backfill::execute(
        &plan,
        runner,
        &cx.catalog,
        &cx.clock,
        &Options {
            concurrency: args.concurrency,
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
    cx.close().await;
    if g.output == output::Format::Json {
        println!("{}", output::json(&summary));
    } else {
        let rows: Vec<Vec<String>> = summary
            .items
            .iter()
            .filter(|i| !matches!(i.outcome, ItemOutcome::Succeeded { .. }))
            .map(|i| {
                let (what, detail) = describe(&i.outcome);
                vec![
                    i.job.clone(),
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
    }
    Ok(if summary.ok() { EXIT_OK } else { EXIT_FAILED })
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
                i.job.clone(),
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

struct Reporter {
    bar: Option<ProgressBar>,
}

impl Progress for Reporter {
    fn item_done(&self, item: &PlanItem, outcome: &ItemOutcome, done: usize, total: usize) {
        let (what, detail) = describe(outcome);
        match &self.bar {
            Some(b) => {
                b.set_position(done as u64);
                b.set_message(format!("{} {} {what}", item.job, item.partition));
                if !matches!(outcome, ItemOutcome::Succeeded { .. }) {
                    b.println(format!("{} {}: {what}: {detail}", item.job, item.partition));
                }
            }
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
