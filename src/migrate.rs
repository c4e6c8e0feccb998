//! The user's table migrations: `migrations/NNNN_name.sql`, read in number order, parsed,
//! and checked against each other. Applying them to the catalog is [`crate::catalog`]'s
//! job, planned here so that `migrate --plan` prints what `migrate` then does.

use crate::job::SpecError;
use crate::names::Name;
use crate::schema::TableSchema;
use crate::schema::ddl::{self, AlterAction, Statement};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct MigrationFile {
    /// File name, e.g. `0001_create_clean_orders.sql`: the ledger's key.
    pub name: String,
    pub number: u32,
    pub checksum: String,
    pub statements: Vec<Statement>,
}

/// Reads every migration file. Files that do not parse are reported and left out, along with
/// every later file (they may depend on the broken one).
pub fn load(root: &Path) -> (Vec<MigrationFile>, Vec<SpecError>) {
    let dir = root.join("migrations");
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (files, errors),
        Err(e) => {
            errors.push(SpecError {
                file: "migrations/".into(),
                message: format!("cannot list the folder: {e}"),
            });
            return (files, errors);
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut numbers: BTreeMap<u32, String> = BTreeMap::new();
    for name in names {
        let file = format!("migrations/{name}");
        let err = |message: String| SpecError {
            file: file.clone(),
            message,
        };
        let Some(number) = parse_file_name(&name) else {
            errors.push(err(
                "a migration file is named NNNN_name.sql (four digits, lower-case name), e.g. 0003_add_refunds.sql".into(),
            ));
            continue;
        };
        if let Some(other) = numbers.insert(number, name.clone()) {
            errors.push(err(format!(
                "number {number:04} is also used by migrations/{other}; give each migration its own number"
            )));
            continue;
        }
        let bytes = match std::fs::read(dir.join(&name)) {
            Ok(b) => b,
            Err(e) => {
                errors.push(err(format!("cannot read: {e}")));
                continue;
            }
        };
        let checksum = blake3::hash(&bytes).to_hex().to_string();
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                errors.push(err("the file is not UTF-8 text".into()));
                continue;
            }
        };
        match ddl::parse(&text) {
            Ok(statements) => files.push(MigrationFile {
                name,
                number,
                checksum,
                statements,
            }),
            Err(e) => errors.push(err(e.to_string())),
        }
    }
    if let Some(first_bad) = errors.first() {
        // Keep only the files before the first broken one: order matters.
        let bad_name = first_bad.file.trim_start_matches("migrations/").to_string();
        files.retain(|f| f.name < bad_name);
    }
    (files, errors)
}

fn parse_file_name(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".sql")?;
    let (num, rest) = stem.split_at_checked(4)?;
    let rest = rest.strip_prefix('_')?;
    if !num.bytes().all(|b| b.is_ascii_digit()) || Name::new(rest).is_err() {
        return None;
    }
    num.parse().ok()
}

/// Why destructive changes need a step of their own, and the way around them.
pub const EXPAND_CONTRACT: &str = "destructive changes break every reader and job that still uses the old shape, and cannot be undone by a rollback. Use expand/contract instead: (1) expand: add the new column or table in an additive migration and apply it; (2) change the jobs to write the new shape, backfill, and move readers over; (3) contract: when no job uses the old column or table any more, put the destructive change in a migration of its own and apply it with `sluice migrate --allow-destructive`";

