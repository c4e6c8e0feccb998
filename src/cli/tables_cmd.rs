//! `sluice tables`, `resolve`, `history`, `promote`, `rollback`: the versions of each table
//! and the alias readers go through.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE, Globals, Outcome, output};
use crate::catalog::Catalog;
use crate::promote::PromoteError;

async fn catalog(g: &Globals) -> anyhow::Result<Catalog> {
    Ok(Context::open(&g.overrides).await?.catalog)
}

pub async fn tables(g: &Globals) -> Outcome {
    let c = catalog(g).await?;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for t in c.tables().await? {
        let name = t.schema.name.to_string();
        let coverage = crate::app::coverage::of_table(&c, &name).await?;
        if coverage.versions.is_empty() {
            // Migrated, never written: listed, with nothing in it yet.
            json.push(serde_json::json!({
                "table": name, "version": null, "live": false, "uri": null,
                "partitions": 0, "complete": 0, "failed": 0,
                "first": "", "last": "", "rows": 0,
            }));
            rows.push(vec![
                name.clone(),
                "-".into(),
                String::new(),
                "0/0".into(),
                "0".into(),
                "-".into(),
                "0".into(),
                "(nothing written yet: the first run of its job creates a version)".into(),
            ]);
        }
        for v in coverage.versions {
            let first = v.first.as_deref().unwrap_or("");
            let last = v.last.as_deref().unwrap_or("");
            let is_live = coverage.live == Some(v.version);
            json.push(serde_json::json!({
                "table": name, "version": v.version, "live": is_live, "uri": v.uri,
                "partitions": v.partitions, "complete": v.complete, "failed": v.failed,
                "first": first, "last": last, "rows": v.rows,
            }));
            rows.push(vec![
                name.clone(),
                format!("v{}", v.version),
                if is_live {
                    "live".into()
                } else {
                    String::new()
                },
                format!("{}/{}", v.complete, v.partitions),
                v.failed.to_string(),
                if first.is_empty() {
                    "-".into()
                } else {
                    format!("{first} .. {last}")
                },
                v.rows.to_string(),
                v.uri.clone(),
            ]);
        }
    }
    if g.output == output::Format::Json {
        println!("{}", output::json(&json));
    } else if rows.is_empty() {
        println!(
            "no tables yet: add a CREATE TABLE migration to migrations/ and run `sluice migrate`"
        );
    } else {
        print!(
            "{}",
            output::table(
                &[
                    "table",
                    "version",
                    "alias",
                    "complete",
                    "failed",
                    "partitions",
                    "rows",
                    "location"
                ],
                &rows
            )
        );
    }
    Ok(EXIT_OK)
}

#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    table: String,
    #[arg(long)]
    version: Option<i64>,
}

pub async fn resolve(g: &Globals, args: ResolveArgs) -> Outcome {
    let (table, version) = (args.table.as_str(), args.version);
    let c = catalog(g).await?;
    let v = match version {
        Some(v) => v,
        None => match c.alias(table).await? {
            Some(v) => v,
            None => {
                eprintln!("error: table `{table}` has no live version; see `sluice tables`");
                return Ok(EXIT_UNUSABLE);
            }
        },
    };
    let Some(tv) = c.table_version(table, v).await? else {
        eprintln!("error: {table} has no version v{v}; see `sluice tables`");
        return Ok(EXIT_UNUSABLE);
    };
    if g.output == output::Format::Json {
        println!(
            "{}",
            output::json(&serde_json::json!({"table": table, "version": v, "uri": tv.uri}))
        );
    } else {
        println!("{}", tv.uri);
    }
    Ok(EXIT_OK)
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    table: String,
}

pub async fn history(g: &Globals, args: HistoryArgs) -> Outcome {
    let table = args.table.as_str();
    let c = catalog(g).await?;
    let h = c.alias_history(table).await?;
    if g.output == output::Format::Json {
        println!("{}", output::json(&h));
        return Ok(EXIT_OK);
    }
    if h.is_empty() {
        println!("{table} has no alias yet");
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = h
        .iter()
        .map(|f| {
            vec![
                output::time(Some(f.at)),
                f.from_version
                    .map(|v| format!("v{v}"))
                    .unwrap_or("-".into()),
                format!("v{}", f.to_version),
                f.by_whom.clone(),
                f.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["at (UTC)", "from", "to", "by", "message"], &rows)
    );
    Ok(EXIT_OK)
}

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
    let c = catalog(g).await?;
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
