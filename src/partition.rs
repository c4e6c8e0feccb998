//! Partitions: the slice of a job's output that is scheduled, leased, replaced and retried
//! as one unit. A partition key is a calendar interval (hour, day, month) or the single
//! `all` partition of an unpartitioned job.
//!
//! Keys are parsed strictly from their one canonical text form, so a key that reaches a path
//! or a catalog row is always one of `YYYY-MM-DDTHH`, `YYYY-MM-DD`, `YYYY-MM` or `all`.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hourly,
    Daily,
    Monthly,
    None,
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Granularity::Hourly => "hourly",
            Granularity::Daily => "daily",
            Granularity::Monthly => "monthly",
            Granularity::None => "none",
        })
    }
}

/// One partition of a job's output, in the job's partition time zone (wall clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartitionKey {
    Hour(NaiveDateTime),
    Day(NaiveDate),
    Month(NaiveDate),
    All,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{text}` is not a {granularity} partition: expected {expected}")]
pub struct PartitionParseError {
    pub text: String,
    pub granularity: Granularity,
    pub expected: &'static str,
}

impl Granularity {
    pub fn example(self) -> &'static str {
        match self {
            Granularity::Hourly => "YYYY-MM-DDTHH, e.g. 2024-01-05T03",
            Granularity::Daily => "YYYY-MM-DD, e.g. 2024-01-05",
            Granularity::Monthly => "YYYY-MM, e.g. 2024-01",
            Granularity::None => "`all` (the job is not partitioned)",
        }
    }

    /// Parses the canonical text of a key of this granularity.
    pub fn parse_key(self, text: &str) -> Result<PartitionKey, PartitionParseError> {
        let err = || PartitionParseError {
            text: text.escape_debug().to_string(),
            granularity: self,
            expected: self.example(),
        };
        let key = match self {
            Granularity::Hourly => {
                let (day, hour) = text.split_once('T').ok_or_else(err)?;
                if hour.len() != 2 || !hour.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                let day = parse_day(day).ok_or_else(err)?;
                let hour: u32 = hour.parse().map_err(|_| err())?;
                let time = NaiveTime::from_hms_opt(hour, 0, 0).ok_or_else(err)?;
                PartitionKey::Hour(day.and_time(time))
            }
            Granularity::Daily => PartitionKey::Day(parse_day(text).ok_or_else(err)?),
            Granularity::Monthly => {
                if text.len() != 7 {
                    return Err(err());
                }
                let day = parse_day(&format!("{text}-01")).ok_or_else(err)?;
                PartitionKey::Month(day)
            }
            Granularity::None => {
                if text != "all" {
                    return Err(err());
                }
                PartitionKey::All
            }
        };
        Ok(key)
    }

    /// The partition that holds the wall-clock moment `t`.
    pub fn key_at(self, t: NaiveDateTime) -> PartitionKey {
        match self {
            Granularity::Hourly => PartitionKey::Hour(
                t.date()
                    .and_time(NaiveTime::from_hms_opt(t.hour(), 0, 0).unwrap_or_default()),
            ),
            Granularity::Daily => PartitionKey::Day(t.date()),
            Granularity::Monthly => PartitionKey::Month(first_of_month(t.date())),
            Granularity::None => PartitionKey::All,
        }
    }

    /// Every key from `from` to `to`, both included, in order.
    pub fn range(self, from: PartitionKey, to: PartitionKey) -> Vec<PartitionKey> {
        let mut out = Vec::new();
        let mut k = from;
        while k <= to {
            out.push(k);
            match k.next() {
                Some(n) => k = n,
                None => break,
            }
        }
        out
    }
}

fn parse_day(text: &str) -> Option<NaiveDate> {
    // Canonical form only: `2024-1-5` is refused so that one partition has one spelling.
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    if !b
        .iter()
        .enumerate()
        .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

impl PartitionKey {
    pub fn granularity(&self) -> Granularity {
        match self {
            PartitionKey::Hour(_) => Granularity::Hourly,
            PartitionKey::Day(_) => Granularity::Daily,
            PartitionKey::Month(_) => Granularity::Monthly,
            PartitionKey::All => Granularity::None,
        }
    }

    /// Wall-clock start (inclusive) and end (exclusive); `None` for `all`.
    pub fn bounds(&self) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let start = self.start()?;
        let end = self.next()?.start()?;
        Some((start, end))
    }

    pub fn start(&self) -> Option<NaiveDateTime> {
        match self {
            PartitionKey::Hour(t) => Some(*t),
            PartitionKey::Day(d) | PartitionKey::Month(d) => Some(d.and_time(NaiveTime::MIN)),
            PartitionKey::All => None,
        }
    }

    /// Start and end as instants, reading the wall-clock bounds in `tz`. In a daylight-saving
    /// gap the first valid instant after the gap is used; in an overlap, the earlier one.
    pub fn instant_bounds(&self, tz: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let (s, e) = self.bounds()?;
        Some((local_to_utc(tz, s), local_to_utc(tz, e)))
    }

    pub fn next(&self) -> Option<PartitionKey> {
        match self {
            PartitionKey::Hour(t) => Some(PartitionKey::Hour(*t + Duration::hours(1))),
            PartitionKey::Day(d) => d.succ_opt().map(PartitionKey::Day),
            PartitionKey::Month(d) => d
                .checked_add_months(chrono::Months::new(1))
                .map(PartitionKey::Month),
            PartitionKey::All => None,
        }
    }

    pub fn prev(&self) -> Option<PartitionKey> {
        match self {
            PartitionKey::Hour(t) => Some(PartitionKey::Hour(*t - Duration::hours(1))),
            PartitionKey::Day(d) => d.pred_opt().map(PartitionKey::Day),
            PartitionKey::Month(d) => d
                .checked_sub_months(chrono::Months::new(1))
                .map(PartitionKey::Month),
            PartitionKey::All => None,
        }
    }

    /// The keys of granularity `g` that cover this partition's interval: how a downstream
    /// partition maps onto the partitions of an upstream table it reads.
    pub fn covering(&self, g: Granularity) -> Vec<PartitionKey> {
        match (self.bounds(), g) {
            (_, Granularity::None) => vec![PartitionKey::All],
            (None, _) => Vec::new(),
            (Some((s, e)), g) => {
                let first = g.key_at(s);
                let mut out = Vec::new();
                let mut k = first;
                while let Some(ks) = k.start() {
                    if ks >= e {
                        break;
                    }
                    out.push(k);
                    match k.next() {
                        Some(n) => k = n,
                        None => break,
                    }
                }
                out
            }
        }
    }

    /// Values for path templates: `{partition}`, `{yyyy}`, `{mm}`, `{dd}`, `{hh}`.
    pub fn template_value(&self, field: &str) -> Option<String> {
        let start = self.start();
        match field {
            "partition" => Some(self.to_string()),
            "yyyy" => start.map(|s| format!("{:04}", s.year())),
            "mm" => start.map(|s| format!("{:02}", s.month())),
            "dd" => match self {
                PartitionKey::Hour(_) | PartitionKey::Day(_) => {
                    start.map(|s| format!("{:02}", s.day()))
                }
                _ => None,
            },
            "hh" => match self {
                PartitionKey::Hour(t) => Some(format!("{:02}", t.hour())),
                _ => None,
            },
            _ => None,
        }
    }
}

pub fn local_to_utc(tz: Tz, t: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&t) {
        chrono::LocalResult::Single(d) => d.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
        chrono::LocalResult::None => {
            // A spring-forward gap: walk forward minute by minute to the first valid instant.
            let mut probe = t;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(d) = tz.from_local_datetime(&probe).earliest() {
                    return d.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&t)
        }
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionKey::Hour(t) => write!(f, "{}", t.format("%Y-%m-%dT%H")),
            PartitionKey::Day(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            PartitionKey::Month(d) => write!(f, "{}", d.format("%Y-%m")),
            PartitionKey::All => f.write_str("all"),
        }
    }
}

/// A `--partitions` argument as written, before any job's granularity is known: a range
/// `A..B` (both included) or a list `A,B,C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionsArg {
    Range(String, String),
    List(std::collections::BTreeSet<String>),
}

