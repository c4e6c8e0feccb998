//! The plan: pending migrations in order, after checking the ledger against the files, with
//! each change classified additive or destructive per physical version.

use crate::names::Name;
use crate::project::migration_files::MigrationFile;
use crate::schema::TableSchema;
use crate::schema::alter::apply_action;
use crate::schema::ddl::{AlterAction, Statement};
use std::collections::BTreeMap;

/// Why `migrate` will not go ahead: the ledger disagrees with the files, or a migration
/// cannot apply to the tables as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "migrations/{name} was applied on {applied_at} (checksum {applied}) but the file has changed (checksum {now}); applied migrations are history: restore the file and put the change in a new migration"
    )]
    Changed {
        name: String,
        applied: String,
        now: String,
        applied_at: String,
    },
    #[error(
        "migrations/{name} was applied on {applied_at} but the file is gone; restore it (applied migrations stay in migrations/)"
    )]
    Missing { name: String, applied_at: String },
    #[error("migrations/{name}: {message}")]
    Invalid { name: String, message: String },
}

/// One step `migrate` will take.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedMigration {
    pub name: String,
    pub checksum: String,
    /// Why it is destructive, when it is: it then needs `--allow-destructive`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destructive: Vec<String>,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    CreateTable {
        table: TableSchema,
    },
    /// `CREATE TABLE IF NOT EXISTS` of a table that already exists.
    AlreadyExists {
        table: Name,
    },
    /// Changes to one table's schema, applied to each of its physical versions.
    Alter {
        table: Name,
        actions: Vec<AlterAction>,
        /// The schema after the actions: what the catalog will hold.
        after: TableSchema,
        /// Physical versions that exist now; each gets the change.
        versions: Vec<i64>,
        /// True when every action only adds to the schema (metadata only, no rewrite).
        additive: bool,
    },
    DropTable {
        table: Name,
        versions: Vec<i64>,
    },
    /// `DROP TABLE IF EXISTS` of a table that does not exist.
    NothingToDrop {
        table: Name,
    },
}

fn describe_action(a: &AlterAction) -> String {
    match a {
        AlterAction::AddColumn { column } => format!(
            "add column {} {}{}{}",
            column.name,
            column.ty,
            if column.nullable { "" } else { " NOT NULL" },
            column
                .default
                .as_ref()
                .map(|d| format!(" DEFAULT {d}"))
                .unwrap_or_default()
        ),
        AlterAction::SetType { column, ty } => format!("change the type of {column} to {ty}"),
        AlterAction::SetNotNull { column } => format!("make {column} NOT NULL"),
        AlterAction::DropNotNull { column } => format!("make {column} nullable"),
        AlterAction::SetColumnComment { column, .. } => format!("set the comment of {column}"),
        AlterAction::DropColumn { column } => format!("drop column {column}"),
        AlterAction::RenameColumn { from, to } => format!("rename column {from} to {to}"),
        AlterAction::SetProperties { properties } => format!(
            "set properties {}",
            properties
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        AlterAction::SetComment { .. } => "set the table comment".into(),
    }
}

fn versions_text(versions: &[i64]) -> String {
    if versions.is_empty() {
        "no physical version yet: catalog only".into()
    } else {
        versions
            .iter()
            .map(|v| format!("v{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::CreateTable { table } => {
                let cols: Vec<String> = table
                    .columns
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {}{}",
                            c.name,
                            c.ty,
                            if c.nullable { "" } else { " NOT NULL" }
                        )
                    })
                    .collect();
                write!(f, "create table {} ({})", table.name, cols.join(", "))?;
                if !table.partition_by.is_empty() {
                    let p: Vec<&str> = table.partition_by.iter().map(|n| n.as_str()).collect();
                    write!(f, " partitioned by ({})", p.join(", "))?;
                }
                Ok(())
            }
            Change::AlreadyExists { table } => {
                write!(f, "table {table} exists already: nothing to do")
            }
            Change::Alter {
                table,
                actions,
                versions,
                additive,
                ..
            } => {
                let what: Vec<String> = actions.iter().map(describe_action).collect();
                write!(
                    f,
                    "table {table}: {} [{}; {}]",
                    what.join("; "),
                    versions_text(versions),
                    if *additive {
                        "Delta metadata only, no data rewritten"
                    } else {
                        "DESTRUCTIVE: every data file rewritten"
                    }
                )
            }
            Change::DropTable { table, versions } => write!(
                f,
                "drop table {table} with its alias and data [{}; DESTRUCTIVE]",
                versions_text(versions)
            ),
            Change::NothingToDrop { table } => {
                write!(f, "table {table} does not exist: nothing to drop")
            }
        }
    }
}

