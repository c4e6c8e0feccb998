//! `sluice validate`: prints what [`crate::validate`] finds.

use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};
use crate::validate::{Validation, validate};

pub async fn run(g: &Globals) -> Outcome {
    let project = super::context::Context::load_project(&g.overrides)?;
    let engine = super::context::Context::engine_of(&project)?;
    let Validation {
        problems,
        unchecked,
    } = validate(&project, &engine).await?;
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
