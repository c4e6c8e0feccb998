//! The DDL that migrations are written in: a small, strict SQL subset parsed by hand so that
//! every error names the line and column and says what was expected.
//!
//! ```sql
//! CREATE TABLE [IF NOT EXISTS] name (
//!   column TYPE [NOT NULL | NULL] [DEFAULT literal] [COMMENT 'text'],
//!   ...
//! ) [PARTITIONED BY (column, ...)] [COMMENT 'text'] [TBLPROPERTIES ('key' = 'value', ...)];
//!
//! ALTER TABLE name ADD [COLUMN] column TYPE [NOT NULL DEFAULT literal] [COMMENT 'text'];
//! ALTER TABLE name ALTER [COLUMN] column { TYPE t | SET DATA TYPE t | SET NOT NULL
//!                                         | DROP NOT NULL | COMMENT 'text' };
//! ALTER TABLE name DROP [COLUMN] column;
//! ALTER TABLE name RENAME [COLUMN] old TO new;
//! ALTER TABLE name SET TBLPROPERTIES ('key' = 'value', ...);
//! COMMENT ON TABLE name IS 'text';
//! DROP TABLE [IF EXISTS] name;
//! ```
//! Which of these are additive and which destructive is decided in [`super::alter`].
//! Unquoted identifiers are folded to lower case, as DataFusion does.

mod lex;
mod parser;

use super::{Column, ColumnType, TableSchema};
use crate::names::Name;
use lex::{Tok, lex};
use parser::Parser;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    CreateTable {
        schema: TableSchema,
        if_not_exists: bool,
    },
    AlterTable {
        table: Name,
        action: AlterAction,
    },
    DropTable {
        table: Name,
        if_exists: bool,
    },
}

impl Statement {
    /// The table the statement creates, changes or drops.
    pub fn table(&self) -> &Name {
        match self {
            Statement::CreateTable { schema, .. } => &schema.name,
            Statement::AlterTable { table, .. } | Statement::DropTable { table, .. } => table,
        }
    }
}

/// One change to an existing table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum AlterAction {
    AddColumn {
        column: Column,
    },
    SetType {
        column: Name,
        ty: ColumnType,
    },
    SetNotNull {
        column: Name,
    },
    DropNotNull {
        column: Name,
    },
    SetColumnComment {
        column: Name,
        comment: String,
    },
    DropColumn {
        column: Name,
    },
    RenameColumn {
        from: Name,
        to: Name,
    },
    SetProperties {
        properties: BTreeMap<String, String>,
    },
    SetComment {
        comment: String,
    },
}

/// A DDL error at a place in the text (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct DdlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses a migration file's text into its statements.
pub fn parse(src: &str) -> Result<Vec<Statement>, DdlError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        while p.eat_sym(';') {}
        if p.peek().tok == Tok::End {
            break;
        }
        out.push(p.statement()?);
        let t = p.peek().clone();
        if !(p.eat_sym(';') || t.tok == Tok::End) {
            return Err(p.error_at(
                &t,
                format!(
                    "expected `;` after the statement, found {}",
                    Parser::describe(&t.tok)
                ),
            ));
        }
    }
    Ok(out)
}

/// Parses a column type on its own (declared input schemas, stored schemas).
pub fn parse_type(src: &str) -> Result<ColumnType, DdlError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    let ty = p.column_type()?;
    let t = p.peek().clone();
    if t.tok != Tok::End {
        return Err(p.error_at(
            &t,
            format!("unexpected {} after the type", Parser::describe(&t.tok)),
        ));
    }
    Ok(ty)
}

