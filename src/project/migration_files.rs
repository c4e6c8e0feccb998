//! The user's migration files: `migrations/NNNN_name.sql`, read in number order, parsed,
//! and checked against each other; and the schemas they declare once all are applied.

use crate::job::SpecError;
use crate::names::Name;
use crate::schema::TableSchema;
use crate::schema::alter::apply_action;
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
