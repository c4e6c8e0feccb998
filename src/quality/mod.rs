//! Data quality: the checks a job declares (`[[checks]]` in its spec), the profile of each
//! partition's new content, and the verdict that decides whether it is published.
//!
//! Checks run on the partition's new files before the Delta commit that would make them
//! visible (write-audit-publish): a failing check of severity `error` publishes nothing.

pub mod audit;
pub mod profiler;
mod unique;

use crate::names::Name;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::error::DataFusionError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Why the audit (or one check) could not run: the checks' SQL, or the unique check's
/// scratch files.
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    #[error(transparent)]
    Sql(#[from] DataFusionError),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error("the unique check's scratch file: {0}")]
    Scratch(#[source] std::io::Error),
    #[error("the unique check stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The partition fails and nothing is published.
    #[default]
    Error,
    /// Logged and recorded; the partition is published.
    Warn,
}

impl Severity {
    /// Its spelling in specs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warn => "warn",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckKind {
    NotNull {
        columns: Vec<Name>,
    },
    Unique {
        columns: Vec<Name>,
    },
    AcceptedValues {
        column: Name,
        values: Vec<String>,
    },
    RowCount {
        min: Option<u64>,
        max: Option<u64>,
    },
    /// A query over `output` (the partition's new rows) returning the failing rows.
    Sql {
        query: String,
    },
    /// The newest value of a TIMESTAMP column is at most `max_age` before the partition end.
    Freshness {
        column: Name,
        #[serde(with = "secs")]
        max_age: Duration,
    },
    /// Rows within `tolerance` (a fraction) of the median of the last `baseline` partitions.
    Volume {
        baseline: u32,
        tolerance: f64,
    },
    /// A column's null fraction at most `max_increase` above its mean over the last
    /// `baseline` partitions.
    NullFraction {
        column: Name,
        baseline: u32,
        max_increase: f64,
    },
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    pub severity: Severity,
    #[serde(flatten)]
    pub kind: CheckKind,
}

impl Check {
    /// Checks that compare against earlier partitions need their profiles.
    pub fn baseline(&self) -> Option<u32> {
        match self.kind {
            CheckKind::Volume { baseline, .. } | CheckKind::NullFraction { baseline, .. } => {
                Some(baseline)
            }
            _ => None,
        }
    }
}

/// A `[[checks]]` table as written in a job spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    #[serde(default)]
    severity: Severity,
    columns: Option<Vec<String>>,
    column: Option<String>,
    values: Option<Vec<String>>,
    min: Option<u64>,
    max: Option<u64>,
    query: Option<String>,
    max_age: Option<String>,
    baseline: Option<u32>,
    tolerance: Option<f64>,
    max_increase: Option<f64>,
}

