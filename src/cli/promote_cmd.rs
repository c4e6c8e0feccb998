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
    /// Recorded in the history.
    #[arg(long, short)]
    message: Option<String>,
    /// Promote even if the new version lacks partitions or has failed ones.
    #[arg(long)]
    partial: bool,
    /// Print the flips and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[arg(required = true)]
    tables: Vec<String>,
    #[arg(long, short)]
    message: Option<String>,
    #[arg(long)]
    partial: bool,
    #[arg(long)]
    dry_run: bool,
}

/// Promote and rollback: one way through, the kind of flip aside.
struct FlipArgs {
    tables: Vec<String>,
    kind: crate::app::flip::FlipKind,
    message: Option<String>,
    partial: bool,
    dry_run: bool,
}

pub async fn promote(g: &Globals, a: PromoteArgs) -> Outcome {
    let kind = crate::app::flip::FlipKind::Promote {
        version: a.version,
        expect: a.expect,
    };
    flip(
        g,
        FlipArgs {
            tables: a.tables,
            kind,
            message: a.message,
            partial: a.partial,
            dry_run: a.dry_run,
        },
    )
    .await
}

pub async fn rollback(g: &Globals, a: RollbackArgs) -> Outcome {
    flip(
        g,
        FlipArgs {
            tables: a.tables,
            kind: crate::app::flip::FlipKind::Rollback,
            message: a.message,
            partial: a.partial,
            dry_run: a.dry_run,
        },
    )
    .await
}

async fn flip(g: &Globals, a: FlipArgs) -> Outcome {
    use crate::app::flip;
    let cx = Context::open(&g.overrides).await?;
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
    if a.dry_run {
        if g.output == output::Format::Json {
            println!("{}", output::json(&serde_json::json!({ "plan": flips })));
        } else {
            for f in &flips {
                println!("would {verb} {}: v{} -> v{}", f.table, f.expect, f.to);
            }
        }
        return Ok(EXIT_OK);
    }
    let message = a.message.unwrap_or_else(|| verb.to_string());
    let refusals = flip::flip(c, &cx.clock, &flips, a.partial, &message).await?;
    if g.output == output::Format::Json {
        println!(
            "{}",
            output::json(&serde_json::json!({
                "flipped": refusals.is_empty(),
                "flips": flips,
                "refusals": refusals,
            }))
        );
    }
    if !refusals.is_empty() {
        for r in &refusals {
            eprintln!("error: {r}");
        }
        eprintln!(
            "nothing changed: {} is all or nothing",
            if flips.len() > 1 {
                "a multi-table flip"
            } else {
                "a flip"
            }
        );
        return Ok(EXIT_FAILED);
    }
    if g.output != output::Format::Json {
        for f in &flips {
            println!("{}: v{} -> v{} ({verb})", f.table, f.expect, f.to);
        }
    }
    Ok(EXIT_OK)
}
