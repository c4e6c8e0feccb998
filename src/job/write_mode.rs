//! `[output] write`: how a partition's output meets its table. `replace` (facts: the
//! partition's rows replace it), `merge` (changes upserted by key) and `scd2` (changes kept
//! as a history of versions); the rules a merge follows (`MergeRule`, `Scd2Rule`), read
//! from the spec, and what each needs of its table. The `merge` module applies them.

use super::reading::Problems;
use crate::names::Name;
use crate::schema::{Column, TableSchema};

/// The fields of `[output]` that say how it is written, as the spec has them.
pub(super) struct Fields<'a> {
    pub write: Option<&'a str>,
    pub sequence_by: Option<&'a str>,
    pub delete_when: Option<&'a str>,
    pub track: Option<&'a [String]>,
    pub valid_from: Option<&'a str>,
    pub valid_to: Option<&'a str>,
    pub is_current: Option<&'a str>,
}

/// How a partition's output meets its table (`[output] write`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// The partition's rows replace what the table holds for that partition (facts).
    #[default]
    Replace,
    /// The partition's rows are changes, upserted by key (dimensions, change feeds).
    Merge(MergeRule),
    /// The partition's rows are changes, kept as a history of versions by key (a slowly
    /// changing dimension of type 2).
    Scd2(Scd2Rule),
}

impl WriteMode {
    /// Whether the partition's rows are changes to merge rather than a partition's rows.
    pub fn merges(&self) -> bool {
        !matches!(self, WriteMode::Replace)
    }

    /// What a merge needs of its table; nothing for a replace.
    pub fn check_table(&self, schema: &TableSchema) -> Result<(), String> {
        match self {
            WriteMode::Replace => Ok(()),
            WriteMode::Merge(rule) => check_merge(rule, schema),
            WriteMode::Scd2(rule) => check_scd2(rule, schema),
        }
    }
}

/// How a merge job's changes apply (`[output] key`, `sequence_by`, `delete_when`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRule {
    /// The columns that name a row: a change upserts the row of its key.
    pub key: Vec<Name>,
    /// The column that orders a key's changes: a change applies only over an older one.
    pub sequence_by: Name,
    /// A SQL condition over a change's columns that makes it a delete (`op = 'D'`).
    pub delete_when: Option<String>,
}

impl MergeRule {
    /// The columns of a tombstone (what a delete leaves): the key and the sequence.
    pub fn tombstone_columns<'c>(&self, table: &'c [Column]) -> Vec<&'c Column> {
        table
            .iter()
            .filter(|c| self.key.contains(&c.name) || c.name == self.sequence_by)
            .collect()
    }
}

/// How a job's changes become a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scd2Rule {
    /// The key, the sequence and the delete condition, as a merge has them.
    pub changes: MergeRule,
    /// The columns whose change makes a new version; empty: every column but the key, the
    /// sequence and the history's own.
    pub track: Vec<Name>,
    pub valid_from: Name,
    pub valid_to: Name,
    pub is_current: Name,
}

impl Scd2Rule {
    /// The history's own columns, which sluice fills.
    pub fn history_columns(&self) -> [&Name; 3] {
        [&self.valid_from, &self.valid_to, &self.is_current]
    }

    /// The columns of a change: the table's, less the history's own.
    pub fn change_columns<'c>(&self, table: &'c [Column]) -> Vec<&'c Column> {
        let own = self.history_columns();
        table.iter().filter(|c| !own.contains(&&c.name)).collect()
    }

    /// The columns whose change makes a new version.
    pub fn tracked<'c>(&self, table: &'c [Column]) -> Vec<&'c Column> {
        let r = &self.changes;
        self.change_columns(table)
            .into_iter()
            .filter(|c| {
                if self.track.is_empty() {
                    !r.key.contains(&c.name) && c.name != r.sequence_by
                } else {
                    self.track.contains(&c.name)
                }
            })
            .collect()
    }
}

