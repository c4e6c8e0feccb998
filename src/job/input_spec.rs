//! Reading a spec's `[[inputs]]`: files (a path with placeholders, a format, a declared
//! schema) or an upstream table (which partitions, a window), each checked field by field.

use super::reading::Problems;
use super::{
    CsvOptions, DatabaseSystem, FileFormat, Input, InputSource, TEMPLATE_FIELDS, UpstreamPartitions,
};
use crate::names::Name;
use crate::schema::{Column, ddl};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InputFile {
    name: String,
    /// `files`, `table` or `command`; without it, `path` says files and `table` a table.
    #[serde(rename = "type")]
    kind: Option<String>,
    command: Option<Vec<String>>,
    timeout: Option<String>,
    /// A database input's connection string: `env:NAME` or `file:PATH`.
    connection: Option<String>,
    query: Option<String>,
    path: Option<String>,
    format: Option<FileFormat>,
    schema: Option<Vec<String>>,
    header: Option<bool>,
    delimiter: Option<char>,
    table: Option<String>,
    partitions: Option<UpstreamPartitions>,
    window: Option<super::Window>,
}

pub(super) fn inputs(raw: &[InputFile], p: &mut Problems) -> Vec<Input> {
    let mut inputs: Vec<Input> = Vec::new();
    for (i, inp) in raw.iter().enumerate() {
        let at = format!("inputs[{i}]");
        let iname = match Name::new(&inp.name) {
            Ok(n) => n,
            Err(e) => {
                p.add(format!("field `{at}.name`: {e}"));
                continue;
            }
        };
        if inputs.iter().any(|x| x.name == iname) {
            p.add(format!(
                "field `{at}.name`: input `{iname}` is declared twice"
            ));
            continue;
        }
        let kind = match inp.kind.as_deref() {
            None | Some("files" | "table" | "command" | "postgres" | "mysql") => {
                inp.kind.as_deref()
            }
            Some(other) => {
                p.add(format!(
                    "field `{at}.type` = \"{}\": an input is of type \"files\", \"table\", \"command\", \"postgres\" or \"mysql\"",
                    other.escape_debug()
                ));
                continue;
            }
        };
        if let Some(k @ ("command" | "postgres" | "mysql")) = kind {
            let source = match k {
                "command" => command_input(&at, &iname, inp, p),
                "mysql" => database_input(&at, &iname, DatabaseSystem::MySql, inp, p),
                _ => database_input(&at, &iname, DatabaseSystem::Postgres, inp, p),
            };
            if let Some(s) = source {
                inputs.push(Input {
                    name: iname,
                    source: s,
                });
            }
            continue;
        }
        if inp.command.is_some() || inp.timeout.is_some() {
            p.add(format!(
                "input `{iname}`: `command` and `timeout` belong to an input of `type = \"command\"`"
            ));
        }
        if inp.connection.is_some() || inp.query.is_some() {
            p.add(format!(
                "input `{iname}`: `connection` and `query` belong to a database input (`type = \"postgres\"` or `\"mysql\"`)"
            ));
        }
        let source = match (&inp.path, &inp.table) {
            (Some(_), Some(_)) | (None, None) => {
                p.add(format!(
                    "input `{iname}` must have exactly one of `path` (files) or `table` (an upstream table), or be of `type = \"command\"`"
                ));
                continue;
            }
            (Some(path), None) if kind != Some("table") => file_input(&at, &iname, path, inp, p),
            (None, Some(table)) if kind != Some("files") => {
                match table_input(&at, &iname, table, inp, p) {
                    Some(s) => s,
                    None => continue,
                }
            }
            _ => {
                p.add(format!(
                    "input `{iname}`: `type = \"{}\"` does not go with `{}`",
                    kind.unwrap_or_default(),
                    if inp.path.is_some() { "path" } else { "table" }
                ));
                continue;
            }
        };
        inputs.push(Input {
            name: iname,
            source,
        });
    }
    inputs
}

fn file_input(
    at: &str,
    iname: &Name,
    path: &str,
    inp: &InputFile,
    p: &mut Problems,
) -> InputSource {
    if inp.partitions.is_some() {
        p.add(format!(
            "input `{iname}`: `partitions` applies to table inputs only"
        ));
    }
    if inp.window.is_some() {
        p.add(format!(
            "input `{iname}`: `window` applies to table inputs only (a file input names its files with its path's placeholders)"
        ));
    }
    if let Err(m) = check_template(path) {
        p.add(format!(
            "field `{at}.path` = \"{}\": {m}",
            path.escape_debug()
        ));
    }
    let format = inp.format.unwrap_or_else(|| guess_format(path));
    let schema = inp
        .schema
        .as_ref()
        .map(|cols| declared_columns(at, cols, p));
    InputSource::Files {
        template: path.to_string(),
        format,
        schema,
        csv: csv_options(at, iname, format, inp, p),
    }
}

