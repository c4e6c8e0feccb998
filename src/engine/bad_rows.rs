//! Finding the input rows that cannot be used (CSV and newline-delimited JSON), with file
//! and line, and a copy of a file without them.
//!
//! DataFusion reads CSV fast but stops at the first bad row with a line number relative to
//! a batch. When a read fails, this module reads the file again, record by record, and
//! checks every value against the declared schema with Arrow's own casts, so the verdict
//! is the same as the reader's. Only the error path pays for this. Everything here streams:
//! memory holds a chunk of records and the bad ones, whatever the file's size.

use super::bad_row_log::{BadRowError, BadRowLog};
use crate::job::{CsvOptions, FileFormat};
use crate::names::Name;
use deltalake::arrow::array::{Array, StringArray};
use deltalake::arrow::compute::kernels::cast::{CastOptions, cast_with_options};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::json::ReaderBuilder as JsonReaderBuilder;
use std::fmt;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read, Seek as _, SeekFrom, Write as _};
use std::path::Path;

/// One input row that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadRow {
    pub input: String,
    /// The file, relative to the project root.
    pub file: String,
    /// 1-based line of the file where the record starts.
    pub line: u64,
    pub raw: String,
    pub error: String,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.error)
    }
}

/// How many records are checked at once: each column of a chunk is cast as one array, so
/// memory holds a chunk, never a file.
const CHUNK: usize = 8192;

/// One CSV record of a chunk: where it is in the file and its fields.
struct Record {
    line: u64,
    start: u64,
    end: u64,
    fields: csv::ByteRecord,
}

fn csv_reader<R: Read>(src: R, opts: &CsvOptions) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(opts.header)
        .delimiter(opts.delimiter)
        .flexible(true)
        .from_reader(src)
}

/// Streams the records of a CSV file to `each`, in chunks of [`CHUNK`].
fn csv_chunks(
    path: &Path,
    shown: &str,
    opts: &CsvOptions,
    mut each: impl FnMut(&[Record]) -> Result<(), BadRowError>,
) -> Result<(), BadRowError> {
    let file = File::open(path).map_err(|e| read_err(shown, e))?;
    let mut rdr = csv_reader(BufReader::with_capacity(1 << 16, file), opts);
    let mut chunk: Vec<Record> = Vec::with_capacity(CHUNK);
    let mut rec = csv::ByteRecord::new();
    loop {
        let more = rdr
            .read_byte_record(&mut rec)
            .map_err(|e| csv_err(shown, e))?;
        if more {
            let pos = rec.position().cloned().unwrap_or_else(csv::Position::new);
            chunk.push(Record {
                line: pos.line(),
                start: pos.byte(),
                end: rdr.position().byte(),
                fields: rec.clone(),
            });
        }
        if chunk.len() == CHUNK || (!more && !chunk.is_empty()) {
            each(&chunk)?;
            chunk.clear();
        }
        if !more {
            return Ok(());
        }
    }
}

/// A bad record found by a scan: its line, byte range and what is wrong; its raw text is
/// read back right away (see [`RawText`]).
struct Found {
    line: u64,
    start: u64,
    end: u64,
    error: String,
}

/// Reads a bad record's text as it is in the file (see [`escaped`]) by its byte range,
/// through a handle of its own: only the bad records' bytes are ever held, a chunk's at a
/// time.
struct RawText<'a> {
    file: File,
    shown: &'a str,
    input: &'a Name,
    bytes: Vec<u8>,
}

