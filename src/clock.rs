//! Time, injected: production reads the system clock, tests drive a manual one, so nothing
//! that depends on "now" (leases, schedules) needs a test to sleep.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// The time leases live in (their expiry, renewals, the check of another's): this
    /// clock's own, except in a rehearsal. A lease is held by a live process, in real time,
    /// and a rehearsal's simulated time jumps (a retry's backoff passes at once), so by it
    /// one replaying daemon would find another's lease long expired while that daemon was
    /// still writing the partition, and write it again.
    fn lease_now_ms(&self) -> i64 {
        self.now_ms()
    }

    /// Waits `d` of this clock's time (a retry's backoff): real time, unless the clock is
    /// simulated.
    fn sleep(&self, d: std::time::Duration) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        if let Ok(mut t) = self.0.lock() {
            *t = at;
        }
    }

    pub fn advance(&self, by: chrono::Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|e| *e.into_inner())
    }
}

/// The clock of a rehearsal (`sluice daemon --replay`): set by the replay from event to
/// event, and a wait on it passes at once, moving simulated time forward, so a retry's
/// backoff costs no real time.
#[derive(Debug, Clone)]
pub struct SimulatedClock(pub ManualClock);

impl Clock for SimulatedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }

    fn sleep(&self, d: std::time::Duration) -> futures::future::BoxFuture<'static, ()> {
        self.0
            .advance(chrono::Duration::from_std(d).unwrap_or_default());
        Box::pin(tokio::task::yield_now())
    }

    fn lease_now_ms(&self) -> i64 {
        Utc::now().timestamp_millis()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// A time in results for programs (`--output json`): RFC 3339 in UTC with milliseconds,
/// `2024-01-05T10:03:07.042Z`, from epoch milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        return ms.to_string();
    };
    match by_digits(t, 'T', true) {
        Some(mut text) => {
            text.push('Z');
            text
        }
        None => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// `t` as `2024-01-05<between>10:03:07`, then `.042` when `millis`; `None` for a year
/// not of four digits. Digit by digit: `status` writes a time or two per partition, and
/// chrono's formatter walks a list of items for each.
fn by_digits(t: DateTime<Utc>, between: char, millis: bool) -> Option<String> {
    use chrono::{Datelike as _, Timelike as _};
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let mut out = String::with_capacity(24);
    push_digits(&mut out, year, 4);
    let fields = [
        ('-', t.month(), 2),
        ('-', t.day(), 2),
        (between, t.hour(), 2),
        (':', t.minute(), 2),
        (':', t.second(), 2),
    ];
    for (sep, n, width) in fields {
        out.push(sep);
        push_digits(&mut out, n, width);
    }
    if millis {
        out.push('.');
        push_digits(&mut out, t.timestamp_subsec_millis(), 3);
    }
    Some(out)
}

/// `n`'s last `width` digits, zeros first.
fn push_digits(out: &mut String, n: u32, width: u32) {
    for p in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
    }
}

/// A time for people: `2024-01-05 10:03:07` (UTC) from epoch milliseconds; `-` for none.
pub fn shown_time(ms: Option<i64>) -> String {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| {
            by_digits(t, ' ', false).unwrap_or_else(|| t.format("%Y-%m-%d %H:%M:%S").to_string())
        })
        .unwrap_or_else(|| "-".into())
}

/// How long from `start` to `end` for people: `420ms`, `3.2s`, `4m07s`; `-` when unknown.
pub fn shown_duration(start: Option<i64>, end: Option<i64>) -> String {
    match (start, end) {
        (Some(s), Some(e)) if e >= s => {
            let ms = e - s;
            if ms < 1000 {
                format!("{ms}ms")
            } else if ms < 60_000 {
                format!("{:.1}s", ms as f64 / 1000.0)
            } else {
                format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60)
            }
        }
        _ => "-".into(),
    }
}

/// `#[serde(serialize_with = "crate::clock::as_rfc3339")]` for epoch milliseconds kept as
/// integers inside sluice (the catalog stores them so) and shown as [`rfc3339`] strings.
pub fn as_rfc3339<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

/// [`as_rfc3339`] for an optional time (null when absent).
pub fn as_rfc3339_opt<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_for_programs_are_rfc3339_in_utc_with_milliseconds() {
        assert_eq!(
            super::rfc3339(1_796_038_960_752),
            "2026-11-30T11:42:40.752Z"
        );
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        // As chrono writes them, in and out of the years of four digits.
        use chrono::{DateTime, Utc};
        for ms in [
            -1,
            -62_135_596_800_001,
            -62_167_219_200_000,
            1,
            999,
            86_399_999,
            951_782_400_000,
            253_402_300_799_999,
            253_402_300_800_000,
            i64::MAX,
        ] {
            let chrono = DateTime::<Utc>::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_else(|| ms.to_string());
            assert_eq!(super::rfc3339(ms), chrono, "{ms}");
        }
    }

    /// Times for people are as chrono's `%Y-%m-%d %H:%M:%S` writes them, in and out of
    /// the years of four digits.
    #[test]
    fn times_for_people_are_as_the_format_writes_them() {
        use chrono::{DateTime, Utc};
        for ms in [
            0,
            1_796_038_960_752,
            -62_135_596_800_000,
            253_402_300_799_999,
            253_402_300_800_000,
            -86_400_000,
        ] {
            let expected = DateTime::<Utc>::from_timestamp_millis(ms)
                .expect("in range")
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            assert_eq!(super::shown_time(Some(ms)), expected, "{ms}");
        }
        assert_eq!(
            super::shown_time(Some(1_796_038_960_752)),
            "2026-11-30 11:42:40"
        );
        assert_eq!(super::shown_time(None), "-");
    }
}
