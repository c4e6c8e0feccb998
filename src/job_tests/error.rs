//! What can go wrong in a job test besides the job itself: rows that cannot be made into
//! tables, a test file that cannot be read or written, a test that names what is not
//! there. Each error says where (the input, the test, the file) and keeps the cause.

use deltalake::arrow::error::ArrowError;
use std::path::PathBuf;

/// Rows of a test that cannot be made into a table.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{}: rows are read from .csv or .json/.ndjson/.jsonl files", .0.display())]
    FileKind(PathBuf),
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CSV header: {0}")]
    CsvHeader(#[source] csv::Error),
    #[error("line {line}: {source}")]
    JsonLine {
        line: usize,
        source: serde_json::Error,
    },
    #[error("line {0}: not a JSON object")]
    NotAnObject(usize),
    #[error("no column `{column}`; the columns are {columns}")]
    NoColumn { column: String, columns: String },
    #[error("no column `{0}` here")]
    NotInSchema(String),
    #[error("row {row}: {}", said(.source))]
    Row { row: usize, source: ArrowError },
    #[error("{}", said(.0))]
    Arrow(#[source] ArrowError),
    #[error(transparent)]
    Table(deltalake::datafusion::error::DataFusionError),
}

/// Arrow's message without the kind it starts with ("Json error: "): the sentence after
/// it is the news. Read from the variant, not the text.
fn said(e: &ArrowError) -> String {
    match e {
        ArrowError::JsonError(m) | ArrowError::ParseError(m) | ArrowError::CastError(m) => {
            m.clone()
        }
        other => other.to_string(),
    }
}

/// A test that cannot run, or whose file cannot be updated.
#[derive(Debug, thiserror::Error)]
pub enum JobTestError {
    #[error("job `{0}` is not loaded")]
    JobNotLoaded(String),
    #[error("no migration creates table `{table}`, which job `{job}` writes")]
    NoTable { table: String, job: String },
    #[error("input `{input}`: no migration creates table `{table}`")]
    NoInputTable { input: String, table: String },
    #[error("input `{input}` declares no `schema`: give it a `file` in its format")]
    NoInputSchema { input: String },
    #[error("input `{input}`: {source}")]
    Input { input: String, source: FixtureError },
    #[error("expected rows: {0}")]
    Expected(#[source] FixtureError),
    #[error("the table's rows before the run: {0}")]
    Table(#[source] FixtureError),
    #[error("the output has no column `{0}`")]
    NoOutputColumn(String),
    #[error("the data-quality audit could not run: {0}")]
    Audit(#[source] crate::quality::QualityError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    BadRows(#[from] crate::engine::BadRowError),
    #[error("{}", said(.0))]
    Arrow(#[from] ArrowError),
    #[error("test `{test}` is no longer in {file}")]
    Gone { test: String, file: String },
    #[error("{}: {what} is not a table", .path.display())]
    NotATable { path: PathBuf, what: String },
    #[error("cannot read {}: {source}", .path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Toml {
        path: PathBuf,
        source: toml_edit::TomlError,
    },
    #[error("cannot write {}: {source}", .path.display())]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write rows as CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error(
        "no tests of job `{0}`: write them in jobs/tests/{0}.toml, or create one with `sluice test --create {0} --partition P`"
    )]
    NoTests(String),
    #[error("the new test does not load: {0}")]
    DoesNotLoad(String),
    #[error("{} already has a test `{name}`", .path.display())]
    NameTaken { path: PathBuf, name: String },
}

/// A test in a test file that cannot be run as written.
#[derive(Debug, thiserror::Error)]
pub enum TestSpecError {
    #[error("partition `{text}`: {source}")]
    Partition {
        text: String,
        source: crate::partition::PartitionParseError,
    },
    #[error("job `{job}` has no input `{input}`; its inputs are {inputs}")]
    NoInput {
        job: String,
        input: String,
        inputs: String,
    },
    #[error("input `{input}`: {source}")]
    Input { input: String, source: RowsError },
    #[error("expect: {0}")]
    Expect(#[source] RowsError),
    #[error("table: {0}")]
    Table(#[source] RowsError),
    #[error(
        "table: job `{0}` replaces its partitions, so its run does not depend on the rows its table held: `table` is for jobs whose output is merged (write = \"merge\" or \"scd2\")"
    )]
    TableOfReplace(String),
    #[error(
        "table: each row of table `{table}` needs a value of `{column}`, by which a merge finds and orders the rows"
    )]
    TableNeeds { table: String, column: String },
    #[error("expect.tolerance {0}: give a difference of 0 or more")]
    Tolerance(f64),
    #[error("expect: table `{table}` has no column `{column}`")]
    NoColumn { table: String, column: String },
    #[error("expect.failing_checks: job `{job}` has no check `{check}`; its checks are {checks}")]
    NoCheck {
        job: String,
        check: String,
        checks: String,
    },
}

/// Rows of a test (an input's, or the expected ones) given in a way that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    #[error("no file {} (a `file` is read from the test file's folder)", .0.display())]
    NoFile(PathBuf),
    #[error("give exactly one of `rows`, `csv` and `file`")]
    NotExactlyOne,
    #[error("the input declares no `schema`, so rows cannot be typed: give a `file` in its format")]
    NoSchema,
    #[error(
        "rows of table `{table}` need its partition column `{column}`: a run reads only the partitions it covers"
    )]
    NoPartitionColumn { table: String, column: String },
    #[error(transparent)]
    Fixture(#[from] FixtureError),
}