impl<'a> RawText<'a> {
    fn open(path: &Path, shown: &'a str, input: &'a Name) -> Result<RawText<'a>, BadRowError> {
        Ok(RawText {
            file: File::open(path).map_err(|e| read_err(shown, e))?,
            shown,
            input,
            bytes: Vec::new(),
        })
    }

    /// Adds the found records to `log`, each with its text.
    fn log(&mut self, found: Vec<Found>, log: &mut BadRowLog) -> Result<(), BadRowError> {
        for f in found {
            self.bytes.clear();
            self.file
                .seek(SeekFrom::Start(f.start))
                .and_then(|_| {
                    (&mut self.file)
                        .take(f.end.saturating_sub(f.start))
                        .read_to_end(&mut self.bytes)
                })
                .map_err(|e| read_err(self.shown, e))?;
            log.push(BadRow {
                input: self.input.to_string(),
                file: self.shown.to_string(),
                line: f.line,
                raw: escaped(&self.bytes),
                error: f.error,
            })?;
        }
        Ok(())
    }
}

/// A record's bytes as text, each byte that is not UTF-8 written `\xNN`, so that the dead
/// letter keeps every byte; without the line break.
fn escaped(raw: &[u8]) -> String {
    let mut out = String::new();
    for chunk in raw.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out.trim_end_matches(['\r', '\n']).to_string()
}

/// Streams the lines of a newline-delimited JSON file that hold a record (blank lines hold
/// none, as for the reader) to `each`: 1-based line number, byte range, bytes without the
/// line break.
fn json_lines(
    path: &Path,
    shown: &str,
    mut each: impl FnMut(u64, u64, u64, &[u8]),
) -> Result<(), BadRowError> {
    let file = File::open(path).map_err(|e| read_err(shown, e))?;
    let mut src = BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::new();
    let (mut line, mut at) = (0u64, 0u64);
    loop {
        buf.clear();
        let n = src
            .read_until(b'\n', &mut buf)
            .map_err(|e| read_err(shown, e))? as u64;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if !text.iter().all(u8::is_ascii_whitespace) {
            each(line, at, at + n, text);
        }
        at += n;
    }
}

/// Why one JSON line cannot be read under `schema`, or `None`. The types are checked by
/// Arrow's own JSON reader on the line alone, so the verdict is the reader's.
fn json_problem(line: &[u8], schema: &SchemaRef) -> Option<String> {
    let Ok(text) = std::str::from_utf8(line) else {
        return Some(NOT_UTF8.trim_start_matches("the ").to_string());
    };
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Some(format!("not valid JSON: {e}")),
    };
    let Some(object) = value.as_object() else {
        return Some("not a JSON object".into());
    };
    for f in schema.fields() {
        if !f.is_nullable() && object.get(f.name()).is_none_or(serde_json::Value::is_null) {
            return Some(format!(
                "field `{}` is missing or null but declared NOT NULL",
                f.name()
            ));
        }
    }
    let decoded = JsonReaderBuilder::new(schema.clone())
        .build(std::io::Cursor::new(line))
        .and_then(|mut r| r.next().transpose());
    match decoded {
        Ok(_) => None,
        Err(e) => Some(e.to_string().trim_start_matches("Json error: ").to_string()),
    }
}

const NOT_UTF8: &str =
    "the bytes are not UTF-8 text (the file may be in another encoding: convert it to UTF-8)";

/// Checks each record of `path` (CSV or newline-delimited JSON) against `schema`; adds the
/// bad ones to `log`. Streams the file: memory holds a chunk of records.
pub fn scan(
    path: &Path,
    shown: &str,
    input: &Name,
    schema: &SchemaRef,
    format: FileFormat,
    opts: &CsvOptions,
    log: &mut BadRowLog,
) -> Result<(), BadRowError> {
    let mut raw = RawText::open(path, shown, input)?;
    match format {
        FileFormat::Json => {
            let mut failed = Ok(());
            json_lines(path, shown, |line, start, end, text| {
                if failed.is_ok()
                    && let Some(error) = json_problem(text, schema)
                {
                    let found = Found {
                        line,
                        start,
                        end,
                        error,
                    };
                    failed = raw.log(vec![found], log);
                }
            })?;
            failed
        }
        _ => csv_chunks(path, shown, opts, |chunk| {
            let mut found = Vec::new();
            check_csv_chunk(chunk, schema, &mut found)?;
            raw.log(found, log)
        }),
    }
}

