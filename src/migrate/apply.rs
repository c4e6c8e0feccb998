//! Executing a migration plan: the only path that changes a table's schema (promise 5).
//! Destructive migrations go ahead only when asked for, when every job validates against
//! the schemas after them, and when no job still names what they remove.

use super::{Change, EXPAND_CONTRACT, ExistingTable, MigrationPlan, PlannedMigration};
use crate::catalog::{Catalog, CatalogError};
use crate::delta::{self, DeltaError};
use crate::engine::EngineError;
use crate::project::Project;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("table {table} v{version}: bad URI in the catalog: {message}")]
    BadUri {
        table: String,
        version: i64,
        message: String,
    },
    #[error("table {table} v{version}: {source}")]
    Delta {
        table: String,
        version: i64,
        source: DeltaError,
    },
}

/// What `apply` did: the migrations it applied, in order, and, when it stopped before the
/// end, why (each message says what to do next).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Applied {
    pub applied: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// The tables as the catalog holds them now, for [`super::plan`].
pub async fn existing_tables(
    catalog: &Catalog,
) -> Result<BTreeMap<crate::names::Name, ExistingTable>, CatalogError> {
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
    Ok(existing)
}

/// How `migrate` goes ahead.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Destructive migrations too, once no job uses what they remove.
    pub allow_destructive: bool,
    /// Check each migration as applying it would, apply none (`--plan`): `applied` then
    /// lists what would be applied, `refused` why the real command would stop.
    pub dry_run: bool,
}

/// Applies the plan's pending migrations in order, each in one catalog transaction with its
/// Delta changes, as `by` at `now_ms`. Stops at the first one refused or failed; what was
/// applied before it stays applied.
pub async fn apply(
    project: &Project,
    catalog: &Catalog,
    engine: &crate::engine::Engine,
    plan: &MigrationPlan,
    options: Options,
    by: &str,
    now_ms: i64,
) -> Result<Applied, MigrateError> {
    let mut out = Applied::default();
    for m in &plan.pending {
        if !m.destructive.is_empty() {
            out.refused =
                destructive_refusals(project, engine, m, options.allow_destructive).await?;
            if !out.refused.is_empty() {
                return Ok(out);
            }
        }
        if options.dry_run {
            out.applied.push(m.name.clone());
            continue;
        }
        match apply_one(catalog, m, by, now_ms).await {
            Ok(true) => {
                tracing::info!(migration = %m.name, "applied");
                out.applied.push(m.name.clone());
            }
            Ok(false) => tracing::info!(migration = %m.name, "already applied by another process"),
            Err(e) => {
                out.refused = vec![format!(
                    "migrations/{}: {e}; the migration is not recorded as applied, and running `sluice migrate` again completes it once the cause is fixed",
                    m.name
                )];
                return Ok(out);
            }
        }
    }
    Ok(out)
}

/// Why destructive migration `m` may not go ahead now; empty when it may.
async fn destructive_refusals(
    project: &Project,
    engine: &crate::engine::Engine,
    m: &PlannedMigration,
    allow_destructive: bool,
) -> Result<Vec<String>, MigrateError> {
    if !allow_destructive {
        let mut msgs: Vec<String> = m
            .destructive
            .iter()
            .map(|why| format!("migrations/{} is destructive: {why}", m.name))
            .collect();
        msgs.push(format!(
            "it was not applied, nor any migration after it; {EXPAND_CONTRACT}"
        ));
        return Ok(msgs);
    }
    // Every job must validate against the schemas after the change: a job that still
    // writes a dropped column, a narrowed column with the wider type, or a dropped table
    // does not, and neither does one that reads a dropped column. (A job that fails to
    // load is not in `project.jobs` at all, so what it uses is unknown: that is refused
    // too.)
    let problems = crate::validate::validate_jobs(project, engine)
        .await?
        .problems;
    if !problems.is_empty() {
        let mut msgs: Vec<String> = problems
            .iter()
            .map(|p| {
                format!(
                    "migrations/{} is destructive, and a job does not validate against it: {p}",
                    m.name
                )
            })
            .collect();
        msgs.push("change those jobs first (`sluice validate` shows what is left), then run `sluice migrate --allow-destructive` again; nothing was changed".into());
        return Ok(msgs);
    }
    let uses: Vec<String> = m
        .changes
        .iter()
        .flat_map(|c| super::remaining_references(&project.jobs, c))
        .collect();
    if uses.is_empty() {
        return Ok(Vec::new());
    }
    let mut msgs: Vec<String> = uses
        .iter()
        .map(|u| format!("migrations/{} removes what is still in use: {u}", m.name))
        .collect();
    msgs.push(
        "change those jobs first, then run `sluice migrate --allow-destructive` again; nothing was changed".into(),
    );
    Ok(msgs)
}

/// Applies one migration: ledger row, Delta changes on every physical version, catalog
/// schemas, all under one catalog transaction. False when another process applied it.
async fn apply_one(
    catalog: &Catalog,
    m: &PlannedMigration,
    by: &str,
    now_ms: i64,
) -> Result<bool, MigrateError> {
    let Some(mut tx) = catalog
        .begin_migration(&m.name, &m.checksum, by, now_ms)
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
                // The engine makes sessions; a rewrite reads a version through one.
                let ctx = crate::engine::Engine::table_session();
                for v in tx.table_versions(table.as_str()).await? {
                    let url = url::Url::parse(&v.uri).map_err(|e| MigrateError::BadUri {
                        table: table.to_string(),
                        version: v.version,
                        message: e.to_string(),
                    })?;
                    let how = delta::evolve(&ctx, &url, actions, &after.properties)
                        .await
                        .map_err(|source| MigrateError::Delta {
                            table: table.to_string(),
                            version: v.version,
                            source,
                        })?;
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
        if let Err(e) = delta::store::delete_version(&uri).await {
            tracing::warn!(error = %e, "the dropped table's files stay; delete them by hand");
        }
    }
    Ok(true)
}
