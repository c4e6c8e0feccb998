//! `sluice validate`: every spec, cron, dependency and migration, and each job's SQL planned
//! against the declared schemas. Reads no data and needs no catalog.

use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};
use crate::engine::Engine;
use crate::engine::conform::Conformer;
use crate::job::SpecError;
use crate::project::Project;

pub async fn run(g: &Globals) -> Outcome {
    let project = Project::load(&g.overrides)?;
    let (problems, unchecked) = check(&project).await?;
    let ok = problems.is_empty();
    if g.output == output::Format::Json {
        println!(
            "{}",
            output::json(&serde_json::json!({
                "ok": ok,
                "jobs": project.jobs.keys().collect::<Vec<_>>(),
                "migrations": project.migrations.iter().map(|m| &m.name).collect::<Vec<_>>(),
                "sql_not_checked": unchecked,
                "problems": problems.iter().map(|p| serde_json::json!({"file": p.file, "message": p.message})).collect::<Vec<_>>(),
            }))
        );
    } else {
        for p in &problems {
            println!("{p}");
        }
        for j in &unchecked {
            println!("note: SQL of job `{j}` not checked: an input has no declared schema");
        }
        if ok {
            println!(
                "ok: {} job(s), {} migration(s)",
                project.jobs.len(),
                project.migrations.len()
            );
        } else {
            println!("{} problem(s)", problems.len());
        }
    }
    Ok(if ok { EXIT_OK } else { EXIT_FAILED })
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Validation plans for a representative partition; any will do for a type check.
fn partition_of(
    table: &crate::schema::TableSchema,
    job: &crate::job::Job,
) -> Option<(String, deltalake::datafusion::scalar::ScalarValue, String)> {
    let col = table.partition_column()?;
    let key = job
        .start
        .unwrap_or_else(|| job.granularity.key_at(chrono::Utc::now().naive_utc()));
    let v = crate::engine::conform::partition_value(col.ty, &key, job.partition_time_zone)?;
    Some((col.name.to_string(), v, key.to_string()))
}

/// Everything wrong with the project: its load problems, and each job's SQL planned against
/// the declared schemas (applied or not) and fitted to its table. Also the jobs whose SQL
/// could not be checked (an input without a declared schema).
pub async fn check(project: &Project) -> anyhow::Result<(Vec<SpecError>, Vec<String>)> {
    let mut problems = project.problems.clone();
    let engine = Engine::new(&project.settings.engine, &project.settings.root)?;
    let mut unchecked = Vec::new();
    for name in &project.graph.order {
        let Some(job) = project.jobs.get(name) else {
            continue;
        };
        let Some(table) = project.declared.get(&job.table) else {
            continue;
        };
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
            Err(crate::engine::EngineError::Sql { file, message }) => {
                problems.push(SpecError { file, message })
            }
            Err(e) => problems.push(SpecError {
                file: job.spec_file(&project.settings.root),
                message: e.to_string(),
            }),
        }
    }
    Ok((problems, unchecked))
}
