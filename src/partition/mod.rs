//! Partitions: the slice of a job's output that is scheduled, leased, replaced and retried
//! as one unit. A partition is a time (`time`: an hour, a day, a month, or `all` for a job
//! without a time dimension) and, for a job with a static dimension, a key (`key`).
//!
//! Its one text form, used by `--partition`, `--partitions`, `status`, JSON, logs, the
//! catalog and the Delta `txn`: the time alone (`2024-01-05`), the key alone for a job
//! partitioned by key only (`emea`), or both joined by `:` (`2024-01-05:emea`).

mod key;
mod time;

pub use key::{KeyError, MAX_KEY_LEN, StaticDimension, StaticKey, parse_keys_file};
pub use time::{Granularity, PartitionParseError, TimeKey, local_to_utc};

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use std::collections::BTreeSet;
use std::fmt;

/// What separates a partition's time from its key in its text form.
pub const KEY_SEPARATOR: char = ':';

/// One partition of a job's output. Ordered by time, then key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub time: TimeKey,
    pub key: Option<StaticKey>,
}

impl From<TimeKey> for PartitionKey {
    fn from(time: TimeKey) -> Self {
        PartitionKey { time, key: None }
    }
}

impl PartitionKey {
    /// The single partition of a job with neither a time nor a key.
    pub const ALL: PartitionKey = PartitionKey {
        time: TimeKey::All,
        key: None,
    };

    pub fn new(time: TimeKey, key: Option<StaticKey>) -> PartitionKey {
        PartitionKey { time, key }
    }

    /// Parses the text form of a partition of a job of granularity `g`, with a static
    /// dimension when `keyed`. The key is checked for its form, not for being declared.
    pub fn parse(
        g: Granularity,
        keyed: bool,
        text: &str,
    ) -> Result<PartitionKey, PartitionParseError> {
        let err = |message: String| PartitionParseError {
            text: text.escape_debug().to_string(),
            message,
        };
        let key = |k: &str| {
            StaticKey::new(k).map_err(|e| {
                err(format!(
                    "a partition of this job: its key `{}` is not a key: {}; a key is 1 to 63 ASCII letters, digits, `_` or `-`",
                    e.text, e.why
                ))
            })
        };
        match (keyed, g) {
            (false, g) => g.parse_time(text).map(PartitionKey::from),
            (true, Granularity::None) => Ok(PartitionKey::new(TimeKey::All, Some(key(text)?))),
            (true, g) => {
                let (t, k) = text.split_once(KEY_SEPARATOR).ok_or_else(|| {
                    err(format!(
                        "a partition of this job: expected TIME{KEY_SEPARATOR}KEY, the time {} (a {g} partition)",
                        g.example()
                    ))
                })?;
                let time = g.parse_time(t).map_err(|e| err(e.message))?;
                Ok(PartitionKey::new(time, Some(key(k)?)))
            }
        }
    }

    pub fn granularity(&self) -> Granularity {
        self.time.granularity()
    }

    /// Wall-clock start (inclusive) and end (exclusive); `None` without a time.
    pub fn bounds(&self) -> Option<(NaiveDateTime, NaiveDateTime)> {
        self.time.bounds()
    }

    pub fn start(&self) -> Option<NaiveDateTime> {
        self.time.start()
    }

    pub fn instant_bounds(&self, tz: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.time.instant_bounds(tz)
    }

    /// The partition of the next time, with the same key.
    pub fn next(&self) -> Option<PartitionKey> {
        self.time.next().map(|t| PartitionKey::new(t, self.key))
    }

    pub fn prev(&self) -> Option<PartitionKey> {
        self.time.prev().map(|t| PartitionKey::new(t, self.key))
    }

    /// The times of granularity `g` that cover this partition's interval.
    pub fn covering(&self, g: Granularity) -> Vec<TimeKey> {
        self.time.covering(g)
    }

    /// Values for path templates: `{partition}` (the time), `{key}`, `{yyyy}`, `{mm}`,
    /// `{dd}`, `{hh}`.
    pub fn template_value(&self, field: &str) -> Option<String> {
        match field {
            "key" => self.key.map(|k| k.to_string()),
            _ => self.time.template_value(field),
        }
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.time, self.key) {
            (t, None) => write!(f, "{t}"),
            (TimeKey::All, Some(k)) => write!(f, "{k}"),
            (t, Some(k)) => write!(f, "{t}{KEY_SEPARATOR}{k}"),
        }
    }
}

/// The times a `--partitions` argument names, as written: a range `A..B` (both included)
/// or a list `A,B,C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimesArg {
    Range(String, String),
    List(BTreeSet<String>),
}

/// A `--partitions` argument as written, before any job's partitioning is known: times
/// (`2024-01-01..2024-01-31`, `2024-01-03,2024-01-09`), optionally narrowed to keys after
/// a `:` (`2024-01-01..2024-01-31:emea,apac`), or keys alone (`:emea,apac`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionsArg {
    pub times: Option<TimesArg>,
    pub keys: Option<BTreeSet<String>>,
}