/// `type = "command"`: an argv, the format of what it writes, its columns (required: a
/// program's output is checked against them), csv options, a timeout.
fn command_input(at: &str, iname: &Name, inp: &InputFile, p: &mut Problems) -> Option<InputSource> {
    let why = " (the program is the source; it learns its partition from SLUICE_PARTITION_START and SLUICE_PARTITION_END)";
    refuse(iname, "a command input", why, &inp.set_fields()[..4], p);
    let argv = match &inp.command {
        Some(argv) if argv.first().is_some_and(|a| !a.trim().is_empty()) => argv.clone(),
        _ => {
            p.add(format!(
                "field `{at}.command`: a command input needs the program and its arguments as a list, e.g. command = [\"python3\", \"scripts/extract.py\"]"
            ));
            return None;
        }
    };
    if let Some(bad) = argv.iter().find(|a| a.chars().any(char::is_control)) {
        p.add(format!(
            "field `{at}.command`: argument \"{}\" holds a control character",
            bad.escape_debug()
        ));
    }
    let Some(format) = inp.format else {
        p.add(format!(
            "field `{at}.format`: a command input says what it writes: \"arrow\" (an Arrow IPC stream), \"parquet\", \"ndjson\" or \"csv\""
        ));
        return None;
    };
    let Some(cols) = &inp.schema else {
        p.add(format!(
            "field `{at}.schema`: a command input declares its columns (e.g. schema = [\"day DATE\", \"rate DOUBLE\"]): its output is checked against them"
        ));
        return None;
    };
    let schema = declared_columns(at, cols, p);
    let timeout = match inp.timeout.as_deref().map(crate::duration::parse_duration) {
        None => None,
        Some(Ok(d)) if !d.is_zero() => Some(d),
        Some(Ok(_)) => {
            p.add(format!("field `{at}.timeout`: must be more than zero"));
            None
        }
        Some(Err(m)) => {
            p.add(format!("field `{at}.timeout`: {m}"));
            None
        }
    };
    Some(InputSource::Command(super::CommandInput {
        argv,
        format,
        schema,
        csv: csv_options(at, iname, format, inp, p),
        timeout,
    }))
}

/// `type = "postgres"` or `"mysql"`: where the connection string is (`env:NAME` or
/// `file:PATH`: never the string itself), the query, its columns (required: each is read as
/// declared).
fn database_input(
    at: &str,
    iname: &Name,
    system: DatabaseSystem,
    inp: &InputFile,
    p: &mut Problems,
) -> Option<InputSource> {
    let what = format!("a {} input", system.as_str());
    refuse(iname, &what, "", &inp.set_fields(), p);
    let connection = match inp.connection.as_deref().map(str::trim) {
        Some(c) if c.starts_with("env:") && c.len() > 4 => {
            super::ConnectionRef::Env(c[4..].to_string())
        }
        Some(c) if c.starts_with("file:") && c.len() > 5 => {
            super::ConnectionRef::File(c[5..].to_string())
        }
        Some(c) if c.contains("://") => {
            p.add(format!(
                "field `{at}.connection`: a connection string holds a password: keep it out of the spec, in the environment (connection = \"env:SHOP_DATABASE_URL\") or a file outside version control (connection = \"file:secrets/shop.url\")"
            ));
            return None;
        }
        _ => {
            p.add(format!(
                "field `{at}.connection`: {what} says where its connection string is: \"env:NAME\" (an environment variable) or \"file:PATH\" (a file in the project)"
            ));
            return None;
        }
    };
    let Some(query) = inp.query.clone().filter(|q| !q.trim().is_empty()) else {
        p.add(format!(
            "field `{at}.query`: {what} needs its query, e.g. query = \"SELECT id, amount FROM orders WHERE created_at >= $partition_start AND created_at < $partition_end\""
        ));
        return None;
    };
    let Some(cols) = &inp.schema else {
        p.add(format!(
            "field `{at}.schema`: {what} declares its columns (e.g. schema = [\"id BIGINT\", \"amount DOUBLE\"]): each is read as declared"
        ));
        return None;
    };
    let schema = declared_columns(at, cols, p);
    Some(InputSource::Database(super::DatabaseInput {
        system,
        connection,
        query,
        schema,
    }))
}

