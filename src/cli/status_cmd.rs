//! `sluice status [JOB]`: each partition's state, rows, run id, duration, code fingerprint.

use super::{EXIT_OK, Globals, Outcome, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this job.
    job: Option<String>,
}

pub async fn run(g: &Globals, args: Args) -> Outcome {
    let job = args.job.as_deref();
    let cx = super::context::Context::open(&g.overrides).await?;
    let project = &cx.project;
    if let Some(j) = job
        && !project.jobs.contains_key(j)
        && !project
            .settings
            .jobs_dir()
            .join(format!("{j}.toml"))
            .exists()
    {
        anyhow::bail!("no job `{j}` in {}", project.settings.jobs_dir().display());
    }
    let catalog = &cx.catalog;
    let views = crate::app::status::partitions(project, catalog, job).await?;
    // A partition of a key the spec no longer declares keeps its data and its row here;
    // it is marked, and nothing runs it (`None`: the job's spec is not loaded).
    let declared = |r: &crate::catalog::PartitionStatus| {
        let j = project.jobs.get(r.job.as_str())?;
        Some(
            j.parse_partition(&r.partition_key)
                .is_ok_and(|p| j.declares(&p)),
        )
    };
    if g.output == output::Format::Json {
        let v: Vec<_> = views
            .iter()
            .map(|v| json_of(v, declared(&v.status)))
            .collect();
        println!("{}", output::json(&v));
        return Ok(EXIT_OK);
    }
    if views.is_empty() {
        println!("no partitions have run yet");
        return Ok(EXIT_OK);
    }
    let text: Vec<Vec<String>> = views
        .iter()
        .map(|view| {
            let r = &view.status;
            let note = match &view.stale {
                Some(why) => why.to_string(),
                None => r.error.clone().unwrap_or_default(),
            };
            vec![
                r.job.clone(),
                format!("v{}", r.table_version),
                r.partition_key.clone(),
                match (declared(r), &view.stale) {
                    (Some(false), _) => format!("{} (key no longer declared)", r.state),
                    (_, Some(why)) => format!("stale ({})", why.kind),
                    _ => r.state.to_string(),
                },
                output::opt(&r.content_rows),
                r.last_run_id.clone(),
                output::duration(r.started_at, r.finished_at),
                output::opt(&r.content_fingerprint),
                output::time(r.started_at),
                output::time(r.finished_at),
                one_line(&note, 100),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "job",
                "version",
                "partition",
                "state",
                "rows",
                "run id",
                "duration",
                "fingerprint",
                "started (UTC)",
                "finished (UTC)",
                "error or why stale"
            ],
            &text
        )
    );
    Ok(EXIT_OK)
}

/// One partition as `status --output json` shows it.
fn json_of(view: &crate::app::status::PartitionView, declared: Option<bool>) -> serde_json::Value {
    let r = &view.status;
    serde_json::json!({
        "job": r.job, "table": r.table_name, "table_version": r.table_version,
        "partition": r.partition_key, "state": view.state(),
        "stale_because": view.stale, "read": view.reads,
        "rows": r.content_rows,
        "run_id": r.last_run_id, "content_run_id": r.content_run_id,
        "fingerprint": r.content_fingerprint, "delta_version": r.content_delta_version,
        "data_version": r.content_version,
        "attempt": r.attempt,
        "started_at": r.started_at.map(crate::clock::rfc3339),
        "finished_at": r.finished_at.map(crate::clock::rfc3339),
        "duration_ms": match (r.started_at, r.finished_at) { (Some(s), Some(e)) => Some(e - s), _ => None },
        "error": r.error,
        "declared": declared,
    })
}

fn one_line(s: &str, max: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() > max {
        format!("{}...", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}
