//! `sluice gc`: versions no reader or rollback needs removed, the rest vacuumed.

use super::context::Context;
use super::{EXIT_OK, Globals, Outcome, output};

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Also keep this many of the newest older versions.
    #[arg(long, default_value_t = 1)]
    keep: usize,
    /// Print what would be removed and kept; change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn gc(g: &Globals, args: GcArgs) -> Outcome {
    let (keep, dry_run) = (args.keep, args.dry_run);
    let c = Context::open(&g.overrides).await?.catalog;
    let plan = crate::gc::plan(&c, keep).await?;
    if dry_run {
        if g.output == output::Format::Json {
            println!("{}", output::json(&plan));
        } else {
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
    let report = crate::gc::execute(&c, &plan).await?;
    if g.output == output::Format::Json {
        println!("{}", output::json(&report));
    } else {
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
