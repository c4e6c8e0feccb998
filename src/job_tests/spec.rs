//! A job test file as written: `jobs/tests/<name>.toml`, read with serde and checked
//! against the project in `mod.rs`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// The job the file's tests run; defaults to the file's name.
    pub job: Option<String>,
    #[serde(rename = "test", default)]
    pub tests: Vec<TestSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    pub name: String,
    /// The partition the test runs, as `--partition` writes it.
    pub partition: String,
    /// Rows for each input, by input name; an input not named here is empty.
    #[serde(default)]
    pub inputs: BTreeMap<String, RowsSpec>,
    /// The rows the job's table holds before the run (a merge's current rows, an scd2
    /// table's versions), for a job that merges into its table; by default none.
    pub table: Option<RowsSpec>,
    #[serde(default)]
    pub expect: ExpectSpec,
}

/// Rows: exactly one of inline rows, inline CSV text, or a file beside the test file.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RowsSpec {
    pub rows: Option<Vec<toml::Table>>,
    pub csv: Option<String>,
    pub file: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExpectSpec {
    pub rows: Option<Vec<toml::Table>>,
    pub csv: Option<String>,
    pub file: Option<String>,
    /// Only these columns are compared; by default the columns the expected rows name.
    pub columns: Option<Vec<String>>,
    /// Compare in order; by default only when the SQL ends in ORDER BY.
    pub ordered: Option<bool>,
    /// Floats and decimals equal within this absolute difference.
    pub tolerance: Option<f64>,
    /// The input rows left out as dead letters (by default none).
    #[serde(default)]
    pub dead_letters: Vec<DeadLetterSpec>,
    /// Checks that fail, by name (by default none may fail).
    #[serde(default)]
    pub failing_checks: Vec<String>,
    /// The run fails with an error containing this text.
    pub error: Option<String>,
}

impl ExpectSpec {
    pub fn rows_spec(&self) -> Option<RowsSpec> {
        if self.rows.is_none() && self.csv.is_none() && self.file.is_none() {
            return None;
        }
        Some(RowsSpec {
            rows: self.rows.clone(),
            csv: self.csv.clone(),
            file: self.file.clone(),
        })
    }
}

#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSpec {
    pub input: String,
    pub line: u64,
}
