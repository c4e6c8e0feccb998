//! Reading one spec: the TOML as written (`JobFile` and its parts) into a checked [`Job`],
//! field by field. Every problem is collected with its file and field; a spec with any
//! problem gives no job.

use super::reading::{Problems, parse_tz, relative};
use super::{
    BadRowLimit, BadRows, CatchUp, InputSource, Job, RetryPolicy, Schedule, SpecError, parse_cron,
    toml_message,
};
use crate::names::Name;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    name: Option<String>,
    description: Option<String>,
    version: i64,
    sql: Option<String>,
    start: Option<String>,
    schedule: Option<ScheduleFile>,
    partitioning: super::partitioning::PartitioningFile,
    #[serde(default)]
    inputs: Vec<super::input_spec::InputFile>,
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
    #[serde(default)]
    engine: JobEngineFile,
}

/// `[engine]` in a spec: where this job's query runs, when not where the project's do.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobEngineFile {
    kind: Option<super::EngineKind>,
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
    #[serde(default)]
    on_upstream_change: super::OnUpstreamChange,
    watch_inputs: Option<String>,
    deadline: Option<String>,
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
struct OutputFile {
    table: String,
    #[serde(default)]
    key: Vec<String>,
    /// A column that receives a stable hash of the key columns.
    record_id: Option<String>,
    /// `replace` (the default) or `merge`.
    write: Option<String>,
    /// A merge's ordering column.
    sequence_by: Option<String>,
    /// A merge's SQL condition that makes a change a delete.
    delete_when: Option<String>,
    /// scd2: the columns whose change makes a new version (default: all but key and sequence).
    track: Option<Vec<String>>,
    /// scd2: the history's columns.
    valid_from: Option<String>,
    valid_to: Option<String>,
    is_current: Option<String>,
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

/// Reads `spec_text` (the file at `spec_path`) and its SQL: `sql_text` when given (recorded
/// code), else the SQL file beside the spec.
pub(super) fn parse(
    root: &Path,
    spec_path: &Path,
    spec_text: String,
    sql_text: Option<String>,
) -> Result<Job, Vec<SpecError>> {
    let file = relative(root, spec_path);
    let raw: JobFile = toml::from_str(&spec_text).map_err(|e| {
        vec![SpecError {
            file: file.clone(),
            message: toml_message(&e, &spec_text),
        }]
    })?;
    let stem = spec_path.file_stem().and_then(|s| s.to_str());
    let stem = stem.unwrap_or_default().to_string();
    let mut p = Problems::of(file);
    let name = name(raw.name.as_deref(), &stem, &mut p);
    let version = version(raw.version, &mut p);
    let (sql_path, sql) = sql(root, spec_path, raw.sql.as_deref(), &stem, sql_text, &mut p);
    let granularity = raw.partitioning.granularity;
    let partition_time_zone = super::partitioning::time_zone(&raw.partitioning, &mut p);
    let static_keys = super::partitioning::static_dimension(root, &raw.partitioning, &mut p);
    let schedule = raw
        .schedule
        .as_ref()
        .and_then(|s| schedule(s, granularity, &mut p));
    let start = raw
        .start
        .as_ref()
        .and_then(|s| match granularity.parse_time(s) {
            Ok(k) => Some(k),
            Err(e) => {
                p.add(format!("field `start`: {e}"));
                None
            }
        });
    let inputs = super::input_spec::inputs(&raw.inputs, &mut p);
    super::partitioning::check_key_placeholders(&inputs, static_keys.is_some(), &mut p);
    if granularity == crate::partition::Granularity::None {
        for i in &inputs {
            if let InputSource::Table {
                window: Some(_), ..
            } = &i.source
            {
                p.add(format!(
                    "input `{}`: `window` counts partitions of this job's time, and `partitioning.granularity` is \"none\"; remove `window`, or partition the job by time",
                    i.name
                ));
            }
        }
    }
    let (table, key, record_id, write) = output(&raw.output, &mut p);
    let max_bad_rows = match raw.max_bad_rows.as_ref().map(parse_bad_row_limit) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(m)) => {
            p.add(m);
            None
        }
    };
    let checks = checks(raw.checks, &key, &mut p);
    let retry = retry(&raw.retry, &mut p);
    if sql.trim().is_empty() && p.is_empty() {
        p.add("no SQL to run".into());
    }
    match (name, table, p.is_empty()) {
        (Some(name), Some(table), true) => Ok(Job {
            name,
            description: raw.description,
            version,
            spec_version: version,
            spec_path: spec_path.to_path_buf(),
            sql_path,
            spec_text,
            sql,
            start,
            schedule,
            granularity,
            static_keys,
            partition_time_zone,
            inputs,
            table,
            key,
            retry,
            bad_rows: if max_bad_rows.is_some() {
                BadRows::Skip
            } else {
                raw.bad_rows
            },
            max_bad_rows,
            checks,
            engine: raw.engine.kind,
            record_id,
            write,
        }),
        _ => Err(p.into_found()),
    }
}

