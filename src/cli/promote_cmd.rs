//! `sluice promote` and `sluice rollback`: alias flips, planned and recorded by `app::flip`,
//! all at once or not at all.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE, Globals, Outcome, output};
use crate::promote::PromoteError;

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// TABLE, or TABLE@N to give each its own version.
    #[arg(required = true)]
    tables: Vec<String>,
    /// The version to promote to.
    #[arg(long)]
    version: Option<i64>,
    /// Only if the live version is still N (what a deploy script checked against).
    #[arg(long, value_name = "N")]
    expect: Option<i64>,
    #[command(flatten)]
    flags: FlipFlags,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The tables whose aliases go back to the version their last flip replaced.
    #[arg(required = true)]
    tables: Vec<String>,
    #[command(flatten)]
    flags: FlipFlags,
}

/// What every flip takes (`promote`, `rollback`, `env promote`).
#[derive(Debug, clap::Args)]
pub(super) struct FlipFlags {
    /// Recorded in the history.
    #[arg(long, short)]
    pub(super) message: Option<String>,
    /// Flip even if a version flipped to lacks partitions or has failed ones.
    #[arg(long)]
    pub(super) partial: bool,
    /// Check everything the flip checks, print the flips, change nothing; exits as the
    /// flip would (1 when it would be refused).
    #[arg(long)]
    pub(super) dry_run: bool,
}

/// Promote and rollback: one way through, the kind of flip aside.
struct FlipArgs {
    tables: Vec<String>,
    kind: crate::app::flip::FlipKind,
    flags: FlipFlags,
}

pub async fn promote(g: &Globals, a: PromoteArgs) -> Outcome {
    let kind = crate::app::flip::FlipKind::Promote {
        version: a.version,
        expect: a.expect,
    };
    let (tables, flags) = (a.tables, a.flags);
    flip(
        g,
        FlipArgs {
            tables,
            kind,
            flags,
        },
    )
    .await
}

pub async fn rollback(g: &Globals, a: RollbackArgs) -> Outcome {
    let kind = crate::app::flip::FlipKind::Rollback;
    let (tables, flags) = (a.tables, a.flags);
    flip(
        g,
        FlipArgs {
            tables,
            kind,
            flags,
        },
    )
    .await
}

async fn flip(g: &Globals, a: FlipArgs) -> Outcome {
    use crate::app::flip;
    let cx = Context::open_production(&g.overrides).await?;
    for t in &a.tables {
        let name = t.split_once('@').map_or(t.as_str(), |(name, _)| name);
        cx.known_table(name).await?;
    }
    let c = &cx.catalog;
    let kind = a.kind;
    let flips = match flip::plan(c, &a.tables, kind).await {
        Ok(f) => f,
        Err(PromoteError::Catalog(e)) => return Err(e.into()),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_UNUSABLE);
        }
    };
    let verb = kind.verb();
    let message = a.flags.message.clone().unwrap_or_else(|| verb.to_string());
    record(g, &cx, &flips, verb, &message, &a.flags).await
}

/// Records `flips` (or, for a dry run, checks them and changes nothing) and says how it
/// went: `promote`, `rollback` and `env promote` alike.
pub(super) async fn record(
    g: &Globals,
    cx: &Context,
    flips: &[crate::catalog::Flip],
    verb: &str,
    message: &str,
    a: &FlipFlags,
) -> Outcome {
    // The dry run is the flip itself, rolled back: the same checks, the same refusals, the
    // same exit code.
    let refusals =
        crate::app::flip::flip(&cx.catalog, &cx.clock, flips, a.partial, message, a.dry_run)
            .await?;
    if g.output == output::Format::Json {
        println!(
            "{}",
            output::json(&serde_json::json!({
                "dry_run": a.dry_run,
                "flipped": refusals.is_empty() && !a.dry_run,
                "flips": flips,
                "refusals": refusals,
            }))
        );
    }
    if !refusals.is_empty() {
        for r in &refusals {
            eprintln!("error: {r}");
        }
        let what = if flips.len() > 1 {
            "a multi-table flip"
        } else {
            "a flip"
        };
        match a.dry_run {
            true => eprintln!("the {verb} would be refused: {what} is all or nothing"),
            false => eprintln!("nothing changed: {what} is all or nothing"),
        }
        return Ok(EXIT_FAILED);
    }
    if g.output != output::Format::Json {
        for f in flips {
            let from = match f.expect {
                crate::catalog::NO_VERSION => "nothing".to_string(),
                v => format!("v{v}"),
            };
            match a.dry_run {
                true => println!("would {verb} {}: {from} -> v{}", f.table, f.to),
                false => println!("{}: {from} -> v{} ({verb})", f.table, f.to),
            }
        }
    }
    Ok(EXIT_OK)
}
