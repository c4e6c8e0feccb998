//! The audit of a merging job's run (`write = "merge" | "scd2"`): its checks run on what
//! the merge's commit would publish, written but not yet committed, so that a failing
//! check leaves the table as it was. Two sets of rows:
//!
//! - the job's row checks (`not_null`, `unique`, `accepted_values`, `sql`, `freshness`)
//!   see the rows the commit publishes for the keys the partition's changes name: a change
//!   that loses to a newer row is not published, so it is not checked; a delete publishes
//!   no row (scd2: the version it closes). The checks of counts (`row_count`, `volume`,
//!   `null_fraction`) read the partition's profile, which is that of its changes: the
//!   volume of a change feed is what drifts;
//! - sluice's own check that the key is unique over the current rows of the partitions
//!   the commit rewrites (scd2: the rows with `is_current`), the promise of a merge table.
//!   A key's partition columns are part of it, so those partitions hold all of its rows.
//!   A merge proves it as its lanes write the rows in key order (`merge::KeyOrder`); an
//!   scd2 history's current rows are read back and checked as a `unique` check is.

use super::claimed::Attempt;
use super::write::{PartitionWrite, judge};
use super::{RunError, RunReport};
use crate::job::WriteMode;
use crate::merge::KeyTally;
use crate::names::Name;
use crate::quality::{Check, CheckKind, CheckResult, Profile, Quality, Severity};
use deltalake::DeltaTable;
use deltalake::datafusion::common::{Column, JoinType};
use deltalake::datafusion::prelude::{DataFrame, Expr, col, lit};
use deltalake::kernel::Add;

/// The name sluice's key check is recorded under (in `status`, the partition's page).
pub(crate) const KEY_CHECK: &str = "key_unique_in_current_rows";

impl PartitionWrite<'_> {
    /// Audits the rows in `published` (the merge's new files of the partitions it
    /// rewrites, not committed; with the tally of their keys when the writer watched them)
    /// and records the outcome in `report`; fails the run on a failing check of severity
    /// error.
    pub(super) async fn audit_published(
        &self,
        a: &Attempt<'_>,
        table: &DeltaTable,
        changes: &[Add],
        (published, keys): (&[Add], Option<KeyTally>),
        report: &mut RunReport,
    ) -> Result<(), RunError> {
        let profile = report
            .quality
            .as_ref()
            .and_then(|q| q.profile.clone())
            .unwrap_or_default();
        let ctx = self.engine.session();
        let failed = |e| RunError::AuditCouldNotRun(crate::quality::QualityError::from(e));
        let schema = &a.schema;
        let (key, current) = match &a.job.write {
            WriteMode::Merge(rule) => (&rule.key, None),
            WriteMode::Scd2(rule) => (&rule.changes.key, Some(&rule.is_current)),
            WriteMode::Replace => return Ok(()),
        };
        let rows = super::merge::changed_files(&ctx, table, schema, published)?;
        let rows = ctx.read_table(rows).map_err(failed)?;
        let mut quality = Quality {
            profile: None,
            checks: Vec::new(),
        };
        if !a.job.checks.is_empty() {
            let changed = super::merge::changed_files(&ctx, table, schema, changes)?;
            let changed = ctx.read_table(changed).map_err(failed)?;
            let named = of_keys_named(rows.clone(), changed, key).map_err(failed)?;
            quality = self
                .audit(a, &ctx, profile.clone(), named.into_view(), &a.job.checks)
                .await?;
        }
        let key_check = Check {
            name: KEY_CHECK.to_string(),
            severity: Severity::Error,
            kind: CheckKind::Unique {
                columns: key.clone(),
            },
        };
        let keyed = match keys {
            Some(tally) => Quality {
                profile: None,
                checks: vec![watched(&key_check, key, tally)],
            },
            None => {
                let current_rows = match current {
                    None => rows,
                    Some(flag) => rows
                        .filter(col(Column::new_unqualified(flag.as_str())).eq(lit(true)))
                        .map_err(failed)?,
                };
                let counted = Profile {
                    rows: published.iter().map(records).sum(),
                    columns: Default::default(),
                };
                let ctx = self.engine.session();
                self.audit(a, &ctx, counted, current_rows.into_view(), &[key_check])
                    .await?
            }
        };
        quality.checks.extend(keyed.checks);
        quality.profile = Some(profile);
        judge(report, quality)
    }
}

/// The key check's result from the writer's tally, as the `unique` check words its own.
fn watched(check: &Check, key: &[Name], tally: KeyTally) -> CheckResult {
    CheckResult {
        name: check.name.clone(),
        severity: check.severity,
        passed: tally.repeated == 0,
        failing: tally.repeated,
        detail: crate::quality::audit::repeated_keys(tally.repeated, key),
        samples: tally.first.into_iter().collect(),
    }
}

/// The rows of `rows` whose key one of `changed` names. The keys are the join's build
/// side: a day's changes, not the partitions they touch.
fn of_keys_named(
    rows: DataFrame,
    changed: DataFrame,
    key: &[Name],
) -> Result<DataFrame, deltalake::datafusion::error::DataFusionError> {
    let on_key = |c: &Name, q: &str| col(Column::new(Some(q), c.as_str()));
    let keys = changed
        .select(key.iter().map(|k| col(Column::new_unqualified(k.as_str()))))?
        .distinct()?
        .alias("changed")?;
    let rows = rows.alias("published")?;
    let on: Vec<Expr> = key
        .iter()
        .map(|k| on_key(k, "changed").eq(on_key(k, "published")))
        .collect();
    keys.join_on(rows, JoinType::RightSemi, on)
}

/// The rows a file holds, as its statistics say (0 when they do not): sizes the key
/// check's proof, which counts exactly whatever this says.
fn records(add: &Add) -> u64 {
    add.get_stats()
        .ok()
        .flatten()
        .map_or(0, |s| u64::try_from(s.num_records).unwrap_or(0))
}
