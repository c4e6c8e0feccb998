//! `sluice migrate [--plan]` and `sluice migrate status`.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};
use crate::catalog::Catalog;
use crate::migrate;
use crate::project::Project;

async fn open(g: &Globals) -> anyhow::Result<(std::sync::Arc<Project>, Catalog)> {
    let cx = Context::open_production(&g.overrides).await?;
    Ok((cx.project, cx.catalog))
}

fn print_problems(project: &Project) -> bool {
    let migration_problems: Vec<_> = project
        .problems
        .iter()
        .filter(|p| p.file.starts_with("migrations/"))
        .collect();
    for p in &migration_problems {
        eprintln!("error: {p}");
    }
    !migration_problems.is_empty()
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what would be applied, and apply nothing.
    #[arg(long)]
    plan: bool,
    /// Apply destructive migrations too (drop or rename a column, narrow a type, NOT
    /// NULL on an existing column, drop a table), once no job uses what they remove.
    #[arg(long)]
    allow_destructive: bool,
    #[command(subcommand)]
    sub: Option<MigrateSub>,
}

#[derive(Debug, clap::Subcommand)]
pub enum MigrateSub {
    /// List applied and pending migrations.
    Status,
}

pub async fn run(g: &Globals, args: Args) -> Outcome {
    match args.sub {
        Some(MigrateSub::Status) => status(g).await,
        None => apply(g, args.plan, args.allow_destructive).await,
    }
}

async fn apply(g: &Globals, plan_only: bool, allow_destructive: bool) -> Outcome {
    let cx = Context::open_production(&g.overrides).await?;
    let (project, catalog) = (cx.project.clone(), cx.catalog.clone());
    if print_problems(&project) {
        return Ok(EXIT_FAILED);
    }
    let applied = catalog.applied_migrations().await?;
    let existing = migrate::existing_tables(&catalog).await?;
    let plan = match migrate::plan(&project.migrations, &applied, &existing) {
        Ok(p) => p,
        Err(errors) => {
            let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Ok(refuse(g, &msgs, &[]));
        }
    };
    crate::delta::store::check_atomic_commits(&project.settings).await?;
    let by = crate::actor::who();
    let engine = cx.engine()?;
    // `--plan` goes the real way with every check, stopping short of each change: what it
    // approves, `migrate` applies; what `migrate` refuses, it refuses too.
    let options = migrate::Options {
        allow_destructive,
        dry_run: plan_only,
    };
    let result = migrate::apply(
        &project,
        &catalog,
        &engine,
        &plan,
        options,
        &by,
        cx.clock.now_ms(),
    )
    .await?;
    if plan_only {
        return Ok(print_plan(g, &plan, &result));
    }
    let done = result.applied;
    if !result.refused.is_empty() {
        return Ok(refuse(g, &result.refused, &done));
    }
    if g.output == output::Format::Json {
        println!(
            "{}",
            output::json(&serde_json::json!({ "ok": true, "applied": done }))
        );
    } else if done.is_empty() {
        println!(
            "nothing to apply: {} migration(s) applied",
            plan.applied.len() + plan.pending.len()
        );
    } else {
        for d in &done {
            println!("applied {d}");
        }
    }
    Ok(EXIT_OK)
}

/// `--plan`: each pending migration, its changes and whether it needs
/// --allow-destructive; then, as `migrate` would, why it would stop (exit 1).
fn print_plan(g: &Globals, plan: &migrate::MigrationPlan, checked: &migrate::Applied) -> u8 {
    if g.output == output::Format::Json {
        println!(
            "{}",
            output::json(&serde_json::json!({
                "applied": plan.applied,
                "pending": plan.pending,
                "would_apply": checked.applied,
                "refused": checked.refused,
            }))
        );
    } else if plan.pending.is_empty() {
        println!(
            "nothing to apply: {} migration(s) applied",
            plan.applied.len()
        );
    } else {
        for m in &plan.pending {
            if m.destructive.is_empty() {
                println!("{}", m.name);
            } else {
                println!("{} (DESTRUCTIVE: needs --allow-destructive)", m.name);
            }
            for c in &m.changes {
                println!("  {c}");
            }
            for why in &m.destructive {
                println!("  destructive because {why}");
            }
        }
    }
    if checked.refused.is_empty() {
        return EXIT_OK;
    }
    for m in &checked.refused {
        eprintln!("error: {m}");
    }
    eprintln!("migrate would stop there (a plan applies nothing)");
    EXIT_FAILED
}

/// Prints why `migrate` stopped (and what it applied before), and gives the exit code.
fn refuse(g: &Globals, msgs: &[String], done: &[String]) -> u8 {
    for d in done {
        println!("applied {d}");
    }
    for m in msgs {
        eprintln!("error: {m}");
    }
    if g.output == output::Format::Json {
        println!(
            "{}",
            output::json(&serde_json::json!({ "ok": false, "applied": done, "errors": msgs }))
        );
    }
    EXIT_FAILED
}

async fn status(g: &Globals) -> Outcome {
    let (project, catalog) = open(g).await?;
    print_problems(&project);
    let applied = catalog.applied_migrations().await?;
    let mut rows = Vec::new();
    for a in &applied {
        let state = match project.migrations.iter().find(|m| m.name == a.name) {
            None => "applied, file missing",
            Some(m) if m.checksum != a.checksum => "applied, file changed",
            Some(_) => "applied",
        };
        rows.push((
            a.name.clone(),
            state.to_string(),
            Some(a.applied_at),
            Some(a.applied_by.clone()),
        ));
    }
    for m in &project.migrations {
        if !applied.iter().any(|a| a.name == m.name) {
            rows.push((m.name.clone(), "pending".into(), None, None));
        }
    }
    rows.sort();
    if g.output == output::Format::Json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, s, at, by)| serde_json::json!({"name": n, "state": s, "applied_at": at.map(crate::clock::rfc3339), "applied_by": by}))
            .collect();
        println!("{}", output::json(&v));
    } else {
        let text: Vec<Vec<String>> = rows
            .iter()
            .map(|(n, s, at, by)| vec![n.clone(), s.clone(), output::time(*at), output::opt(by)])
            .collect();
        print!(
            "{}",
            output::table(&["migration", "state", "applied at (UTC)", "by"], &text)
        );
    }
    Ok(EXIT_OK)
}
