//! Job specs: `jobs/<name>.toml` and the SQL beside it, read into a validated [`Job`].
//!
//! Everything a spec says is checked here, with the file and the field named, so the layers
//! below never meet an unchecked name, template or time zone.

pub mod graph;

use crate::names::Name;
use crate::partition::{Granularity, PartitionKey};
use crate::schema::{Column, ddl};
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    name: Option<String>,
    description: Option<String>,
    version: i64,
    sql: Option<String>,
    start: Option<String>,
    schedule: Option<ScheduleFile>,
    partitioning: PartitioningFile,
    #[serde(default)]
    inputs: Vec<InputFile>,
    output: OutputFile,
    #[serde(default)]
    retry: RetryFile,
    #[serde(default)]
    bad_rows: BadRows,
    /// How many bad input rows a partition may leave out (to its dead letters) before it
    /// fails: a count (`10`) or a fraction of the input rows (`"1%"`).
    max_bad_rows: Option<toml::Value>,
    #[serde(default)]
    checks: Vec<crate::quality::CheckFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    cron: String,
    time_zone: Option<String>,
    #[serde(default = "default_lag")]
    lag: u32,
    #[serde(default)]
    catch_up: CatchUp,
    #[serde(default = "default_max_catch_up")]
    max_catch_up: u32,
    #[serde(default = "default_job_concurrency")]
    max_concurrency: u32,
    wait_for_inputs: Option<String>,
}

