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

use super::{MergeError, MergeRule};
use crate::names::Name;
use crate::schema::Column;
use deltalake::datafusion::common::DFSchema;
use deltalake::datafusion::prelude::{DataFrame, SessionContext, lit};

/// How a job's changes become a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scd2Rule {
    /// The key, the sequence and the delete condition, as a merge has them.
    pub changes: MergeRule,
    /// The columns whose change makes a new version; empty: every column but the key, the
    /// sequence and the history's own.
    pub track: Vec<Name>,
    pub valid_from: Name,
    pub valid_to: Name,
    pub is_current: Name,
}

impl Scd2Rule {
    /// The history's own columns, which sluice fills.
    pub fn history_columns(&self) -> [&Name; 3] {
        [&self.valid_from, &self.valid_to, &self.is_current]
    }

    /// The columns of a change: the table's, less the history's own.
    pub fn change_columns<'c>(&self, table: &'c [Column]) -> Vec<&'c Column> {
        let own = self.history_columns();
        table.iter().filter(|c| !own.contains(&&c.name)).collect()
    }

    /// The columns whose change makes a new version.
    pub fn tracked<'c>(&self, table: &'c [Column]) -> Vec<&'c Column> {
        let r = &self.changes;
        self.change_columns(table)
            .into_iter()
            .filter(|c| {
                if self.track.is_empty() {
                    !r.key.contains(&c.name) && c.name != r.sequence_by
                } else {
                    self.track.contains(&c.name)
                }
            })
            .collect()
    }
}

/// What an scd2 job needs of its table: what a merge needs, the history's columns
/// (`valid_from` and `valid_to` of the sequence's type, `is_current` BOOLEAN, all nullable:
/// the job's rows leave them out, and sluice fills them), and the tracked columns.
pub fn check_table(rule: &Scd2Rule, schema: &crate::schema::TableSchema) -> Result<(), String> {
    super::check_table(&rule.changes, schema)?;
    let t = &schema.name;
    let seq = schema
        .column(rule.changes.sequence_by.as_str())
        .map(|c| c.ty);
    for (field, name) in [
        ("output.valid_from", &rule.valid_from),
        ("output.valid_to", &rule.valid_to),
        ("output.is_current", &rule.is_current),
    ] {
        let Some(c) = schema.column(name.as_str()) else {
            return Err(format!(
                "table `{t}` has no column `{name}` ({field}): an scd2 table holds each version's interval; add `{name}` to its CREATE TABLE, or name another column in {field}"
            ));
        };
        let want = if *name == rule.is_current {
            Some(crate::schema::ColumnType::Boolean)
        } else {
            seq
        };
        if want.is_some_and(|w| w != c.ty) {
            return Err(format!(
                "column `{name}` ({field}) of table `{t}` is {}, but must be {}{}",
                c.ty,
                want.map(|w| w.to_string()).unwrap_or_default(),
                if *name == rule.is_current {
                    ""
                } else {
                    ", the type of output.sequence_by"
                }
            ));
        }
        if !c.nullable {
            return Err(format!(
                "column `{name}` ({field}) of table `{t}` is NOT NULL: sluice fills it after the job's rows are written, which leave it out; declare it without NOT NULL"
            ));
        }
        if rule.changes.key.contains(name) || *name == rule.changes.sequence_by {
            return Err(format!(
                "{field} = \"{name}\" is also the key or the sequence: name a column of its own"
            ));
        }
    }
    for c in &rule.track {
        if schema.column(c.as_str()).is_none() {
            return Err(format!(
                "output.track names column `{c}`, which table `{t}` does not have"
            ));
        }
        if rule.history_columns().contains(&c) {
            return Err(format!(
                "output.track names `{c}`, a column of the history itself: track the job's own columns"
            ));
        }
    }
    Ok(())
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

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
    let key = rule
        .changes
        .key
        .iter()
        .map(|k| quote(k.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let seq = quote(rule.changes.sequence_by.as_str());
    let distinct = format!("SELECT DISTINCT {all} FROM {LOG}");
    super::resolve::refuse_repeated(ctx, &rule.changes, &distinct, &key, &seq).await?;
    Ok(ctx.sql(&distinct).await?)
}

/// Every version the log `log` makes, with the table's columns (`table`, in order).
pub async fn history(
    ctx: &SessionContext,
    table: &[Column],
    rule: &Scd2Rule,
    log: DataFrame,
) -> Result<DataFrame, MergeError> {
    let r = &rule.changes;
    let deleted = match &r.delete_when {
        None => lit(false),
        Some(expr) => {
            let schema = DFSchema::try_from(log.schema().as_arrow().clone())?;
            let parsed = ctx
                .parse_sql_expr(expr, &schema)
                .map_err(|e| MergeError::DeleteWhen {
                    expr: expr.clone(),
                    message: crate::engine::clean_message(&e),
                })?;
            deltalake::datafusion::functions::expr_fn::coalesce(vec![parsed, lit(false)])
        }
    };
    let log = log.with_column(DEL, deleted)?;
    let name = "__sluice_scd2_changes";
    ctx.register_table(name, log.into_view())?;
    let cols = rule.change_columns(table);
    let all = list(&cols);
    let key = r
        .key
        .iter()
        .map(|k| quote(k.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
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
