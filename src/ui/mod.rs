//! The web view: pages of what the catalog knows (a grid of partitions by state, a
//! partition's runs, a job, a table's versions), served by `sluice ui` and by the daemon
//! at its address. Read-only by default. Built on axum; pages are askama templates compiled into the
//! binary, which escape every value; the stylesheet and script are embedded too, and the
//! pages load nothing from elsewhere (the Content-Security-Policy says so to the browser).
//! With `--allow-actions` (and a token), a few forms act: see `actions`.

mod access;
mod actions;
mod chart;
mod grid;
mod grid_axis;
mod pages;
mod server;
mod state;

pub use access::Access;
pub use server::{router, serve};
pub use state::{Actions, UiState};

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error(
        "refusing to serve the pages on {addr} without a token: anyone who can reach it would see the catalog; set SLUICE_UI_TOKEN or `[ui] token_file` in sluice.toml, or listen on 127.0.0.1"
    )]
    Exposed { addr: SocketAddr },
    #[error("the ui token from {source_name}: {message}")]
    Token {
        source_name: String,
        message: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Delta(#[from] crate::delta::DeltaError),
    /// Something the address names does not exist (a job, a table, a partition).
    #[error("{0}")]
    NotFound(String),
    /// The address or a filter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// An action was refused by what the catalog holds now (a promote's preconditions).
    #[error("{0}")]
    Conflict(String),
}

/// A partition the address names: an unknown job or text that is not a partition is
/// not found; a partition the job does not declare cannot be acted on.
impl From<crate::app::partition::PartitionError> for UiError {
    fn from(e: crate::app::partition::PartitionError) -> UiError {
        use crate::app::partition::PartitionError as P;
        match e {
            P::Undeclared { .. } => UiError::BadRequest(e.to_string()),
            P::Job(_) | P::Unparsable { .. } => UiError::NotFound(e.to_string()),
        }
    }
}
