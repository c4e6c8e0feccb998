//! Names that become SQL identifiers and object-store path segments (promise 6).
//!
//! A job, table or column name is checked once, where it enters (spec, migration, CLI), and
//! carried as a [`Name`] from then on, so no path or SQL text is ever built from an
//! unchecked string.

use std::fmt;

/// A validated lower-case identifier: `[a-z_][a-z0-9_]*`, at most 128 characters.
///
/// Lower case only, because Delta column names, SQL identifiers and folder names on
/// case-insensitive file systems must all agree; no `.`, `/`, `\`, or control characters,
/// so a name can never escape its folder in the warehouse.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Name(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name `{0}` is longer than 128 characters")]
    TooLong(String),
    #[error(
        "name `{name}` has `{ch}` at position {pos}: names use lower-case letters, digits and `_`, and start with a letter or `_`"
    )]
    BadChar {
        name: String,
        ch: String,
        pos: usize,
    },
}

impl Name {
    pub fn new(s: &str) -> Result<Name, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > 128 {
            return Err(NameError::TooLong(s.to_string()));
        }
        for (i, c) in s.chars().enumerate() {
            let ok = c == '_' || c.is_ascii_lowercase() || (i > 0 && c.is_ascii_digit());
            if !ok {
                let ch = if c.is_control() {
                    format!("{:?}", c).trim_matches('\'').to_string()
                } else {
                    c.to_string()
                };
                return Err(NameError::BadChar {
                    name: s.escape_debug().to_string(),
                    ch,
                    pos: i + 1,
                });
            }
        }
        Ok(Name(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Lookups in maps keyed by `Name` with a plain `&str`: `Name` hashes and orders as its text.
impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Name::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The known name closest to a mistyped `given`, when one is close enough to be what was
/// meant (as clap suggests subcommands): the one rule every "no job" and "no table" uses.
pub fn closest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(given, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// "no job `x` in this project; did you mean `y`? (jobs: ...)": what each command says of
/// a name it does not know, `what` being "job" or "table".
pub fn unknown<'a>(what: &str, given: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    let mut text = format!("no {what} `{}` in this project", given.escape_debug());
    if let Some(k) = closest(given, known.iter().copied()) {
        text.push_str(&format!("; did you mean `{k}`?"));
    }
    match known.is_empty() {
        true => text.push_str(&format!(" (it has no {what}s yet)")),
        false => text.push_str(&format!(" ({what}s: {})", known.join(", "))),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_identifiers() {
        for ok in ["clean_orders", "_x", "v2_table", "a"] {
            assert_eq!(Name::new(ok).map(|n| n.to_string()), Ok(ok.to_string()));
        }
    }

    #[test]
    fn refuses_anything_that_could_escape_a_folder_or_a_quote() {
        for bad in [
            "", "..", "a/b", "a\\b", "a.b", "A", "1abc", "a b", "a\nb", "a\0", "ta'ble", "x-y",
        ] {
            assert!(Name::new(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(Name::new(&"a".repeat(129)).is_err());
    }

    #[test]
    fn a_mistyped_name_suggests_the_near_one_and_a_far_one_nothing() {
        let known = ["clean_orders", "daily_revenue", "regional_orders"];
        assert_eq!(closest("clean_ordrs", known), Some("clean_orders"));
        assert_eq!(closest("daily_revnue", known), Some("daily_revenue"));
        assert_eq!(closest("zzz", known), None);
        let text = unknown("job", "clean_ordrs", known);
        assert!(text.contains("did you mean `clean_orders`?"), "{text}");
        assert!(text.contains("jobs: clean_orders, daily_revenue"), "{text}");
    }
}
