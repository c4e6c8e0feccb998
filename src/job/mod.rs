//! Job specs: `jobs/<name>.toml` and the SQL beside it, read into a validated [`Job`].
//!
//! Everything a spec says is checked here, with the file and the field named, so the layers
//! below never meet an unchecked name, template or time zone.

mod extract;
pub mod graph;
mod input_spec;
mod partitioning;
mod reading;
mod spec;
mod write_mode;

pub use extract::{CommandInput, ConnectionRef, DatabaseInput, DatabaseSystem, Extract};
pub use partitioning::check_table;
pub use write_mode::{MergeRule, Scd2Rule, WriteMode};

use crate::names::Name;
use crate::partition::{
    Granularity, PartitionKey, PartitionParseError, StaticDimension, StaticKey, TimeKey,
};
use crate::schema::{Column, TableSchema};
use chrono_tz::Tz;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One problem with one file of the project.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {message}")]
pub struct SpecError {
    /// The file, relative to the project root.
    pub file: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Parquet,
    /// Newline-delimited JSON, one object a line (`ndjson` says the same).
    #[serde(alias = "ndjson")]
    Json,
    /// Arrow IPC, as a stream (what a program writes to a pipe) or a file.
    Arrow,
}

/// Which partitions of an upstream table a downstream partition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamPartitions {
    /// The upstream partitions whose interval lies within this partition's interval (and,
    /// when both jobs have the same key column, of this partition's key).
    #[default]
    Same,
    /// The same time's partitions, of every key the upstream declares.
    #[serde(rename = "all_keys")]
    AllKeys,
    /// The whole table (a dimension, say).
    All,
}

/// What to do with input rows that cannot be parsed (bad number, missing field, bad
/// timestamp). Until dead letters exist the choice is to fail or to skip with a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BadRows {
    #[default]
    Fail,
    Skip,
}

/// The most bad input rows a partition may leave out before it fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BadRowLimit {
    Count(u64),
    /// Of the rows read from the job's input files.
    Fraction(f64),
}

impl BadRowLimit {
    pub fn allows(&self, bad: u64, total: u64) -> bool {
        match *self {
            BadRowLimit::Count(n) => bad <= n,
            BadRowLimit::Fraction(f) => (bad as f64) <= f * total as f64,
        }
    }
}

/// What a partition does with the input rows it cannot use, by its job's policy: the one
/// rule a run and a job test follow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BadRowVerdict {
    /// `bad_rows = "fail"`: the partition fails, naming them.
    Fail,
    /// More than `max_bad_rows` allows of the `read` rows: the partition fails.
    TooMany { limit: BadRowLimit, read: u64 },
    /// Left out, as dead letters.
    Skip,
}

impl Job {
    /// The verdict on `bad` unusable rows of `read()` rows read (asked only for a limit
    /// that is a fraction).
    pub fn bad_row_verdict(&self, bad: u64, read: impl FnOnce() -> u64) -> BadRowVerdict {
        if self.bad_rows == BadRows::Fail {
            return BadRowVerdict::Fail;
        }
        let Some(limit) = self.max_bad_rows else {
            return BadRowVerdict::Skip;
        };
        let read = read();
        if limit.allows(bad, read) {
            BadRowVerdict::Skip
        } else {
            BadRowVerdict::TooMany { limit, read }
        }
    }
}

impl std::fmt::Display for BadRowLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRowLimit::Count(n) => write!(f, "{n} row(s)"),
            BadRowLimit::Fraction(x) => write!(f, "{}% of the rows read", x * 100.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub cron: String,
    pub time_zone: Tz,
    /// A tick runs the partition `lag` partitions before the one the tick falls in: with
    /// the default 1, a daily job ticking at 02:30 runs yesterday.
    pub lag: u32,
    /// What the daemon does, when it starts, with partitions whose ticks it missed.
    pub catch_up: CatchUp,
    /// At most this many missed partitions are queued on start (the newest ones).
    pub max_catch_up: u32,
    /// At most this many partitions of this job run at once in the daemon.
    pub max_concurrency: u32,
    /// How long a due partition waits for its input files before it fails; `None`: it
    /// runs at once and fails if a file is missing.
    pub wait_for_inputs: Option<std::time::Duration>,
    /// What the daemon does with a complete partition whose upstream content changed.
    pub on_upstream_change: OnUpstreamChange,
    /// How far back (from the latest due partition) the daemon lists the input files of
    /// complete partitions at each poll and reruns those whose files changed.
    pub watch_inputs: Option<std::time::Duration>,
    /// When each partition must be complete; a miss is told (`deadline_missed`).
    pub deadline: Option<Deadline>,
}

