//! Log output: text or JSON lines on stderr. Run spans carry `run_id`, `job` and `partition`,
//! so every line a run logs names it; results go to stdout, apart from the logs.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

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
            // writers: shown from -v on.
            EnvFilter::new(format!(
                "warn,sluice={default},{}",
                match verbosity {
                    i8::MIN..=0 => "deltalake_core=error,buoyant_kernel=off",
                    1 => "deltalake_core=warn,buoyant_kernel=off",
                    _ => "deltalake_core=debug,buoyant_kernel=debug",
                }
            ))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
    };
}
