//! Tokens of the DDL, each with its line and column.

use super::DdlError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident { text: String, quoted: bool },
    Number(String),
    Str(String),
    Sym(char),
    End,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: usize,
    pub(super) column: usize,
}

pub(super) fn lex(src: &str) -> Result<Vec<Token>, DdlError> {
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