fn default_lag() -> u32 {
    1
}
fn default_max_catch_up() -> u32 {
    31
}
fn default_job_concurrency() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitioningFile {
    granularity: Granularity,
    time_zone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputFile {
    name: String,
    path: Option<String>,
    format: Option<FileFormat>,
    schema: Option<Vec<String>>,
    header: Option<bool>,
    delimiter: Option<char>,
    table: Option<String>,
    partitions: Option<UpstreamPartitions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputFile {
    table: String,
    #[serde(default)]
    key: Vec<String>,
    /// A column that receives a stable hash of the key columns.
    record_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryFile {
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "default_backoff")]
    backoff_seconds: f64,
    #[serde(default = "default_max_backoff")]
    max_backoff_seconds: f64,
}

fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> f64 {
    5.0
}
fn default_max_backoff() -> f64 {
    300.0
}

impl Default for RetryFile {
    fn default() -> Self {
        RetryFile {
            max_attempts: default_attempts(),
            backoff_seconds: default_backoff(),
            max_backoff_seconds: default_max_backoff(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Parquet,
    Json,
}

/// Which partitions of an upstream table a downstream partition reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamPartitions {
    /// The upstream partitions whose interval lies within this partition's interval.
    #[default]
    Same,
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

impl std::fmt::Display for BadRowLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRowLimit::Count(n) => write!(f, "{n} row(s)"),
            BadRowLimit::Fraction(x) => write!(f, "{}% of the rows read", x * 100.0),
        }
    }
}

fn parse_bad_row_limit(v: &toml::Value) -> Result<BadRowLimit, String> {
    let bad = || {
        "field `max_bad_rows` is a count (10) or a percentage of the rows read (\"1%\")".to_string()
    };
    match v {
        toml::Value::Integer(n) if *n >= 0 => Ok(BadRowLimit::Count(*n as u64)),
        toml::Value::String(s) => {
            let pct = s.trim().strip_suffix('%').ok_or_else(bad)?;
            let x: f64 = pct.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&x) {
                return Err(bad());
            }
            Ok(BadRowLimit::Fraction(x / 100.0))
        }
        _ => Err(bad()),
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
    },
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

#[derive(Debug, Clone)]
pub struct Job {
    pub name: Name,
    pub description: Option<String>,
    pub version: u32,
    pub spec_path: PathBuf,
    pub sql_path: PathBuf,
    /// The spec's text and the SQL's text as read: the code fingerprint hashes both.
    pub spec_text: String,
    pub sql: String,
    pub start: Option<PartitionKey>,
    pub schedule: Option<Schedule>,
    pub granularity: Granularity,
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
}

/// Placeholders a file template may use.
pub const TEMPLATE_FIELDS: &[&str] = &["partition", "yyyy", "mm", "dd", "hh"];

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
        Self::parse(root, spec_path, spec_text, None)
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
        Self::parse(root, spec_path, spec_text, Some(sql_text))
    }

    fn parse(
        root: &Path,
        spec_path: &Path,
        spec_text: String,
        sql_text: Option<String>,
    ) -> Result<Job, Vec<SpecError>> {
        let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
        let file = rel(spec_path);
        let one = |message: String| {
            vec![SpecError {
                file: file.clone(),
                message,
            }]
        };
        let raw: JobFile =
            toml::from_str(&spec_text).map_err(|e| one(toml_message(&e, &spec_text)))?;
        let stem = spec_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();

        let mut errors = Vec::new();
        let mut err = |m: String| {
            errors.push(SpecError {
                file: file.clone(),
                message: m,
            })
        };

        let name = match Name::new(raw.name.as_deref().unwrap_or(&stem)) {
            Ok(n) if n.as_str() == stem => Some(n),
            Ok(n) => {
                err(format!(
                    "field `name` is `{n}` but the file is named `{stem}.toml`; a job's name is its file name"
                ));
                None
            }
            Err(e) => {
                err(format!("job name: {e}; rename the file"));
                None
            }
        };
        let version = match u32::try_from(raw.version) {
            Ok(v) if v >= 1 => v,
            _ => {
                err(format!(
                    "field `version` is {}; it must be a whole number from 1",
                    raw.version
                ));
                1
            }
        };

        let jobs_dir = spec_path.parent().unwrap_or(root);
        let sql_name = raw.sql.clone().unwrap_or_else(|| format!("{stem}.sql"));
        let sql_path = jobs_dir.join(&sql_name);
        let sql = match sql_text
            .map(Ok)
            .unwrap_or_else(|| std::fs::read_to_string(&sql_path))
        {
            Ok(s) if s.trim().is_empty() => {
                err(format!("SQL file {} is empty", rel(&sql_path)));
                String::new()
            }
            Ok(s) => s,
            Err(e) => {
                let hint = if raw.sql.is_some() {
                    "fix field `sql`"
                } else {
                    "create it, or name another file in field `sql`"
                };
                err(format!(
                    "SQL file {} cannot be read ({e}); {hint}",
                    rel(&sql_path)
                ));
                String::new()
            }
        };

        let granularity = raw.partitioning.granularity;
        let partition_time_zone = match &raw.partitioning.time_zone {
            None => chrono_tz::UTC,
            Some(tz) => parse_tz(tz).unwrap_or_else(|m| {
                err(format!("field `partitioning.time_zone`: {m}"));
                chrono_tz::UTC
            }),
        };
        if granularity == Granularity::Hourly && partition_time_zone != chrono_tz::UTC {
            err("hourly partitions are UTC hours; remove `partitioning.time_zone` or partition daily".into());
        }

        let schedule = raw.schedule.as_ref().and_then(|s| {
            let time_zone = match &s.time_zone {
                None => chrono_tz::UTC,
                Some(tz) => match parse_tz(tz) {
                    Ok(tz) => tz,
                    Err(m) => {
                        err(format!("field `schedule.time_zone`: {m}"));
                        return None;
                    }
                },
            };
            if let Err(m) = check_cron(&s.cron) {
                err(format!(
                    "field `schedule.cron` = \"{}\": {m}",
                    s.cron.escape_debug()
                ));
                return None;
            }
            let wait_for_inputs = match s.wait_for_inputs.as_deref().map(parse_duration) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(m)) => {
                    err(format!("field `schedule.wait_for_inputs`: {m}"));
                    return None;
                }
            };
            if s.max_concurrency == 0 {
                err("field `schedule.max_concurrency` must be at least 1".into());
            }
            Some(Schedule {
                cron: s.cron.clone(),
                time_zone,
                lag: s.lag,
                catch_up: s.catch_up,
                max_catch_up: s.max_catch_up,
                max_concurrency: s.max_concurrency.max(1),
                wait_for_inputs,
            })
        });

        let start = raw
            .start
            .as_ref()
            .and_then(|s| match granularity.parse_key(s) {
                Ok(k) => Some(k),
                Err(e) => {
                    err(format!("field `start`: {e}"));
                    None
                }
            });

        let mut inputs: Vec<Input> = Vec::new();
        for (i, inp) in raw.inputs.iter().enumerate() {
            let at = format!("inputs[{i}]");
            let iname = match Name::new(&inp.name) {
                Ok(n) => n,
                Err(e) => {
                    err(format!("field `{at}.name`: {e}"));
                    continue;
                }
            };
            if inputs.iter().any(|x| x.name == iname) {
                err(format!(
                    "field `{at}.name`: input `{iname}` is declared twice"
                ));
                continue;
            }
            let source = match (&inp.path, &inp.table) {
                (Some(_), Some(_)) | (None, None) => {
                    err(format!(
                        "input `{iname}` must have exactly one of `path` (files) or `table` (an upstream table)"
                    ));
                    continue;
                }
                (Some(path), None) => {
                    if inp.partitions.is_some() {
                        err(format!(
                            "input `{iname}`: `partitions` applies to table inputs only"
                        ));
                    }
                    if let Err(m) = check_template(path) {
                        err(format!(
                            "field `{at}.path` = \"{}\": {m}",
                            path.escape_debug()
                        ));
                    }
                    let format = inp.format.unwrap_or_else(|| guess_format(path));
                    if format != FileFormat::Csv
                        && (inp.header.is_some() || inp.delimiter.is_some())
                    {
                        err(format!(
                            "input `{iname}`: `header` and `delimiter` apply to csv only"
                        ));
                    }
                    let schema = inp.schema.as_ref().map(|cols| {
                        let mut out: Vec<Column> = Vec::new();
                        for (j, c) in cols.iter().enumerate() {
                            match ddl::parse_column(c) {
                                Ok(col) if out.iter().any(|x| x.name == col.name) => err(format!(
                                    "field `{at}.schema[{j}]`: column `{}` is declared twice",
                                    col.name
                                )),
                                Ok(col) => out.push(col),
                                Err(e) => err(format!(
                                    "field `{at}.schema[{j}]` = \"{}\": {}",
                                    c.escape_debug(),
                                    e.message
                                )),
                            }
                        }
                        out
                    });
                    let delimiter = inp.delimiter.unwrap_or(',');
                    if !delimiter.is_ascii() || delimiter == '"' || delimiter == '\n' {
                        err(format!(
                            "field `{at}.delimiter`: use one ASCII character other than a quote or newline"
                        ));
                    }
                    InputSource::Files {
                        template: path.clone(),
                        format,
                        schema,
                        csv: CsvOptions {
                            header: inp.header.unwrap_or(true),
                            delimiter: delimiter as u8,
                        },
                    }
                }
                (None, Some(table)) => {
                    if inp.format.is_some()
                        || inp.schema.is_some()
                        || inp.header.is_some()
                        || inp.delimiter.is_some()
                    {
                        err(format!(
                            "input `{iname}`: `format`, `schema`, `header` and `delimiter` apply to file inputs only"
                        ));
                    }
                    match Name::new(table) {
                        Ok(t) => InputSource::Table {
                            table: t,
                            partitions: inp.partitions.unwrap_or_default(),
                        },
                        Err(e) => {
                            err(format!("field `{at}.table`: {e}"));
                            continue;
                        }
                    }
                }
            };
            inputs.push(Input {
                name: iname,
                source,
            });
        }

        let table = Name::new(&raw.output.table).map_err(|e| format!("field `output.table`: {e}"));
        let table = match table {
            Ok(t) => Some(t),
            Err(m) => {
                err(m);
                None
            }
        };
        let mut key = Vec::new();
        for (i, k) in raw.output.key.iter().enumerate() {
            match Name::new(&k.to_ascii_lowercase()) {
                Ok(n) => key.push(n),
                Err(e) => err(format!("field `output.key[{i}]`: {e}")),
            }
        }
        let max_bad_rows = match raw.max_bad_rows.as_ref().map(parse_bad_row_limit) {
            None => None,
            Some(Ok(l)) => Some(l),
            Some(Err(m)) => {
                err(m);
                None
            }
        };
        let mut checks = Vec::new();
        for (i, c) in raw.checks.into_iter().enumerate() {
            match c.parse(&format!("checks[{i}]"), &key) {
                Ok(c) => {
                    if checks
                        .iter()
                        .any(|x: &crate::quality::Check| x.name == c.name)
                    {
                        err(format!(
                            "field `checks[{i}]`: another check is named `{}`; give one a `name`",
                            c.name
                        ));
                    }
                    checks.push(c)
                }
                Err(m) => err(m),
            }
        }
        let record_id = match raw.output.record_id.as_deref() {
            None => None,
            Some(r) => match Name::new(&r.to_ascii_lowercase()) {
                Ok(n) if key.is_empty() => {
                    err(format!(
                        "field `output.record_id` = \"{n}\": the record id hashes the key columns; set `output.key`"
                    ));
                    None
                }
                Ok(n) => Some(n),
                Err(e) => {
                    err(format!("field `output.record_id`: {e}"));
                    None
                }
            },
        };
        let r = &raw.retry;
        if r.max_attempts == 0 {
            err("field `retry.max_attempts` must be at least 1 (1 means no retry)".into());
        }
        let backoff_ok = r.backoff_seconds.is_finite()
            && r.backoff_seconds >= 0.0
            && r.max_backoff_seconds.is_finite()
            && r.max_backoff_seconds >= r.backoff_seconds;
        if !backoff_ok {
            err("fields `retry.backoff_seconds` and `retry.max_backoff_seconds` must be non-negative, the maximum not below the first".into());
        }
        if sql.trim().is_empty() && errors.is_empty() {
            errors.push(SpecError {
                file: file.clone(),
                message: "no SQL to run".into(),
            });
        }
        match (name, table, errors.is_empty()) {
            (Some(name), Some(table), true) => Ok(Job {
                name,
                description: raw.description,
                version,
                spec_path: spec_path.to_path_buf(),
                sql_path,
                spec_text,
                sql,
                start,
                schedule,
                granularity,
                partition_time_zone,
                inputs,
                table,
                key,
                retry: RetryPolicy {
                    max_attempts: r.max_attempts,
                    backoff_seconds: r.backoff_seconds,
                    max_backoff_seconds: r.max_backoff_seconds,
                },
                bad_rows: if max_bad_rows.is_some() {
                    BadRows::Skip
                } else {
                    raw.bad_rows
                },
                max_bad_rows,
                checks,
                record_id,
            }),
            _ => Err(errors),
        }
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
            InputSource::Table { table, partitions } => Some((table, *partitions)),
            InputSource::Files { .. } => None,
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