/// `schedule.deadline`: by when a partition must be complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// `"07:00"`: a daily partition by this time of the day after it, in the schedule's
    /// time zone.
    NextDayAt(chrono::NaiveTime),
    /// `"+45m"`: a partition by this long after its end.
    After(std::time::Duration),
}

impl Deadline {
    /// Reads `"HH:MM"` (daily jobs) or `"+DURATION"` (any job partitioned by time).
    pub fn parse(
        text: &str,
        granularity: crate::partition::Granularity,
    ) -> Result<Deadline, String> {
        use crate::partition::Granularity;
        if let Some(d) = text.strip_prefix('+') {
            return crate::duration::parse_duration(d).map(Deadline::After);
        }
        let at = chrono::NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| {
            format!("`{text}` is neither a time of day (\"07:00\") nor an offset after the partition's end (\"+45m\")")
        })?;
        match granularity {
            Granularity::Daily => Ok(Deadline::NextDayAt(at)),
            g => Err(format!(
                "a time of day is for daily jobs (this one is {g}); give an offset after the partition's end, e.g. \"+45m\""
            )),
        }
    }

    /// The instant partition `time` must be complete by: its end, or the day after it, read
    /// in `partition_tz` (its bounds) and `schedule_tz` (a time of day).
    pub fn of(
        self,
        time: crate::partition::TimeKey,
        partition_tz: chrono_tz::Tz,
        schedule_tz: chrono_tz::Tz,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let (_, end) = time.instant_bounds(partition_tz)?;
        match self {
            Deadline::After(d) => Some(end + chrono::Duration::from_std(d).ok()?),
            Deadline::NextDayAt(at) => {
                let (_, local_end) = time.bounds()?;
                let day = local_end.date();
                Some(crate::partition::local_to_utc(
                    schedule_tz,
                    day.and_time(at),
                ))
            }
        }
    }
}

/// What the daemon does with a partition made stale by an upstream change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnUpstreamChange {
    /// Rerun it, after the upstream partitions it reads are done.
    #[default]
    Rerun,
    /// Only show it stale (`status`, the grid, metrics); `backfill --stale` reruns it.
    Mark,
}

/// Which missed partitions the daemon queues after downtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Every partition since the last complete one (up to `max_catch_up`, newest kept).
    #[default]
    All,
    /// Only the newest due partition.
    Latest,
    /// None: the schedule resumes from the next tick.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    pub header: bool,
    pub delimiter: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InputSource {
    Files {
        /// Path or URL with `{partition}`-style placeholders; relative to the project root.
        template: String,
        format: FileFormat,
        /// Declared schema; without it the reader infers one.
        schema: Option<Vec<Column>>,
        csv: CsvOptions,
    },
    Table {
        table: Name,
        partitions: UpstreamPartitions,
        /// A rolling window: the partitions from `from` to `to` (in this job's grain,
        /// relative to the partition run) are read, each as `partitions` says.
        window: Option<Window>,
    },
    /// A program run once per partition attempt (`type = "command"`), whose standard output
    /// is the input's rows.
    Command(CommandInput),
    /// A query on a PostgreSQL or MySQL database (`type = "postgres"` or `"mysql"`), with
    /// the partition's bounds bound as its parameters.
    Database(DatabaseInput),
}

/// `window = { from = -6, to = 0 }`: partitions P-6 to P of a partition P, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub from: i32,
    pub to: i32,
}

impl Window {
    /// The widest window a spec may ask for, either way (a year of hours).
    pub const MAX: i32 = 8_784;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The name the SQL reads it by.
    pub name: Name,
    pub source: InputSource,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_seconds: f64,
    pub max_backoff_seconds: f64,
}

/// Where a job's query runs: in the sluice process (DataFusion), or on a Ballista cluster
/// (`[engine] kind`, in `sluice.toml` for every job or in a job's spec for that job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    #[default]
    Datafusion,
    Ballista,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: Name,
    pub description: Option<String>,
    /// The physical version its runs write: the spec's `version`, unless an alias points
    /// at a version an environment built for that number (`Project::at_live_versions`).
    pub version: u32,
    /// The `version` the spec names.
    pub spec_version: u32,
    pub spec_path: PathBuf,
    pub sql_path: PathBuf,
    /// The spec's text and the SQL's text as read: the code fingerprint hashes both.
    pub spec_text: String,
    pub sql: String,
    /// The first time partition (every key starts there).
    pub start: Option<TimeKey>,
    pub schedule: Option<Schedule>,
    pub granularity: Granularity,
    /// The static dimension: the key column and the declared keys.
    pub static_keys: Option<StaticDimension>,
    /// The zone in which partition boundaries are wall-clock midnights (or month starts).
    pub partition_time_zone: Tz,
    pub inputs: Vec<Input>,
    pub table: Name,
    pub key: Vec<Name>,
    pub retry: RetryPolicy,
    pub bad_rows: BadRows,
    /// With `bad_rows = "skip"`: the most bad rows a partition may leave out; none = all.
    pub max_bad_rows: Option<BadRowLimit>,
    /// Data-quality checks run on each partition's new rows before they are published.
    pub checks: Vec<crate::quality::Check>,
    /// The output column that receives a stable hash of the key columns.
    pub record_id: Option<Name>,
    /// `[output] write`: how a partition's output meets the table.
    pub write: WriteMode,
    /// `[engine] kind`: where this job's query runs; `None` follows `sluice.toml`. Not
    /// part of the code fingerprint: the engine does not change what the job writes.
    pub engine: Option<EngineKind>,
}

