//! The grid's time axis, shared by every job on the page: a window of days (or of months,
//! when every job shown is monthly), labelled, and where each job's partitions fall on it.
//! An hourly partition sits in its day's column on the line of its hour; a monthly one
//! spans its days; a partition of keys alone spans the window.

use super::UiError;
use crate::partition::{Granularity, TimeKey};
use chrono::{Datelike, Months, NaiveDate, NaiveDateTime};

/// What one column of the axis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Day,
    Month,
    /// Only jobs without a time: one column.
    None,
}

impl Unit {
    /// The axis for the jobs shown: the finest time any of them has, hours drawn in days.
    pub fn of(granularities: impl IntoIterator<Item = Granularity>) -> Unit {
        let mut unit = Unit::None;
        for g in granularities {
            match g {
                Granularity::Hourly | Granularity::Daily => return Unit::Day,
                Granularity::Monthly => unit = Unit::Month,
                Granularity::None => {}
            }
        }
        unit
    }

    /// How many columns a window shows unless `from` and `to` say.
    fn default_width(self) -> u32 {
        match self {
            Unit::Day => 31,
            Unit::Month => 12,
            Unit::None => 1,
        }
    }

    fn key_at(self, t: NaiveDateTime) -> TimeKey {
        match self {
            Unit::Day => Granularity::Daily.key_at(t),
            Unit::Month => Granularity::Monthly.key_at(t),
            Unit::None => TimeKey::All,
        }
    }

    fn shift(self, d: NaiveDate, n: i64) -> Option<NaiveDate> {
        match self {
            Unit::Day => d.checked_add_signed(chrono::Duration::days(n)),
            Unit::Month if n >= 0 => d.checked_add_months(Months::new(n as u32)),
            Unit::Month => d.checked_sub_months(Months::new(n.unsigned_abs() as u32)),
            Unit::None => Some(d),
        }
    }
}

/// The most columns one page shows (a bit over two years of days).
pub const MAX_COLUMNS: i64 = 800;

pub struct Column {
    /// Its first day (the first of the month, for months).
    pub day: NaiveDate,
    /// What the header says: the day of the month, or the month's short name.
    pub label: String,
    /// The whole date, for its title: 2024-01-05, or 2024-01.
    pub title: String,
    /// Saturday or Sunday, drawn apart.
    pub weekend: bool,
}

/// A header above the columns: a month over its days, or a year over its months.
pub struct Group {
    pub label: String,
    pub span: usize,
}

pub struct Axis {
    pub unit: Unit,
    pub columns: Vec<Column>,
    pub groups: Vec<Group>,
    /// The window as the form shows it (and as `from`/`to` would ask for it again).
    pub from: String,
    pub to: String,
    /// The windows before and after it, as (from, to).
    pub earlier: Option<(String, String)>,
    pub later: Option<(String, String)>,
}

/// A range bound the user typed, as the wall-clock start of the partition it names (any
/// granularity): `from` at its start, `to` at its end.
pub fn bound(name: &str, text: Option<&str>, end: bool) -> Result<Option<NaiveDateTime>, UiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let key = [Granularity::Hourly, Granularity::Daily, Granularity::Monthly]
        .into_iter()
        .find_map(|g| g.parse_time(text).ok())
        .ok_or_else(|| {
            UiError::BadRequest(format!(
                "{name} = `{}` is not a partition: use a day (2024-01-05), a month (2024-01) or an hour (2024-01-05T03)",
                text.escape_debug()
            ))
        })?;
    Ok(key.bounds().map(|(s, e)| if end { e } else { s }))
}