/// The plan `migrate --plan` prints and `migrate` executes: the pending files in order,
/// after checking the ledger against the files on disk.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationPlan {
    pub pending: Vec<PlannedMigration>,
    pub applied: Vec<String>,
}

/// A table as the catalog holds it now: its schema and its physical versions.
#[derive(Debug, Clone)]
pub struct ExistingTable {
    pub schema: TableSchema,
    pub versions: Vec<i64>,
}

pub fn plan(
    files: &[MigrationFile],
    applied: &[crate::catalog::AppliedMigration],
    existing: &BTreeMap<Name, ExistingTable>,
) -> Result<MigrationPlan, Vec<PlanError>> {
    let mut errors = ledger_errors(files, applied);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut tables = existing.clone();
    let mut pending = Vec::new();
    for f in files {
        if applied.iter().any(|a| a.name == f.name) {
            continue;
        }
        pending.push(plan_file(f, &mut tables, &mut errors));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(MigrationPlan {
        pending,
        applied: applied.iter().map(|a| a.name.clone()).collect(),
    })
}

/// Applied migrations whose file changed or is gone: history that no longer matches.
fn ledger_errors(
    files: &[MigrationFile],
    applied: &[crate::catalog::AppliedMigration],
) -> Vec<PlanError> {
    let when = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    };
    let mut errors = Vec::new();
    for a in applied {
        match files.iter().find(|f| f.name == a.name) {
            None => errors.push(PlanError::Missing {
                name: a.name.clone(),
                applied_at: when(a.applied_at),
            }),
            Some(f) if f.checksum != a.checksum => errors.push(PlanError::Changed {
                name: a.name.clone(),
                applied: a.checksum[..12.min(a.checksum.len())].to_string(),
                now: f.checksum[..12].to_string(),
                applied_at: when(a.applied_at),
            }),
            Some(_) => {}
        }
    }
    errors
}

/// One pending file's changes against `tables` (as the files before it leave them, which
/// it updates), classified additive or destructive.
fn plan_file(
    f: &MigrationFile,
    tables: &mut BTreeMap<Name, ExistingTable>,
    errors: &mut Vec<PlanError>,
) -> PlannedMigration {
    let invalid = |message: String| PlanError::Invalid {
        name: f.name.clone(),
        message,
    };
    let mut changes: Vec<Change> = Vec::new();
    let mut destructive = Vec::new();
    let mut adds = false;
    for s in &f.statements {
        match s {
            Statement::CreateTable { schema, .. } => {
                if tables.contains_key(&schema.name) {
                    changes.push(Change::AlreadyExists {
                        table: schema.name.clone(),
                    });
                } else {
                    tables.insert(
                        schema.name.clone(),
                        ExistingTable {
                            schema: schema.clone(),
                            versions: Vec::new(),
                        },
                    );
                    changes.push(Change::CreateTable {
                        table: schema.clone(),
                    });
                    adds = true;
                }
            }
            Statement::AlterTable { table, action } => {
                match alter(tables, table, action, &mut changes) {
                    Ok(None) => adds = true,
                    Ok(Some(why)) => destructive.push(why),
                    Err(e) => errors.push(invalid(format!("ALTER TABLE {table}: {e}"))),
                }
            }
            Statement::DropTable { table, if_exists } => match tables.remove(table) {
                Some(t) => {
                    destructive.push(format!(
                        "it drops table `{table}` with every version and all of its data"
                    ));
                    changes.push(Change::DropTable {
                        table: table.clone(),
                        versions: t.versions,
                    });
                }
                None if *if_exists => changes.push(Change::NothingToDrop {
                    table: table.clone(),
                }),
                None => errors.push(invalid(format!(
                    "DROP TABLE {table}: the catalog has no table `{table}`"
                ))),
            },
        }
    }
    if !destructive.is_empty() && adds {
        errors.push(invalid(
            "it mixes additive and destructive changes; put the destructive change in a migration of its own, so that it is applied as its own step (`sluice migrate --allow-destructive`)".into(),
        ));
    }
    PlannedMigration {
        name: f.name.clone(),
        checksum: f.checksum.clone(),
        destructive,
        changes,
    }
}