/// Placeholders a file template may use.
pub const TEMPLATE_FIELDS: &[&str] = &["partition", "key", "yyyy", "mm", "dd", "hh"];

/// A partition's value in one partition column of its table: typed (for filters, checks
/// and the rows written) and as the Delta log's partition string.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionValue {
    pub column: String,
    pub value: deltalake::datafusion::scalar::ScalarValue,
    pub text: String,
}

impl Job {
    /// Parses `text` as a partition of this job (its form; see [`Job::declares`]).
    pub fn parse_partition(&self, text: &str) -> Result<PartitionKey, PartitionParseError> {
        PartitionKey::parse(self.granularity, self.static_keys.is_some(), text)
    }

    /// The job's partitions at time `time`: one per declared key, or the time alone.
    pub fn partitions_at(&self, time: TimeKey) -> Vec<PartitionKey> {
        match &self.static_keys {
            None => vec![PartitionKey::from(time)],
            Some(d) => d
                .keys
                .iter()
                .map(|k| PartitionKey::new(time, Some(*k)))
                .collect(),
        }
    }

    /// Whether the job declares `p` now: its key (if any) is one of the declared keys. A
    /// key removed from the spec leaves partitions that are no longer declared.
    pub fn declares(&self, p: &PartitionKey) -> bool {
        match (&self.static_keys, p.key) {
            (None, None) => true,
            (Some(d), Some(k)) => d.declares(&k),
            _ => false,
        }
    }

    /// `Ok` when the job declares `p`; else why not, naming the declared keys.
    pub fn check_declared(&self, p: &PartitionKey) -> Result<(), String> {
        if self.declares(p) {
            return Ok(());
        }
        Err(match p.key {
            Some(k) => format!(
                "job `{}` declares no key `{k}` (declared: {}); add it to the spec's keys to run it",
                self.name,
                crate::text::shorten(self.keys(), 12)
            ),
            None => format!("job `{}` has no static dimension", self.name),
        })
    }

    /// How the job is partitioned, for messages: `daily`, `daily by region`.
    pub fn partitioning_text(&self) -> String {
        match (self.key_column(), self.granularity) {
            (None, g) => g.to_string(),
            (Some(c), crate::partition::Granularity::None) => format!("by {c}"),
            (Some(c), g) => format!(
                "{g} by {c} (TIME:KEY, e.g. 2024-01-05:{})",
                self.keys()
                    .first()
                    .map(|k| k.to_string())
                    .unwrap_or_default()
            ),
        }
    }

    /// The key column, for a job with a static dimension.
    pub fn key_column(&self) -> Option<&Name> {
        self.static_keys.as_ref().map(|d| &d.column)
    }