impl InputFile {
    /// Which of the fields an extract has no use for are set: the source's (path, table,
    /// partitions, window) first, then a command's and a file's.
    fn set_fields(&self) -> [(&'static str, bool); 8] {
        [
            ("path", self.path.is_some()),
            ("table", self.table.is_some()),
            ("partitions", self.partitions.is_some()),
            ("window", self.window.is_some()),
            ("command", self.command.is_some()),
            ("format", self.format.is_some()),
            ("header", self.header.is_some()),
            ("delimiter", self.delimiter.is_some()),
        ]
    }
}

/// A problem for each field set that does not apply to an input of `kind`.
fn refuse(iname: &Name, kind: &str, why: &str, fields: &[(&str, bool)], p: &mut Problems) {
    for (field, _) in fields.iter().filter(|(_, set)| *set) {
        p.add(format!(
            "input `{iname}`: `{field}` does not apply to {kind}{why}"
        ));
    }
}

/// `header` and `delimiter`, which apply to csv only.
fn csv_options(
    at: &str,
    iname: &Name,
    format: FileFormat,
    inp: &InputFile,
    p: &mut Problems,
) -> CsvOptions {
    if format != FileFormat::Csv && (inp.header.is_some() || inp.delimiter.is_some()) {
        p.add(format!(
            "input `{iname}`: `header` and `delimiter` apply to csv only"
        ));
    }
    let delimiter = inp.delimiter.unwrap_or(',');
    if !delimiter.is_ascii() || delimiter == '"' || delimiter == '\n' {
        p.add(format!(
            "field `{at}.delimiter`: use one ASCII character other than a quote or newline"
        ));
    }
    CsvOptions {
        header: inp.header.unwrap_or(true),
        delimiter: delimiter as u8,
    }
}

/// A file input's declared columns (`schema = ["id BIGINT", ...]`).
fn declared_columns(at: &str, cols: &[String], p: &mut Problems) -> Vec<Column> {
    let mut out: Vec<Column> = Vec::new();
    for (j, c) in cols.iter().enumerate() {
        match ddl::parse_column(c) {
            Ok(col) if out.iter().any(|x| x.name == col.name) => p.add(format!(
                "field `{at}.schema[{j}]`: column `{}` is declared twice",
                col.name
            )),
            Ok(col) => out.push(col),
            Err(e) => p.add(format!(
                "field `{at}.schema[{j}]` = \"{}\": {}",
                c.escape_debug(),
                e.message
            )),
        }
    }
    out
}

fn table_input(
    at: &str,
    iname: &Name,
    table: &str,
    inp: &InputFile,
    p: &mut Problems,
) -> Option<InputSource> {
    if inp.format.is_some()
        || inp.schema.is_some()
        || inp.header.is_some()
        || inp.delimiter.is_some()
    {
        p.add(format!(
            "input `{iname}`: `format`, `schema`, `header` and `delimiter` apply to file inputs only"
        ));
    }
    let window = inp.window.filter(|w| {
        let ok = w.from <= w.to && w.from.abs() <= super::Window::MAX && w.to.abs() <= super::Window::MAX;
        if !ok {
            p.add(format!(
                "field `{at}.window` = {{ from = {}, to = {} }}: `from` must be at most `to`, both within ±{} partitions (e.g. {{ from = -6, to = 0 }} for the 7 partitions up to this one)",
                w.from, w.to, super::Window::MAX
            ));
        }
        ok
    });
    if window.is_some() && inp.partitions == Some(UpstreamPartitions::All) {
        p.add(format!(
            "input `{iname}`: `window` reads some partitions; it cannot go with `partitions = \"all\"`"
        ));
    }
    match Name::new(table) {
        Ok(t) => Some(InputSource::Table {
            table: t,
            partitions: inp.partitions.unwrap_or_default(),
            window,
        }),
        Err(e) => {
            p.add(format!("field `{at}.table`: {e}"));
            None
        }
    }
}

fn check_template(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("the path is empty".into());
    }
    if t.chars().any(char::is_control) {
        return Err("the path has a control character".into());
    }
    // A relative path is read from the project; `..` would let it leave (promise 6). A
    // path outside the project is written as such: absolute, or a URL.
    if t.split(['/', '\\']).any(|segment| segment == "..") {
        return Err("the path has a `..` segment, which could lead out of the project; write the path without it (an absolute path or a URL if the files live elsewhere)".into());
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
    } else if p.ends_with(".arrow") || p.ends_with(".arrows") || p.ends_with(".ipc") {
        FileFormat::Arrow
    } else {
        FileFormat::Csv
    }
}