impl PartitionsArg {
    pub fn parse(text: &str) -> PartitionsArg {
        match text.split_once("..") {
            Some((a, b)) => PartitionsArg::Range(a.trim().to_string(), b.trim().to_string()),
            None => PartitionsArg::List(
                text.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect(),
            ),
        }
    }

    /// The partitions of granularity `g` it names, in order.
    pub fn keys(&self, g: Granularity) -> Result<Vec<PartitionKey>, String> {
        match self {
            PartitionsArg::Range(a, b) => {
                let a = g.parse_key(a).map_err(|e| e.to_string())?;
                let b = g.parse_key(b).map_err(|e| e.to_string())?;
                if a > b {
                    return Err(format!("range `{a}..{b}` ends before it starts"));
                }
                Ok(g.range(a, b))
            }
            PartitionsArg::List(set) => set
                .iter()
                .map(|p| g.parse_key(p).map_err(|e| e.to_string()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_one_spelling() {
        for (g, s) in [
            (Granularity::Hourly, "2024-03-31T02"),
            (Granularity::Daily, "2024-02-29"),
            (Granularity::Monthly, "2024-12"),
            (Granularity::None, "all"),
        ] {
            assert_eq!(g.parse_key(s).map(|k| k.to_string()), Ok(s.to_string()));
        }
    }

    #[test]
    fn refuses_other_spellings_and_path_tricks() {
        for (g, s) in [
            (Granularity::Daily, "2024-1-5"),
            (Granularity::Daily, "2023-02-29"),
            (Granularity::Daily, "../2024-01-01"),
            (Granularity::Daily, "2024-01-01/x"),
            (Granularity::Hourly, "2024-01-01T24"),
            (Granularity::Hourly, "2024-01-01 03"),
            (Granularity::Monthly, "2024-13"),
            (Granularity::None, "2024-01-01"),
        ] {
            assert!(g.parse_key(s).is_err(), "{s} must be refused as {g}");
        }
    }

    #[test]
    fn month_covers_its_days_and_range_includes_both_ends() {
        let m = Granularity::Monthly.parse_key("2024-02").unwrap();
        let days = m.covering(Granularity::Daily);
        assert_eq!(days.len(), 29);
        assert_eq!(days[28].to_string(), "2024-02-29");
        let from = Granularity::Daily.parse_key("2024-01-30").unwrap();
        let to = Granularity::Daily.parse_key("2024-02-02").unwrap();
        let r = Granularity::Daily.range(from, to);
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn daily_bounds_follow_the_time_zone_across_dst() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let d = Granularity::Daily.parse_key("2024-03-31").unwrap();
        let (s, e) = d.instant_bounds(tz).unwrap();
        assert_eq!((e - s).num_hours(), 23);
        let d = Granularity::Daily.parse_key("2024-10-27").unwrap();
        let (s, e) = d.instant_bounds(tz).unwrap();
        assert_eq!((e - s).num_hours(), 25);
    }
}
