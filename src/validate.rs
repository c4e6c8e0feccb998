//! `validate`: every spec, cron, dependency and migration, each job's SQL planned
//! against the declared schemas and fitted to its table, and the jobs' test files. Reads no data and needs no
//! catalog; `migrate` asks it too before a destructive change.

use crate::engine::conform::Conformer;
use crate::engine::{Engine, EngineError};
use crate::job::SpecError;
use crate::project::Project;

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Validation plans for a representative partition; any will do for a type check.
fn partition_of(
    table: &crate::schema::TableSchema,
    job: &crate::job::Job,
) -> Vec<crate::engine::conform::PartitionColumn> {
    let key = job.representative_partition();
    job.partition_values(table, &key)
        .into_iter()
        .map(|v| (v.column, v.value, key.to_string()))
        .collect()
}

/// What `validate` found.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    /// Everything wrong, one entry per problem, with its file.
    pub problems: Vec<SpecError>,
    /// Jobs whose SQL could not be checked (an input without a declared schema).
    pub unchecked: Vec<String>,
}

/// Everything wrong with the project: [`validate_jobs`], and the jobs' test files (each
/// names jobs, inputs and columns that must exist).
pub async fn validate(project: &Project, engine: &Engine) -> Result<Validation, EngineError> {
    let mut v = validate_jobs(project, engine).await?;
    v.problems.extend(crate::job_tests::load(project).1);
    Ok(v)
}

/// What keeps the jobs from running: the project's load problems, and each job's SQL
/// planned against the declared schemas (applied or not) and fitted to its table. The
/// gate of a destructive migration: tests that name a removed column do not hold back a
/// deploy (`validate` reports them).
pub async fn validate_jobs(project: &Project, engine: &Engine) -> Result<Validation, EngineError> {
    let mut problems = project.problems.clone();
    let mut unchecked = Vec::new();
    for name in &project.graph.order {
        let Some(job) = project.jobs.get(name) else {
            continue;
        };
        let Some(table) = project.declared.get(&job.table) else {
            continue;
        };
        // A merge's delete condition, over the columns its changes have (the table's).
        if let Err(e) = crate::merge::check_delete_when(&job.write, table) {
            problems.push(SpecError {
                file: job.spec_file(&project.settings.root),
                message: e.to_string(),
            });
        }
        // A database input's query: its parameters, quotes and comments.
        for (i, input) in job.inputs.iter().enumerate() {
            if let crate::job::InputSource::Database(db) = &input.source
                && let Err(why) = crate::database_input::bound(db)
            {
                problems.push(SpecError {
                    file: job.spec_file(&project.settings.root),
                    message: format!("field `inputs[{i}].query`: {why}"),
                });
            }
        }
        match engine.plan_against_schemas(job, &project.declared).await {
            Ok(Some(out)) => {
                let out = match &job.record_id {
                    Some(c) => crate::engine::record_id::schema_with(&out, c),
                    None => out,
                };
                if let Err(e) = Conformer::new(table, &out, partition_of(table, job), |_| {
                    "remove it from the SELECT, or add the column to the table with a migration"
                        .into()
                }) {
                    problems.push(SpecError {
                        file: format!("jobs/{}", file_name(&job.sql_path)),
                        message: e.to_string(),
                    });
                }
            }
            Ok(None) => unchecked.push(job.name.to_string()),
            Err(EngineError::Sql { file, message }) => problems.push(SpecError { file, message }),
            Err(e) => problems.push(SpecError {
                file: job.spec_file(&project.settings.root),
                message: e.to_string(),
            }),
        }
    }
    Ok(Validation {
        problems,
        unchecked,
    })
}
