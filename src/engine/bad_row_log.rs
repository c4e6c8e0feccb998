//! The bad rows of one run in memory bounded by a constant: all are counted, the first
//! [`SHOWN`] are kept for messages and reports, and once there are more, every one is
//! spooled to a temporary file (newline-delimited JSON) to be read back in order when the
//! dead letters are written or a file is copied without them. An input of nothing but bad
//! rows costs disk, not memory.

use super::BadRow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::sync::Mutex;

/// How many bad rows a run keeps in memory: what its report and messages show.
pub const SHOWN: usize = 1000;

#[derive(Default)]
pub struct BadRowLog {
    total: u64,
    /// How many per input.
    inputs: BTreeMap<String, u64>,
    shown: Vec<BadRow>,
    spool: Option<Spool>,
}

/// What kept the bad-row code from reading an input, or from keeping or copying its bad
/// rows.
#[derive(Debug, thiserror::Error)]
pub enum BadRowError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file} cannot be read as CSV: {source}")]
    Csv { file: String, source: csv::Error },
    #[error("column `{column}`: {source}")]
    Cast {
        column: String,
        source: deltalake::arrow::error::ArrowError,
    },
    #[error("cannot keep the bad rows in the temporary folder: {0}")]
    Spool(#[source] std::io::Error),
    #[error("a bad row kept in the temporary folder cannot be read back: {0}")]
    SpoolRow(#[source] serde_json::Error),
    #[error("cannot copy {file} without its bad rows: {source}")]
    Copy {
        file: String,
        source: std::io::Error,
    },
}

struct Spool {
    /// Deleted when dropped.
    path: tempfile::TempPath,
    /// Behind a lock so that a reader holding `&BadRowLog` can flush it first.
    out: Mutex<BufWriter<File>>,
}

impl Spool {
    fn write(&mut self, row: &BadRow) -> Result<(), BadRowError> {
        let out = self.out.get_mut().unwrap_or_else(|e| e.into_inner());
        serde_json::to_writer(&mut *out, row)
            .map_err(std::io::Error::from)
            .and_then(|_| out.write_all(b"\n"))
            .map_err(BadRowError::Spool)
    }
}

impl BadRowLog {
    pub fn push(&mut self, row: BadRow) -> Result<(), BadRowError> {
        self.total += 1;
        *self.inputs.entry(row.input.clone()).or_default() += 1;
        if let Some(s) = &mut self.spool {
            return s.write(&row);
        }
        if self.shown.len() < SHOWN {
            self.shown.push(row);
            return Ok(());
        }
        // Past what is shown: from now on every row goes to the spool, the shown ones
        // first, so that it holds them all in order.
        let file = tempfile::Builder::new()
            .prefix("sluice-bad-rows-")
            .suffix(".jsonl")
            .tempfile()
            .map_err(BadRowError::Spool)?;
        let (file, path) = file.into_parts();
        let mut s = Spool {
            path,
            out: Mutex::new(BufWriter::with_capacity(1 << 16, file)),
        };
        for r in &self.shown {
            s.write(r)?;
        }
        s.write(&row)?;
        self.spool = Some(s);
        Ok(())
    }

    pub fn extend(&mut self, rows: impl IntoIterator<Item = BadRow>) -> Result<(), BadRowError> {
        rows.into_iter().try_for_each(|r| self.push(r))
    }

    /// How many bad rows there are.
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// How many of `input`.
    pub fn of_input(&self, input: &str) -> u64 {
        self.inputs.get(input).copied().unwrap_or(0)
    }

    /// The first [`SHOWN`].
    pub fn shown(&self) -> &[BadRow] {
        &self.shown
    }

    /// Every bad row, in the order they were found, read back a chunk at a time.
    pub fn rows(&self) -> Result<Rows<'_>, BadRowError> {
        match &self.spool {
            None => Ok(Rows::Shown(self.shown.iter())),
            Some(s) => {
                s.out
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .flush()
                    .map_err(BadRowError::Spool)?;
                let f = File::open(&s.path).map_err(BadRowError::Spool)?;
                Ok(Rows::Spooled {
                    lines: BufReader::with_capacity(1 << 16, f),
                    buf: String::new(),
                })
            }
        }
    }

    /// Every bad row, collected: for small logs only (tests of jobs).
    pub fn to_vec(&self) -> Result<Vec<BadRow>, BadRowError> {
        self.rows()?.collect()
    }
}

/// See [`BadRowLog::rows`].
pub enum Rows<'a> {
    Shown(std::slice::Iter<'a, BadRow>),
    Spooled { lines: BufReader<File>, buf: String },
}

impl Iterator for Rows<'_> {
    type Item = Result<BadRow, BadRowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Rows::Shown(rows) => rows.next().cloned().map(Ok),
            Rows::Spooled { lines, buf } => {
                buf.clear();
                match lines.read_line(buf) {
                    Ok(0) => None,
                    Ok(_) => Some(serde_json::from_str(buf).map_err(BadRowError::SpoolRow)),
                    Err(e) => Some(Err(BadRowError::Spool(e))),
                }
            }
        }
    }
}

impl Rows<'_> {
    /// The next `n` rows at most; empty at the end.
    pub fn chunk(&mut self, n: usize) -> Result<Vec<BadRow>, BadRowError> {
        self.take(n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: u64) -> BadRow {
        BadRow {
            input: "orders".into(),
            file: "orders.csv".into(),
            line,
            raw: format!("{line},x,\"quoted, text\""),
            error: "column `a`: `x` is not a valid BIGINT".into(),
        }
    }

    #[test]
    fn past_what_is_shown_every_row_is_spooled_and_read_back_in_order() {
        let mut log = BadRowLog::default();
        let n = SHOWN as u64 * 3 + 7;
        log.extend((1..=n).map(row)).unwrap();
        assert_eq!(log.len(), n);
        assert_eq!(log.shown().len(), SHOWN);
        assert!(log.spool.is_some());
        let all = log.to_vec().unwrap();
        assert_eq!(all.len() as u64, n);
        assert!(all.iter().zip(1..).all(|(r, line)| *r == row(line)));
        // Read twice, chunk by chunk, the same.
        let mut rows = log.rows().unwrap();
        assert_eq!(rows.chunk(2000).unwrap().len(), 2000);
        assert_eq!(rows.chunk(2000).unwrap().len(), (n - 2000) as usize);
        assert!(rows.chunk(2000).unwrap().is_empty());
    }

    #[test]
    fn a_few_rows_stay_in_memory() {
        let mut log = BadRowLog::default();
        log.extend((1..=3).map(row)).unwrap();
        assert!(log.spool.is_none());
        assert_eq!(log.to_vec().unwrap(), vec![row(1), row(2), row(3)]);
    }
}
