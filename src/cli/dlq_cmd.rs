//! `sluice dlq list JOB` and `sluice dlq replay JOB --partition P`: the input rows a job
//! could not use, and a run of the partition again once the source or the job is fixed.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};
use crate::run::{RunOutcome, Trigger};

async fn dlq_list(g: &Globals, job: &str, partition: Option<&str>) -> Outcome {
    // Through the catalog: after an `env promote` (or with --env), a job's letters are
    // those of the version it writes.
    let cx = Context::open(&g.overrides).await?;
    let project = cx.project.clone();
    cx.close().await;
    let job = match super::run_cmd::job_named(&project, job) {
        Ok(j) => j,
        Err(code) => return Ok(code),
    };
    let url = crate::dead_letters::table_url(&project.settings.warehouse, &job.name, job.version);
    let letters = crate::dead_letters::list(&url, partition).await?;
    if g.output == output::Format::Json {
        println!("{}", output::json(&letters));
        return Ok(EXIT_OK);
    }
    if letters.is_empty() {
        println!(
            "no dead letters for {}{}",
            job.name,
            partition.map(|p| format!(" {p}")).unwrap_or_default()
        );
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|l| {
            vec![
                l.partition.clone(),
                format!("{}:{}", l.file, l.line),
                l.error.clone(),
                l.raw.trim_end().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["partition", "file:line", "error", "record"], &rows)
    );
    println!("{} dead letter(s)", letters.len());
    Ok(EXIT_OK)
}

async fn dlq_replay(g: &Globals, job_name: &str, partition: &str) -> Outcome {
    let cx = Context::open_for_writing(&g.overrides).await?;
    let runner = cx.runner()?;
    let project = cx.project.clone();
    let (job, key) = match super::run_cmd::job_and_partition(&project, job_name, partition) {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let url = crate::dead_letters::table_url(&project.settings.warehouse, &job.name, job.version);
    let before = crate::dead_letters::list(&url, Some(partition))
        .await?
        .len();
    let report = runner
        .run(crate::run::RunRequest::new(&job, key, Trigger::Run))
        .await;
    cx.close().await;
    let after = crate::dead_letters::list(&url, Some(partition))
        .await?
        .len();
    if g.output == output::Format::Json {
        println!(
            "{}",
            output::json(
                &serde_json::json!({"run": report, "dead_letters_before": before, "dead_letters_after": after})
            )
        );
    } else {
        match report.state {
            RunOutcome::Succeeded => println!(
                "{} {}: {} rows; dead letters {before} -> {after}",
                job.name,
                partition,
                output::opt(&report.rows)
            ),
            _ => println!(
                "{} {}: {}; dead letters {before} -> {after}",
                job.name,
                partition,
                report.error.as_deref().unwrap_or("not run")
            ),
        }
    }
    Ok(if report.state == RunOutcome::Succeeded {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqSub {
    /// A job's dead letters: partition, file, line, error and the raw record.
    List {
        /// The job whose input rows they are.
        job: String,
        /// Only this partition's.
        #[arg(long, short)]
        partition: Option<String>,
    },
    /// Run the partition again (after fixing the source or the job); dead letters that no
    /// longer fail are cleared.
    Replay {
        /// The job to run again.
        job: String,
        /// The partition to run again.
        #[arg(long, short)]
        partition: String,
    },
}

pub async fn dlq(g: &Globals, sub: DlqSub) -> Outcome {
    match sub {
        DlqSub::List { job, partition } => dlq_list(g, &job, partition.as_deref()).await,
        DlqSub::Replay { job, partition } => dlq_replay(g, &job, &partition).await,
    }
}
