//! A recursive-descent parser over the tokens: one method per construct, each error at
//! the token where it was found.

use super::lex::{Tok, Token};
use super::{AlterAction, DdlError, Statement};
use crate::names::Name;
use crate::schema::{Column, ColumnType, TableSchema};
use std::collections::BTreeMap;

pub(super) struct Parser {
    pub(super) toks: Vec<Token>,
    pub(super) pos: usize,
}

impl Parser {
    pub(super) fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    pub(super) fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    pub(super) fn error_at(&self, t: &Token, message: impl Into<String>) -> DdlError {
        DdlError {
            line: t.line,
            column: t.column,
            message: message.into(),
        }
    }

    pub(super) fn describe(t: &Tok) -> String {
        match t {
            Tok::Ident { text, .. } => format!("`{text}`"),
            Tok::Number(n) => format!("number `{n}`"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Sym(c) => format!("`{c}`"),
            Tok::End => "the end of the file".into(),
        }
    }

    pub(super) fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident { text, quoted: false } if text.eq_ignore_ascii_case(kw))
    }

    pub(super) fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn expect_kw(&mut self, kw: &str) -> Result<(), DdlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            let t = self.peek().clone();
            Err(self.error_at(
                &t,
                format!("expected {kw}, found {}", Self::describe(&t.tok)),
            ))
        }
    }

    pub(super) fn eat_sym(&mut self, c: char) -> bool {
        if self.peek().tok == Tok::Sym(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn expect_sym(&mut self, c: char) -> Result<(), DdlError> {
        if self.eat_sym(c) {
            Ok(())
        } else {
            let t = self.peek().clone();
            Err(self.error_at(
                &t,
                format!("expected `{c}`, found {}", Self::describe(&t.tok)),
            ))
        }
    }

    pub(super) fn name(&mut self, what: &str) -> Result<Name, DdlError> {
        let t = self.next();
        match &t.tok {
            Tok::Ident { text, quoted } => {
                let text = if *quoted {
                    text.clone()
                } else {
                    text.to_ascii_lowercase()
                };
                Name::new(&text).map_err(|e| self.error_at(&t, format!("bad {what}: {e}")))
            }
            other => Err(self.error_at(
                &t,
                format!("expected a {what}, found {}", Self::describe(other)),
            )),
        }
    }

    pub(super) fn string(&mut self, what: &str) -> Result<String, DdlError> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(s),
            ref other => Err(self.error_at(
                &t,
                format!(
                    "expected {what} as a 'quoted string', found {}",
                    Self::describe(other)
                ),
            )),
        }
    }

    pub(super) fn integer(&mut self, what: &str) -> Result<u32, DdlError> {
        let t = self.next();
        match &t.tok {
            Tok::Number(n) => n.parse().map_err(|_| {
                self.error_at(&t, format!("{what} must be a whole number, found `{n}`"))
            }),
            other => Err(self.error_at(
                &t,
                format!("expected {what}, found {}", Self::describe(other)),
            )),
        }
    }

    pub(super) fn column_type(&mut self) -> Result<ColumnType, DdlError> {
        let t = self.next();
        let Tok::Ident {
            text,
            quoted: false,
        } = &t.tok
        else {
            return Err(self.error_at(
                &t,
                format!("expected a column type, found {}", Self::describe(&t.tok)),
            ));
        };
        let ty = match text.to_ascii_uppercase().as_str() {
            "BOOLEAN" | "BOOL" => ColumnType::Boolean,
            "TINYINT" | "BYTE" => ColumnType::TinyInt,
            "SMALLINT" | "SHORT" => ColumnType::SmallInt,
            "INT" | "INTEGER" => ColumnType::Int,
            "BIGINT" | "LONG" => ColumnType::BigInt,
            "FLOAT" | "REAL" => ColumnType::Float,
            "DOUBLE" => {
                self.eat_kw("PRECISION");
                ColumnType::Double
            }
            "DECIMAL" | "NUMERIC" => {
                let (mut precision, mut scale) = (10u32, 0u32);
                if self.eat_sym('(') {
                    precision = self.integer("the decimal precision")?;
                    if self.eat_sym(',') {
                        scale = self.integer("the decimal scale")?;
                    }
                    self.expect_sym(')')?;
                }
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(self.error_at(
                        &t,
                        format!(
                            "DECIMAL({precision},{scale}) is out of range: precision 1 to 38, scale 0 to precision"
                        ),
                    ));
                }
                ColumnType::Decimal {
                    precision: precision as u8,
                    scale: scale as i8,
                }
            }
            "STRING" | "TEXT" | "VARCHAR" | "CHAR" => {
                // A length is accepted for familiarity; Delta strings have none.
                if self.eat_sym('(') {
                    self.integer("the string length")?;
                    self.expect_sym(')')?;
                }
                ColumnType::String
            }
            "BINARY" | "BYTEA" | "VARBINARY" => ColumnType::Binary,
            "DATE" => ColumnType::Date,
            "TIMESTAMP" | "TIMESTAMPTZ" => {
                if self.eat_kw("WITHOUT") {
                    self.expect_kw("TIME")?;
                    self.expect_kw("ZONE")?;
                    ColumnType::TimestampNtz
                } else {
                    if self.eat_kw("WITH") {
                        self.expect_kw("TIME")?;
                        self.expect_kw("ZONE")?;
                    }
                    ColumnType::Timestamp
                }
            }
            "TIMESTAMP_NTZ" => ColumnType::TimestampNtz,
            other => {
                return Err(self.error_at(
                    &t,
                    format!(
                        "unknown column type `{other}`; known: BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p,s), STRING, BINARY, DATE, TIMESTAMP, TIMESTAMP_NTZ"
                    ),
                ));
            }
        };
        Ok(ty)
    }

    pub(super) fn literal(&mut self) -> Result<String, DdlError> {
        let t = self.next();
        match &t.tok {
            Tok::Number(n) => Ok(n.clone()),
            Tok::Str(s) => Ok(format!("'{}'", s.replace('\'', "''"))),
            Tok::Ident {
                text,
                quoted: false,
            } if ["TRUE", "FALSE", "NULL"].contains(&text.to_ascii_uppercase().as_str()) => {
                Ok(text.to_ascii_uppercase())
            }
            other => Err(self.error_at(
                &t,
                format!(
                    "expected a literal default (number, 'string', TRUE, FALSE, NULL), found {}",
                    Self::describe(other)
                ),
            )),
        }
    }

    pub(super) fn column(&mut self) -> Result<Column, DdlError> {
        let name = self.name("column name")?;
        let ty = self.column_type()?;
        let mut column = Column {
            name,
            ty,
            nullable: true,
            default: None,
            comment: None,
        };
        loop {
            if self.eat_kw("NOT") {
                self.expect_kw("NULL")?;
                column.nullable = false;
            } else if self.eat_kw("NULL") {
                column.nullable = true;
            } else if self.eat_kw("DEFAULT") {
                let at = self.peek().clone();
                let literal = self.literal()?;
                if let Err(e) = crate::schema::default_value(ty, &literal) {
                    return Err(self.error_at(&at, e));
                }
                column.default = Some(literal);
            } else if self.eat_kw("COMMENT") {
                column.comment = Some(self.string("the column comment")?);
            } else {
                break;
            }
        }
        Ok(column)
    }

    pub(super) fn create_table(&mut self) -> Result<Statement, DdlError> {
        let if_not_exists = if self.eat_kw("IF") {
            self.expect_kw("NOT")?;
            self.expect_kw("EXISTS")?;
            true
        } else {
            false
        };
        let name_tok = self.peek().clone();
        let name = self.name("table name")?;
        self.expect_sym('(')?;
        let mut columns: Vec<Column> = Vec::new();
        loop {
            let at = self.peek().clone();
            let c = self.column()?;
            if columns.iter().any(|x| x.name == c.name) {
                return Err(self.error_at(&at, format!("column `{}` is declared twice", c.name)));
            }
            columns.push(c);
            if self.eat_sym(',') {
                continue;
            }
            self.expect_sym(')')?;
            break;
        }
        for c in &columns {
            if !c.nullable && c.default.as_deref() == Some("NULL") {
                return Err(self.error_at(
                    &name_tok,
                    format!(
                        "column `{}` is NOT NULL with DEFAULT NULL; drop one of the two",
                        c.name
                    ),
                ));
            }
        }
        let mut schema = TableSchema {
            name,
            columns,
            partition_by: Vec::new(),
            comment: None,
            properties: BTreeMap::new(),
        };
        loop {
            if self.eat_kw("PARTITIONED") {
                self.expect_kw("BY")?;
                self.expect_sym('(')?;
                loop {
                    let at = self.peek().clone();
                    let p = self.name("partition column")?;
                    let Some(col) = schema.column(p.as_str()) else {
                        return Err(self.error_at(
                            &at,
                            format!(
                                "partition column `{p}` is not a column of `{}`; declare it in the column list",
                                schema.name
                            ),
                        ));
                    };
                    if matches!(
                        col.ty,
                        ColumnType::Float | ColumnType::Double | ColumnType::Binary
                    ) {
                        return Err(self.error_at(
                            &at,
                            format!("partition column `{p}` has type {}; partition by DATE, TIMESTAMP, STRING or an integer", col.ty),
                        ));
                    }
                    schema.partition_by.push(p);
                    if !self.eat_sym(',') {
                        break;
                    }
                }
                self.expect_sym(')')?;
            } else if self.eat_kw("COMMENT") {
                schema.comment = Some(self.string("the table comment")?);
            } else if self.eat_kw("TBLPROPERTIES") {
                schema.properties = self.properties()?;
            } else {
                break;
            }
        }
        if schema.columns.len() == schema.partition_by.len() {
            return Err(self.error_at(
                &name_tok,
                format!("table `{}` has only partition columns; a data file needs at least one other column", schema.name),
            ));
        }
        Ok(Statement::CreateTable {
            schema,
            if_not_exists,
        })
    }

    pub(super) fn properties(&mut self) -> Result<BTreeMap<String, String>, DdlError> {
        let mut out = BTreeMap::new();
        self.expect_sym('(')?;
        loop {
            let k = self.string("a property key")?;
            self.expect_sym('=')?;
            let v = self.string("a property value")?;
            out.insert(k, v);
            if !self.eat_sym(',') {
                break;
            }
        }
        self.expect_sym(')')?;
        Ok(out)
    }

    pub(super) fn alter_table(&mut self) -> Result<Statement, DdlError> {
        let table = self.name("table name")?;
        let t = self.peek().clone();
        let action = if self.eat_kw("ADD") {
            self.eat_kw("COLUMN");
            let at = self.peek().clone();
            let column = self.column()?;
            if !column.nullable && column.default.as_deref() == Some("NULL") {
                return Err(self.error_at(
                    &at,
                    format!(
                        "column `{}` is NOT NULL with DEFAULT NULL; drop one of the two",
                        column.name
                    ),
                ));
            }
            AlterAction::AddColumn { column }
        } else if self.eat_kw("ALTER") {
            self.eat_kw("COLUMN");
            let column = self.name("column name")?;
            let t = self.peek().clone();
            if self.eat_kw("TYPE") {
                AlterAction::SetType {
                    column,
                    ty: self.column_type()?,
                }
            } else if self.eat_kw("SET") {
                if self.eat_kw("DATA") {
                    self.expect_kw("TYPE")?;
                    AlterAction::SetType {
                        column,
                        ty: self.column_type()?,
                    }
                } else {
                    self.expect_kw("NOT")?;
                    self.expect_kw("NULL")?;
                    AlterAction::SetNotNull { column }
                }
            } else if self.eat_kw("DROP") {
                self.expect_kw("NOT")?;
                self.expect_kw("NULL")?;
                AlterAction::DropNotNull { column }
            } else if self.eat_kw("COMMENT") {
                AlterAction::SetColumnComment {
                    column,
                    comment: self.string("the column comment")?,
                }
            } else {
                return Err(self.error_at(
                    &t,
                    format!(
                        "expected TYPE, SET DATA TYPE, SET NOT NULL, DROP NOT NULL or COMMENT after ALTER COLUMN {column}, found {}",
                        Self::describe(&t.tok)
                    ),
                ));
            }
        } else if self.eat_kw("DROP") {
            self.eat_kw("COLUMN");
            AlterAction::DropColumn {
                column: self.name("column name")?,
            }
        } else if self.eat_kw("RENAME") {
            if !self.eat_kw("COLUMN") {
                let t = self.peek().clone();
                if self.is_kw("TO") {
                    return Err(self.error_at(
                        &t,
                        "renaming a table is not supported: create the new table, backfill it, and drop the old one",
                    ));
                }
            }
            let from = self.name("column name")?;
            self.expect_kw("TO")?;
            let to = self.name("new column name")?;
            AlterAction::RenameColumn { from, to }
        } else if self.eat_kw("SET") {
            self.expect_kw("TBLPROPERTIES")?;
            AlterAction::SetProperties {
                properties: self.properties()?,
            }
        } else {
            return Err(self.error_at(
                &t,
                format!(
                    "expected ADD COLUMN, ALTER COLUMN, DROP COLUMN, RENAME COLUMN or SET TBLPROPERTIES after ALTER TABLE {table}, found {}",
                    Self::describe(&t.tok)
                ),
            ));
        };
        Ok(Statement::AlterTable { table, action })
    }

    pub(super) fn statement(&mut self) -> Result<Statement, DdlError> {
        let t = self.peek().clone();
        if self.eat_kw("CREATE") {
            self.expect_kw("TABLE")?;
            return self.create_table();
        }
        if self.eat_kw("ALTER") {
            self.expect_kw("TABLE")?;
            return self.alter_table();
        }
        if self.eat_kw("DROP") {
            self.expect_kw("TABLE")?;
            let if_exists = if self.eat_kw("IF") {
                self.expect_kw("EXISTS")?;
                true
            } else {
                false
            };
            let table = self.name("table name")?;
            return Ok(Statement::DropTable { table, if_exists });
        }
        if self.eat_kw("COMMENT") {
            self.expect_kw("ON")?;
            self.expect_kw("TABLE")?;
            let table = self.name("table name")?;
            self.expect_kw("IS")?;
            let comment = self.string("the table comment")?;
            return Ok(Statement::AlterTable {
                table,
                action: AlterAction::SetComment { comment },
            });
        }
        Err(self.error_at(
            &t,
            format!(
                "expected a statement (CREATE TABLE, ALTER TABLE, DROP TABLE or COMMENT ON TABLE), found {}",
                Self::describe(&t.tok)
            ),
        ))
    }
}