/// Parses one column definition on its own: `name TYPE [NOT NULL]` (declared input schemas).
pub fn parse_column(src: &str) -> Result<Column, DdlError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    let c = p.column()?;
    let t = p.peek().clone();
    if t.tok != Tok::End {
        return Err(p.error_at(
            &t,
            format!(
                "unexpected {} after the column definition",
                Parser::describe(&t.tok)
            ),
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_alter_and_drop() {
        let src = "ALTER TABLE t ADD COLUMN refunds DECIMAL(18,2) NOT NULL DEFAULT 0 COMMENT 'r';\n\
                   ALTER TABLE t ADD n INT;\n\
                   ALTER TABLE t ALTER COLUMN qty TYPE BIGINT;\n\
                   ALTER TABLE t ALTER qty SET DATA TYPE BIGINT;\n\
                   ALTER TABLE t ALTER COLUMN qty SET NOT NULL;\n\
                   ALTER TABLE t ALTER COLUMN qty DROP NOT NULL;\n\
                   ALTER TABLE t ALTER COLUMN qty COMMENT 'how many';\n\
                   ALTER TABLE t DROP COLUMN qty;\n\
                   ALTER TABLE t RENAME COLUMN a TO b;\n\
                   ALTER TABLE t SET TBLPROPERTIES ('k' = 'v');\n\
                   COMMENT ON TABLE t IS 'hello';\n\
                   DROP TABLE IF EXISTS t;";
        let stmts = parse(src).unwrap();
        assert_eq!(stmts.len(), 12);
        let Statement::AlterTable {
            action: AlterAction::AddColumn { column },
            ..
        } = &stmts[0]
        else {
            panic!("{:?}", stmts[0]);
        };
        assert_eq!(column.default.as_deref(), Some("0"));
        assert!(!column.nullable);
        assert!(matches!(
            &stmts[8],
            Statement::AlterTable { action: AlterAction::RenameColumn { from, to }, .. }
                if from.as_str() == "a" && to.as_str() == "b"
        ));
        assert!(matches!(
            &stmts[11],
            Statement::DropTable {
                if_exists: true,
                ..
            }
        ));
        let e = parse("ALTER TABLE t ADD COLUMN n INT DEFAULT 'x';").unwrap_err();
        assert!(e.message.contains("not a value of type INT"), "{e}");
        let e = parse("ALTER TABLE t ALTER COLUMN n BIGINT;").unwrap_err();
        assert!(e.message.contains("expected TYPE"), "{e}");
        let e = parse("ALTER TABLE t RENAME TO u;").unwrap_err();
        assert!(
            e.message.contains("renaming a table is not supported"),
            "{e}"
        );
    }

    #[test]
    fn parses_a_partitioned_create_table() {
        let src = "-- orders\nCREATE TABLE IF NOT EXISTS Clean_Orders (\n  order_id BIGINT NOT NULL COMMENT 'id',\n  amount DECIMAL(12, 2),\n  ts TIMESTAMP,\n  dt DATE NOT NULL\n) PARTITIONED BY (dt) COMMENT 'clean' TBLPROPERTIES ('delta.checkpointInterval' = '20');\n";
        let stmts = parse(src).unwrap();
        let Statement::CreateTable {
            schema,
            if_not_exists,
        } = &stmts[0]
        else {
            panic!("not a CREATE TABLE: {:?}", stmts[0]);
        };
        assert!(*if_not_exists);
        assert_eq!(schema.name.as_str(), "clean_orders");
        assert_eq!(schema.columns.len(), 4);
        assert_eq!(
            schema.columns[1].ty,
            ColumnType::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert!(!schema.columns[0].nullable);
        assert_eq!(schema.partition_by[0].as_str(), "dt");
        assert_eq!(schema.properties["delta.checkpointInterval"], "20");
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("CREATE TABLE t (\n  a BIGINT,\n  b WIDGET\n);").unwrap_err();
        assert_eq!((e.line, e.column), (3, 5));
        assert!(e.message.contains("unknown column type `WIDGET`"), "{e}");
        let e = parse("CREATE TABLE t (a INT) PARTITIONED BY (dt);").unwrap_err();
        assert!(
            e.message.contains("partition column `dt` is not a column"),
            "{e}"
        );
        let e = parse("CREATE TABLE t (a INT, a INT);").unwrap_err();
        assert!(e.message.contains("declared twice"), "{e}");
        let e = parse("CREATE TABLE \"../x\" (a INT);").unwrap_err();
        assert!(e.message.contains("bad table name"), "{e}");
        let e = parse("DELETE FROM t;").unwrap_err();
        assert!(e.message.contains("expected a statement"), "{e}");
    }

    #[test]
    fn types_round_trip_through_their_display() {
        for s in [
            "BIGINT",
            "DECIMAL(10,2)",
            "TIMESTAMP",
            "TIMESTAMP_NTZ",
            "STRING",
            "DATE",
        ] {
            assert_eq!(parse_type(s).unwrap().to_string(), s);
        }
    }
}