fn list(text: &str) -> BTreeSet<String> {
    text.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

impl PartitionsArg {
    pub fn parse(text: &str) -> PartitionsArg {
        let (times, keys) = match text.split_once(KEY_SEPARATOR) {
            Some((t, k)) => (t.trim(), Some(list(k))),
            None => (text.trim(), None),
        };
        // Keys alone, without the `:` (`DE,FR`, for a job whose partitions are its keys): a
        // time always starts with a digit (or is `all`), a key written alone does not.
        let keys_alone = keys.is_none()
            && !times.is_empty()
            && !times.contains("..")
            && list(times)
                .iter()
                .all(|k| !k.starts_with(|c: char| c.is_ascii_digit()) && k != "all");
        if keys_alone {
            return PartitionsArg {
                times: None,
                keys: Some(list(times)),
            };
        }
        let times = match times.split_once("..") {
            _ if times.is_empty() => None,
            Some((a, b)) => Some(TimesArg::Range(a.trim().to_string(), b.trim().to_string())),
            None => Some(TimesArg::List(list(times))),
        };
        PartitionsArg { times, keys }
    }

    /// The keys it names, checked: `None` when it names none (every key). A `:` followed
    /// by no key is refused: an empty list (an unset variable in a script) would select
    /// nothing and succeed.
    pub fn static_keys(&self) -> Result<Option<BTreeSet<StaticKey>>, String> {
        match &self.keys {
            None => Ok(None),
            Some(ks) if ks.is_empty() => Err(
                "no key is named (an empty key list selects nothing): name at least one (`:emea`), or leave the keys out for every key".into(),
            ),
            Some(ks) => ks
                .iter()
                .map(|k| StaticKey::new(k).map_err(|e| e.to_string()))
                .collect::<Result<BTreeSet<_>, _>>()
                .map(Some),
        }
    }

    /// The times of granularity `g` it names, in order; `None` when it names no time.
    pub fn times(&self, g: Granularity) -> Result<Option<Vec<TimeKey>>, String> {
        match &self.times {
            None => Ok(None),
            Some(TimesArg::Range(a, b)) => {
                let a = g.parse_time(a).map_err(|e| e.to_string())?;
                let b = g.parse_time(b).map_err(|e| e.to_string())?;
                if a > b {
                    return Err(format!("range `{a}..{b}` ends before it starts"));
                }
                Ok(Some(g.range(a, b)))
            }
            Some(TimesArg::List(set)) => set
                .iter()
                .map(|p| g.parse_time(p).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_has_one_text_form_with_or_without_a_key() {
        for (g, keyed, s) in [
            (Granularity::Daily, true, "2024-01-05:emea"),
            (Granularity::Hourly, true, "2024-01-05T03:tenant-7"),
            (Granularity::None, true, "emea"),
            (Granularity::Daily, false, "2024-01-05"),
            (Granularity::None, false, "all"),
        ] {
            let p = PartitionKey::parse(g, keyed, s);
            assert_eq!(p.map(|k| k.to_string()), Ok(s.to_string()));
        }
        for (g, keyed, s) in [
            (Granularity::Daily, true, "2024-01-05"),
            (Granularity::Daily, true, "2024-01-05:../x"),
            (Granularity::Daily, true, "2024-01-05:a/b"),
            (Granularity::Daily, true, "2024-01-05:x'; DROP TABLE t; --"),
            (Granularity::Daily, false, "2024-01-05:emea"),
            (Granularity::None, true, "all:emea"),
        ] {
            assert!(PartitionKey::parse(g, keyed, s).is_err(), "{s}");
        }
    }

    #[test]
    fn partitions_arguments_name_times_keys_or_both() {
        let a = PartitionsArg::parse("2024-01-01..2024-01-03:emea,apac");
        assert_eq!(
            a.times(Granularity::Daily).unwrap().map(|t| t.len()),
            Some(3)
        );
        assert_eq!(a.static_keys().unwrap().map(|k| k.len()), Some(2));
        let a = PartitionsArg::parse(":emea");
        assert_eq!(a.times(Granularity::Daily), Ok(None));
        let a = PartitionsArg::parse("2024-01-03,2024-01-09");
        assert_eq!(a.keys, None);
        assert!(
            PartitionsArg::parse("2024-01-01:../x")
                .static_keys()
                .is_err()
        );
        // Keys alone, for a job whose partitions are its keys.
        let a = PartitionsArg::parse("DE,FR");
        assert_eq!(a.times, None);
        assert_eq!(a.static_keys().unwrap().map(|k| k.len()), Some(2));
        assert_eq!(PartitionsArg::parse("all").keys, None);
        // No key after the `:`, or an empty list: refused, never "nothing to do".
        for empty in ["2024-03-01..2024-03-02:", ":", ": , "] {
            assert!(
                PartitionsArg::parse(empty).static_keys().is_err(),
                "{empty}"
            );
        }
    }
}