/// One ALTER TABLE action on `tables`, added to `changes`; returns why it is destructive,
/// if it is.
fn alter(
    tables: &mut BTreeMap<Name, ExistingTable>,
    table: &Name,
    action: &AlterAction,
    changes: &mut Vec<Change>,
) -> Result<Option<String>, String> {
    let Some(t) = tables.get_mut(table) else {
        return Err(format!("the catalog has no table `{table}`"));
    };
    let (next, why) = apply_action(&t.schema, action)?;
    t.schema = next.clone();
    let additive = why.is_none();
    // Consecutive changes to one table become one change: one commit per physical version.
    match changes.last_mut() {
        Some(Change::Alter {
            table: last,
            actions,
            after,
            additive: was_additive,
            ..
        }) if last == table => {
            actions.push(action.clone());
            *after = next;
            *was_additive &= additive;
        }
        _ => changes.push(Change::Alter {
            table: table.clone(),
            actions: vec![action.clone()],
            after: next,
            versions: t.versions.clone(),
            additive,
        }),
    }
    Ok(why)
}

/// Where the jobs still use what a destructive change takes away: one line per use. A
/// job's SQL is searched for the column as a word (outside string literals and comments),
/// which may find a use that is not one; it never misses one spelled in the SQL.
pub fn remaining_references(
    jobs: &BTreeMap<Name, crate::job::Job>,
    change: &Change,
) -> Vec<String> {
    let mut out = Vec::new();
    let touches = |j: &crate::job::Job, table: &Name| {
        let writes = &j.table == table;
        let reads = j.inputs.iter().any(
            |i| matches!(&i.source, crate::job::InputSource::Table { table: t, .. } if t == table),
        );
        (writes, reads)
    };
    match change {
        Change::DropTable { table, .. } => {
            for j in jobs.values() {
                match touches(j, table) {
                    (true, _) => out.push(format!(
                        "job {} (jobs/{}.toml) writes table `{table}`",
                        j.name, j.name
                    )),
                    (false, true) => out.push(format!(
                        "job {} (jobs/{}.toml) reads table `{table}`",
                        j.name, j.name
                    )),
                    _ => {}
                }
            }
        }
        Change::Alter { table, actions, .. } => {
            let mut columns: Vec<&Name> = Vec::new();
            for a in actions {
                match a {
                    AlterAction::DropColumn { column } => columns.push(column),
                    AlterAction::RenameColumn { from, .. } => columns.push(from),
                    _ => {}
                }
            }
            for j in jobs.values() {
                let (writes, reads) = touches(j, table);
                if !(writes || reads) {
                    continue;
                }
                let words = sql_words(&j.sql);
                for c in &columns {
                    let in_key = writes && j.key.iter().any(|k| k == *c);
                    if in_key || words.contains(&c.as_str().to_ascii_lowercase()) {
                        out.push(format!(
                            "job {} ({}) {} table `{table}` and uses column `{c}`",
                            j.name,
                            j.sql_path
                                .file_name()
                                .map(|n| format!("jobs/{}", n.to_string_lossy()))
                                .unwrap_or_else(|| format!("jobs/{}.sql", j.name)),
                            if writes { "writes" } else { "reads" },
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// The identifiers in a SQL text, lower-cased; string literals and comments left out.
fn sql_words(sql: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let b: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '-' && b.get(i + 1) == Some(&'-') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '\'' {
            i += 1;
            while i < b.len() && b[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == '"' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += 1;
            }
            out.insert(
                b[start..i.min(b.len())]
                    .iter()
                    .collect::<String>()
                    .to_ascii_lowercase(),
            );
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.insert(b[start..i].iter().collect::<String>().to_ascii_lowercase());
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_words_skip_literals_and_comments() {
        let w =
            sql_words("SELECT a, \"B c\" -- refunds\n FROM t WHERE s = 'refunds' /* refunds */");
        assert!(w.contains("a") && w.contains("b c") && w.contains("from"));
        assert!(!w.contains("refunds"));
    }
}
