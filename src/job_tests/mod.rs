//! `sluice test`: a job's logic pinned by rows. A test file, `jobs/tests/<job>.toml`,
//! holds tests of one job: each names a partition, gives rows for the job's inputs (file
//! inputs and upstream tables) and says what the output must be. A test runs the run's own
//! path (`engine::output`: parameters, conform, partition column, record ids; the bad-row
//! policy; the checks) in-process, with no catalog, warehouse or Delta table, and writes
//! nothing (`execute`). `compare` diffs rows, `junit` reports, `write_back` serves
//! `--update` and `--create`.

pub mod compare;
pub mod error;
pub mod execute;
pub mod fixture;
pub mod junit;
mod spec;
pub mod suite;
pub mod write_back;

use crate::engine::columns_schema;
use crate::job::{InputSource, Job, SpecError, WriteMode};
use crate::names::Name;
use crate::partition::PartitionKey;
use crate::project::Project;
use deltalake::arrow::datatypes::SchemaRef;
use error::{RowsError, TestSpecError};
use fixture::Source;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use spec::DeadLetterSpec;

/// One test file: the tests of one job.
#[derive(Debug, Clone)]
pub struct TestFile {
    pub path: PathBuf,
    /// The path as shown: relative to the project root.
    pub shown: String,
    pub job: Name,
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Clone)]
pub struct TestCase {
    pub name: String,
    /// Its place among the file's `[[test]]` tables (for `--update`).
    pub index: usize,
    pub partition: PartitionKey,
    /// Rows per input; an input not named is empty.
    pub inputs: BTreeMap<Name, Source>,
    /// The rows the table holds before the run (a merging job's tests only).
    pub table: Option<Source>,
    pub expect: Expect,
}

/// What a test expects.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub rows: Option<Source>,
    pub columns: Option<Vec<String>>,
    pub ordered: Option<bool>,
    pub tolerance: Option<f64>,
    pub dead_letters: Vec<DeadLetterSpec>,
    pub failing_checks: Vec<String>,
    pub error: Option<String>,
}

/// Where a project's test files are.
pub fn tests_dir(project: &Project) -> PathBuf {
    project.settings.jobs_dir().join("tests")
}

/// Every test file of the project, each checked against its job; the problems, with
/// their file. A test with a problem is left out; the file's other tests stay.
pub fn load(project: &Project) -> (Vec<TestFile>, Vec<SpecError>) {
    let dir = tests_dir(project);
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let shown = path
            .strip_prefix(&project.settings.root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let (file, messages) = match load_file(project, &path) {
            Ok(loaded) => loaded,
            Err(messages) => (None, messages),
        };
        files.extend(file.map(|f| TestFile {
            shown: shown.clone(),
            ..f
        }));
        problems.extend(messages.into_iter().map(|message| SpecError {
            file: shown.clone(),
            message,
        }));
    }
    (files, problems)
}

/// The file's valid tests (`None` when it has none) and its problems.
type Loaded = (Option<TestFile>, Vec<String>);

fn load_file(project: &Project, path: &Path) -> Result<Loaded, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("cannot read: {e}")])?;
    let spec: spec::FileSpec =
        toml::from_str(&text).map_err(|e| vec![e.to_string().trim_end().to_string()])?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let job_name = spec.job.clone().unwrap_or(stem);
    let Some(job) = project.jobs.get(job_name.as_str()) else {
        let why = if project.problems.iter().any(|p| p.file.contains(&job_name)) {
            "has problems (see above)"
        } else {
            "is not a job of this project (name it with `job = \"...\"`)"
        };
        return Err(vec![format!("job `{job_name}` {why}")]);
    };
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let mut tests: Vec<TestCase> = Vec::new();
    for (index, t) in spec.tests.into_iter().enumerate() {
        let name = t.name.clone();
        if tests.iter().any(|x| x.name == name) {
            problems.push(format!("test `{name}`: a second test of that name"));
            continue;
        }
        match check_test(project, job, folder, index, t) {
            Ok(tc) => tests.push(tc),
            Err(e) => problems.push(format!("test `{name}`: {e}")),
        }
    }
    if tests.is_empty() && problems.is_empty() {
        problems.push("no tests: add a `[[test]]` table".into());
    }
    let file = (!tests.is_empty()).then(|| TestFile {
        path: path.to_path_buf(),
        shown: String::new(),
        job: job.name.clone(),
        tests,
    });
    Ok((file, problems))
}