/// What a merge needs of its table: its key and sequence columns, and every partition
/// column in the key (a key's row is looked for in the partition its change names only).
/// Asked by `validate` and again by each run.
fn check_merge(rule: &MergeRule, schema: &TableSchema) -> Result<(), String> {
    let t = &schema.name;
    for (field, c) in rule
        .key
        .iter()
        .map(|k| ("output.key", k))
        .chain([("output.sequence_by", &rule.sequence_by)])
    {
        if schema.column(c.as_str()).is_none() {
            return Err(format!(
                "{field} names column `{c}`, which table `{t}` does not have"
            ));
        }
    }
    for p in &schema.partition_by {
        if !rule.key.contains(p) {
            return Err(format!(
                "table `{t}` is partitioned by `{p}`, which is not in output.key: a merge looks for a key's row in the partition its change names, so the partition columns must be part of the key; add `{p}` to output.key, or merge into an unpartitioned table"
            ));
        }
    }
    Ok(())
}

/// What an scd2 job needs of its table: what a merge needs, the history's columns
/// (`valid_from` and `valid_to` of the sequence's type, `is_current` BOOLEAN, all nullable:
/// the job's rows leave them out, and sluice fills them), and the tracked columns.
fn check_scd2(rule: &Scd2Rule, schema: &TableSchema) -> Result<(), String> {
    check_merge(&rule.changes, schema)?;
    let t = &schema.name;
    let seq = schema
        .column(rule.changes.sequence_by.as_str())
        .map(|c| c.ty);
    for (field, name) in [
        ("output.valid_from", &rule.valid_from),
        ("output.valid_to", &rule.valid_to),
        ("output.is_current", &rule.is_current),
    ] {
        let Some(c) = schema.column(name.as_str()) else {
            return Err(format!(
                "table `{t}` has no column `{name}` ({field}): an scd2 table holds each version's interval; add `{name}` to its CREATE TABLE, or name another column in {field}"
            ));
        };
        let want = if *name == rule.is_current {
            Some(crate::schema::ColumnType::Boolean)
        } else {
            seq
        };
        if want.is_some_and(|w| w != c.ty) {
            return Err(format!(
                "column `{name}` ({field}) of table `{t}` is {}, but must be {}{}",
                c.ty,
                want.map(|w| w.to_string()).unwrap_or_default(),
                if *name == rule.is_current {
                    ""
                } else {
                    ", the type of output.sequence_by"
                }
            ));
        }
        if !c.nullable {
            return Err(format!(
                "column `{name}` ({field}) of table `{t}` is NOT NULL: sluice fills it after the job's rows are written, which leave it out; declare it without NOT NULL"
            ));
        }
        if rule.changes.key.contains(name) || *name == rule.changes.sequence_by {
            return Err(format!(
                "{field} = \"{name}\" is also the key or the sequence: name a column of its own"
            ));
        }
    }
    for c in &rule.track {
        if schema.column(c.as_str()).is_none() {
            return Err(format!(
                "output.track names column `{c}`, which table `{t}` does not have"
            ));
        }
        if rule.history_columns().contains(&c) {
            return Err(format!(
                "output.track names `{c}`, a column of the history itself: track the job's own columns"
            ));
        }
    }
    Ok(())
}

