//! Blue-green cutover: which alias flips a `promote` or `rollback` asks for. The flips are
//! a plan (`--dry-run` prints it); [`crate::catalog::Catalog::flip_aliases`] checks every
//! precondition and flips them in one transaction, all or none.

use crate::catalog::{Catalog, CatalogError, Flip};

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("`{0}` is not TABLE or TABLE@VERSION (e.g. clean_orders@2)")]
    Target(String),
    #[error("table `{0}` has no live version (nothing has been written to it yet)")]
    NoLive(String),
    #[error("{table}: say which version to promote: --version N, or {table}@N")]
    NoVersion { table: String },
    #[error("{table}: v{version} is already live")]
    AlreadyLive { table: String, version: i64 },
    #[error("{table}: no earlier version to roll back to (see `sluice history {table}`)")]
    NoPrevious { table: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// `TABLE` or `TABLE@N` (`v` before N is accepted).
pub fn parse_target(text: &str) -> Result<(String, Option<i64>), PromoteError> {
    let bad = || PromoteError::Target(text.to_string());
    let (t, v) = match text.split_once('@') {
        None => (text, None),
        Some((t, v)) => {
            let n = v
                .trim_start_matches('v')
                .parse::<i64>()
                .map_err(|_| bad())?;
            if n < 1 {
                return Err(bad());
            }
            (t, Some(n))
        }
    };
    let name = crate::names::Name::new(t).map_err(|_| bad())?;
    Ok((name.to_string(), v))
}

/// The flips promoting each target to its version (or `version` when it names none). With
/// `expect`, the flips replace that version only (what the caller saw live), whatever the
/// alias says when the plan is made.
pub async fn plan_promote(
    catalog: &Catalog,
    targets: &[String],
    version: Option<i64>,
    expect: Option<i64>,
) -> Result<Vec<Flip>, PromoteError> {
    let mut flips = Vec::new();
    for text in targets {
        let (table, v) = parse_target(text)?;
        let to = v.or(version).ok_or_else(|| PromoteError::NoVersion {
            table: table.clone(),
        })?;
        let live = match expect {
            Some(v) => v,
            None => catalog
                .alias(&table)
                .await?
                .ok_or_else(|| PromoteError::NoLive(table.clone()))?,
        };
        if live == to {
            return Err(PromoteError::AlreadyLive { table, version: to });
        }
        flips.push(Flip {
            table,
            expect: live,
            to,
        });
    }
    Ok(flips)
}

/// The flips taking each table back to the version its last flip replaced.
pub async fn plan_rollback(
    catalog: &Catalog,
    tables: &[String],
) -> Result<Vec<Flip>, PromoteError> {
    let mut flips = Vec::new();
    for text in tables {
        let (table, _) = parse_target(text)?;
        let live = catalog
            .alias(&table)
            .await?
            .ok_or_else(|| PromoteError::NoLive(table.clone()))?;
        let history = catalog.alias_history(&table).await?;
        let prev = history
            .iter()
            .rev()
            .find(|h| h.to_version == live)
            .and_then(|h| h.from_version)
            .ok_or_else(|| PromoteError::NoPrevious {
                table: table.clone(),
            })?;
        flips.push(Flip {
            table,
            expect: live,
            to: prev,
        });
    }
    Ok(flips)
}
