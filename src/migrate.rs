//! The user's table migrations: `migrations/NNNN_name.sql`, read in number order, parsed,
//! and checked against each other. Applying them to the catalog is [`crate::catalog`]'s
//! job, planned here so that `migrate --plan` prints what `migrate` then does.

use crate::job::SpecError;
use crate::names::Name;
use crate::schema::TableSchema;
use crate::schema::ddl::{self, Statement};
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

/// The schemas the migrations declare when all of them are applied, in file order. A
/// statement that contradicts an earlier one is an error naming both files.
pub fn declared_schemas(files: &[MigrationFile]) -> (BTreeMap<Name, TableSchema>, Vec<SpecError>) {
    let mut tables: BTreeMap<Name, (TableSchema, String)> = BTreeMap::new();
    let mut errors = Vec::new();
    for f in files {
        for s in &f.statements {
            match s {
                Statement::CreateTable {
                    schema,
                    if_not_exists,
                } => {
                    if let Some((_, first)) = tables.get(&schema.name) {
                        if !*if_not_exists {
                            errors.push(SpecError {
                                file: format!("migrations/{}", f.name),
                                message: format!(
                                    "CREATE TABLE {}: the table is already created by migrations/{first}",
                                    schema.name
                                ),
                            });
                        }
                        continue;
                    }
                    tables.insert(schema.name.clone(), (schema.clone(), f.name.clone()));
                }
            }
        }
    }
    (
        tables.into_iter().map(|(k, (s, _))| (k, s)).collect(),
        errors,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

/// A problem with the ledger: an applied migration whose file changed or went away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
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
}

/// One step `migrate` will take.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedMigration {
    pub name: String,
    pub checksum: String,
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

pub fn plan(
    files: &[MigrationFile],
    applied: &[crate::catalog::AppliedMigration],
    existing: &std::collections::BTreeSet<Name>,
) -> Result<MigrationPlan, Vec<LedgerError>> {
    let when = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    };
    let mut errors = Vec::new();
    for a in applied {
        match files.iter().find(|f| f.name == a.name) {
            None => errors.push(LedgerError::Missing {
                name: a.name.clone(),
                applied_at: when(a.applied_at),
            }),
            Some(f) if f.checksum != a.checksum => errors.push(LedgerError::Changed {
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
        let mut changes = Vec::new();
        for s in &f.statements {
            match s {
                Statement::CreateTable { schema, .. } => {
                    if tables.insert(schema.name.clone()) {
                        changes.push(Change::CreateTable {
                            table: schema.clone(),
                        });
                    } else {
                        changes.push(Change::AlreadyExists {
                            table: schema.name.clone(),
                        });
                    }
                }
            }
        }
        pending.push(PlannedMigration {
            name: f.name.clone(),
            checksum: f.checksum.clone(),
            changes,
        });
    }
    Ok(MigrationPlan {
        pending,
        applied: applied.iter().map(|a| a.name.clone()).collect(),
    })
}
