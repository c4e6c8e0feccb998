//! `sluice plan [--env NAME] [--from D --to D]`: the jobs of the checkout that differ from
//! what the environment's tables were built by, the jobs downstream of them, and the
//! partitions each would need built. Reads the catalog only.

use super::context::Context;
use super::{EXIT_OK, Globals, Outcome, output};
use crate::app::env_plan::{self, Change};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    range: Range,
}

/// The partitions to build, for `plan` and `apply`.
#[derive(Debug, clap::Args)]
pub(super) struct Range {
    /// The first partition of the range to build (with --to); default: the partitions
    /// the versions to replace hold.
    #[arg(long, requires = "to", value_name = "PARTITION")]
    from: Option<String>,
    /// The last partition of the range (included).
    #[arg(long, requires = "from", value_name = "PARTITION")]
    to: Option<String>,
}

impl Range {
    pub(super) fn given(&self) -> Option<(&str, &str)> {
        self.from.as_deref().zip(self.to.as_deref())
    }
}

pub async fn run(g: &Globals, a: Args) -> Outcome {
    let cx = Context::open(&g.overrides).await?;
    let range = a.range.given();
    let plan = env_plan::plan(&cx.project, &cx.catalog, range).await?;
    cx.close().await;
    if g.output == output::Format::Json {
        println!("{}", output::json(&plan));
        return Ok(EXIT_OK);
    }
    let count = |c: Change| plan.build.iter().filter(|j| j.change == c).count();
    let partitions: usize = plan.build.iter().map(|j| j.partitions.len()).sum();
    println!(
        "plan for {}: {} job(s) changed, {} new, {} affected downstream; {partitions} partition(s) to build",
        match plan.env.as_str() {
            crate::catalog::PROD => "production".to_string(),
            env => format!("environment {env}"),
        },
        count(Change::Changed),
        count(Change::New),
        count(Change::Affected),
    );
    for j in &plan.build {
        let keys = match (j.partitions.first(), j.partitions.last()) {
            (Some(first), Some(last)) if first != last => {
                format!("{} partition(s), {first} .. {last}", j.partitions.len())
            }
            (Some(one), _) => format!("1 partition, {one}"),
            _ if range.is_some() => "no partition in the range".to_string(),
            _ => "no partition known: give --from and --to".to_string(),
        };
        let replaces = j
            .replaces
            .map(|v| format!(" (replaces {} v{v})", j.table))
            .unwrap_or_default();
        let kind = match j.breaking {
            Some(false) => " (non-breaking: it only adds columns)",
            Some(true) if j.change == Change::Changed => " (breaking)",
            _ => "",
        };
        let change = j.change.as_str();
        println!(
            "  {change:<8} {}{replaces}: {}{kind}; {keys}",
            j.job, j.because
        );
    }
    for n in &plan.not_rebuilt {
        println!("not rebuilt: {} ({})", n.job, n.because);
    }
    if !plan.unchanged.is_empty() {
        println!("unchanged, read as they are: {}", plan.unchanged.join(", "));
    }
    Ok(EXIT_OK)
}
