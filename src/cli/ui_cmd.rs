//! `sluice ui [--address ADDR] [--allow-actions]`: serves the web view of the project until
//! Ctrl-C or SIGTERM.

use super::context::Context;
use super::{EXIT_OK, Globals, Outcome, output};
use crate::ui::{self, Access, UiError, UiState};
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to listen [default: sluice.toml's ui.address, else 127.0.0.1:9465];
    /// 127.0.0.1:0 picks a free port (printed).
    #[arg(long, value_name = "ADDR")]
    address: Option<String>,
    /// Let the pages act: run a partition again, backfill a range, promote, roll back
    /// (each as its CLI command does). Needs a token.
    #[arg(long)]
    allow_actions: bool,
}

pub async fn run(g: &Globals, args: Args) -> Outcome {
    let (address, allow_actions) = (args.address.as_deref(), args.allow_actions);
    let ctx = if allow_actions {
        Context::open_for_writing(&g.overrides).await?
    } else {
        Context::open(&g.overrides).await?
    };
    let settings = &ctx.project.settings;
    let addr = match address {
        None => settings.ui.address,
        Some(a) => a.parse().map_err(|_| {
            anyhow::anyhow!("--address `{a}` is not HOST:PORT (e.g. 127.0.0.1:9465, or 127.0.0.1:0 for any free port)")
        })?,
    };
    let access = Access::from_settings(&settings.ui)?;
    access.check_address(addr)?;
    if allow_actions && !access.has_token() {
        anyhow::bail!(
            "--allow-actions needs a token: the forms act as this process, so they are for people who have it; set SLUICE_UI_TOKEN or `[ui] token_file` in sluice.toml"
        );
    }
    let actions = match allow_actions {
        true => Some(crate::ui::Actions {
            runner: Arc::new(ctx.runner()?),
        }),
        false => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| UiError::Listen { addr, source })?;
    let bound = listener.local_addr()?;
    let url = format!("http://{bound}/");
    if g.output == output::Format::Json {
        println!(
            "{}",
            serde_json::json!({ "url": url, "token_required": access.has_token() })
        );
    } else {
        println!("serving {url} (Ctrl-C to stop)");
    }
    let project = ctx.project.clone();
    let state = Arc::new(UiState {
        project: Box::new(move || project.clone()),
        catalog: ctx.catalog.clone(),
        clock: ctx.clock.clone(),
        engine: ctx.engine()?,
        access,
        daemon: None,
        actions,
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        served = ui::serve(listener, ui::router(state)) => served?,
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    ctx.catalog.close().await;
    Ok(EXIT_OK)
}