fn check_test(
    project: &Project,
    job: &Job,
    folder: &Path,
    index: usize,
    t: spec::TestSpec,
) -> Result<TestCase, TestSpecError> {
    let partition =
        job.parse_partition(&t.partition)
            .map_err(|source| TestSpecError::Partition {
                text: t.partition.clone(),
                source,
            })?;
    let mut inputs = BTreeMap::new();
    for (name, rows) in t.inputs {
        let Some(input) = job.inputs.iter().find(|i| i.name.as_str() == name) else {
            return Err(TestSpecError::NoInput {
                job: job.name.to_string(),
                input: name,
                inputs: job
                    .inputs
                    .iter()
                    .map(|i| format!("`{}`", i.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let of_input = |source| TestSpecError::Input {
            input: name.clone(),
            source,
        };
        let source = source_of(&rows, folder).map_err(of_input)?;
        check_input_columns(project, input, &source).map_err(of_input)?;
        inputs.insert(input.name.clone(), source);
    }
    let before = match &t.table {
        Some(r) => Some(table_before(project, job, folder, r)?),
        None => None,
    };
    let e = t.expect;
    let rows = match e.rows_spec() {
        Some(r) => Some(source_of(&r, folder).map_err(TestSpecError::Expect)?),
        None => None,
    };
    let expect = Expect {
        rows,
        columns: e.columns,
        ordered: e.ordered,
        tolerance: e.tolerance,
        dead_letters: e.dead_letters,
        failing_checks: e.failing_checks,
        error: e.error,
    };
    if let Some(tol) = expect.tolerance
        && !(tol >= 0.0 && tol.is_finite())
    {
        return Err(TestSpecError::Tolerance(tol));
    }
    if let Some(table) = project.declared.get(&job.table) {
        let target = table.to_arrow();
        let mut named = expect.columns.clone().unwrap_or_default();
        if let Some(r) = &expect.rows {
            named.extend(r.columns().map_err(|e| TestSpecError::Expect(e.into()))?);
        }
        for c in named {
            if target.field_with_name(&c).is_err() {
                return Err(TestSpecError::NoColumn {
                    table: job.table.to_string(),
                    column: c,
                });
            }
        }
    }
    for check in &expect.failing_checks {
        if !job.checks.iter().any(|c| &c.name == check) {
            return Err(TestSpecError::NoCheck {
                job: job.name.to_string(),
                check: check.clone(),
                checks: job
                    .checks
                    .iter()
                    .map(|c| format!("`{}`", c.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(TestCase {
        name: t.name,
        index,
        partition,
        inputs,
        table: before,
        expect,
    })
}

/// A test's `table`: rows of the job's table, naming what a merge needs of each (the key
/// and the sequence; for scd2 the key and `valid_from`). Only a job that merges reads its
/// table: a replaced partition is the same whatever the table held.
fn table_before(
    project: &Project,
    job: &Job,
    folder: &Path,
    r: &spec::RowsSpec,
) -> Result<Source, TestSpecError> {
    let needed: Vec<&Name> = match &job.write {
        WriteMode::Replace => {
            return Err(TestSpecError::TableOfReplace(job.name.to_string()));
        }
        WriteMode::Merge(rule) => rule.key.iter().chain([&rule.sequence_by]).collect(),
        WriteMode::Scd2(rule) => rule.changes.key.iter().chain([&rule.valid_from]).collect(),
    };
    let source = source_of(r, folder).map_err(TestSpecError::Table)?;
    let Some(t) = project.declared.get(&job.table) else {
        return Ok(source);
    };
    let columns =
        fixture::columns_in(&source, &t.to_arrow()).map_err(|e| TestSpecError::Table(e.into()))?;
    let empty = matches!(&source, Source::Rows(rows) if rows.is_empty());
    if let Some(missing) = needed
        .into_iter()
        .find(|n| !columns.iter().any(|c| c == n.as_str()))
        && !empty
    {
        return Err(TestSpecError::TableNeeds {
            table: job.table.to_string(),
            column: missing.to_string(),
        });
    }
    Ok(source)
}

/// Exactly one of `rows`, `csv` and `file`; a file relative to the test file's folder.
fn source_of(r: &spec::RowsSpec, folder: &Path) -> Result<Source, RowsError> {
    match (&r.rows, &r.csv, &r.file) {
        (Some(rows), None, None) => Ok(Source::Rows(rows.clone())),
        (None, Some(csv), None) => Ok(Source::Csv(csv.clone())),
        (None, None, Some(file)) => {
            let p = folder.join(file);
            if !p.is_file() {
                return Err(RowsError::NoFile(p));
            }
            Ok(Source::File(p))
        }
        _ => Err(RowsError::NotExactlyOne),
    }
}

/// The schema an input's rows are typed by: a file input's declared schema, an upstream
/// table's declared schema. `None`: a file input without a declared schema.
pub fn input_schema(project: &Project, input: &crate::job::Input) -> Option<SchemaRef> {
    match &input.source {
        InputSource::Files { schema, .. } => schema.as_ref().map(|c| columns_schema(c)),
        InputSource::Table { table, .. } => project.declared.get(table).map(|t| t.to_arrow()),
        InputSource::Command(c) => Some(columns_schema(&c.schema)),
        InputSource::Database(db) => Some(columns_schema(&db.schema)),
    }
}

fn check_input_columns(
    project: &Project,
    input: &crate::job::Input,
    source: &Source,
) -> Result<(), RowsError> {
    // A file input's fixture file is read as the input's own files are: its columns are
    // the format's business.
    if matches!(
        (&input.source, source),
        (
            InputSource::Files { .. } | InputSource::Command(_) | InputSource::Database(_),
            Source::File(_)
        )
    ) {
        return Ok(());
    }
    let Some(schema) = input_schema(project, input) else {
        return Err(RowsError::NoSchema);
    };
    let columns = fixture::columns_in(source, &schema)?;
    if let InputSource::Table { table, .. } = &input.source
        && let Some(t) = project.declared.get(table)
        && let Some(part) = t
            .partition_by
            .iter()
            .find(|p| !columns.iter().any(|c| c == p.as_str()))
        && !matches!(source, Source::Rows(r) if r.is_empty())
    {
        return Err(RowsError::NoPartitionColumn {
            table: table.to_string(),
            column: part.to_string(),
        });
    }
    Ok(())
}
