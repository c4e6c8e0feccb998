//! `[[inputs]] type = "command"`: a program run once per partition attempt, whose standard
//! output is the input's rows. It runs in the project's folder, in a process group of its
//! own, with the partition in its environment (`SLUICE_PARTITION`,
//! `SLUICE_PARTITION_START`, `SLUICE_PARTITION_END`, `SLUICE_KEY`, `SLUICE_RUN_ID`,
//! `SLUICE_ATTEMPT`); its standard error becomes the run's log lines.
//!
//! What it writes is copied, 64 KiB at a time, to a scratch file (hashed as it goes) and
//! read from there like a file input: memory stays one buffer whatever the output's size,
//! the bad-row scan and the query can read it twice (a pipe can be read once, and running
//! the program again might give other rows), and its exit status is known before any row
//! is planned, so a failure is a failure of the input, never half a query. The file lives
//! as long as the query.
//!
//! Exit 0 is success. 75 (EX_TEMPFAIL), a signal and a timeout are transient (retried as
//! `[retry]` says); any other exit, a program that cannot start and an output that does
//! not fit the declared schema are not.

use crate::job::{CommandInput, FileFormat, Job};
use crate::names::Name;
use crate::partition::PartitionKey;
use sha2::Digest as _;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

/// The lines of standard error an error message keeps (the last ones).
const STDERR_KEPT: usize = 10;

/// Why a command input gave no rows.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(
        "input `{input}`: cannot start `{program}`: {source}. Fix: `command` in the job's spec names a program on PATH, or a path relative to the project folder"
    )]
    Spawn {
        input: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("input `{input}`: `{command}` exited with code {code}{stderr}")]
    Exited {
        input: String,
        command: String,
        code: i32,
        stderr: String,
    },
    #[error("input `{input}`: `{command}` was killed by signal {signal}{stderr}")]
    Killed {
        input: String,
        command: String,
        signal: i32,
        stderr: String,
    },
    #[error(
        "input `{input}`: `{command}` ran longer than its timeout ({timeout}); it was killed, with every process it started{stderr}"
    )]
    TimedOut {
        input: String,
        command: String,
        timeout: String,
        stderr: String,
    },
    #[error(
        "input `{input}`: could not keep the output of `{command}` in a scratch file: {source}"
    )]
    Spool {
        input: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "input `{input}`: the output of `{command}` does not fit the input's declared schema: {why}"
    )]
    Schema {
        input: String,
        command: String,
        why: String,
    },
}

impl CommandError {
    /// Exit 75 (EX_TEMPFAIL), a signal, a timeout, a full scratch disk: worth another try.
    pub fn is_transient(&self) -> bool {
        match self {
            CommandError::Exited { code, .. } => *code == 75,
            CommandError::Killed { .. }
            | CommandError::TimedOut { .. }
            | CommandError::Spool { .. } => true,
            CommandError::Spawn { .. } | CommandError::Schema { .. } => false,
        }
    }
}

/// A command's output, kept for the query that reads it.
#[derive(Debug)]
pub struct CommandOutput {
    /// The scratch file; removed when this is dropped.
    pub path: tempfile::TempPath,
    /// What the input's rows are shown as (in dead letters): the command.
    pub shown: String,
    pub bytes: u64,
    /// SHA-256 of the output, hex.
    pub sha256: String,
}

/// Who is running the partition, for the program's environment.
pub struct RunOf<'a> {
    pub job: &'a Job,
    pub key: &'a PartitionKey,
    pub run_id: &'a str,
    pub attempt: u32,
}

/// Runs every command input of the job, one after another, in the spec's order.
pub async fn run_all(
    root: &Path,
    of: &RunOf<'_>,
) -> Result<HashMap<Name, CommandOutput>, CommandError> {
    let mut out = HashMap::new();
    for input in &of.job.inputs {
        if let crate::job::InputSource::Command(c) = &input.source {
            let o = run(root, &input.name, c, &environment(of)).await?;
            out.insert(input.name.clone(), o);
        }
    }
    Ok(out)
}

/// The partition, as the program sees it.
fn environment(of: &RunOf<'_>) -> Vec<(&'static str, String)> {
    let rfc3339 =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (start, end) = of
        .key
        .instant_bounds(of.job.partition_time_zone)
        .map(|(s, e)| (rfc3339(s), rfc3339(e)))
        .unwrap_or_default();
    vec![
        ("SLUICE_PARTITION", of.key.to_string()),
        ("SLUICE_PARTITION_START", start),
        ("SLUICE_PARTITION_END", end),
        (
            "SLUICE_KEY",
            of.key
                .key
                .as_ref()
                .map(|k| k.to_string())
                .unwrap_or_default(),
        ),
        ("SLUICE_RUN_ID", of.run_id.to_string()),
        ("SLUICE_ATTEMPT", of.attempt.to_string()),
        ("SLUICE_JOB", of.job.name.to_string()),
    ]
}

