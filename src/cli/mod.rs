//! The command line. Only this module knows clap: it turns arguments into settings and
//! calls the library, then prints the result and picks the exit code.
//!
//! Exit codes (also in README):
//! - 0: done;
//! - 1: the command ran and something failed (a partition, a check, validation);
//! - 2: the command could not run (bad arguments, bad configuration, catalog unreachable);
//! - 3: nothing was done because another worker holds the partition's lease.

mod apply_cmd;
mod backfill_cmd;
mod ballista_cmd;
mod completions_cmd;
pub mod context;
mod daemon_cmd;
mod diff_cmd;
mod dlq_cmd;
mod env_cmd;
mod gc_cmd;
mod init_cmd;
mod migrate_cmd;
mod notify_cmd;
pub mod output;
mod plan_cmd;
mod profile_cmd;
mod promote_cmd;
mod query_cmd;
mod run_cmd;
mod status_cmd;
mod status_json;
mod status_partition;
mod stdout_thread;
mod tables_cmd;
mod test_cmd;
mod ui_cmd;
mod validate_cmd;

use crate::config::Overrides;
use crate::logging::{self, LogFormat};
use clap::{Parser, Subcommand};
use output::Format;
use std::path::PathBuf;
use std::process::ExitCode;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_UNUSABLE: u8 = 2;
pub const EXIT_HELD: u8 = 3;

/// The heading the flags every command takes are listed under, apart from each command's own.
const GLOBAL: &str = "Global options";

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Partitioned, idempotent batch jobs: SQL over Arrow into versioned Delta Lake tables"
)]
struct Cli {
    /// The project folder (holding sluice.toml, jobs/, migrations/).
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    project: Option<PathBuf>,
    /// Catalog URL (sqlite://PATH or postgres://...); overrides SLUICE_CATALOG and sluice.toml.
    #[arg(long, global = true, value_name = "URL", help_heading = GLOBAL)]
    catalog: Option<String>,
    /// Warehouse folder or URL; overrides SLUICE_WAREHOUSE and sluice.toml.
    #[arg(long, global = true, value_name = "URL", help_heading = GLOBAL)]
    warehouse: Option<String>,
    /// The environment whose tables reading commands see (`sluice env create`);
    /// production's when not given.
    #[arg(long, global = true, value_name = "NAME", help_heading = GLOBAL)]
    env: Option<String>,
    /// Result format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text, help_heading = GLOBAL)]
    output: Format,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text, env = "SLUICE_LOG_FORMAT", help_heading = GLOBAL)]
    log_format: LogFormatArg,
    /// More log detail (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    verbose: u8,
    /// Warnings and errors only.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`: the command line's side of [`LogFormat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> LogFormat {
        match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every job spec, cron, dependency and migration (reads no data).
    Validate,
    /// Run one partition of one job now.
    Run(run_cmd::Args),
    /// Apply pending migrations from migrations/ (the only command that changes schemas).
    Migrate(migrate_cmd::Args),
    /// Run the partitions of a range: missing and failed ones by default. `--to` is
    /// included. Upstream partitions run before the partitions that read them.
    Backfill(backfill_cmd::Args),
    /// Run every scheduled job's partitions as their cron ticks come, until SIGTERM/SIGINT.
    /// SIGHUP re-reads the project (it is also re-read whenever its files change).
    Daemon(daemon_cmd::Args),
    /// Run SQL over the tables' aliases (DataFusion).
    Query(query_cmd::Args),
    /// Tables, their physical versions, which one the alias points at, coverage and rows.
    Tables,
    /// A table's profile history, partition by partition: rows, and per column null
    /// fraction, distinct estimate, min, max and mean, with a sparkline per metric.
    Profile(profile_cmd::ProfileArgs),
    /// The processes of a Ballista cluster, for jobs of `[engine] kind = "ballista"`.
    #[command(subcommand)]
    Ballista(ballista_cmd::BallistaSub),
    /// Dead letters: the input rows a job could not use.
    #[command(subcommand)]
    Dlq(dlq_cmd::DlqSub),
    /// The physical location of a table's live version (or --version N), for other readers.
    Resolve(tables_cmd::ResolveArgs),
    /// Environments: named sets of aliases beside production's, made by copying pointers
    /// (no data); reading commands see one with --env NAME.
    #[command(subcommand)]
    Env(env_cmd::EnvSub),
    /// What building the checkout's jobs in an environment (--env NAME; production
    /// without) would take: the jobs whose code differs from what wrote its tables, the
    /// jobs downstream of them, and the partitions each needs. Reads the catalog only.
    Plan(plan_cmd::Args),
    /// Build what `plan --env NAME` shows in that environment: each changed or affected
    /// job into a physical table of the environment's own, reading every other table
    /// through its aliases (production's tables). Production is never written.
    Apply(apply_cmd::Args),
    /// Every alias flip of a table: from, to, when, by whom, why.
    History(tables_cmd::HistoryArgs),
    /// Point tables' aliases at another version, all at once or not at all. Refused unless
    /// the new version has every partition the live one has, none failed (or --partial).
    Promote(promote_cmd::PromoteArgs),
    /// Compare two versions of a table: schema, rows per partition, rows by key (added,
    /// removed, changed, with samples), column sums, means and null fractions.
    Diff(diff_cmd::Args),
    /// Point tables' aliases back at the version their last flip replaced.
    Rollback(promote_cmd::RollbackArgs),
    /// Remove physical versions that are not live, not the previous one (rollback's
    /// target), not newer than live, and beyond --keep; vacuum the rest.
    Gc(gc_cmd::GcArgs),
    /// Partitions and their last runs.
    Status(status_cmd::Args),
    /// Run the jobs' tests (jobs/tests/*.toml): each runs a job on given rows and compares
    /// its output, in-process, with no catalog or warehouse. Exit 1 if any fails.
    Test(test_cmd::Args),
    /// Serve the web view: a grid of every job's partitions by state, each partition's
    /// runs, checks, profile and dead letters, each job and table. Read-only unless
    /// --allow-actions. Loopback only unless a token is set (SLUICE_UI_TOKEN or `[ui]
    /// token_file`).
    Ui(ui_cmd::Args),
    /// Create a new project in DIR (new or empty): settings, one daily job over a CSV
    /// input, its migration and three days of sample data, ready to validate, migrate and
    /// backfill.
    Init(init_cmd::InitArgs),
    /// Messages to people (`[[notify]]` in sluice.toml).
    #[command(subcommand)]
    Notify(notify_cmd::NotifySub),
    /// Print a completion script for SHELL, e.g. `source <(sluice completions bash)`, or
    /// save it where the shell loads completions from. In bash and fish it also completes
    /// the project's job and table names and a job's partitions.
    Completions(completions_cmd::CompletionsArgs),
    /// One name per line for a shell's completion: jobs, tables or a job's partitions.
    #[command(name = "__complete", hide = true)]
    Complete(completions_cmd::NamesArgs),
}

