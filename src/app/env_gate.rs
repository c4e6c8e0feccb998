//! `env promote NAME --fail-above FRACTION`: each table the promote would flip, compared
//! (`diff`) between production's live version and the environment's over the partitions
//! the environment's holds, before anything flips: the same figure `diff --env` gives.

use crate::catalog::{Catalog, Flip, NO_VERSION};
use crate::diff::{self, DiffError};
use crate::engine::Engine;
use crate::project::Project;
use serde::Serialize;

/// One table's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub table: String,
    pub from: i64,
    pub to: i64,
    /// The fraction of rows added, removed or changed.
    pub changed_fraction: f64,
}

/// Each flip's table compared, in order (a table production has no version of: none).
pub async fn compare(
    project: &Project,
    catalog: &Catalog,
    engine: &Engine,
    flips: &[Flip],
) -> Result<Vec<Compared>, DiffError> {
    let mut out = Vec::new();
    for f in flips.iter().filter(|f| f.expect != NO_VERSION) {
        let writer = project.writer_of(&f.table);
        let key: Vec<String> = writer
            .map(|j| j.key.iter().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        let span = held_span(catalog, &f.table, f.to).await?;
        let schema = catalog.table(&f.table).await?.map(|t| t.schema);
        let partitions = match (span, writer, schema) {
            (Some(text), Some(job), Some(schema)) => {
                diff::parse_partitions(job, &schema, &text).ok()
            }
            _ => None,
        };
        let d = diff::diff(catalog, engine, &f.table, f.expect, f.to, partitions, &key).await?;
        out.push(Compared {
            table: f.table.clone(),
            from: f.expect,
            to: f.to,
            changed_fraction: d.changed_fraction(),
        });
    }
    Ok(out)
}

/// The partitions `version` holds, as `FIRST..LAST` of their times (`None` when they have
/// none): what an environment built over a few days is compared on.
pub async fn held_span(
    catalog: &Catalog,
    table: &str,
    version: i64,
) -> Result<Option<String>, crate::catalog::CatalogError> {
    let held = catalog.partitions_of(table, version).await?;
    let times: std::collections::BTreeSet<&str> = held
        .iter()
        .filter(|p| p.content_run_id.is_some())
        .filter_map(|p| {
            p.partition_key
                .split(crate::partition::KEY_SEPARATOR)
                .next()
        })
        .filter(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    Ok(match (times.first(), times.last()) {
        (Some(first), Some(last)) => Some(format!("{first}..{last}")),
        _ => None,
    })
}
