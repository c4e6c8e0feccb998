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
//! Which of these are additive and which destructive is decided in [`crate::migrate`].
//! Unquoted identifiers are folded to lower case, as DataFusion does.

use super::{Column, ColumnType, TableSchema};
use crate::names::Name;
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

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident { text: String, quoted: bool },
    Number(String),
    Str(String),
    Sym(char),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn lex(src: &str) -> Result<Vec<Token>, DdlError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let err = |line, column, message: String| DdlError {
        line,
        column,
        message,
    };
    macro_rules! bump {
        () => {{
            if chars[i] == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            i += 1;
        }};
    }
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        if c.is_whitespace() {
            bump!();
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                bump!();
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            bump!();
            bump!();
            loop {
                if i >= chars.len() {
                    return Err(err(tl, tc, "comment `/*` is never closed".into()));
                }
                if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    bump!();
                    bump!();
                    break;
                }
                bump!();
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                s.push(chars[i]);
                bump!();
            }
            out.push(Token {
                tok: Tok::Ident {
                    text: s,
                    quoted: false,
                },
                line: tl,
                column: tc,
            });
        } else if c == '"' || c == '`' {
            bump!();
            let mut s = String::new();
            loop {
                if i >= chars.len() {
                    return Err(err(tl, tc, format!("quoted name `{c}` is never closed")));
                }
                if chars[i] == c {
                    bump!();
                    break;
                }
                s.push(chars[i]);
                bump!();
            }
            out.push(Token {
                tok: Tok::Ident {
                    text: s,
                    quoted: true,
                },
                line: tl,
                column: tc,
            });
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let mut s = String::new();
            s.push(c);
            bump!();
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                s.push(chars[i]);
                bump!();
            }
            out.push(Token {
                tok: Tok::Number(s),
                line: tl,
                column: tc,
            });
        } else if c == '\'' {
            bump!();
            let mut s = String::new();
            loop {
                if i >= chars.len() {
                    return Err(err(tl, tc, "string literal is never closed".into()));
                }
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        s.push('\'');
                        bump!();
                        bump!();
                        continue;
                    }
                    bump!();
                    break;
                }
                s.push(chars[i]);
                bump!();
            }
            out.push(Token {
                tok: Tok::Str(s),
                line: tl,
                column: tc,
            });
        } else if "(),;=".contains(c) {
            out.push(Token {
                tok: Tok::Sym(c),
                line: tl,
                column: tc,
            });
            bump!();
        } else {
            return Err(err(
                tl,
                tc,
                format!("unexpected character `{}`", c.escape_debug()),
            ));
        }
    }
    out.push(Token {
        tok: Tok::End,
        line,
        column: col,
    });
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn error_at(&self, t: &Token, message: impl Into<String>) -> DdlError {
        DdlError {
            line: t.line,
            column: t.column,
            message: message.into(),
        }
    }

    fn describe(t: &Tok) -> String {
        match t {
            Tok::Ident { text, .. } => format!("`{text}`"),
            Tok::Number(n) => format!("number `{n}`"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Sym(c) => format!("`{c}`"),
            Tok::End => "the end of the file".into(),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident { text, quoted: false } if text.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), DdlError> {
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

    fn eat_sym(&mut self, c: char) -> bool {
        if self.peek().tok == Tok::Sym(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, c: char) -> Result<(), DdlError> {
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

    fn name(&mut self, what: &str) -> Result<Name, DdlError> {
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

    fn string(&mut self, what: &str) -> Result<String, DdlError> {
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

    fn integer(&mut self, what: &str) -> Result<u32, DdlError> {
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

    fn column_type(&mut self) -> Result<ColumnType, DdlError> {
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

    fn literal(&mut self) -> Result<String, DdlError> {
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

    fn column(&mut self) -> Result<Column, DdlError> {
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
                if let Err(e) = super::default_value(ty, &literal) {
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

    fn create_table(&mut self) -> Result<Statement, DdlError> {
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

    fn properties(&mut self) -> Result<BTreeMap<String, String>, DdlError> {
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

    fn alter_table(&mut self) -> Result<Statement, DdlError> {
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

    fn statement(&mut self) -> Result<Statement, DdlError> {
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