/// What a command hands back: the exit code it wants.
pub type Outcome = anyhow::Result<u8>;

pub struct Globals {
    pub overrides: Overrides,
    pub output: Format,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                EXIT_UNUSABLE
            } else {
                EXIT_OK
            });
        }
    };
    logging::init(
        cli.log_format.into(),
        if cli.quiet { -1 } else { cli.verbose as i8 },
    );
    logging::install_panic_hook();
    crate::delta::local_store::register();
    crate::delta::metered_store::meter_object_stores();
    let globals = Globals {
        overrides: Overrides {
            project: cli.project,
            catalog: cli.catalog,
            warehouse: cli.warehouse,
            env: cli.env,
        },
        output: cli.output,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let output = cli.output;
    let result = runtime.block_on(dispatch(cli.command, &globals));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let text = crate::redact::redact_text(&error_text(&e));
            if globals_json(&output) {
                println!("{}", output::json(&serde_json::json!({ "error": text })));
            }
            eprintln!("error: {text}");
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}

/// The error and its causes, each cause once: most of our errors already show their
/// source's text, which the chain would repeat.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

fn globals_json(f: &Format) -> bool {
    *f == Format::Json
}

/// Runs the command asked for: each command's arguments to its module.
async fn dispatch(command: Command, globals: &Globals) -> Outcome {
    match command {
        Command::Validate => validate_cmd::run(globals).await,
        Command::Test(a) => test_cmd::run(globals, a).await,
        Command::Init(a) => init_cmd::init(globals, a),
        Command::Completions(a) => completions_cmd::completions(a),
        Command::Notify(sub) => notify_cmd::notify(globals, sub).await,
        Command::Complete(a) => completions_cmd::names(globals, a).await,
        Command::Run(a) => run_cmd::run(globals, a).await,
        Command::Migrate(a) => migrate_cmd::run(globals, a).await,
        Command::Status(a) => status_cmd::run(globals, a).await,
        Command::Ui(a) => ui_cmd::run(globals, a).await,
        Command::Tables => tables_cmd::tables(globals).await,
        Command::Profile(a) => profile_cmd::profile(globals, a).await,
        Command::Ballista(sub) => ballista_cmd::run(sub).await,
        Command::Dlq(sub) => dlq_cmd::dlq(globals, sub).await,
        Command::Gc(a) => gc_cmd::gc(globals, a).await,
        Command::Query(a) => query_cmd::run(globals, a).await,
        Command::Diff(a) => diff_cmd::run(globals, a).await,
        Command::Resolve(a) => tables_cmd::resolve(globals, a).await,
        Command::History(a) => tables_cmd::history(globals, a).await,
        Command::Env(sub) => env_cmd::env(globals, sub).await,
        Command::Plan(a) => plan_cmd::run(globals, a).await,
        Command::Apply(a) => apply_cmd::run(globals, a).await,
        Command::Promote(a) => promote_cmd::promote(globals, a).await,
        Command::Rollback(a) => promote_cmd::rollback(globals, a).await,
        Command::Daemon(a) => daemon_cmd::run(globals, a).await,
        Command::Backfill(a) => backfill_cmd::run(globals, a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument of every command says what it is, and the flags every command takes
    /// are listed apart from its own.
    #[test]
    fn every_argument_is_described_and_the_global_ones_apart() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !builtin && a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {}", a.get_id()));
                }
                if a.is_global_set() {
                    assert_eq!(
                        a.get_help_heading(),
                        Some(super::GLOBAL),
                        "{path} {}",
                        a.get_id()
                    );
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "sluice", &mut missing);
        assert!(
            missing.is_empty(),
            "arguments without a description: {missing:?}"
        );
    }
}