/// Checks a chunk of CSV records against `schema`, column by column with Arrow's casts.
fn check_csv_chunk(
    records: &[Record],
    schema: &SchemaRef,
    found: &mut Vec<Found>,
) -> Result<(), BadRowError> {
    let n = schema.fields().len();
    let mut errors: Vec<Option<String>> = vec![None; records.len()];
    for (i, r) in records.iter().enumerate() {
        if r.fields.len() != n {
            errors[i] = Some(format!("expected {n} fields, found {}", r.fields.len()));
        } else if let Some(f) = r
            .fields
            .iter()
            .position(|f| std::str::from_utf8(f).is_err())
        {
            let column = schema.fields()[f].name();
            errors[i] = Some(format!("column `{column}`: {NOT_UTF8}"));
        }
    }
    let lenient = CastOptions {
        safe: true,
        ..Default::default()
    };
    for (c, field) in schema.fields().iter().enumerate() {
        // Empty fields are nulls to the CSV reader, so they are nulls here too; a field
        // that is not UTF-8 is already an error.
        let values: StringArray = records
            .iter()
            .map(|r| {
                r.fields
                    .get(c)
                    .filter(|v| !v.is_empty())
                    .and_then(|v| std::str::from_utf8(v).ok())
            })
            .collect();
        let cast = cast_with_options(&values, field.data_type(), &lenient).map_err(|e| {
            BadRowError::Cast {
                column: field.name().clone(),
                source: e,
            }
        })?;
        for (i, error) in errors.iter_mut().enumerate() {
            if error.is_some() {
                continue;
            }
            if values.is_valid(i) && cast.is_null(i) {
                *error = Some(format!(
                    "column `{}`: `{}` is not a valid {}",
                    field.name(),
                    values.value(i),
                    crate::schema::types::sql_name(field.data_type())
                ));
            } else if values.is_null(i) && !field.is_nullable() {
                *error = Some(format!(
                    "column `{}` is empty but declared NOT NULL",
                    field.name()
                ));
            }
        }
    }
    for (r, e) in records.iter().zip(errors) {
        if let Some(error) = e {
            found.push(Found {
                line: r.line,
                start: r.start,
                end: r.end,
                error,
            });
        }
    }
    Ok(())
}

