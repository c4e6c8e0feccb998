//! The DDL that migrations are written in: a small, strict SQL subset parsed by hand so that
//! every error names the line and column and says what was expected.
//!
//! ```sql
//! CREATE TABLE [IF NOT EXISTS] name (
//!   column TYPE [NOT NULL | NULL] [DEFAULT literal] [COMMENT 'text'],
//!   ...
//! ) [PARTITIONED BY (column, ...)] [COMMENT 'text'] [TBLPROPERTIES ('key' = 'value', ...)];
//! ```
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
                column.default = Some(self.literal()?);
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
                self.expect_sym('(')?;
                loop {
                    let k = self.string("a property key")?;
                    self.expect_sym('=')?;
                    let v = self.string("a property value")?;
                    schema.properties.insert(k, v);
                    if !self.eat_sym(',') {
                        break;
                    }
                }
                self.expect_sym(')')?;
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

    fn statement(&mut self) -> Result<Statement, DdlError> {
        let t = self.peek().clone();
        if self.eat_kw("CREATE") {
            self.expect_kw("TABLE")?;
            return self.create_table();
        }
        Err(self.error_at(
            &t,
            format!(
                "expected a statement (CREATE TABLE), found {}",
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
    fn parses_a_partitioned_create_table() {
        let src = "-- orders\nCREATE TABLE IF NOT EXISTS Clean_Orders (\n  order_id BIGINT NOT NULL COMMENT 'id',\n  amount DECIMAL(12, 2),\n  ts TIMESTAMP,\n  dt DATE NOT NULL\n) PARTITIONED BY (dt) COMMENT 'clean' TBLPROPERTIES ('delta.checkpointInterval' = '20');\n";
        let stmts = parse(src).unwrap();
        let Statement::CreateTable {
            schema,
            if_not_exists,
        } = &stmts[0];
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