/// What one change does to a table's schema: the new schema, and the reason it is
/// destructive when it is. An impossible change is an error.
pub fn apply_action(
    schema: &TableSchema,
    action: &AlterAction,
) -> Result<(TableSchema, Option<String>), String> {
    let mut s = schema.clone();
    let t = &schema.name;
    let existing = |name: &Name| -> Result<usize, String> {
        s.columns
            .iter()
            .position(|c| &c.name == name)
            .ok_or_else(|| format!("table `{t}` has no column `{name}`"))
    };
    let not_partition = |name: &Name, what: &str| -> Result<(), String> {
        if schema.partition_by.contains(name) {
            Err(format!(
                "`{name}` is a partition column of `{t}`; {what} a partition column is not supported: create a new table and backfill it"
            ))
        } else {
            Ok(())
        }
    };
    let mut destructive = None;
    match action {
        AlterAction::AddColumn { column } => {
            if s.column(column.name.as_str()).is_some() {
                return Err(format!(
                    "table `{t}` already has a column `{}`",
                    column.name
                ));
            }
            if !column.nullable && column.default.is_none() {
                return Err(format!(
                    "ADD COLUMN {} is NOT NULL without a DEFAULT, but the rows already written have no value for it; add it nullable, or give it a DEFAULT",
                    column.name
                ));
            }
            s.columns.push(column.clone());
        }
        AlterAction::SetType { column, ty } => {
            let i = existing(column)?;
            not_partition(column, "changing the type of")?;
            let from = s.columns[i].ty;
            if from != *ty {
                if !crate::engine::conform::widens_to(&from.to_arrow(), &ty.to_arrow()) {
                    destructive = Some(format!(
                        "it changes column `{column}` from {from} to {ty}, which narrows it or is not a widening: values already written may not fit, and readers expecting {from} break"
                    ));
                }
                s.columns[i].ty = *ty;
            }
        }
        AlterAction::SetNotNull { column } => {
            let i = existing(column)?;
            if s.columns[i].nullable {
                destructive = Some(format!(
                    "it makes the existing column `{column}` NOT NULL: rows already written may hold nulls, and writers that leave it out start failing"
                ));
                s.columns[i].nullable = false;
            }
        }
        AlterAction::DropNotNull { column } => {
            let i = existing(column)?;
            not_partition(column, "making nullable")?;
            s.columns[i].nullable = true;
        }
        AlterAction::SetColumnComment { column, comment } => {
            let i = existing(column)?;
            s.columns[i].comment = Some(comment.clone());
        }
        AlterAction::DropColumn { column } => {
            let i = existing(column)?;
            not_partition(column, "dropping")?;
            if s.columns.len() - s.partition_by.len() <= 1 {
                return Err(format!(
                    "`{column}` is the last column of `{t}` besides its partition columns; drop the table instead"
                ));
            }
            destructive = Some(format!(
                "it drops column `{column}` of `{t}` and the data it holds"
            ));
            s.columns.remove(i);
        }
        AlterAction::RenameColumn { from, to } => {
            let i = existing(from)?;
            not_partition(from, "renaming")?;
            if s.column(to.as_str()).is_some() {
                return Err(format!("table `{t}` already has a column `{to}`"));
            }
            destructive = Some(format!(
                "it renames column `{from}` of `{t}` to `{to}`: every reader and job using `{from}` breaks"
            ));
            s.columns[i].name = to.clone();
        }
        AlterAction::SetProperties { properties } => {
            s.properties.extend(properties.clone());
        }
        AlterAction::SetComment { comment } => s.comment = Some(comment.clone()),
    }
    Ok((s, destructive))
}

/// The schemas the migrations declare when all of them are applied, in file order. A
/// statement that contradicts an earlier one is an error naming both files.
pub fn declared_schemas(files: &[MigrationFile]) -> (BTreeMap<Name, TableSchema>, Vec<SpecError>) {
    let mut tables: BTreeMap<Name, (TableSchema, String)> = BTreeMap::new();
    let mut errors = Vec::new();
    for f in files {
        let err = |message: String| SpecError {
            file: format!("migrations/{}", f.name),
            message,
        };
        for s in &f.statements {
            match s {
                Statement::CreateTable {
                    schema,
                    if_not_exists,
                } => {
                    if let Some((_, first)) = tables.get(&schema.name) {
                        if !*if_not_exists {
                            errors.push(err(format!(
                                "CREATE TABLE {}: the table is already created by migrations/{first}",
                                schema.name
                            )));
                        }
                        continue;
                    }
                    tables.insert(schema.name.clone(), (schema.clone(), f.name.clone()));
                }
                Statement::AlterTable { table, action } => {
                    let Some((schema, first)) = tables.get(table) else {
                        errors.push(err(format!(
                            "ALTER TABLE {table}: no earlier migration creates table `{table}`"
                        )));
                        continue;
                    };
                    match apply_action(schema, action) {
                        Ok((next, _)) => {
                            let first = first.clone();
                            tables.insert(table.clone(), (next, first));
                        }
                        Err(e) => errors.push(err(format!("ALTER TABLE {table}: {e}"))),
                    }
                }
                Statement::DropTable { table, if_exists } => {
                    if tables.remove(table).is_none() && !*if_exists {
                        errors.push(err(format!(
                            "DROP TABLE {table}: no earlier migration creates table `{table}`"
                        )));
                    }
                }
            }
        }
    }
    (
        tables.into_iter().map(|(k, (s, _))| (k, s)).collect(),
        errors,
    )
}