fn parse_tz(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>().map_err(|_| {
        format!(
            "unknown time zone `{}`; use an IANA name such as UTC or Europe/Berlin",
            s.escape_debug()
        )
    })
}

/// A duration written `90s`, `15m`, `6h` or `2d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a duration; write e.g. `90s`, `15m`, `6h` or `2d`"))?;
    let scale = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{t}`; use s, m, h or d (e.g. `6h`)"
            ));
        }
    };
    let secs = n * scale;
    if !secs.is_finite() || !(0.0..=366.0 * 86400.0).contains(&secs) {
        return Err(format!("`{t}` is out of range (0 to 366d)"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
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

fn check_cron(expr: &str) -> Result<(), String> {
    parse_cron(expr).map(|_| ())
}

fn check_template(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("the path is empty".into());
    }
    if t.chars().any(char::is_control) {
        return Err("the path has a control character".into());
    }
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("a `{` is never closed")?;
        let field = &after[..close];
        if !TEMPLATE_FIELDS.contains(&field) {
            return Err(format!(
                "unknown placeholder {{{field}}}; known: {}",
                TEMPLATE_FIELDS
                    .iter()
                    .map(|f| format!("{{{f}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err("a `}` has no matching `{`".into());
    }
    Ok(())
}

fn guess_format(path: &str) -> FileFormat {
    let p = path.to_ascii_lowercase();
    if p.ends_with(".parquet") {
        FileFormat::Parquet
    } else if p.ends_with(".json") || p.ends_with(".jsonl") || p.ends_with(".ndjson") {
        FileFormat::Json
    } else {
        FileFormat::Csv
    }
}