/// A job's name is its file's name; field `name`, when given, must agree.
fn name(field: Option<&str>, stem: &str, p: &mut Problems) -> Option<Name> {
    match Name::new(field.unwrap_or(stem)) {
        Ok(n) if n.as_str() == stem => Some(n),
        Ok(n) => {
            p.add(format!(
                "field `name` is `{n}` but the file is named `{stem}.toml`; a job's name is its file name"
            ));
            None
        }
        Err(e) => {
            p.add(format!("job name: {e}; rename the file"));
            None
        }
    }
}

fn version(v: i64, p: &mut Problems) -> u32 {
    match u32::try_from(v) {
        Ok(v) if (1..crate::catalog::FIRST_ENV_VERSION).contains(&i64::from(v)) => v,
        _ => {
            p.add(format!(
                "field `version` is {v}; it must be a whole number from 1 to {} (the versions above are those environments build)",
                crate::catalog::FIRST_ENV_VERSION - 1
            ));
            1
        }
    }
}

/// The SQL file (field `sql`, else `<name>.sql` beside the spec) and its text.
fn sql(
    root: &Path,
    spec_path: &Path,
    field: Option<&str>,
    stem: &str,
    recorded: Option<String>,
    p: &mut Problems,
) -> (PathBuf, String) {
    let jobs_dir = spec_path.parent().unwrap_or(root);
    let sql_path = jobs_dir.join(field.map_or_else(|| format!("{stem}.sql"), str::to_string));
    let text = match recorded
        .map(Ok)
        .unwrap_or_else(|| std::fs::read_to_string(&sql_path))
    {
        Ok(s) if s.trim().is_empty() => {
            p.add(format!("SQL file {} is empty", relative(root, &sql_path)));
            String::new()
        }
        Ok(s) => s,
        Err(e) => {
            let hint = if field.is_some() {
                "fix field `sql`"
            } else {
                "create it, or name another file in field `sql`"
            };
            p.add(format!(
                "SQL file {} cannot be read ({e}); {hint}",
                relative(root, &sql_path)
            ));
            String::new()
        }
    };
    (sql_path, text)
}