/// The pending migration that declares `column` of `table`, for an error that says which
/// file to apply.
pub fn file_adding_column<'a>(
    files: &'a [MigrationFile],
    table: &str,
    column: &str,
) -> Option<&'a MigrationFile> {
    files.iter().rev().find(|f| {
        f.statements.iter().any(|s| match s {
            Statement::CreateTable { schema, .. } => {
                schema.name.as_str() == table && schema.column(column).is_some()
            }
            Statement::AlterTable {
                table: t,
                action: AlterAction::AddColumn { column: c },
            } => t.as_str() == table && c.name.as_str() == column,
            Statement::AlterTable {
                table: t,
                action: AlterAction::RenameColumn { to, .. },
            } => t.as_str() == table && to.as_str() == column,
            _ => false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> TableSchema {
        match &ddl::parse(
            "CREATE TABLE t (id BIGINT NOT NULL, qty INT, name STRING, price DECIMAL(10,2), dt DATE NOT NULL) PARTITIONED BY (dt);",
        )
        .unwrap()[0]
        {
            Statement::CreateTable { schema, .. } => schema.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn action(sql: &str) -> AlterAction {
        match &ddl::parse(sql).unwrap()[0] {
            Statement::AlterTable { action, .. } => action.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn additive_and_destructive_changes_are_told_apart() {
        let s = schema();
        for additive in [
            "ALTER TABLE t ADD COLUMN refunds DECIMAL(12,2)",
            "ALTER TABLE t ADD COLUMN flag BOOLEAN NOT NULL DEFAULT FALSE",
            "ALTER TABLE t ALTER COLUMN qty TYPE BIGINT",
            "ALTER TABLE t ALTER COLUMN price TYPE DECIMAL(14,2)",
            "ALTER TABLE t ALTER COLUMN qty DROP NOT NULL",
            "ALTER TABLE t ALTER COLUMN qty COMMENT 'how many'",
            "ALTER TABLE t SET TBLPROPERTIES ('owner' = 'sales')",
            "COMMENT ON TABLE t IS 'orders'",
        ] {
            let (_, why) = apply_action(&s, &action(additive)).unwrap();
            assert_eq!(why, None, "{additive}");
        }
        for destructive in [
            "ALTER TABLE t DROP COLUMN name",
            "ALTER TABLE t RENAME COLUMN name TO label",
            "ALTER TABLE t ALTER COLUMN id TYPE INT",
            "ALTER TABLE t ALTER COLUMN price TYPE DECIMAL(8,2)",
            "ALTER TABLE t ALTER COLUMN name TYPE INT",
            "ALTER TABLE t ALTER COLUMN qty SET NOT NULL",
        ] {
            let (_, why) = apply_action(&s, &action(destructive)).unwrap();
            assert!(why.is_some(), "{destructive}");
        }
        for impossible in [
            "ALTER TABLE t ADD COLUMN qty INT",
            "ALTER TABLE t ADD COLUMN must INT NOT NULL",
            "ALTER TABLE t DROP COLUMN nope",
            "ALTER TABLE t DROP COLUMN dt",
            "ALTER TABLE t RENAME COLUMN name TO qty",
        ] {
            assert!(
                apply_action(&s, &action(impossible)).is_err(),
                "{impossible}"
            );
        }
    }

    #[test]
    fn sql_words_skip_literals_and_comments() {
        let w =
            sql_words("SELECT a, \"B c\" -- refunds\n FROM t WHERE s = 'refunds' /* refunds */");
        assert!(w.contains("a") && w.contains("b c") && w.contains("from"));
        assert!(!w.contains("refunds"));
    }

    #[test]
    fn file_names_are_numbered_and_lower_case() {
        assert_eq!(parse_file_name("0001_create_orders.sql"), Some(1));
        for bad in [
            "1_x.sql",
            "0001-x.sql",
            "0001_X.sql",
            "0001_.sql",
            "0001_x.txt",
            "abcd_x.sql",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }
}

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
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut tables = existing.clone();
    let mut pending = Vec::new();
    for f in files {
        if applied.iter().any(|a| a.name == f.name) {
            continue;
        }
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
                    let Some(t) = tables.get_mut(table) else {
                        errors.push(invalid(format!(
                            "ALTER TABLE {table}: the catalog has no table `{table}`"
                        )));
                        continue;
                    };
                    let (next, why) = match apply_action(&t.schema, action) {
                        Ok(x) => x,
                        Err(e) => {
                            errors.push(invalid(format!("ALTER TABLE {table}: {e}")));
                            continue;
                        }
                    };
                    t.schema = next.clone();
                    let additive = why.is_none();
                    adds |= additive;
                    if let Some(why) = why {
                        destructive.push(why);
                    }
                    // Consecutive changes to one table become one change: one commit per
                    // physical version.
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
        pending.push(PlannedMigration {
            name: f.name.clone(),
            checksum: f.checksum.clone(),
            destructive,
            changes,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(MigrationPlan {
        pending,
        applied: applied.iter().map(|a| a.name.clone()).collect(),
    })
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