/// Kills the program's whole process group when dropped armed: on a timeout, or when the
/// run is dropped halfway (a shutdown), nothing it started is left running.
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: killpg has no memory effects; a group already gone gives ESRCH.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

/// Runs one command input to its end and keeps its output.
pub async fn run(
    root: &Path,
    input: &Name,
    spec: &CommandInput,
    env: &[(&str, String)],
) -> Result<CommandOutput, CommandError> {
    let command = spec.argv.join(" ");
    let spool_err = |source| CommandError::Spool {
        input: input.to_string(),
        command: command.clone(),
        source,
    };
    let spool = tempfile::Builder::new()
        .prefix("sluice-command-")
        .suffix(extension(spec.format))
        .tempfile()
        .map_err(spool_err)?;
    let mut child = tokio::process::Command::new(&spec.argv[0])
        .args(&spec.argv[1..])
        .current_dir(root)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CommandError::Spawn {
            input: input.to_string(),
            program: spec.argv[0].clone(),
            source,
        })?;
    let group = Group(child.id().and_then(|p| i32::try_from(p).ok()));
    let file = spool.reopen().map_err(spool_err)?;
    let work = drive(&mut child, file, input);
    let (copied, last, status) = match spec.timeout {
        None => work.await,
        Some(t) => match tokio::time::timeout(t, work).await {
            Ok(done) => done,
            Err(_) => {
                drop(group); // the whole group, now
                return Err(CommandError::TimedOut {
                    input: input.to_string(),
                    command,
                    timeout: format!("{t:?}"),
                    stderr: String::new(),
                });
            }
        },
    };
    let status = status.map_err(spool_err)?;
    // Whatever it left running in its group goes with it.
    drop(group);
    if let Some(failed) = failure(input, &command, status, tail(&last)) {
        return Err(failed);
    }
    let (bytes, sha256) = copied.map_err(spool_err)?;
    let output = CommandOutput {
        path: spool.into_temp_path(),
        shown: format!("the output of `{command}`"),
        bytes,
        sha256,
    };
    check_schema(&output.path, spec).map_err(|why| CommandError::Schema {
        input: input.to_string(),
        command,
        why,
    })?;
    Ok(output)
}

/// Copies the program's standard output to `file` (hashing it), logs its standard error
/// line by line, and waits for its end, all at once (a pipe left unread would block it):
/// the output's size and hash, its last lines of standard error, and how it ended.
async fn drive(
    child: &mut tokio::process::Child,
    file: std::fs::File,
    input: &Name,
) -> (
    std::io::Result<(u64, String)>,
    VecDeque<String>,
    std::io::Result<std::process::ExitStatus>,
) {
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let copy = async {
        let mut stdout = stdout.ok_or_else(|| std::io::Error::other("no standard output"))?;
        let mut file = tokio::fs::File::from_std(file);
        let mut hash = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut bytes = 0u64;
        loop {
            let n = stdout.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            file.write_all(&buf[..n]).await?;
            bytes += n as u64;
        }
        file.flush().await?;
        Ok::<_, std::io::Error>((bytes, hex(&hash.finalize())))
    };
    let log = async {
        let mut last = VecDeque::new();
        let Some(stderr) = stderr else {
            return last;
        };
        // Bytes, not text: a line that is not UTF-8 must not stop the reading (the
        // program would block on a full pipe).
        let mut reader = tokio::io::BufReader::new(stderr);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&raw);
            let line = crate::redact::redact_text(text.trim_end_matches(['\n', '\r']));
            tracing::info!(input = %input, "{line}");
            if last.len() == STDERR_KEPT {
                last.pop_front();
            }
            last.push_back(line);
        }
        last
    };
    tokio::join!(copy, log, child.wait())
}

/// How a program that did not exit 0 failed: its exit code, or the signal that ended it.
fn failure(
    input: &Name,
    command: &str,
    status: std::process::ExitStatus,
    stderr: String,
) -> Option<CommandError> {
    use std::os::unix::process::ExitStatusExt as _;
    let (input, command) = (input.to_string(), command.to_string());
    match status.code() {
        Some(0) => None,
        Some(code) => Some(CommandError::Exited {
            input,
            command,
            code,
            stderr,
        }),
        None => Some(CommandError::Killed {
            input,
            command,
            signal: status.signal().unwrap_or(0),
            stderr,
        }),
    }
}

