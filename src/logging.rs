//! Log output: text or JSON lines on stderr. Run spans carry `run_id`, `job` and `partition`,
//! so every line a run logs names it; results go to stdout, apart from the logs.

use indicatif::ProgressBar;
use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The target of the lines a run logs at its start and end, one pair per partition: while a
/// progress bar shows, they are left out unless -v asks for debug detail (the bar says the
/// same, and they would scroll it away).
pub const LIFECYCLE: &str = "sluice::lifecycle";

/// The progress bar on the terminal, if one shows: log lines are printed above it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);
/// Whether [`LIFECYCLE`] lines are left out (a bar shows and the level is info or less).
static QUIET_LIFECYCLE: AtomicBool = AtomicBool::new(false);
/// Whether debug lines are shown (-v): then [`LIFECYCLE`] lines stay, bar or not.
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Shows `bar` until the returned guard drops: log lines go above it, and per-partition
/// lines are left out at the default level. Warnings and errors still show.
pub fn show_bar(bar: &ProgressBar) -> BarShown {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    QUIET_LIFECYCLE.store(!DEBUG.load(Ordering::Relaxed), Ordering::Relaxed);
    BarShown(())
}

/// The bar of [`show_bar`] shows while this lives.
pub struct BarShown(());

impl Drop for BarShown {
    fn drop(&mut self) {
        *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
        QUIET_LIFECYCLE.store(false, Ordering::Relaxed);
    }
}

/// stderr, or above the bar while one shows: each log line is formatted into this buffer
/// and written at once when the formatter is done with it.
struct Stderr;

struct Line(Vec<u8>);

impl MakeWriter<'_> for Stderr {
    type Writer = Line;
    fn make_writer(&self) -> Line {
        Line(Vec::new())
    }
}

impl std::io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match bar {
            Some(b) => b.suspend(write),
            None => write(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber. `SLUICE_LOG` (or `RUST_LOG`) overrides the level filter.
pub fn init(format: LogFormat, verbosity: i8) {
    let default = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("SLUICE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            // The Delta kernel logs every failed snapshot load at error level, including the
            // expected one when a table does not exist yet; its real failures reach us as
            // returned errors, so its own events are shown only at -vv. deltalake warns on
            // every commit rebased over a concurrent one, which is normal with several
            // writers: shown from -v on. Its commit loop says "conflict detected" at error
            // level and hands the conflict back, which sluice resolves (refresh, look for
            // its own commit, rebuild) or reports as the run's error: an error line that
            // needs no action would teach operators to ignore error lines. Ballista's
            // scheduler and client say "Job ... failed" at error level for a job whose
            // failure the submitting run handles (bad rows set aside and the day run
            // again) or reports with its partition: shown from -v on. sqlx warns when a
            // catalog connection took long to come free, as it does whenever a busy
            // backfill's partitions wait their turn at SQLite's one writer: shown from -v
            // on; a wait that matters ends in a timeout, an error with its context.
            EnvFilter::new(format!(
                "warn,sluice={default},{}",
                match verbosity {
                    i8::MIN..=0 => {
                        "deltalake_core=error,deltalake_core::kernel::transaction=off,buoyant_kernel=off,sqlx::pool::acquire=error,ballista_scheduler::scheduler_server::query_stage_scheduler=off,ballista_core::execution_plans::distributed_query=off"
                    }
                    1 => "deltalake_core=warn,buoyant_kernel=off",
                    _ => "deltalake_core=debug,buoyant_kernel=debug",
                }
            ))
        });
    DEBUG.store(verbosity >= 1, Ordering::Relaxed);
    let lifecycle = tracing_subscriber::filter::filter_fn(|m| {
        !(m.target() == LIFECYCLE && QUIET_LIFECYCLE.load(Ordering::Relaxed))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .with_span_events(FmtSpan::NONE)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.finish().with(lifecycle).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .finish()
            .with(lifecycle)
            .try_init(),
    };
}

/// Installs a panic hook that keeps one known panic off the terminal. deltalake aborts a
/// failed upload with object_store's `BufWriter::abort`, which panics by design once the
/// upload has begun shutting down; deltalake catches that panic and returns the write's
/// own error, which the run reports. The default hook would still print the caught panic,
/// with a backtrace, once per file. It is logged at debug level; any other panic is printed
/// as before.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str));
        let caught_by_deltalake = message == Some("Already shut down")
            && info.location().is_some_and(|l| {
                l.file().contains("object_store") && l.file().ends_with("buffered.rs")
            });
        // `sluice status | head`: the reader left. Printing fails (println! panics on it);
        // end quietly as a Unix tool killed by SIGPIPE would, without a panic's report.
        let reader_left =
            message.is_some_and(|m| m.contains("Broken pipe") || m.contains("BrokenPipe"));
        if reader_left {
            std::process::exit(0);
        }
        if caught_by_deltalake {
            tracing::debug!(
                at = %info.location().map(|l| l.to_string()).unwrap_or_default(),
                "an aborted upload panicked as object_store does by design; deltalake caught it"
            );
        } else {
            default(info);
        }
    }));
}