impl Axis {
    /// The window: `from` and `to` as asked (either alone: a default width from it, or up
    /// to it); neither: the default width ending at `newest`, the newest partition the
    /// jobs shown have run (where the user's work is, not today).
    pub fn new(
        unit: Unit,
        (from, to): (Option<NaiveDateTime>, Option<NaiveDateTime>),
        newest: NaiveDateTime,
    ) -> Result<Axis, UiError> {
        let width = i64::from(unit.default_width());
        let first_of = |t: NaiveDateTime| unit.key_at(t).start().map(|s| s.date());
        let last_of = |t: NaiveDateTime| first_of(t - chrono::Duration::seconds(1));
        let (first, last) = match (from.and_then(first_of), to.and_then(last_of)) {
            (Some(f), Some(l)) => (f, l),
            (Some(f), None) => (f, unit.shift(f, width - 1).unwrap_or(f)),
            (None, Some(l)) => (unit.shift(l, 1 - width).unwrap_or(l), l),
            (None, None) => {
                let l = first_of(newest).unwrap_or(newest.date());
                (unit.shift(l, 1 - width).unwrap_or(l), l)
            }
        };
        if last < first {
            return Err(UiError::BadRequest(format!(
                "from is after to ({first} > {last}): swap them"
            )));
        }
        let mut columns = Vec::new();
        let mut d = first;
        while d <= last {
            if columns.len() as i64 >= MAX_COLUMNS {
                return Err(UiError::BadRequest(format!(
                    "the range from {first} to {last} is more than {MAX_COLUMNS} columns: narrow `from` and `to`"
                )));
            }
            columns.push(column(unit, d));
            match unit.shift(d, 1) {
                Some(n) if unit != Unit::None => d = n,
                _ => break,
            }
        }
        let n = columns.len() as i64;
        let shown = |d: NaiveDate| match unit {
            Unit::Month => d.format("%Y-%m").to_string(),
            _ => d.to_string(),
        };
        let window = |a: Option<NaiveDate>, b: Option<NaiveDate>| Some((shown(a?), shown(b?)));
        Ok(Axis {
            unit,
            groups: groups(unit, &columns),
            from: shown(first),
            to: shown(last),
            earlier: window(unit.shift(first, -n), unit.shift(first, -1))
                .filter(|_| unit != Unit::None),
            later: window(unit.shift(last, 1), unit.shift(last, n)).filter(|_| unit != Unit::None),
            columns,
        })
    }

    /// The window's wall-clock start and end (exclusive).
    pub fn bounds(&self) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let first = self.columns.first()?.day;
        let last = self.columns.last()?.day;
        let end = self.unit.shift(last, 1)?;
        Some((
            first.and_time(chrono::NaiveTime::MIN),
            end.and_time(chrono::NaiveTime::MIN),
        ))
    }

    /// The column holding wall-clock time `t`, clamped into the window.
    pub fn column_of(&self, t: NaiveDateTime) -> usize {
        let d = t.date();
        let i = self.columns.partition_point(|c| c.day <= d);
        i.saturating_sub(1)
    }
}

fn column(unit: Unit, d: NaiveDate) -> Column {
    match unit {
        Unit::Month => Column {
            day: d,
            label: d.format("%b").to_string(),
            title: d.format("%Y-%m").to_string(),
            weekend: false,
        },
        _ => Column {
            day: d,
            label: d.day().to_string(),
            title: d.to_string(),
            weekend: d.weekday().number_from_monday() >= 6,
        },
    }
}

/// The months over a day axis, or the years over a month axis.
fn groups(unit: Unit, columns: &[Column]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for c in columns {
        let label = match unit {
            Unit::Day => c.day.format("%B %Y").to_string(),
            Unit::Month => c.day.format("%Y").to_string(),
            Unit::None => String::new(),
        };
        match out.last_mut() {
            Some(g) if g.label == label => g.span += 1,
            _ => out.push(Group { label, span: 1 }),
        }
    }
    out
}

/// The lines a job with granularity `g` takes on the axis per key: one, or for hourly jobs
/// one per hour of the day.
pub fn lines_per_key(g: Granularity, unit: Unit) -> u32 {
    match (g, unit) {
        (Granularity::Hourly, Unit::Day) => 24,
        _ => 1,
    }
}
