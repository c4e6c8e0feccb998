//! The command line. Only this module knows clap: it turns arguments into settings and
//! calls the library, then prints the result and picks the exit code.
//!
//! Exit codes (also in README):
//! - 0: done;
//! - 1: the command ran and something failed (a partition, a check, validation);
//! - 2: the command could not run (bad arguments, bad configuration, catalog unreachable);
//! - 3: nothing was done because another worker holds the partition's lease.

mod backfill_cmd;
mod ballista_cmd;
pub mod context;
mod daemon_cmd;
mod diff_cmd;
mod init_cmd;
mod migrate_cmd;
pub mod output;
mod quality_cmd;
mod query_cmd;
mod run_cmd;
mod status_cmd;
mod tables_cmd;
mod test_cmd;
mod ui_cmd;
mod validate_cmd;

use crate::backfill::Request;
use crate::config::Overrides;
use crate::logging::{self, LogFormat};
use crate::partition::{PartitionsArg, TimesArg};
use clap::{Parser, Subcommand};
use output::Format;
use std::path::PathBuf;
use std::process::ExitCode;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_UNUSABLE: u8 = 2;
pub const EXIT_HELD: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Partitioned, idempotent batch jobs: SQL over Arrow into versioned Delta Lake tables"
)]
struct Cli {
    /// The project folder (holding sluice.toml, jobs/, migrations/).
    #[arg(long, global = true, value_name = "DIR")]
    project: Option<PathBuf>,
    /// Catalog URL (sqlite://PATH or postgres://...); overrides SLUICE_CATALOG and sluice.toml.
    #[arg(long, global = true, value_name = "URL")]
    catalog: Option<String>,
    /// Warehouse folder or URL; overrides SLUICE_WAREHOUSE and sluice.toml.
    #[arg(long, global = true, value_name = "URL")]
    warehouse: Option<String>,
    /// Result format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text, env = "SLUICE_LOG_FORMAT")]
    log_format: LogFormatArg,
    /// More log detail (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Warnings and errors only.
    #[arg(short, long, global = true)]
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
    Run {
        /// The job (its spec is jobs/JOB.toml).
        job: String,
        /// The partition: YYYY-MM-DD (daily), YYYY-MM (monthly), YYYY-MM-DDTHH (hourly), all.
        #[arg(long, short)]
        partition: String,
    },
    /// Apply pending migrations from migrations/ (the only command that changes schemas).
    Migrate {
        /// Print what would be applied, and apply nothing.
        #[arg(long)]
        plan: bool,
        /// Apply destructive migrations too (drop or rename a column, narrow a type, NOT
        /// NULL on an existing column, drop a table), once no job uses what they remove.
        #[arg(long)]
        allow_destructive: bool,
        #[command(subcommand)]
        sub: Option<MigrateSub>,
    },
    /// Run the partitions of a range: missing and failed ones by default. `--to` is
    /// included. Upstream partitions run before the partitions that read them.
    Backfill {
        /// Jobs to backfill; none means every job.
        jobs: Vec<String>,
        /// First partition: a day (2024-01-05), month (2024-01) or hour (2024-01-05T03).
        /// Not needed for jobs whose partitions are their keys (`--keys DE,FR`).
        #[arg(long, required_unless_present_any = ["partitions", "keys"])]
        from: Option<String>,
        /// Last partition, included.
        #[arg(long, required_unless_present_any = ["partitions", "keys"])]
        to: Option<String>,
        /// Instead of --from/--to: a list (2024-01-03,2024-01-09) or a range (A..B, both
        /// included), e.g. the partitions a canary builds; `:KEYS` after it narrows the
        /// jobs with a static dimension to those keys (2024-01-01..2024-01-31:emea,apac);
        /// keys alone (`DE,FR` or `:DE,FR`) for a job whose partitions are its keys.
        #[arg(long, conflicts_with_all = ["from", "to", "keys"], value_name = "LIST|RANGE[:KEYS]")]
        partitions: Option<String>,
        /// Only these keys of the jobs with a static dimension (emea,apac); default: every
        /// declared key.
        #[arg(long, value_name = "KEYS")]
        keys: Option<String>,
        /// The table version the named jobs must be building (their spec's `version`): a
        /// guard for canaries.
        #[arg(long, value_name = "N")]
        version: Option<u32>,
        /// Print the plan (what would run, why, what it waits on) and run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Redo complete partitions too.
        #[arg(long, conflicts_with_all = ["only_failed", "stale"])]
        force: bool,
        /// Only failed (or interrupted) partitions.
        #[arg(long, conflicts_with = "stale")]
        only_failed: bool,
        /// Also redo complete partitions written by other code than the current.
        #[arg(long)]
        stale: bool,
        /// Latest partitions first.
        #[arg(long)]
        newest_first: bool,
        /// Add the jobs that read the named jobs' tables, and theirs, and so on.
        #[arg(long)]
        downstream: bool,
        /// Partitions run at once.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: u16,
        /// Stop starting partitions after the first failure.
        #[arg(long)]
        fail_fast: bool,
    },
    /// Run every scheduled job's partitions as their cron ticks come, until SIGTERM/SIGINT.
    /// SIGHUP re-reads the project (it is also re-read whenever its files change).
    Daemon {
        /// Partitions running at once over all jobs [default: sluice.toml's
        /// daemon.max_concurrency, else 2].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        max_concurrency: Option<u16>,
        /// Seconds running partitions may take to finish after SIGTERM before they are
        /// cancelled [default: daemon.grace_seconds, else 30].
        #[arg(long, value_name = "SECONDS")]
        grace: Option<f64>,
        /// Where the pages (as `sluice ui`), /metrics and /health are served, or `off`
        /// [default: daemon.metrics_address, else 127.0.0.1:9464]. Any address but
        /// loopback needs a token (SLUICE_UI_TOKEN or `[ui] token_file`).
        #[arg(long, value_name = "ADDR")]
        metrics_address: Option<String>,
        /// Let the pages act (as `sluice ui --allow-actions`): run a partition again,
        /// backfill a range, promote, roll back, under this daemon's leases. Needs a token.
        #[arg(long, conflicts_with = "replay")]
        allow_actions: bool,
        /// Rehearse the schedule over a past window instead: the daemon's own code on a
        /// simulated clock, from the start of FROM to the end of TO (dates, UTC, or RFC 3339
        /// times), writing to the catalog and warehouse; exits when the window is done.
        #[arg(long, value_name = "FROM..TO")]
        replay: Option<String>,
        /// With --replay: N times real time instead of as fast as the work allows.
        #[arg(long, requires = "replay", value_name = "N")]
        speed: Option<f64>,
    },
    /// Run SQL over the tables' aliases (DataFusion).
    Query {
        sql: String,
        /// A time (2024-05-01T10:00:00Z or 2024-05-01): each alias and table as they were
        /// then; or a Delta version number of the tables read.
        #[arg(long, value_name = "VERSION|TIME")]
        as_of: Option<String>,
    },
    /// Tables, their physical versions, which one the alias points at, coverage and rows.
    Tables,
    /// A table's profile history, partition by partition: rows, and per column null
    /// fraction, distinct estimate, min, max and mean, with a sparkline per metric.
    Profile {
        table: String,
        /// Default: the live version.
        #[arg(long)]
        version: Option<i64>,
        /// Only this column's metrics.
        #[arg(long)]
        column: Option<String>,
    },
    /// The processes of a Ballista cluster, for jobs of `[engine] kind = "ballista"`.
    Ballista {
        #[command(subcommand)]
        sub: ballista_cmd::BallistaSub,
    },
    /// Dead letters: the input rows a job could not use.
    Dlq {
        #[command(subcommand)]
        sub: DlqSub,
    },
    /// The physical location of a table's live version (or --version N), for other readers.
    Resolve {
        table: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Every alias flip of a table: from, to, when, by whom, why.
    History { table: String },
    /// Point tables' aliases at another version, all at once or not at all. Refused unless
    /// the new version has every partition the live one has, none failed (or --partial).
    Promote {
        /// TABLE, or TABLE@N to give each its own version.
        #[arg(required = true)]
        tables: Vec<String>,
        /// The version to promote to.
        #[arg(long)]
        version: Option<i64>,
        /// Only if the live version is still N (what a deploy script checked against).
        #[arg(long, value_name = "N")]
        expect: Option<i64>,
        /// Recorded in the history.
        #[arg(long, short)]
        message: Option<String>,
        /// Promote even if the new version lacks partitions or has failed ones.
        #[arg(long)]
        partial: bool,
        /// Print the flips and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Compare two versions of a table: schema, rows per partition, rows by key (added,
    /// removed, changed, with samples), column sums, means and null fractions.
    Diff {
        table: String,
        /// Default: the live version.
        #[arg(long)]
        from: Option<String>,
        /// Default: the newest other version.
        #[arg(long)]
        to: Option<String>,
        /// Only these partitions: a list (a,b,c) or a range (a..b, both included).
        #[arg(long)]
        partitions: Option<String>,
        /// Exit 1 when more than this fraction of rows differ (for CI).
        #[arg(long, value_name = "FRACTION")]
        fail_above: Option<f64>,
    },
    /// Point tables' aliases back at the version their last flip replaced.
    Rollback {
        #[arg(required = true)]
        tables: Vec<String>,
        #[arg(long, short)]
        message: Option<String>,
        #[arg(long)]
        partial: bool,
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove physical versions that are not live, not the previous one (rollback's
    /// target), not newer than live, and beyond --keep; vacuum the rest.
    Gc {
        /// Also keep this many of the newest older versions.
        #[arg(long, default_value_t = 1)]
        keep: usize,
        /// Print what would be removed and kept; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Partitions and their last runs.
    Status {
        /// Only this job.
        job: Option<String>,
    },
    /// Run the jobs' tests (jobs/tests/*.toml): each runs a job on given rows and compares
    /// its output, in-process, with no catalog or warehouse. Exit 1 if any fails.
    Test {
        /// Only these jobs' tests.
        jobs: Vec<String>,
        /// Also write a JUnit XML report to PATH.
        #[arg(long, value_name = "PATH")]
        junit: Option<PathBuf>,
        /// Write each failing test's actual output as its expected rows (then review it).
        #[arg(long)]
        update: bool,
        /// Write a new test of JOB from the live tables: a sample of the partition's input
        /// rows and the output the current code makes of them.
        #[arg(long, value_name = "JOB", requires = "partition", conflicts_with_all = ["jobs", "update"])]
        create: Option<String>,
        /// The partition --create samples.
        #[arg(long, short, requires = "create")]
        partition: Option<String>,
        /// Input rows --create samples per input.
        #[arg(long, default_value_t = 20, requires = "create")]
        rows: usize,
        /// The created test's name [default: sampled_PARTITION].
        #[arg(long, requires = "create")]
        name: Option<String>,
    },
    /// Serve the web view: a grid of every job's partitions by state, each partition's
    /// runs, checks, profile and dead letters, each job and table. Read-only unless
    /// --allow-actions. Loopback only unless a token is set (SLUICE_UI_TOKEN or `[ui]
    /// token_file`).
    Ui {
        /// Where to listen [default: sluice.toml's ui.address, else 127.0.0.1:9465];
        /// 127.0.0.1:0 picks a free port (printed).
        #[arg(long, value_name = "ADDR")]
        address: Option<String>,
        /// Let the pages act: run a partition again, backfill a range, promote, roll back
        /// (each as its CLI command does). Needs a token.
        #[arg(long)]
        allow_actions: bool,
    },
    /// Create a new project in DIR (new or empty): settings, one daily job over a CSV
    /// input, its migration and three days of sample data, ready to validate, migrate and
    /// backfill.
    Init { dir: PathBuf },
    /// Print a completion script for SHELL, e.g. `source <(sluice completions bash)`, or
    /// save it where the shell loads completions from.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum DlqSub {
    /// A job's dead letters: partition, file, line, error and the raw record.
    List {
        job: String,
        #[arg(long)]
        partition: Option<String>,
    },
    /// Run the partition again (after fixing the source or the job); dead letters that no
    /// longer fail are cleared.
    Replay {
        job: String,
        #[arg(long)]
        partition: String,
    },
}

#[derive(Debug, Subcommand)]
enum MigrateSub {
    /// List applied and pending migrations.
    Status,
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
    let globals = Globals {
        overrides: Overrides {
            project: cli.project,
            catalog: cli.catalog,
            warehouse: cli.warehouse,
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

/// Runs the command asked for: one arm per command, each handing its arguments to the
/// command's module.
async fn dispatch(command: Command, globals: &Globals) -> Outcome {
    match command {
        Command::Validate => validate_cmd::run(globals).await,
        Command::Test {
            jobs,
            junit,
            update,
            create,
            partition,
            rows,
            name,
        } => match (create, partition) {
            (Some(job), Some(partition)) => {
                test_cmd::create(globals, &job, &partition, rows, name).await
            }
            _ => {
                test_cmd::run(
                    globals,
                    test_cmd::Args {
                        jobs,
                        junit,
                        update,
                    },
                )
                .await
            }
        },
        Command::Init { dir } => init_cmd::init(globals, &dir),
        Command::Completions { shell } => init_cmd::completions(shell),
        Command::Run { job, partition } => run_cmd::run(globals, &job, &partition).await,
        Command::Migrate {
            plan,
            allow_destructive,
            sub,
        } => match sub {
            Some(MigrateSub::Status) => migrate_cmd::status(globals).await,
            None => migrate_cmd::run(globals, plan, allow_destructive).await,
        },
        Command::Status { job } => status_cmd::run(globals, job.as_deref()).await,
        Command::Ui {
            address,
            allow_actions,
        } => ui_cmd::run(globals, address.as_deref(), allow_actions).await,
        Command::Tables => tables_cmd::tables(globals).await,
        Command::Profile {
            table,
            version,
            column,
        } => quality_cmd::profile(globals, &table, version, column.as_deref()).await,
        Command::Ballista { sub } => ballista_cmd::run(sub).await,
        Command::Dlq { sub } => match sub {
            DlqSub::List { job, partition } => {
                quality_cmd::dlq_list(globals, &job, partition.as_deref()).await
            }
            DlqSub::Replay { job, partition } => {
                quality_cmd::dlq_replay(globals, &job, &partition).await
            }
        },
        Command::Gc { keep, dry_run } => tables_cmd::gc(globals, keep, dry_run).await,
        Command::Query { sql, as_of } => query_cmd::run(globals, &sql, as_of.as_deref()).await,
        Command::Diff {
            table,
            from,
            to,
            partitions,
            fail_above,
        } => {
            diff_cmd::run(
                globals,
                diff_cmd::Args {
                    table,
                    from,
                    to,
                    partitions,
                    fail_above,
                },
            )
            .await
        }
        Command::Resolve { table, version } => tables_cmd::resolve(globals, &table, version).await,
        Command::History { table } => tables_cmd::history(globals, &table).await,
        Command::Promote {
            tables,
            version,
            expect,
            message,
            partial,
            dry_run,
        } => {
            tables_cmd::flip(
                globals,
                tables_cmd::FlipArgs {
                    tables,
                    version,
                    expect,
                    message,
                    partial,
                    dry_run,
                    rollback: false,
                },
            )
            .await
        }
        Command::Rollback {
            tables,
            message,
            partial,
            dry_run,
        } => {
            tables_cmd::flip(
                globals,
                tables_cmd::FlipArgs {
                    tables,
                    version: None,
                    expect: None,
                    message,
                    partial,
                    dry_run,
                    rollback: true,
                },
            )
            .await
        }
        Command::Daemon {
            max_concurrency,
            grace,
            metrics_address,
            allow_actions,
            replay,
            speed,
        } => {
            let args = daemon_cmd::Args {
                max_concurrency: max_concurrency.map(usize::from),
                grace,
                metrics_address,
                allow_actions,
            };
            match replay {
                Some(window) => daemon_cmd::replay(globals, args, &window, speed).await,
                None => daemon_cmd::run(globals, args).await,
            }
        }
        Command::Backfill {
            jobs,
            from,
            to,
            partitions,
            keys,
            version,
            dry_run,
            force,
            only_failed,
            stale,
            newest_first,
            downstream,
            concurrency,
            fail_fast,
        } => {
            let arg = match (partitions, keys) {
                (Some(p), _) => Some(PartitionsArg::parse(&p)),
                (None, Some(k)) => Some(PartitionsArg::parse(&format!(":{k}"))),
                (None, None) => None,
            };
            let keys = match arg.as_ref().map(PartitionsArg::static_keys).transpose() {
                Ok(k) => k.flatten(),
                Err(m) => anyhow::bail!("--partitions or --keys: {m}"),
            };
            let (from, to, only) = match arg.and_then(|a| a.times) {
                None => (from.unwrap_or_default(), to.unwrap_or_default(), None),
                Some(TimesArg::Range(a, b)) => (a, b, None),
                Some(TimesArg::List(set)) => {
                    let first = set.first().cloned().unwrap_or_default();
                    let last = set.last().cloned().unwrap_or_default();
                    (first, last, Some(set))
                }
            };
            if from.is_empty() != to.is_empty() {
                anyhow::bail!("give both --from and --to, or neither");
            }
            let selection = crate::app::backfill::selection_of_flags(force, only_failed, stale);
            backfill_cmd::run(
                globals,
                backfill_cmd::Args {
                    request: Request {
                        jobs,
                        downstream,
                        from,
                        to,
                        only,
                        keys,
                        version,
                        selection,
                        newest_first,
                    },
                    dry_run,
                    concurrency: usize::from(concurrency),
                    fail_fast,
                },
            )
            .await
        }
    }
}
