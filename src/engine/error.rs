//! What can keep the engine from planning or running a partition's query, and how a
//! DataFusion error is said: the sentence, without its backtrace hint and nested prefixes.

use super::{BadRow, BadRowError};
use crate::names::Name;
use deltalake::datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "input `{input}`: no file at {path} (from template `{template}`); check the path, or wait until the file arrives"
    )]
    InputMissing {
        input: String,
        path: String,
        template: String,
    },
    #[error("input `{input}`: {message}")]
    Input { input: String, message: String },
    /// Finding an input's bad rows, keeping them, or copying the input without them.
    #[error("input `{input}`: {source}")]
    BadRowScan { input: String, source: BadRowError },
    #[error(
        "input `{input}`: the copy without its bad rows could not be put where the executors read it: {source}"
    )]
    NotShared {
        input: String,
        source: crate::delta::Below,
    },
    /// The rows set aside could not be kept.
    #[error(transparent)]
    BadRowLog(#[from] BadRowError),
    #[error("{file}: {message}")]
    Sql { file: String, message: String },
    #[error("executing the SQL failed: {message}")]
    Execution { message: String, transient: bool },
    #[error("{total} bad input row(s); first: {}. Fix the source rows, or set `bad_rows = \"skip\"` in the job spec to skip them with a log line", first_rows(.rows))]
    BadRows { total: u64, rows: Vec<BadRow> },
    #[error("cannot set up the SQL engine: {0}")]
    Setup(String),
}

fn first_rows(rows: &[BadRow]) -> String {
    rows.iter()
        .take(5)
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl EngineError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EngineError::Execution {
                transient: true,
                ..
            }
        )
    }
}

pub fn execution_error(e: DataFusionError) -> EngineError {
    let transient = matches!(
        e.find_root(),
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_)
    );
    EngineError::Execution {
        message: clean(&e),
        transient,
    }
}

pub(super) fn input_err(name: &Name, e: DataFusionError) -> EngineError {
    EngineError::Input {
        input: name.to_string(),
        message: clean(&e),
    }
}

/// DataFusion's messages carry a backtrace hint and nested prefixes; keep the sentence.
pub(crate) fn clean(e: &DataFusionError) -> String {
    e.to_string()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
