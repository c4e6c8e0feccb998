//! `sluice daemon`: settings and flags into a running [`Daemon`], signals into controls.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE, Globals, Outcome};
use crate::clock::{ManualClock, SimulatedClock};
use crate::config::parse_metrics_address;
use crate::daemon::{self, Control, Options};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

#[derive(Debug, clap::Args)]
pub struct Args {
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
}

pub async fn run(g: &Globals, args: Args) -> Outcome {
    if let Some(window) = args.replay.clone() {
        let speed = args.speed;
        return replay(g, args, &window, speed).await;
    }
    let mut cx = Context::open_for_writing(&g.overrides).await?;
    let settings = cx.project.settings.clone();
    let max_concurrency = args
        .max_concurrency
        .map(usize::from)
        .unwrap_or(settings.daemon.max_concurrency);
    let grace = match args.grace {
        None => settings.daemon.grace,
        Some(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s),
        Some(s) => {
            eprintln!("error: --grace {s}: use 0 or more seconds");
            return Ok(EXIT_UNUSABLE);
        }
    };
    let listener = pages_listener(&settings, &args).await?;
    let every_second = cx.project.jobs.values().any(|j| {
        j.schedule
            .as_ref()
            .is_some_and(|s| s.cron.split_whitespace().count() == 6)
    });
    cx.lineage_parent("sluice.daemon");
    let runner = Arc::new(cx.runner()?.with_compute_limit(max_concurrency));
    let (tx, rx) = tokio::sync::mpsc::channel::<Control>(16);
    daemon::forward_signals(tx.clone())?;
    let mut sweep = daemon::start_sweep(tx.clone(), every_second).await?;
    let d = cx.daemon(
        runner.clone(),
        Options {
            max_concurrency,
            grace,
            ..Options::default()
        },
    );
    let engine = cx.engine()?;
    let actions = args.allow_actions.then(|| crate::ui::Actions {
        runner: runner.clone(),
    });
    let server = listener.map(|(l, access)| {
        let addr = l.local_addr().ok();
        info!(
            address = %addr.map(|a| a.to_string()).unwrap_or_default(),
            "serving /metrics, /health and the pages"
        );
        let current = runner.clone();
        let pages = crate::ui::router(Arc::new(crate::ui::UiState {
            project: Box::new(move || current.project()),
            catalog: cx.catalog.clone(),
            clock: cx.clock.clone(),
            engine,
            access,
            daemon: Some(d.metrics.clone()),
            actions,
        }));
        tokio::spawn(async move {
            if let Err(e) = crate::ui::serve(l, pages).await {
                tracing::warn!(error = %e, "the pages' server stopped");
            }
        })
    });
    info!(
        catalog = %settings.catalog_display(),
        max_concurrency,
        holder = %runner.holder(),
        "daemon started"
    );
    d.run(rx).await;
    let _ = sweep.shutdown().await;
    if let Some(s) = server {
        s.abort();
    }
    cx.lineage_parent_end(None);
    cx.close().await;
    Ok(EXIT_OK)
}

/// Where the daemon serves its pages, `/metrics` and `/health`, bound, with who may see
/// them; none with `off`. Refuses a non-loopback address without a token, and actions
/// without a token or an address.
async fn pages_listener(
    settings: &crate::config::Settings,
    args: &Args,
) -> anyhow::Result<Option<(tokio::net::TcpListener, crate::ui::Access)>> {
    let metrics_address = match args.metrics_address.as_deref() {
        None => settings.daemon.metrics_address,
        Some(text) => {
            parse_metrics_address(text).map_err(|m| anyhow::anyhow!("--metrics-address: {m}"))?
        }
    };
    let access = crate::ui::Access::from_settings(&settings.ui)?;
    if args.allow_actions && (metrics_address.is_none() || !access.has_token()) {
        anyhow::bail!(
            "--allow-actions needs the pages served (a --metrics-address) and a token: set SLUICE_UI_TOKEN or `[ui] token_file` in sluice.toml"
        );
    }
    let Some(addr) = metrics_address else {
        return Ok(None);
    };
    access.check_address(addr)?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot serve metrics on {addr}: {e}; pick another port with --metrics-address or daemon.metrics_address in sluice.toml (or `off`)"
        )
    })?;
    Ok(Some((listener, access)))
}

/// `sluice daemon --replay FROM..TO [--speed N]`: the schedule rehearsed on a simulated
/// clock; prints each partition as it becomes due and as it ends, at simulated times.
async fn replay(g: &Globals, args: Args, window: &str, speed: Option<f64>) -> Outcome {
    let window = match daemon::replay::Window::parse(window) {
        Ok(w) => w,
        Err(m) => {
            eprintln!("error: --replay {m}");
            return Ok(EXIT_UNUSABLE);
        }
    };
    if let Some(s) = speed
        && !(s.is_finite() && s > 0.0)
    {
        eprintln!("error: --speed {s}: give a factor above 0 (2 is twice real time)");
        return Ok(EXIT_UNUSABLE);
    }
    let mut cx = Context::open_for_writing(&g.overrides).await?;
    let simulated = ManualClock::new(window.from);
    cx.clock = Arc::new(SimulatedClock(simulated.clone()));
    let max_concurrency = args
        .max_concurrency
        .map(usize::from)
        .unwrap_or(cx.project.settings.daemon.max_concurrency);
    cx.lineage_parent("sluice.daemon");
    let runner = Arc::new(cx.runner()?.with_compute_limit(max_concurrency));
    let mut d = cx.daemon(
        runner,
        Options {
            max_concurrency,
            ..Options::default()
        },
    );
    println!(
        "replaying {} .. {} (simulated time, UTC)",
        window.from.format("%Y-%m-%dT%H:%M:%SZ"),
        window.to.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let done = d
        .replay(&simulated, window, speed, |e| {
            println!("{}  {}", e.at.format("%Y-%m-%dT%H:%M:%SZ"), e.text)
        })
        .await;
    for l in &done.left {
        println!("not run: {l}");
    }
    println!(
        "{} succeeded, {} failed, {} not run",
        done.succeeded,
        done.failed.len(),
        done.left.len()
    );
    if let Some((n, p50, p99, longest)) = done.poll_times() {
        println!(
            "{n} poll(s): median {p50:.1} ms, 99th percentile {p99:.1} ms, longest {longest:.1} ms (wall time, runs not included)"
        );
    }
    let ok = done.failed.is_empty() && done.left.is_empty();
    cx.lineage_parent_end((!ok).then(|| "partitions failed or did not run".to_string()));
    cx.close().await;
    Ok(if ok { EXIT_OK } else { EXIT_FAILED })
}
