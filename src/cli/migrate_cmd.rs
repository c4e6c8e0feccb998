//! `sluice migrate [--plan]` and `sluice migrate status`.

use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};
use crate::catalog::Catalog;
use crate::clock::{Clock, SystemClock};
use crate::migrate::{self, Change};
use crate::project::Project;
use anyhow::Context as _;
use std::collections::BTreeSet;

async fn open(g: &Globals) -> anyhow::Result<(Project, Catalog)> {
    let project = Project::load(&g.overrides)?;
    let catalog = Catalog::connect(&project.settings.catalog_url).await?;
    Ok((project, catalog))
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

pub async fn run(g: &Globals, plan_only: bool) -> Outcome {
    let (project, catalog) = open(g).await?;
    if print_problems(&project) {
        return Ok(EXIT_FAILED);
    }
    let applied = catalog.applied_migrations().await?;
    let existing: BTreeSet<_> = catalog
        .tables()
        .await?
        .into_iter()
        .map(|t| t.schema.name)
        .collect();
    let plan = match migrate::plan(&project.migrations, &applied, &existing) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            if g.output == output::Format::Json {
                let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                println!(
                    "{}",
                    output::json(&serde_json::json!({ "ok": false, "errors": msgs }))
                );
            }
            return Ok(EXIT_FAILED);
        }
    };
    if plan_only {
        if g.output == output::Format::Json {
            println!("{}", output::json(&plan));
        } else if plan.pending.is_empty() {
            println!(
                "nothing to apply: {} migration(s) applied",
                plan.applied.len()
            );
        } else {
            for m in &plan.pending {
                println!("{}", m.name);
                for c in &m.changes {
                    println!("  {c}");
                }
            }
        }
        return Ok(EXIT_OK);
    }
    let by = crate::runner::holder_id();
    let mut done = Vec::new();
    for m in &plan.pending {
        let creates: Vec<_> = m
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::CreateTable { table } => Some(table.clone()),
                Change::AlreadyExists { .. } => None,
            })
            .collect();
        let applied_now = catalog
            .apply_migration(&m.name, &m.checksum, &by, &creates, SystemClock.now_ms())
            .await
            .with_context(|| format!("applying migrations/{}", m.name))?;
        if applied_now {
            tracing::info!(migration = %m.name, "applied");
            done.push(m.name.clone());
        } else {
            tracing::info!(migration = %m.name, "already applied by another process");
        }
    }
    if g.output == output::Format::Json {
        println!(
            "{}",
            output::json(&serde_json::json!({ "ok": true, "applied": done }))
        );
    } else if done.is_empty() {
        println!(
            "nothing to apply: {} migration(s) applied",
            plan.applied.len()
        );
    } else {
        for d in &done {
            println!("applied {d}");
        }
    }
    Ok(EXIT_OK)
}

pub async fn status(g: &Globals) -> Outcome {
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
            .map(|(n, s, at, by)| serde_json::json!({"name": n, "state": s, "applied_at": at.map(|t| output::time(Some(t))), "applied_by": by}))
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