impl CheckFile {
    /// The check, or what is wrong with it (`at` names the field, e.g. `checks[2]`). `key` is
    /// the job's output key: the default columns of `unique`.
    pub fn parse(self, at: &str, key: &[Name]) -> Result<Check, String> {
        let name_of = |s: &str, field: &str| {
            Name::new(&s.to_ascii_lowercase()).map_err(|e| format!("field `{at}.{field}`: {e}"))
        };
        let columns = |field: &str, list: &Option<Vec<String>>| -> Result<Vec<Name>, String> {
            match list {
                Some(l) if !l.is_empty() => l.iter().map(|c| name_of(c, field)).collect(),
                _ => Err(format!(
                    "field `{at}.{field}` is required: a list of column names"
                )),
            }
        };
        let column = |c: &Option<String>| -> Result<Name, String> {
            match c {
                Some(c) => name_of(c, "column"),
                None => Err(format!("field `{at}.column` is required")),
            }
        };
        let baseline = self.baseline.unwrap_or(7);
        if baseline == 0 {
            return Err(format!(
                "field `{at}.baseline` must be at least 1 (partitions)"
            ));
        }
        let kind = match self.kind.as_str() {
            "not_null" => CheckKind::NotNull {
                columns: columns("columns", &self.columns)?,
            },
            "unique" => CheckKind::Unique {
                columns: match &self.columns {
                    None if !key.is_empty() => key.to_vec(),
                    other => columns("columns", other)?,
                },
            },
            "accepted_values" => CheckKind::AcceptedValues {
                column: column(&self.column)?,
                values: match self.values {
                    Some(v) if !v.is_empty() => v,
                    _ => {
                        return Err(format!(
                            "field `{at}.values` is required: the accepted values"
                        ));
                    }
                },
            },
            "row_count" => {
                if self.min.is_none() && self.max.is_none() {
                    return Err(format!(
                        "`{at}`: a row_count check needs `min`, `max` or both"
                    ));
                }
                if let (Some(a), Some(b)) = (self.min, self.max)
                    && a > b
                {
                    return Err(format!("`{at}`: min ({a}) is above max ({b})"));
                }
                CheckKind::RowCount {
                    min: self.min,
                    max: self.max,
                }
            }
            "sql" => match self.query {
                Some(q) if !q.trim().is_empty() => CheckKind::Sql { query: q },
                _ => {
                    return Err(format!(
                        "field `{at}.query` is required: a query over `output` that returns the failing rows"
                    ));
                }
            },
            "freshness" => CheckKind::Freshness {
                column: column(&self.column)?,
                max_age: match &self.max_age {
                    Some(t) => crate::duration::parse_duration(t)
                        .map_err(|e| format!("field `{at}.max_age`: {e}"))?,
                    None => return Err(format!("field `{at}.max_age` is required, e.g. \"2h\"")),
                },
            },
            "volume" => {
                let tolerance = self.tolerance.unwrap_or(0.5);
                if !(tolerance.is_finite() && tolerance >= 0.0) {
                    return Err(format!(
                        "field `{at}.tolerance` must be a non-negative fraction, e.g. 0.5"
                    ));
                }
                CheckKind::Volume {
                    baseline,
                    tolerance,
                }
            }
            "null_fraction" => {
                let max_increase = self.max_increase.unwrap_or(0.1);
                if !(0.0..=1.0).contains(&max_increase) {
                    return Err(format!(
                        "field `{at}.max_increase` must be a fraction from 0 to 1"
                    ));
                }
                CheckKind::NullFraction {
                    column: column(&self.column)?,
                    baseline,
                    max_increase,
                }
            }
            other => {
                return Err(format!(
                    "field `{at}.type` = \"{other}\": known checks are not_null, unique, accepted_values, row_count, sql, freshness, volume, null_fraction"
                ));
            }
        };
        let name = match self.name {
            Some(n) => name_of(&n, "name")?.to_string(),
            None => default_name(&kind),
        };
        Ok(Check {
            name,
            severity: self.severity,
            kind,
        })
    }
}

fn default_name(kind: &CheckKind) -> String {
    let join = |c: &[Name]| c.iter().map(|n| n.as_str()).collect::<Vec<_>>().join("_");
    match kind {
        CheckKind::NotNull { columns } => format!("not_null_{}", join(columns)),
        CheckKind::Unique { columns } => format!("unique_{}", join(columns)),
        CheckKind::AcceptedValues { column, .. } => format!("accepted_values_{column}"),
        CheckKind::RowCount { .. } => "row_count".into(),
        CheckKind::Sql { .. } => "sql".into(),
        CheckKind::Freshness { column, .. } => format!("freshness_{column}"),
        CheckKind::Volume { .. } => "volume".into(),
        CheckKind::NullFraction { column, .. } => format!("null_fraction_{column}"),
    }
}

/// One column of a partition's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ColumnProfile {
    pub null_fraction: f64,
    pub distinct: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
}

/// What a partition's content looks like: stored with the run that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Profile {
    pub rows: u64,
    pub columns: BTreeMap<String, ColumnProfile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub severity: Severity,
    pub passed: bool,
    /// Failing rows (or keys, for `unique`); for row_count and volume, the rows.
    pub failing: u64,
    pub detail: String,
    /// A few failing rows, as JSON objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
}

impl std::fmt::Display for CheckResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warn => "warn",
        };
        write!(f, "check `{}` ({sev}) failed: {}", self.name, self.detail)?;
        if !self.samples.is_empty() {
            write!(f, "; e.g. {}", self.samples.join(", "))?;
        }
        Ok(())
    }
}

/// A run's quality record: stored in the catalog with the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Quality {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
}

/// The profiles in the quality JSON runs stored (as the catalog returns it); entries that
/// do not parse, or have no profile, are passed over.
pub fn profiles_from_json(stored: &[String]) -> Vec<Profile> {
    stored
        .iter()
        .filter_map(|j| serde_json::from_str::<Quality>(j).ok())
        .filter_map(|q| q.profile)
        .collect()
}

impl Quality {
    /// The first failing check of severity error, which stops the partition.
    pub fn blocking(&self) -> Option<&CheckResult> {
        self.checks
            .iter()
            .find(|c| !c.passed && c.severity == Severity::Error)
    }
}

/// The median of `values` (which must not be empty).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
