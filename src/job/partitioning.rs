//! A spec's `[partitioning]`: the time granularity and its zone, and the static dimension
//! (`key_column` with `keys` or `keys_file`), checked with the field named in each problem.

use super::reading::{Problems, parse_tz, relative};
use super::{InputSource, Job};
use crate::names::Name;
use crate::partition::{Granularity, StaticDimension, StaticKey, parse_keys_file};
use crate::schema::{ColumnType, TableSchema};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PartitioningFile {
    pub granularity: Granularity,
    time_zone: Option<String>,
    /// The table column that holds the static dimension's key.
    key_column: Option<String>,
    /// The keys, in the spec.
    keys: Option<Vec<String>>,
    /// Or a file of the project with one key per line.
    keys_file: Option<String>,
}

pub(super) fn time_zone(raw: &PartitioningFile, p: &mut Problems) -> Tz {
    let tz = match &raw.time_zone {
        None => chrono_tz::UTC,
        Some(tz) => parse_tz(tz).unwrap_or_else(|m| {
            p.add(format!("field `partitioning.time_zone`: {m}"));
            chrono_tz::UTC
        }),
    };
    if raw.granularity == Granularity::Hourly && tz != chrono_tz::UTC {
        p.add(
            "hourly partitions are UTC hours; remove `partitioning.time_zone` or partition daily"
                .into(),
        );
    }
    tz
}

/// The static dimension the spec declares, if any.
pub(super) fn static_dimension(
    root: &Path,
    raw: &PartitioningFile,
    p: &mut Problems,
) -> Option<StaticDimension> {
    let column = match (&raw.key_column, &raw.keys, &raw.keys_file) {
        (None, None, None) => return None,
        (None, _, _) => {
            p.add("field `partitioning.key_column` is missing: name the table column that holds the key (e.g. `key_column = \"region\"`)".into());
            return None;
        }
        (Some(_), None, None) => {
            p.add("field `partitioning.key_column` needs the keys: `keys = [\"emea\", ...]` or `keys_file = \"jobs/regions.txt\"`".into());
            return None;
        }
        (Some(_), Some(_), Some(_)) => {
            p.add(
                "fields `partitioning.keys` and `partitioning.keys_file` are both set; keep one"
                    .into(),
            );
            return None;
        }
        (Some(c), _, _) => match Name::new(c) {
            Ok(n) => n,
            Err(e) => {
                p.add(format!("field `partitioning.key_column`: {e}"));
                return None;
            }
        },
    };
    let keys = match (&raw.keys, &raw.keys_file) {
        (Some(list), _) => {
            let mut keys = Vec::new();
            for (i, k) in list.iter().enumerate() {
                match StaticKey::new(k) {
                    Ok(k) => keys.push(k),
                    Err(e) => p.add(format!("field `partitioning.keys`, entry {}: {e}", i + 1)),
                }
            }
            keys
        }
        (None, Some(file)) => keys_file(root, file, p)?,
        (None, None) => return None,
    };
    let mut seen = BTreeSet::new();
    for k in &keys {
        if !seen.insert(*k) {
            p.add(format!("partition key `{k}` is declared twice; keep one"));
        }
    }
    if keys.is_empty() {
        p.add("the static dimension declares no keys; add at least one".into());
        return None;
    }
    Some(StaticDimension { column, keys })
}

fn keys_file(root: &Path, file: &str, p: &mut Problems) -> Option<Vec<StaticKey>> {
    let path = root.join(file);
    let inside = Path::new(file)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !inside {
        p.add(format!(
            "field `partitioning.keys_file` = `{}`: name a file inside the project, relative to it",
            file.escape_debug()
        ));
        return None;
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            p.add(format!(
                "field `partitioning.keys_file`: cannot read {} ({e})",
                relative(root, &path)
            ));
            return None;
        }
    };
    match parse_keys_file(&text) {
        Ok(keys) => Some(keys),
        Err(problems) => {
            for m in problems {
                p.add(format!("{}, {m}", relative(root, &path)));
            }
            None
        }
    }
}

/// A file template that names `{key}` needs a job with a static dimension.
pub(super) fn check_key_placeholders(inputs: &[super::Input], keyed: bool, p: &mut Problems) {
    if keyed {
        return;
    }
    for i in inputs {
        if let InputSource::Files { template, .. } = &i.source
            && template.contains("{key}")
        {
            p.add(format!(
                    "input `{}`: placeholder {{key}} needs a static dimension (`partitioning.key_column` and its keys)",
                    i.name
                ));
        }
    }
}

/// Whether `job`'s partitioning fits the partition columns of `schema`: the time column
/// (any but a job without time) and the key column (a job with a static dimension).
pub fn check_table(job: &Job, schema: &TableSchema) -> Result<(), String> {
    let t = &schema.name;
    if job.write.merges() {
        return job.write.check_table(schema);
    }
    let key_column = job.static_keys.as_ref().map(|d| &d.column);
    if let Some(kc) = key_column {
        match schema.column(kc.as_str()) {
            Some(c) if schema.partition_by.contains(kc) && c.ty == ColumnType::String => {}
            Some(c) if c.ty != ColumnType::String => {
                return Err(format!(
                    "the job's key column `{kc}` is of type {} in table `{t}`; a key column is STRING",
                    c.ty
                ));
            }
            _ => {
                return Err(format!(
                    "the job's key column `{kc}` is not a partition column of table `{t}`: add it to PARTITIONED BY in its CREATE TABLE"
                ));
            }
        }
    }
    let others: Vec<&Name> = schema
        .partition_by
        .iter()
        .filter(|c| Some(*c) != key_column)
        .collect();
    let g = job.granularity;
    match (g, others.as_slice()) {
        (Granularity::None, []) => Ok(()),
        (Granularity::None, _) => Err(format!(
            "the job has no time partitions but table `{t}` is PARTITIONED BY ({}); set `partitioning.granularity`{}",
            names(&schema.partition_by),
            if key_column.is_some() {
                ""
            } else {
                " or `partitioning.key_column`"
            }
        )),
        (g, []) => Err(format!(
            "the job is partitioned {g} but table `{t}` has no PARTITIONED BY column for the time; add one to its CREATE TABLE"
        )),
        (g, [one]) => {
            let col = schema
                .column(one.as_str())
                .ok_or_else(|| format!("table `{t}`: its partition column `{one}` is missing"))?;
            let ok = matches!(
                (g, col.ty),
                (_, ColumnType::String)
                    | (Granularity::Daily | Granularity::Monthly, ColumnType::Date)
                    | (_, ColumnType::Timestamp | ColumnType::TimestampNtz)
            );
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "table `{t}` is partitioned by `{}` of type {}, which cannot hold a {g} partition; use DATE (daily, monthly), TIMESTAMP or STRING",
                    col.name, col.ty
                ))
            }
        }
        (g, _) => Err(format!(
            "the job is partitioned {g}{} but table `{t}` is PARTITIONED BY ({}); a table has one time partition column{}",
            key_column.map(|k| format!(" by `{k}`")).unwrap_or_default(),
            names(&schema.partition_by),
            if key_column.is_some() {
                " beside the key column"
            } else {
                "; a second one needs `partitioning.key_column`"
            }
        )),
    }
}

fn names(n: &[Name]) -> String {
    n.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
