//! The time dimension of a partition: a calendar interval (hour, day, month), or `all` for
//! a job without one.
//!
//! Parsed strictly from the one canonical text form, so a time that reaches a path or a
//! catalog row is always one of `YYYY-MM-DDTHH`, `YYYY-MM-DD`, `YYYY-MM` or `all`.

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

/// The time of a partition, in the job's partition time zone (wall clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeKey {
    Hour(NaiveDateTime),
    Day(NaiveDate),
    Month(NaiveDate),
    All,
}

/// Why a text is not a partition of a job.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{text}` is not {message}")]
pub struct PartitionParseError {
    pub text: String,
    pub message: String,
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

    /// Parses the canonical text of a time of this granularity.
    pub fn parse_time(self, text: &str) -> Result<TimeKey, PartitionParseError> {
        let err = || PartitionParseError {
            text: text.escape_debug().to_string(),
            message: format!("a {self} partition: expected {}", self.example()),
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
                TimeKey::Hour(day.and_time(time))
            }
            Granularity::Daily => TimeKey::Day(parse_day(text).ok_or_else(err)?),
            Granularity::Monthly => {
                if text.len() != 7 {
                    return Err(err());
                }
                let day = parse_day(&format!("{text}-01")).ok_or_else(err)?;
                TimeKey::Month(day)
            }
            Granularity::None => {
                if text != "all" {
                    return Err(err());
                }
                TimeKey::All
            }
        };
        Ok(key)
    }

    /// The partition that holds the wall-clock moment `t`.
    pub fn key_at(self, t: NaiveDateTime) -> TimeKey {
        match self {
            Granularity::Hourly => TimeKey::Hour(
                t.date()
                    .and_time(NaiveTime::from_hms_opt(t.hour(), 0, 0).unwrap_or_default()),
            ),
            Granularity::Daily => TimeKey::Day(t.date()),
            Granularity::Monthly => TimeKey::Month(first_of_month(t.date())),
            Granularity::None => TimeKey::All,
        }
    }

    /// Every key from `from` to `to`, both included, in order.
    pub fn range(self, from: TimeKey, to: TimeKey) -> Vec<TimeKey> {
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
    // By its digits: `status` parses every partition's key, and chrono's parser walks its
    // format for each.
    let number =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    NaiveDate::from_ymd_opt(number(0..4) as i32, number(5..7), number(8..10))
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

impl TimeKey {
    pub fn granularity(&self) -> Granularity {
        match self {
            TimeKey::Hour(_) => Granularity::Hourly,
            TimeKey::Day(_) => Granularity::Daily,
            TimeKey::Month(_) => Granularity::Monthly,
            TimeKey::All => Granularity::None,
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
            TimeKey::Hour(t) => Some(*t),
            TimeKey::Day(d) | TimeKey::Month(d) => Some(d.and_time(NaiveTime::MIN)),
            TimeKey::All => None,
        }
    }

    /// Start and end as instants, reading the wall-clock bounds in `tz`. In a daylight-saving
    /// gap the first valid instant after the gap is used; in an overlap, the earlier one.
    pub fn instant_bounds(&self, tz: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let (s, e) = self.bounds()?;
        Some((local_to_utc(tz, s), local_to_utc(tz, e)))
    }

    pub fn next(&self) -> Option<TimeKey> {
        match self {
            TimeKey::Hour(t) => Some(TimeKey::Hour(*t + Duration::hours(1))),
            TimeKey::Day(d) => d.succ_opt().map(TimeKey::Day),
            TimeKey::Month(d) => d
                .checked_add_months(chrono::Months::new(1))
                .map(TimeKey::Month),
            TimeKey::All => None,
        }
    }

    pub fn prev(&self) -> Option<TimeKey> {
        match self {
            TimeKey::Hour(t) => Some(TimeKey::Hour(*t - Duration::hours(1))),
            TimeKey::Day(d) => d.pred_opt().map(TimeKey::Day),
            TimeKey::Month(d) => d
                .checked_sub_months(chrono::Months::new(1))
                .map(TimeKey::Month),
            TimeKey::All => None,
        }
    }

    /// The keys of granularity `g` that cover this partition's interval: how a downstream
    /// partition maps onto the partitions of an upstream table it reads.
    pub fn covering(&self, g: Granularity) -> Vec<TimeKey> {
        match (self.bounds(), g) {
            (_, Granularity::None) => vec![TimeKey::All],
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
                TimeKey::Hour(_) | TimeKey::Day(_) => start.map(|s| format!("{:02}", s.day())),
                _ => None,
            },
            "hh" => match self {
                TimeKey::Hour(t) => Some(format!("{:02}", t.hour())),
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

impl fmt::Display for TimeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeKey::Hour(t) => write!(f, "{}", t.format("%Y-%m-%dT%H")),
            TimeKey::Day(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            TimeKey::Month(d) => write!(f, "{}", d.format("%Y-%m")),
            TimeKey::All => f.write_str("all"),
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
            assert_eq!(g.parse_time(s).map(|k| k.to_string()), Ok(s.to_string()));
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
            assert!(g.parse_time(s).is_err(), "{s} must be refused as {g}");
        }
    }

    #[test]
    fn month_covers_its_days_and_range_includes_both_ends() {
        let m = Granularity::Monthly.parse_time("2024-02").unwrap();
        let days = m.covering(Granularity::Daily);
        assert_eq!(days.len(), 29);
        assert_eq!(days[28].to_string(), "2024-02-29");
        let from = Granularity::Daily.parse_time("2024-01-30").unwrap();
        let to = Granularity::Daily.parse_time("2024-02-02").unwrap();
        let r = Granularity::Daily.range(from, to);
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn daily_bounds_follow_the_time_zone_across_dst() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let d = Granularity::Daily.parse_time("2024-03-31").unwrap();
        let (s, e) = d.instant_bounds(tz).unwrap();
        assert_eq!((e - s).num_hours(), 23);
        let d = Granularity::Daily.parse_time("2024-10-27").unwrap();
        let (s, e) = d.instant_bounds(tz).unwrap();
        assert_eq!((e - s).num_hours(), 25);
    }
}
