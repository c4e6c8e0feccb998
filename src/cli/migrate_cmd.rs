//! `sluice migrate [--plan]` and `sluice migrate status`.

use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};
use crate::catalog::Catalog;
use crate::clock::{Clock, SystemClock};
use crate::delta;
use crate::migrate::{self, Change, ExistingTable, PlannedMigration};
use crate::project::Project;
use anyhow::Context as _;
use std::collections::BTreeMap;

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

pub async fn run(g: &Globals, plan_only: bool, allow_destructive: bool) -> Outcome {
    let (project, catalog) = open(g).await?;
    if print_problems(&project) {
        return Ok(EXIT_FAILED);
    }
    let applied = catalog.applied_migrations().await?;
    let mut existing = BTreeMap::new();
    for t in catalog.tables().await? {
        let versions = catalog
            .table_versions(t.schema.name.as_str())
            .await?
            .iter()
            .map(|v| v.version)
            .collect();
        existing.insert(
            t.schema.name.clone(),
            ExistingTable {
                schema: t.schema,
                versions,
            },
        );
    }
    let plan = match migrate::plan(&project.migrations, &applied, &existing) {
        Ok(p) => p,
        Err(errors) => {
            let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Ok(refuse(g, &msgs, &[]));
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
        return Ok(EXIT_OK);
    }
    crate::warehouse::check_atomic_commits(&project.settings).await?;
    let by = crate::runner::holder_id();
    let mut done = Vec::new();
    for m in &plan.pending {
        if !m.destructive.is_empty() {
            if !allow_destructive {
                let mut msgs: Vec<String> = m
                    .destructive
                    .iter()
                    .map(|why| format!("migrations/{} is destructive: {why}", m.name))
                    .collect();
                msgs.push(format!(
                    "it was not applied, nor any migration after it; {}",
                    migrate::EXPAND_CONTRACT
                ));
                return Ok(refuse(g, &msgs, &done));
            }
            // Every job must validate against the schemas after the change: a job that
            // still writes a dropped column, a narrowed column with the wider type, or a
            // dropped table does not, and neither does one that reads a dropped column.
            // (A job that fails to load is not in `project.jobs` at all, so what it uses
            // is unknown: that is refused too.)
            let (problems, _) = super::validate_cmd::check(&project).await?;
            if !problems.is_empty() {
                let mut msgs: Vec<String> = problems
                    .iter()
                    .map(|p| format!("migrations/{} is destructive, and a job does not validate against it: {p}", m.name))
                    .collect();
                msgs.push("change those jobs first (`sluice validate` shows what is left), then run `sluice migrate --allow-destructive` again; nothing was changed".into());
                return Ok(refuse(g, &msgs, &done));
            }
            let uses: Vec<String> = m
                .changes
                .iter()
                .flat_map(|c| migrate::remaining_references(&project.jobs, c))
                .collect();
            if !uses.is_empty() {
                let mut msgs: Vec<String> = uses
                    .iter()
                    .map(|u| format!("migrations/{} removes what is still in use: {u}", m.name))
                    .collect();
                msgs.push(
                    "change those jobs first, then run `sluice migrate --allow-destructive` again; nothing was changed".into(),
                );
                return Ok(refuse(g, &msgs, &done));
            }
        }
        match apply_one(&catalog, m, &by).await {
            Ok(true) => {
                tracing::info!(migration = %m.name, "applied");
                done.push(m.name.clone());
            }
            Ok(false) => tracing::info!(migration = %m.name, "already applied by another process"),
            Err(e) => {
                let msgs = vec![format!(
                    "migrations/{}: {e:#}; the migration is not recorded as applied, and running `sluice migrate` again completes it once the cause is fixed",
                    m.name
                )];
                return Ok(refuse(g, &msgs, &done));
            }
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
            plan.applied.len() + plan.pending.len()
        );
    } else {
        for d in &done {
            println!("applied {d}");
        }
    }
    Ok(EXIT_OK)
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

/// Applies one migration: ledger row, Delta changes on every physical version, catalog
/// schemas, all under one catalog transaction. False when another process applied it.
async fn apply_one(catalog: &Catalog, m: &PlannedMigration, by: &str) -> anyhow::Result<bool> {
    let Some(mut tx) = catalog
        .begin_migration(&m.name, &m.checksum, by, SystemClock.now_ms())
        .await?
    else {
        return Ok(false);
    };
    let mut dropped_uris = Vec::new();
    for c in &m.changes {
        match c {
            Change::CreateTable { table } => tx.create_table(table).await?,
            Change::Alter {
                table,
                actions,
                after,
                ..
            } => {
                for v in tx.table_versions(table.as_str()).await? {
                    let url = url::Url::parse(&v.uri).with_context(|| {
                        format!("table {table} v{}: bad URI in the catalog", v.version)
                    })?;
                    let how = delta::evolve(&url, actions, &after.properties)
                        .await
                        .with_context(|| format!("table {table} v{}", v.version))?;
                    tracing::info!(migration = %m.name, table = %table, version = v.version, change = ?how, "physical version changed");
                }
                tx.set_schema(after).await?;
            }
            Change::DropTable { table, .. } => {
                for v in tx.table_versions(table.as_str()).await? {
                    dropped_uris.push(v.uri);
                }
                tx.drop_table(table.as_str()).await?;
            }
            Change::AlreadyExists { .. } | Change::NothingToDrop { .. } => {}
        }
    }
    tx.commit().await?;
    // Only once nothing in the catalog names them any more.
    for uri in dropped_uris {
        if let Err(e) = crate::gc::delete_files(&uri).await {
            tracing::warn!(error = %e, "the dropped table's files stay; delete them by hand");
        }
    }
    Ok(true)
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
