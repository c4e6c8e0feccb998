//! `sluice gc`: versions no reader or rollback needs removed, the rest vacuumed; with
//! `--runs`, run history beyond the retention pruned (`app::retention`).

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Also keep this many of the newest older versions.
    #[arg(long, default_value_t = 1)]
    keep: usize,
    /// Print what would be removed and kept; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Prune run history instead: runs, their profiles and check results,
    /// notifications and dead letters older than `[catalog] retention` (or
    /// --older-than), keeping what the catalog needs (each partition's content run and
    /// last run).
    #[arg(long)]
    runs: bool,
    /// With --runs: the age beyond which history goes ("30d"), instead of the retention.
    #[arg(long, requires = "runs", value_name = "AGE")]
    older_than: Option<String>,
}

/// `gc --runs`: the whole prune, at once.
async fn gc_runs(g: &Globals, args: &GcArgs) -> Outcome {
    let cx = Context::open_production(&g.overrides).await?;
    let age = match (&args.older_than, cx.project.settings.retention) {
        (Some(t), _) => crate::duration::parse_duration(t)
            .map_err(|e| anyhow::anyhow!("--older-than `{t}`: {e}"))?,
        (None, Some(r)) => r,
        (None, None) => anyhow::bail!(
            "no retention to prune by: set `[catalog] retention = \"90d\"` in sluice.toml, or pass --older-than 90d"
        ),
    };
    let cutoff = cx.clock.now_ms() - age.as_millis() as i64;
    let mut prune = crate::app::retention::Prune::of_project(&cx.project, cutoff, args.dry_run);
    prune.step(&cx.catalog, None).await?;
    cx.close().await;
    let r = &prune.report;
    // A dead-letter table that could not be pruned does not stop the others; it makes the
    // command fail once they are done.
    let code = if r.dead_letters_failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    };
    if g.output == output::Format::Json {
        println!("{}", output::json(r));
        return Ok(code);
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} {} run(s) that finished before {}, {} event(s), {} message(s) and {} dead letter(s); kept {} older run(s) that partitions point at (content, or an unresolved failure)",
        r.runs_removed,
        r.cutoff,
        r.events_removed,
        r.messages_removed,
        r.dead_letters_removed,
        r.runs_kept
    );
    if !r.dry_run {
        println!(
            "{} batch(es); the longest held the catalog's write lock {:.1} ms",
            r.batches, r.longest_lock_ms
        );
    }
    for f in &r.dead_letters_failed {
        eprintln!(
            "error: could not prune the dead letters of job `{}`: {} (the other jobs' were pruned; fix or remove that table, then run `sluice gc --runs` again)",
            f.job, f.error
        );
    }
    Ok(code)
}

pub async fn gc(g: &Globals, args: GcArgs) -> Outcome {
    if args.runs {
        return gc_runs(g, &args).await;
    }
    let (keep, dry_run) = (args.keep, args.dry_run);
    let cx = Context::open_production(&g.overrides).await?;
    let (c, now_ms) = (cx.catalog, cx.clock.now_ms());
    let plan = crate::gc::plan(&c, keep, now_ms).await?;
    if dry_run {
        if g.output == output::Format::Json {
            println!("{}", output::json(&plan));
        } else {
            for e in &plan.lapsed_envs {
                println!("would drop environment {e}: its --ttl has passed");
            }
            for f in &plan.remove {
                println!(
                    "would remove {} v{}: {} ({})",
                    f.table,
                    f.version,
                    crate::warehouse::display_str(&f.uri),
                    f.why
                );
            }
            for f in &plan.keep {
                println!("keep {} v{}: {}", f.table, f.version, f.why);
            }
            println!(
                "(the kept versions would be vacuumed of unreferenced files older than their retention)"
            );
        }
        return Ok(EXIT_OK);
    }
    let report = crate::gc::execute(&c, &plan, now_ms).await?;
    if g.output == output::Format::Json {
        println!("{}", output::json(&report));
    } else {
        for e in &report.dropped_envs {
            println!("dropped environment {e}: its --ttl had passed");
        }
        for f in &report.removed {
            println!(
                "removed {} v{}: {}",
                f.table,
                f.version,
                crate::warehouse::display_str(&f.uri)
            );
        }
        for f in &report.refused {
            println!("kept {} v{}: an alias points at it now", f.table, f.version);
        }
        println!(
            "{} version(s) removed, {} file(s) vacuumed",
            report.removed.len(),
            report.vacuumed_files
        );
    }
    Ok(EXIT_OK)
}