/// How many records a CSV (header excluded) or JSON file holds, counted as it streams.
pub fn count_records(
    path: &Path,
    format: FileFormat,
    opts: &CsvOptions,
) -> Result<u64, BadRowError> {
    let shown = path.display().to_string();
    let mut n = 0u64;
    match format {
        FileFormat::Json => json_lines(path, &shown, |_, _, _, _| n += 1)?,
        _ => {
            let file = File::open(path).map_err(|e| read_err(&shown, e))?;
            let mut rdr = csv_reader(BufReader::with_capacity(1 << 16, file), opts);
            let mut rec = csv::ByteRecord::new();
            while rdr
                .read_byte_record(&mut rec)
                .map_err(|e| csv_err(&shown, e))?
            {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// A temporary copy of `path` (deleted when dropped) without `input`'s rows in `bad`,
/// streamed: the file is never held in memory. Copies that killed processes left in the
/// temporary folder are removed first.
pub fn copy_without_bad_rows(
    path: &Path,
    format: FileFormat,
    opts: &CsvOptions,
    bad: &BadRowLog,
    input: &Name,
) -> Result<tempfile::TempPath, BadRowError> {
    let temp = std::env::temp_dir();
    super::left_copies::sweep(&temp);
    let copy = tempfile::Builder::new()
        .prefix(&super::left_copies::prefix())
        .suffix(&super::file_extension(path))
        .tempfile_in(&temp)
        .map_err(|e| copy_err(path, e))?
        .into_temp_path();
    let lines = bad
        .rows()?
        .filter(|r| r.as_ref().is_ok_and(|r| r.input == input.as_str()) || r.is_err())
        .map(|r| r.map(|r| r.line));
    copy_without(path, format, opts, lines, &copy)?;
    Ok(copy)
}

/// Copies `path` to `out` without the records on `bad_lines` (ascending, as a scan finds
/// them), byte for byte otherwise (the header too), streaming: the copy is read like the
/// original.
fn copy_without(
    path: &Path,
    format: FileFormat,
    opts: &CsvOptions,
    bad_lines: impl Iterator<Item = Result<u64, BadRowError>>,
    out: &Path,
) -> Result<(), BadRowError> {
    let shown = path.display().to_string();
    let mut bad_lines = bad_lines.peekable();
    // Whether the record on `line` is bad: the bad lines are met in order.
    let mut is_bad = |line: u64| -> Result<bool, BadRowError> {
        loop {
            match bad_lines.peek() {
                None => return Ok(false),
                Some(Ok(b)) if *b < line => {
                    bad_lines.next();
                }
                Some(Ok(b)) => return Ok(*b == line),
                Some(Err(_)) => {
                    if let Some(Err(e)) = bad_lines.next() {
                        return Err(e);
                    }
                }
            }
        }
    };
    let src = BufReader::with_capacity(1 << 16, File::open(path).map_err(|e| read_err(&shown, e))?);
    let dst = std::io::BufWriter::with_capacity(
        1 << 16,
        File::create(out).map_err(|e| copy_err(path, e))?,
    );
    let mut copy = Copy { src, dst, at: 0 };
    match format {
        FileFormat::Json => {
            let mut failed = Ok(());
            json_lines(path, &shown, |line, start, end, _| {
                if failed.is_ok() {
                    failed = match is_bad(line) {
                        Ok(true) => copy.skip(start, end).map_err(|e| copy_err(path, e)),
                        Ok(false) => Ok(()),
                        Err(e) => Err(e),
                    };
                }
            })?;
            failed?;
        }
        _ => csv_chunks(path, &shown, opts, |chunk| {
            for r in chunk {
                if is_bad(r.line)? {
                    copy.skip(r.start, r.end).map_err(|e| copy_err(path, e))?;
                }
            }
            Ok(())
        })?,
    }
    copy.finish().map_err(|e| copy_err(path, e))
}

fn read_err(shown: &str, source: std::io::Error) -> BadRowError {
    BadRowError::Read {
        file: shown.to_string(),
        source,
    }
}

fn csv_err(shown: &str, source: csv::Error) -> BadRowError {
    BadRowError::Csv {
        file: shown.to_string(),
        source,
    }
}

fn copy_err(path: &Path, source: std::io::Error) -> BadRowError {
    BadRowError::Copy {
        file: path.display().to_string(),
        source,
    }
}

/// A file copied as it is read, but for the byte ranges skipped.
struct Copy {
    src: BufReader<File>,
    dst: std::io::BufWriter<File>,
    /// How far `src` has been read.
    at: u64,
}

impl Copy {
    /// Copies up to `start`, then leaves out the bytes up to `end`.
    fn skip(&mut self, start: u64, end: u64) -> Result<(), std::io::Error> {
        let copied = (|| -> std::io::Result<()> {
            std::io::copy(&mut (&mut self.src).take(start - self.at), &mut self.dst)?;
            self.src.seek_relative((end - start) as i64)
        })();
        self.at = end;
        copied
    }

    fn finish(mut self) -> std::io::Result<()> {
        std::io::copy(&mut self.src, &mut self.dst)?;
        self.dst.flush()
    }
}

/// The message when more rows cannot be used than the job's `max_bad_rows` allows.
pub fn too_many(
    job: &crate::job::Job,
    key: &crate::partition::PartitionKey,
    bad: &BadRowLog,
    read: u64,
    limit: crate::job::BadRowLimit,
    what: &str,
) -> String {
    format!(
        "{} of {read} {what} cannot be used, more than `max_bad_rows` allows ({limit}); first: {}; see `sluice dlq list {} --partition {key}`",
        bad.len(),
        bad.shown()
            .iter()
            .take(3)
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join("; "),
        job.name
    )
}
