//! What an `ALTER TABLE` action does to a table's schema, and whether it is additive (old
//! data still reads) or destructive (it needs `--allow-destructive` and a rewrite).

use super::TableSchema;
use super::ddl::AlterAction;
use crate::names::Name;

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
                if !crate::schema::types::widens_to(&from.to_arrow(), &ty.to_arrow()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ddl::{self, Statement};

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
}