/// `: <the last lines of standard error>`, or nothing when it said nothing.
fn tail(last: &VecDeque<String>) -> String {
    let said: Vec<&str> = last
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    match said.is_empty() {
        true => String::new(),
        false => format!("; its standard error ended: {}", said.join(" | ")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The scratch file's extension, by which the reader knows it.
pub fn extension(format: FileFormat) -> &'static str {
    match format {
        FileFormat::Csv => ".csv",
        FileFormat::Json => ".ndjson",
        FileFormat::Parquet => ".parquet",
        FileFormat::Arrow => ".arrow",
    }
}

/// The output's own schema against the declared one, where the output carries one (Arrow,
/// Parquet) or names its columns (CSV with a header): every declared column present, of a
/// type that casts to the declared one. NDJSON is checked line by line as it is read (its
/// unusable lines are dead letters, as a file's).
fn check_schema(path: &Path, spec: &CommandInput) -> Result<(), String> {
    use deltalake::arrow::datatypes::DataType;
    let found: Vec<(String, Option<DataType>)> = match spec.format {
        FileFormat::Arrow | FileFormat::Parquet => {
            let s = output_schema(path, spec.format)?;
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), Some(f.data_type().clone())))
                .collect()
        }
        FileFormat::Csv if spec.csv.header => csv_header(path, spec.csv.delimiter)?
            .into_iter()
            .map(|n| (n, None))
            .collect(),
        FileFormat::Csv | FileFormat::Json => return Ok(()),
    };
    let names = || {
        found
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if spec.format == FileFormat::Csv {
        // Read by position under the declared names: the header must say the same.
        for (i, c) in spec.schema.iter().enumerate() {
            match found.get(i) {
                Some((n, _)) if n == c.name.as_str() => {}
                Some((n, _)) => {
                    return Err(format!(
                        "column {} is `{n}` in its header, declared `{}` (its header: {})",
                        i + 1,
                        c.name,
                        names()
                    ));
                }
                None => {
                    return Err(format!(
                        "declared column `{}` is missing (its header: {})",
                        c.name,
                        names()
                    ));
                }
            }
        }
        return Ok(());
    }
    for c in &spec.schema {
        let want = c.ty.to_arrow();
        match found.iter().find(|(n, _)| n == c.name.as_str()) {
            None => {
                return Err(format!(
                    "declared column `{}` is missing (it has: {})",
                    c.name,
                    names()
                ));
            }
            Some((_, Some(ty))) if !same_kind(ty, &want) => {
                return Err(format!(
                    "column `{}` is {ty} in the output, declared {}: write it as {} (or declare what the program writes)",
                    c.name, c.ty, c.ty
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether an output column of type `found` is read as the declared `want`: the same type,
/// or another width or unit of the same kind (integers, floats, an integer as a float,
/// timestamps, dates, strings). Text to a number, say, is refused here, whole, rather than
/// failing on the first value that does not parse.
fn same_kind(
    found: &deltalake::arrow::datatypes::DataType,
    want: &deltalake::arrow::datatypes::DataType,
) -> bool {
    use deltalake::arrow::datatypes::DataType as T;
    let int = |t: &T| t.is_integer();
    let float = |t: &T| t.is_floating() || matches!(t, T::Decimal128(..) | T::Decimal256(..));
    let text = |t: &T| matches!(t, T::Utf8 | T::LargeUtf8 | T::Utf8View);
    found == want
        || (int(found) && (int(want) || float(want)))
        || (float(found) && float(want))
        || (text(found) && text(want))
        || matches!((found, want), (T::Timestamp(..), T::Timestamp(..)))
        || matches!(
            (found, want),
            (T::Date32 | T::Date64, T::Date32 | T::Date64)
        )
}

/// The schema an Arrow (stream or file) or Parquet output carries.
pub fn output_schema(
    path: &Path,
    format: FileFormat,
) -> Result<deltalake::arrow::datatypes::SchemaRef, String> {
    let open = || std::fs::File::open(path).map_err(|e| e.to_string());
    match format {
        FileFormat::Arrow => {
            use deltalake::arrow::ipc::reader::{FileReader, StreamReader};
            if let Ok(r) = StreamReader::try_new(std::io::BufReader::new(open()?), None) {
                return Ok(r.schema());
            }
            FileReader::try_new(open()?, None)
                .map(|r| r.schema())
                .map_err(|e| format!("it is not an Arrow IPC stream or file ({e})"))
        }
        FileFormat::Parquet => {
            deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                open()?
            )
            .map(|b| b.schema().clone())
            .map_err(|e| format!("it is not a Parquet file ({e})"))
        }
        FileFormat::Csv | FileFormat::Json => Err("a text format carries no schema".into()),
    }
}

/// The names in a CSV output's header line.
fn csv_header(path: &Path, delimiter: u8) -> Result<Vec<String>, String> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .from_path(path)
        .map_err(|e| e.to_string())?;
    let h = r.headers().map_err(|e| e.to_string())?;
    Ok(h.iter().map(|s| s.trim().to_string()).collect())
}