fn schedule(
    s: &ScheduleFile,
    granularity: crate::partition::Granularity,
    p: &mut Problems,
) -> Option<Schedule> {
    let time_zone = match &s.time_zone {
        None => chrono_tz::UTC,
        Some(tz) => match parse_tz(tz) {
            Ok(tz) => tz,
            Err(m) => {
                p.add(format!("field `schedule.time_zone`: {m}"));
                return None;
            }
        },
    };
    if let Err(m) = check_cron(&s.cron) {
        p.add(format!(
            "field `schedule.cron` = \"{}\": {m}",
            s.cron.escape_debug()
        ));
        return None;
    }
    let wait_for_inputs = match s
        .wait_for_inputs
        .as_deref()
        .map(crate::duration::parse_duration)
    {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(m)) => {
            p.add(format!("field `schedule.wait_for_inputs`: {m}"));
            return None;
        }
    };
    let watch_inputs = match s
        .watch_inputs
        .as_deref()
        .map(crate::duration::parse_duration)
    {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(m)) => {
            p.add(format!("field `schedule.watch_inputs`: {m}"));
            return None;
        }
    };
    if s.max_concurrency == 0 {
        p.add("field `schedule.max_concurrency` must be at least 1".into());
    }
    let deadline = match s
        .deadline
        .as_deref()
        .map(|d| super::Deadline::parse(d, granularity))
    {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(m)) => {
            p.add(format!("field `schedule.deadline`: {m}"));
            return None;
        }
    };
    Some(Schedule {
        cron: s.cron.clone(),
        time_zone,
        lag: s.lag,
        catch_up: s.catch_up,
        max_catch_up: s.max_catch_up,
        max_concurrency: s.max_concurrency.max(1),
        wait_for_inputs,
        on_upstream_change: s.on_upstream_change,
        watch_inputs,
        deadline,
    })
}

/// The output table, its key columns, its record id column and how it is written.
fn output(
    raw: &OutputFile,
    p: &mut Problems,
) -> (Option<Name>, Vec<Name>, Option<Name>, super::WriteMode) {
    let table = match Name::new(&raw.table) {
        Ok(t) => Some(t),
        Err(e) => {
            p.add(format!("field `output.table`: {e}"));
            None
        }
    };
    let mut key = Vec::new();
    for (i, k) in raw.key.iter().enumerate() {
        match Name::new(&k.to_ascii_lowercase()) {
            Ok(n) => key.push(n),
            Err(e) => p.add(format!("field `output.key[{i}]`: {e}")),
        }
    }
    let record_id = match raw.record_id.as_deref() {
        None => None,
        Some(r) => match Name::new(&r.to_ascii_lowercase()) {
            Ok(n) if key.is_empty() => {
                p.add(format!(
                    "field `output.record_id` = \"{n}\": the record id hashes the key columns; set `output.key`"
                ));
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                p.add(format!("field `output.record_id`: {e}"));
                None
            }
        },
    };
    let fields = super::write_mode::Fields {
        write: raw.write.as_deref(),
        sequence_by: raw.sequence_by.as_deref(),
        delete_when: raw.delete_when.as_deref(),
        track: raw.track.as_deref(),
        valid_from: raw.valid_from.as_deref(),
        valid_to: raw.valid_to.as_deref(),
        is_current: raw.is_current.as_deref(),
    };
    let write = super::write_mode::parse(&fields, &key, p);
    (table, key, record_id, write)
}

fn checks(
    raw: Vec<crate::quality::CheckFile>,
    key: &[Name],
    p: &mut Problems,
) -> Vec<crate::quality::Check> {
    let mut checks: Vec<crate::quality::Check> = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        match c.parse(&format!("checks[{i}]"), key) {
            Ok(c) => {
                if checks.iter().any(|x| x.name == c.name) {
                    p.add(format!(
                        "field `checks[{i}]`: another check is named `{}`; give one a `name`",
                        c.name
                    ));
                }
                checks.push(c)
            }
            Err(m) => p.add(m),
        }
    }
    checks
}

fn retry(r: &RetryFile, p: &mut Problems) -> RetryPolicy {
    if r.max_attempts == 0 {
        p.add("field `retry.max_attempts` must be at least 1 (1 means no retry)".into());
    }
    let backoff_ok = r.backoff_seconds.is_finite()
        && r.backoff_seconds >= 0.0
        && r.max_backoff_seconds.is_finite()
        && r.max_backoff_seconds >= r.backoff_seconds;
    if !backoff_ok {
        p.add("fields `retry.backoff_seconds` and `retry.max_backoff_seconds` must be non-negative, the maximum not below the first".into());
    }
    RetryPolicy {
        max_attempts: r.max_attempts,
        backoff_seconds: r.backoff_seconds,
        max_backoff_seconds: r.max_backoff_seconds,
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

fn check_cron(expr: &str) -> Result<(), String> {
    parse_cron(expr).map(|_| ())
}
