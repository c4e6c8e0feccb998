//! `sluice gc`: removes physical versions no reader or rollback can need, and vacuums the
//! Delta tables that stay. The plan (`--dry-run` prints it) is computed first; removal
//! re-checks under a catalog transaction that no alias moved onto a version being removed.

use crate::catalog::{Catalog, CatalogError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Storage(#[from] crate::delta::store::StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionFate {
    pub table: String,
    pub version: i64,
    pub uri: String,
    /// Why it stays, or why it goes.
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct GcPlan {
    /// Environments whose `--ttl` has passed: dropped first, so that what only they
    /// pointed at is judged as nobody's.
    pub lapsed_envs: Vec<String>,
    pub keep: Vec<VersionFate>,
    pub remove: Vec<VersionFate>,
}

/// Which versions go: per table, every version older than the live one, except the one the
/// last flip replaced (what `rollback` returns to), those the alias of an environment that
/// has not lapsed (at `now_ms`) points at and the `keep` newest others. The live version
/// and newer ones (being built) always stay. A version an environment built goes once no
/// environment points at it (dropped, lapsed, or built again elsewhere), unless it was
/// promoted (then it is production's, judged as any other). Newer is by creation, not by
/// number: an environment's versions are numbered from 1000000, and a spec's next number
/// built beside a promoted one is newer than it.
pub async fn plan(catalog: &Catalog, keep: usize, now_ms: i64) -> Result<GcPlan, GcError> {
    let mut plan = GcPlan {
        lapsed_envs: catalog
            .envs()
            .await?
            .into_iter()
            .filter(|e| e.expired(now_ms))
            .map(|e| e.name)
            .collect(),
        ..GcPlan::default()
    };
    for t in catalog.tables().await? {
        let table = t.schema.name.to_string();
        let live = catalog.alias(&table).await?;
        let previous = catalog
            .alias_history(&table)
            .await?
            .iter()
            .rev()
            .find(|h| Some(h.to_version) == live)
            .and_then(|h| h.from_version);
        let mut versions = catalog.table_versions(&table).await?;
        versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        let live_made = versions
            .iter()
            .find(|v| Some(v.version) == live)
            .map(|v| (v.created_at, v.version));
        let mut kept_old = 0;
        for v in versions {
            let fate = |why: &str| VersionFate {
                table: table.clone(),
                version: v.version,
                uri: v.uri.clone(),
                why: why.to_string(),
            };
            let mut envs = catalog.envs_pointing_at(&table, v.version).await?;
            envs.retain(|e| !plan.lapsed_envs.contains(e));
            match live {
                Some(l) if v.version == l => plan.keep.push(fate("live")),
                _ if !envs.is_empty() => plan.keep.push(fate(&format!(
                    "the alias of environment(s) {}",
                    envs.join(", ")
                ))),
                _ if v.owner_env.is_some() => plan.remove.push(fate(&format!(
                    "built by environment {}, which no longer points at it",
                    v.owner_env.as_deref().unwrap_or("?")
                ))),
                Some(_) if live_made.is_some_and(|m| (v.created_at, v.version) > m) => {
                    plan.keep.push(fate("newer than live: being built"))
                }
                None => plan.keep.push(fate("no live version yet")),
                _ if Some(v.version) == previous => {
                    plan.keep.push(fate("previous: what rollback returns to"))
                }
                _ if kept_old < keep => {
                    kept_old += 1;
                    plan.keep.push(fate("within --keep"))
                }
                _ => plan
                    .remove
                    .push(fate("older than live, not the previous one, beyond --keep")),
            }
        }
    }
    Ok(plan)
}

/// What `execute` did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct GcReport {
    /// The lapsed environments dropped.
    pub dropped_envs: Vec<String>,
    pub removed: Vec<VersionFate>,
    /// Removals refused because an alias now points at the version.
    pub refused: Vec<VersionFate>,
    /// Files vacuumed from kept versions (older than the table's retention and no longer
    /// referenced: replaced partitions, files of runs that died before committing).
    pub vacuumed_files: usize,
}

pub async fn execute(catalog: &Catalog, plan: &GcPlan, now_ms: i64) -> Result<GcReport, GcError> {
    let mut report = GcReport::default();
    for name in &plan.lapsed_envs {
        // Dropped only if still lapsed: one made again under the same name since the plan
        // stays, and its aliases keep what they point at (the removal below re-checks).
        if catalog.drop_env_if_lapsed(name, now_ms).await? {
            tracing::info!(env = %name, "dropped the lapsed environment");
            report.dropped_envs.push(name.clone());
        }
    }
    for f in &plan.remove {
        // The catalog first: once it forgets the version, nothing resolves to it.
        if !catalog.drop_table_version(&f.table, f.version).await? {
            report.refused.push(f.clone());
            continue;
        }
        crate::delta::store::delete_version(&f.uri).await?;
        tracing::info!(table = %f.table, version = f.version, "removed");
        report.removed.push(f.clone());
    }
    for f in &plan.keep {
        // A merging version's tombstones or change log are tables of their own, which the
        // table's vacuum passes over (their folder starts with `_`).
        let root = f.uri.trim_end_matches('/');
        let sidecars = crate::run::SIDECARS.map(|s| format!("{root}/{s}"));
        for uri in std::iter::once(f.uri.clone()).chain(sidecars) {
            let Some(files) = crate::delta::store::vacuum(&uri).await? else {
                continue; // never written: nothing to vacuum
            };
            report.vacuumed_files += files;
        }
    }
    Ok(report)
}
