//! The static dimension of a partition: a key from a list the job declares (a region, a
//! tenant, a source system), alone or beside a time.
//!
//! A key becomes a Delta partition value (so a folder name), a catalog row, a `txn` app id
//! and a bound SQL parameter: it is checked once, where it enters, and is at most 63 ASCII
//! letters, digits, `_` and `-`, starting with a letter or digit. No separator, no dot, no
//! quote, no space: nothing a path or a statement could read as anything but a value.

use crate::names::Name;
use std::cmp::Ordering;
use std::fmt;

/// The longest key.
pub const MAX_KEY_LEN: usize = 63;

/// A validated key, held inline so that a partition stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StaticKey {
    len: u8,
    bytes: [u8; MAX_KEY_LEN],
}

/// Why a text is not a key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{text}` is not a partition key: {why}; a key is 1 to 63 ASCII letters, digits, `_` or `-`, starting with a letter or digit"
)]
pub struct KeyError {
    pub text: String,
    pub why: String,
}

impl StaticKey {
    pub fn new(text: &str) -> Result<StaticKey, KeyError> {
        let err = |why: String| KeyError {
            text: text.escape_debug().to_string(),
            why,
        };
        if text.is_empty() {
            return Err(err("it is empty".into()));
        }
        if text.len() > MAX_KEY_LEN {
            return Err(err(format!("it has {} characters", text.chars().count())));
        }
        for (i, c) in text.chars().enumerate() {
            let ok = c.is_ascii_alphanumeric() || (i > 0 && (c == '_' || c == '-'));
            if !ok {
                return Err(err(format!(
                    "it has {} at position {}",
                    match c {
                        '/' | '\\' => format!("the path separator `{c}`"),
                        '.' => "`.`".to_string(),
                        c if c.is_control() || c.is_whitespace() => format!("{c:?}"),
                        c => format!("`{c}`"),
                    },
                    i + 1
                )));
            }
        }
        let mut bytes = [0u8; MAX_KEY_LEN];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Ok(StaticKey {
            len: text.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `new`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Ord for StaticKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for StaticKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// A job's static dimension: the table column that holds the key, and the keys declared
/// (in the spec or a file of the project), in their declared order.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticDimension {
    pub column: Name,
    pub keys: Vec<StaticKey>,
}

impl StaticDimension {
    pub fn declares(&self, key: &StaticKey) -> bool {
        self.keys.contains(key)
    }
}

/// The keys of a keys file: one per line; blank lines and `#` comments are skipped. Each
/// problem names its line.
pub fn parse_keys_file(text: &str) -> Result<Vec<StaticKey>, Vec<String>> {
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        match StaticKey::new(line) {
            Ok(k) => keys.push(k),
            Err(e) => problems.push(format!("line {}: {e}", i + 1)),
        }
    }
    if problems.is_empty() {
        Ok(keys)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_keys_are_refused() {
        for bad in [
            "",
            "..",
            "../etc",
            "a/b",
            "a\\b",
            "eu.west",
            "o'brien",
            "a\"b",
            "x; DROP TABLE t",
            "a b",
            "tab\t",
            "-flag",
            "_hidden",
            "é",
            "a:b",
            "a|b",
            "a=b",
            "%2e%2e",
            &"k".repeat(64),
        ] {
            assert!(StaticKey::new(bad).is_err(), "{bad:?} must be refused");
        }
        for good in ["emea", "EU-West_2", "7", &"k".repeat(63)] {
            assert_eq!(
                StaticKey::new(good).map(|k| k.to_string()),
                Ok(good.to_string())
            );
        }
    }

    #[test]
    fn keys_order_as_text_and_files_name_the_bad_line() {
        let a = StaticKey::new("ab").unwrap();
        let b = StaticKey::new("b").unwrap();
        assert!(a < b);
        let keys = parse_keys_file("# regions\napac\n\nemea  # Europe\n").unwrap();
        assert_eq!(keys.len(), 2);
        let e = parse_keys_file("apac\n../x\n").unwrap_err();
        assert!(e[0].starts_with("line 2:"), "{e:?}");
    }
}