    /// The table's time partition column: its one partition column that is not the key's.
    pub fn time_column<'t>(&self, table: &'t TableSchema) -> Option<&'t Column> {
        if self.granularity == Granularity::None {
            return None;
        }
        let mut cols = table
            .partition_by
            .iter()
            .filter(|c| Some(*c) != self.key_column());
        match (cols.next(), cols.next()) {
            (Some(c), None) => table.column(c.as_str()),
            _ => None,
        }
    }

    /// The values partition `p` holds in `table`'s partition columns: the time's, then the
    /// key's. The one rule for what a commit replaces, a run writes and a read filters.
    pub fn partition_values(&self, table: &TableSchema, p: &PartitionKey) -> Vec<PartitionValue> {
        use crate::schema::types::{partition_string, partition_value};
        let mut out = Vec::new();
        // A merge job's partition is a batch of changes: its rows land wherever their keys
        // live, and the table's partition columns are part of the key.
        if self.write.merges() {
            return out;
        }
        if let Some(col) = self.time_column(table)
            && let Some(value) = partition_value(col.ty, p, self.partition_time_zone)
        {
            out.push(PartitionValue {
                column: col.name.to_string(),
                value,
                text: partition_string(col.ty, p, self.partition_time_zone),
            });
        }
        if let (Some(column), Some(k)) = (self.key_column(), p.key) {
            out.push(PartitionValue {
                column: column.to_string(),
                value: deltalake::datafusion::scalar::ScalarValue::Utf8(Some(k.to_string())),
                text: k.to_string(),
            });
        }
        out
    }

    /// A partition to plan the SQL for when any will do (a type check): the start's, or
    /// now's, of the first key.
    pub fn representative_partition(&self) -> PartitionKey {
        let time = self
            .start
            .unwrap_or_else(|| self.granularity.key_at(chrono::Utc::now().naive_utc()));
        PartitionKey::new(time, self.keys().first().copied())
    }

    /// When partition `time` must be complete (`schedule.deadline`), if the job has one.
    pub fn deadline_of(
        &self,
        time: crate::partition::TimeKey,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let s = self.schedule.as_ref()?;
        s.deadline?.of(time, self.partition_time_zone, s.time_zone)
    }

    /// Whether partition `time`, not complete, is past its deadline at `now`.
    pub fn is_late(
        &self,
        time: crate::partition::TimeKey,
        now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        self.deadline_of(time).is_some_and(|d| d <= now)
    }

    /// The declared keys, or none for a job without a static dimension.
    pub fn keys(&self) -> &[StaticKey] {
        self.static_keys.as_ref().map_or(&[], |d| d.keys.as_slice())
    }
}

impl Job {
    /// Reads and checks one spec file. `root` is the project root, for relative names.
    pub fn load(root: &Path, spec_path: &Path) -> Result<Job, Vec<SpecError>> {
        let spec_text = std::fs::read_to_string(spec_path).map_err(|e| {
            vec![SpecError {
                file: spec_path
                    .strip_prefix(root)
                    .unwrap_or(spec_path)
                    .display()
                    .to_string(),
                message: format!("cannot read the job spec: {e}"),
            }]
        })?;
        spec::parse(root, spec_path, spec_text, None)
    }

    /// A job as it was when its spec and SQL read `spec_text` and `sql_text` (recorded in
    /// the catalog when it wrote a table version): how a shadowed live version keeps
    /// being written by the code that built it.
    pub fn from_recorded(
        root: &Path,
        spec_path: &Path,
        spec_text: String,
        sql_text: String,
    ) -> Result<Job, Vec<SpecError>> {
        spec::parse(root, spec_path, spec_text, Some(sql_text))
    }

    /// The spec file relative to `root`, for messages.
    pub fn spec_file(&self, root: &Path) -> String {
        self.spec_path
            .strip_prefix(root)
            .unwrap_or(&self.spec_path)
            .display()
            .to_string()
    }

    /// The upstream tables this job reads.
    pub fn upstream_tables(&self) -> impl Iterator<Item = (&Name, UpstreamPartitions)> {
        self.inputs.iter().filter_map(|i| match &i.source {
            InputSource::Table {
                table, partitions, ..
            } => Some((table, *partitions)),
            InputSource::Files { .. } | InputSource::Command(_) | InputSource::Database(_) => None,
        })
    }

    /// The file template of an input with its placeholders filled for `key`.
    pub fn resolve_template(template: &str, key: &PartitionKey) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| "a `{` is never closed".to_string())?;
            let field = &after[..close];
            let value = key.template_value(field).ok_or_else(|| {
                format!("placeholder {{{field}}} has no value for partition {key}")
            })?;
            out.push_str(&value);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// One line: `line L, column C: message` (toml's own text spreads over several lines).
pub(crate) fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim_end().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Parses a cron expression the way the daemon will: five fields (minute hour day month
/// weekday), or six with seconds first.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first; this one has {fields}"
        ));
    }
    let names = [
        "second",
        "minute",
        "hour",
        "day of month",
        "month",
        "day of week",
    ];
    let ranges = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    let skip = if fields == 6 { 0 } else { 1 };
    for (i, field) in expr.split_whitespace().enumerate() {
        let (name, (lo, hi)) = (names[i + skip], ranges[i + skip]);
        // Numbers in lists and ranges; a step (`*/15`) is not a value of the field.
        for part in field.split(',') {
            let values = part.split('/').next().unwrap_or_default();
            for n in values.split('-').filter_map(|v| v.parse::<u32>().ok()) {
                if n < lo || n > hi {
                    return Err(format!("{name} {n} is out of range {lo}-{hi}"));
                }
            }
        }
    }
    croner::parser::CronParser::builder()
        .seconds(if fields == 6 {
            croner::parser::Seconds::Required
        } else {
            croner::parser::Seconds::Disallowed
        })
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}
