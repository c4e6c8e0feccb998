//! `sluice apply --env NAME [--from D --to D]`: builds what `plan --env NAME` shows, in
//! that environment's own tables (`app::env_apply`), as a backfill of exactly those
//! partitions, and says which version each table now points at there.

use super::backfill_cmd::{Reporter, print_summary};
use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, Globals, Outcome, output};
use crate::app::env_apply;
use crate::backfill::{self, Options, Summary};
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    range: super::plan_cmd::Range,
    /// Partitions run at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
}

pub async fn run(g: &Globals, a: Args) -> Outcome {
    if g.overrides
        .env
        .as_deref()
        .is_none_or(|e| e == crate::catalog::PROD)
    {
        return Err(env_apply::EnvApplyError::Production.into());
    }
    let cx = Context::open_env_for_writing(&g.overrides).await?;
    let range = a.range.given();
    let prepared = env_apply::prepare(&cx.project, &cx.catalog, range, cx.clock.now_ms()).await?;
    let env = prepared.plan.env.clone();
    if !prepared.empty.is_empty() && g.output != output::Format::Json {
        println!(
            "{env}: no partition known to build for {}: give --from and --to",
            prepared.empty.join(", ")
        );
    }
    let Some(request) = &prepared.request else {
        cx.close().await;
        if g.output == output::Format::Json {
            println!(
                "{}",
                output::json(&Applied {
                    env: &env,
                    built: &prepared.built,
                    empty: &prepared.empty,
                    summary: None
                })
            );
        } else {
            println!("apply {env}: nothing to build; every table is read as it is");
        }
        return Ok(EXIT_OK);
    };
    let mut cx = cx.with_project(prepared.project);
    let plan = backfill::plan(&cx.project, &cx.catalog, request).await?;
    cx.lineage_parent("sluice.apply");
    let runner = Arc::new(cx.runner()?.with_compute_limit(usize::from(a.concurrency)));
    let summary = backfill::execute(
        &plan,
        runner,
        &cx.catalog,
        &cx.clock,
        &Options {
            concurrency: usize::from(a.concurrency),
            fail_fast: false,
        },
        &Reporter { bar: None },
    )
    .await;
    cx.lineage_parent_end(
        (!summary.ok()).then(|| format!("{} partition(s) failed", summary.failed)),
    );
    cx.close().await;
    if g.output == output::Format::Json {
        let applied = Applied {
            env: &env,
            built: &prepared.built,
            empty: &prepared.empty,
            summary: Some(&summary),
        };
        println!("{}", output::json(&applied));
    } else {
        for b in &prepared.built {
            let replaces = b
                .replaces
                .map(|v| format!(" (was v{v})"))
                .unwrap_or_default();
            println!("{env}: {} -> {} v{}{replaces}", b.job, b.table, b.version);
        }
        print_summary(&plan, &summary, &[]);
    }
    Ok(if summary.ok() { EXIT_OK } else { EXIT_FAILED })
}

/// `apply --output json`: the versions built and the backfill's summary.
#[derive(serde::Serialize)]
struct Applied<'a> {
    env: &'a str,
    built: &'a [env_apply::Built],
    /// The jobs of the plan with no partition known to build.
    empty: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a Summary>,
}
