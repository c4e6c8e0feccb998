//! Whether a change of a job's code breaks what reads its table, as far as the code shows:
//! it does not only when the spec is the same (but for its `version` line) and the new
//! query is the old one with items appended to its SELECT, which adds columns and leaves
//! every row and every old column as it was. Anything else, or anything that does not
//! parse, breaks: unsure is breaking. And whether a reader takes every column of what it
//! reads (`*`, `t.*`), so that a column added upstream changes what it writes.

use deltalake::datafusion::sql::sqlparser::ast::{SetExpr, Statement};
use deltalake::datafusion::sql::sqlparser::dialect::GenericDialect;
use deltalake::datafusion::sql::sqlparser::parser::Parser;

/// One SQL statement, parsed, if it is one.
fn statement(sql: &str) -> Option<Statement> {
    let mut all = Parser::parse_sql(&GenericDialect {}, sql).ok()?;
    (all.len() == 1).then(|| all.remove(0))
}

/// The spec's code without its `version` line.
fn spec_code(spec_text: &str) -> String {
    crate::fingerprint::code_of(spec_text)
        .lines()
        .filter(|l| !l.trim_start().starts_with("version"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// True when the code `new_*` only appends columns to what the code `old_*` selects.
pub fn adds_columns_only(old_spec: &str, old_sql: &str, new_spec: &str, new_sql: &str) -> bool {
    if spec_code(old_spec) != spec_code(new_spec) {
        return false;
    }
    let (Some(old), Some(mut new)) = (statement(old_sql), statement(new_sql)) else {
        return false;
    };
    let (Statement::Query(old_q), Statement::Query(new_q)) = (&old, &mut new) else {
        return false;
    };
    let (SetExpr::Select(old_s), SetExpr::Select(new_s)) =
        (old_q.body.as_ref(), new_q.body.as_mut())
    else {
        return false;
    };
    let kept = old_s.projection.len();
    if new_s.projection.len() <= kept || new_s.projection[..kept] != old_s.projection[..] {
        return false;
    }
    // The new query without what it appended must be the old one, clause by clause.
    new_s.projection.truncate(kept);
    new.to_string() == old.to_string()
}

/// True when `sql` may take every column of something it reads: a `*` or `t.*` among the
/// items of any SELECT (found in its normalized text; a `COUNT(*)` or a product is not
/// one), or SQL that does not parse.
pub fn reads_every_column(sql: &str) -> bool {
    let Some(s) = statement(sql) else {
        return true;
    };
    let text = s.to_string().to_ascii_uppercase();
    ["SELECT *", "DISTINCT *", ", *", ".*"]
        .iter()
        .any(|w| text.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "version = 1\nstart = \"2024-01-01\"\n[output]\ntable = \"t\"\n";

    #[test]
    fn an_appended_column_is_the_only_change_that_does_not_break() {
        let old = "SELECT a, b * 2 AS c FROM x WHERE a > 0";
        let spec2 = SPEC.replace("version = 1", "version = 2");
        let same = |new: &str| adds_columns_only(SPEC, old, &spec2, new);
        assert!(same("SELECT a, b * 2 AS c, d FROM x WHERE a > 0"));
        assert!(same(
            "select a,  b * 2 as c, upper(d) AS e from x where a > 0"
        ));
        // A changed filter, a changed or removed column, a reordering, a new join: breaking.
        assert!(!same("SELECT a, b * 2 AS c, d FROM x WHERE a > 1"));
        assert!(!same("SELECT a, b * 3 AS c, d FROM x WHERE a > 0"));
        assert!(!same("SELECT a FROM x WHERE a > 0"));
        assert!(!same("SELECT d, a, b * 2 AS c FROM x WHERE a > 0"));
        assert!(!same(
            "SELECT a, b * 2 AS c, y.d FROM x JOIN y ON x.a = y.a WHERE a > 0"
        ));
        assert!(!same(old), "nothing appended is no added column");
        assert!(!same("not sql"));
        // The spec counts too, but for its version line.
        let other_spec = SPEC.replace("start = \"2024-01-01\"", "start = \"2024-02-01\"");
        assert!(!adds_columns_only(
            SPEC,
            old,
            &other_spec,
            "SELECT a, b * 2 AS c, d FROM x WHERE a > 0"
        ));
    }

    #[test]
    fn a_star_reads_every_column_a_count_or_a_product_does_not() {
        assert!(reads_every_column("SELECT * FROM x"));
        assert!(reads_every_column("SELECT x.* FROM x"));
        assert!(reads_every_column("SELECT a, * FROM x"));
        assert!(reads_every_column("SELECT a FROM (SELECT * FROM x) s"));
        assert!(reads_every_column(
            "WITH s AS (SELECT DISTINCT * FROM x) SELECT a FROM s"
        ));
        assert!(!reads_every_column(
            "SELECT a, count(*) AS n, b * c AS d FROM x GROUP BY a"
        ));
        assert!(reads_every_column("not sql"), "unsure is every column");
        // A job's parameters are not stars.
        let sql = "SELECT CAST($partition_start AS DATE) AS dt, a FROM x WHERE r = $key";
        assert!(!reads_every_column(sql));
    }
}
