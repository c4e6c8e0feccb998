//! A slowly changing dimension of type 2 (`[output] write = "scd2"`): every version of a
//! key's tracked columns, with the interval it was valid in.
//!
//! The history is a function of the set of changes ever merged, so that it does not depend
//! on the order partitions ran in: the changes are kept beside the table (its change log,
//! one row per distinct change), and the history of the keys a partition touches is derived
//! again from their whole log. A change that arrives late (its sequence between two versions)
//! therefore splits the interval it falls in; one equal to the version before it (in the
//! tracked columns) is no new version, wherever it arrives; a delete closes the version it
//! follows; NULL to a value and a value to NULL are changes.
//!
//! `log` is the new log (what it held and the new changes, each once); `history` the
//! versions derived from a log.

use super::{MergeError, Scd2Rule};
use crate::schema::Column;
use deltalake::datafusion::common::DFSchema;
use deltalake::datafusion::prelude::{DataFrame, SessionContext, lit};

use super::resolve::quote;

fn list(cols: &[&Column]) -> String {
    cols.iter()
        .map(|c| quote(c.name.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

const LOG: &str = "__sluice_scd2_log";
const DEL: &str = "__sluice_deleted";

/// The new log: what `held` (the log's rows in the touched partitions) and `changes` hold,
/// each distinct change once. Refuses changes without a sequence value and two different
/// changes of a key with one sequence value. Both frames have the change columns.
pub async fn log(
    ctx: &SessionContext,
    table: &[Column],
    rule: &Scd2Rule,
    changes: DataFrame,
    held: DataFrame,
) -> Result<DataFrame, MergeError> {
    let cols = rule.change_columns(table);
    let all = list(&cols);
    let select = |df: DataFrame| {
        let exprs: Vec<_> = cols
            .iter()
            .map(|c| deltalake::datafusion::prelude::col(quote(c.name.as_str())))
            .collect();
        df.select(exprs)
    };
    super::resolve::refuse_missing_sequence(&changes, &rule.changes).await?;
    let union = select(held)?.union(select(changes)?)?;
    ctx.register_table(LOG, union.into_view())?;
    let key = super::resolve::key_list(&rule.changes);
    let seq = quote(rule.changes.sequence_by.as_str());
    let distinct = format!("SELECT DISTINCT {all} FROM {LOG}");
    super::resolve::refuse_repeated(ctx, &rule.changes, &distinct, &key, &seq).await?;
    Ok(ctx.sql(&distinct).await?)
}

/// `changes` with each flagged as a delete or not (`delete_when`), in column [`DEL`].
fn flagged(
    ctx: &SessionContext,
    rule: &Scd2Rule,
    changes: DataFrame,
) -> Result<DataFrame, MergeError> {
    let deleted = match &rule.changes.delete_when {
        None => lit(false),
        Some(expr) => {
            let schema = DFSchema::try_from(changes.schema().as_arrow().clone())?;
            super::resolve::delete_condition(ctx, expr, &schema)?
        }
    };
    Ok(changes.with_column(DEL, deleted)?)
}

/// Every version the log `log` makes, with the table's columns (`table`, in order).
pub async fn history(
    ctx: &SessionContext,
    table: &[Column],
    rule: &Scd2Rule,
    log: DataFrame,
) -> Result<DataFrame, MergeError> {
    let log = flagged(ctx, rule, log)?;
    versions(ctx, table, rule, log).await
}

/// The history after `changes` are merged into a table that held the versions `before`,
/// with no log beside it: what a `sluice test` states. The log those versions stand for is
/// each version's change at its `valid_from`, and a delete at the `valid_to` of each
/// version no other follows; a delete's other columns are of no account (it only closes a
/// version), so that a delete merged again is the same change.
pub async fn history_after(
    ctx: &SessionContext,
    table: &[Column],
    rule: &Scd2Rule,
    before: DataFrame,
    changes: DataFrame,
) -> Result<DataFrame, MergeError> {
    let r = &rule.changes;
    super::resolve::refuse_missing_sequence(&changes, r).await?;
    let cols = rule.change_columns(table);
    let (before_name, new_name) = ("__sluice_scd2_before", "__sluice_scd2_new");
    ctx.register_table(before_name, before.into_view())?;
    let new = flagged(ctx, rule, changes)?;
    ctx.register_table(new_name, new.into_view())?;
    let seq = quote(r.sequence_by.as_str());
    let (from, to) = (
        quote(rule.valid_from.as_str()),
        quote(rule.valid_to.as_str()),
    );
    let del = quote(DEL);
    let at = |when: &str| -> String {
        cols.iter()
            .map(|c| match c.name == r.sequence_by {
                true => format!("b.{when} AS {seq}"),
                false => format!("b.{}", quote(c.name.as_str())),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same_key: Vec<String> = r
        .key
        .iter()
        .map(|k| format!("n.{q} = b.{q}", q = quote(k.as_str())))
        .collect();
    let masked: Vec<String> = cols
        .iter()
        .map(|c| {
            let q = quote(c.name.as_str());
            match r.key.contains(&c.name) || c.name == r.sequence_by {
                true => q,
                false => format!("CASE WHEN {del} THEN NULL ELSE {q} END AS {q}"),
            }
        })
        .collect();
    let logged = format!(
        "SELECT DISTINCT {masked}, {del} FROM (\
           SELECT {versions}, false AS {del} FROM {before_name} b \
           UNION ALL \
           SELECT {closed}, true AS {del} FROM {before_name} b WHERE b.{to} IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM {before_name} n WHERE {same_key} AND n.{from} = b.{to}) \
           UNION ALL \
           SELECT {all}, {del} FROM {new_name})",
        masked = masked.join(", "),
        versions = at(&from),
        closed = at(&to),
        same_key = same_key.join(" AND "),
        all = list(&cols),
    );
    let key = super::resolve::key_list(r);
    super::resolve::refuse_repeated(ctx, r, &logged, &key, &seq).await?;
    let log = ctx.sql(&logged).await?;
    versions(ctx, table, rule, log).await
}

/// Every version a log flagged by [`flagged`] makes, with the table's columns.
async fn versions(
    ctx: &SessionContext,
    table: &[Column],
    rule: &Scd2Rule,
    log: DataFrame,
) -> Result<DataFrame, MergeError> {
    let r = &rule.changes;
    let name = "__sluice_scd2_changes";
    ctx.register_table(name, log.into_view())?;
    let cols = rule.change_columns(table);
    let all = list(&cols);
    let key = super::resolve::key_list(r);
    let seq = quote(r.sequence_by.as_str());
    let w = format!("PARTITION BY {key} ORDER BY {seq}");
    let tracked = rule.tracked(table);
    let lags: String = tracked
        .iter()
        .enumerate()
        .map(|(i, c)| format!(", LAG({}) OVER ({w}) AS __p{i}", quote(c.name.as_str())))
        .collect();
    let changed: String = tracked
        .iter()
        .enumerate()
        .map(|(i, c)| format!(" OR ({} IS DISTINCT FROM __p{i})", quote(c.name.as_str())))
        .collect();
    let del = quote(DEL);
    // A version starts at a change that is not a delete and follows nothing, a delete, or a
    // change of other tracked values; it ends at the next start or delete.
    let out: Vec<String> = table
        .iter()
        .map(|c| {
            let n = &c.name;
            // Of the sequence's type already (`check_table`).
            if *n == rule.valid_from {
                format!("{seq} AS {}", quote(n.as_str()))
            } else if *n == rule.valid_to {
                format!("__next AS {}", quote(n.as_str()))
            } else if *n == rule.is_current {
                format!("__next IS NULL AS {}", quote(n.as_str()))
            } else {
                quote(n.as_str())
            }
        })
        .collect();
    let sql = format!(
        "SELECT {out} FROM (\
           SELECT *, LEAD({seq}) OVER ({w}) AS __next FROM (\
             SELECT * FROM (\
               SELECT *, (NOT {del} AND (__n = 1 OR __pdel{changed})) AS __start FROM (\
                 SELECT {all}, {del}, ROW_NUMBER() OVER ({w}) AS __n, LAG({del}) OVER ({w}) AS __pdel{lags} \
                 FROM {name})) \
             WHERE __start OR {del})) \
         WHERE __start",
        out = out.join(", "),
    );
    Ok(ctx.sql(&sql).await?)
}

#[cfg(test)]
mod tests;