/// `[output] write` and what a merge needs with it: a key and a `sequence_by` column (and
/// for scd2, the history's columns and what it tracks).
pub(super) fn parse(raw: &Fields<'_>, key: &[Name], p: &mut Problems) -> WriteMode {
    let mode = raw.write.unwrap_or("replace");
    let scd2_fields = [
        ("track", raw.track.is_some()),
        ("valid_from", raw.valid_from.is_some()),
        ("valid_to", raw.valid_to.is_some()),
        ("is_current", raw.is_current.is_some()),
    ];
    let merge_fields = [
        ("sequence_by", raw.sequence_by.is_some()),
        ("delete_when", raw.delete_when.is_some()),
    ];
    match mode {
        "replace" | "merge" | "scd2" => {}
        other => {
            let hint = crate::names::closest(other, ["replace", "merge", "scd2"])
                .map(|k| format!("; did you mean \"{k}\"?"))
                .unwrap_or_default();
            p.add(format!(
                "field `output.write` = \"{}\": expected \"replace\", \"merge\" or \"scd2\"{hint}",
                other.escape_debug()
            ));
            return WriteMode::Replace;
        }
    }
    let misplaced = match mode {
        "replace" => merge_fields.iter().chain(&scd2_fields).collect::<Vec<_>>(),
        "merge" => scd2_fields.iter().collect(),
        _ => Vec::new(),
    };
    for (field, _) in misplaced.into_iter().filter(|(_, set)| *set) {
        let wants = if scd2_fields.iter().any(|(f, _)| f == field) {
            "scd2"
        } else {
            "merge"
        };
        p.add(format!(
            "field `output.{field}` applies to `write = \"{wants}\"`, not to `write = \"{mode}\"`: remove it, or set `output.write = \"{wants}\"`"
        ));
    }
    if mode == "replace" {
        return WriteMode::Replace;
    }
    let Some(changes) = merge_rule(raw, key, mode, p) else {
        return WriteMode::Replace;
    };
    if mode == "merge" {
        return WriteMode::Merge(changes);
    }
    let named = |field: &str, given: Option<&str>, default: &str, p: &mut Problems| {
        column(field, given.unwrap_or(default), p)
    };
    let mut track = Vec::new();
    for (i, c) in raw.track.unwrap_or_default().iter().enumerate() {
        track.extend(column(&format!("track[{i}]"), c, p));
    }
    if raw.track.is_some_and(|t| t.is_empty()) {
        p.add("field `output.track` is empty: list the columns whose change makes a new version, or remove it to track every column but the key and the sequence".into());
    }
    let (Some(valid_from), Some(valid_to), Some(is_current)) = (
        named("valid_from", raw.valid_from, "valid_from", p),
        named("valid_to", raw.valid_to, "valid_to", p),
        named("is_current", raw.is_current, "is_current", p),
    ) else {
        return WriteMode::Replace;
    };
    WriteMode::Scd2(Scd2Rule {
        changes,
        track,
        valid_from,
        valid_to,
        is_current,
    })
}

/// A column named in `output.<field>`.
fn column(field: &str, v: &str, p: &mut Problems) -> Option<Name> {
    match Name::new(&v.to_ascii_lowercase()) {
        Ok(n) => Some(n),
        Err(e) => {
            p.add(format!("field `output.{field}`: {e}"));
            None
        }
    }
}

/// The key, sequence and delete condition of a merge or scd2 job.
fn merge_rule(raw: &Fields<'_>, key: &[Name], mode: &str, p: &mut Problems) -> Option<MergeRule> {
    if key.is_empty() {
        p.add(format!("field `output.write` = \"{mode}\" keeps rows by their key: set `output.key` (e.g. `key = [\"customer_id\"]`)"));
    }
    let sequence_by = match raw.sequence_by {
        Some(s) => column("sequence_by", s, p),
        None => {
            p.add(format!("field `output.write` = \"{mode}\" needs `output.sequence_by`: the column that orders a key's changes (e.g. `sequence_by = \"updated_at\"`), so that a late or rerun partition cannot move a row back in time"));
            None
        }
    };
    if let Some(s) = &sequence_by
        && key.contains(s)
    {
        p.add(format!(
            "field `output.sequence_by` = \"{s}\" is a key column: it must order a key's changes, not name the key"
        ));
    }
    if raw.delete_when.is_some_and(|d| d.trim().is_empty()) {
        p.add("field `output.delete_when` is empty: give a SQL condition over the output's columns (e.g. `op = 'D'`), or remove it".into());
    }
    Some(MergeRule {
        key: key.to_vec(),
        sequence_by: sequence_by?,
        delete_when: raw.delete_when.map(String::from),
    })
}
