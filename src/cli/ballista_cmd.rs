//! `sluice ballista scheduler|executor`: the processes of a Ballista cluster that runs the
//! jobs of `[engine] kind = "ballista"`, from the same binary as everything else. They read
//! no project: a scheduler needs only its address, an executor its scheduler's.

use super::{EXIT_OK, Outcome};
use crate::cluster::processes::{self as cluster_processes, ExecutorOptions, SchedulerOptions};
use clap::Subcommand;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum BallistaSub {
    /// Run a Ballista scheduler: it takes partitions' plans from sluice and hands their
    /// tasks to executors.
    Scheduler {
        /// Where it listens (gRPC), for sluice and the executors.
        #[arg(long, default_value = "127.0.0.1:50050", value_name = "HOST:PORT")]
        bind: SocketAddr,
        /// Seconds without a heartbeat after which an executor is taken for dead and its
        /// tasks run elsewhere.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        executor_timeout: u64,
    },
    /// Run a Ballista executor: it computes tasks, writes partitions' files into the
    /// warehouse, and serves results (Arrow Flight).
    Executor {
        /// The scheduler (HOST:PORT, or df://HOST:PORT).
        #[arg(long, default_value = "127.0.0.1:50050", value_name = "HOST:PORT")]
        scheduler: String,
        /// The address it binds.
        #[arg(long, default_value = "127.0.0.1", value_name = "HOST")]
        bind_host: String,
        /// Its Arrow Flight port (results and shuffles).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// Its gRPC port (tasks).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// The host name the scheduler and the other executors reach it by [default: the
        /// bind address].
        #[arg(long, value_name = "HOST")]
        external_host: Option<String>,
        /// Where its shuffle files go [default: a temporary folder, deleted at exit].
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Tasks it runs at once [default: one per core].
        #[arg(long, default_value_t = 0)]
        concurrent_tasks: usize,
        /// Its memory pool in MiB, shared by its tasks (they spill past it) [default: a
        /// share of the host's memory].
        #[arg(long, value_name = "MIB")]
        memory_limit_mb: Option<u64>,
        /// Seconds between its heartbeats to the scheduler (keep it below the scheduler's
        /// --executor-timeout).
        #[arg(long, default_value_t = 5, value_name = "SECONDS")]
        heartbeat: u64,
    },
}

pub async fn run(sub: BallistaSub) -> Outcome {
    match sub {
        BallistaSub::Scheduler {
            bind,
            executor_timeout,
        } => {
            cluster_processes::run_scheduler(SchedulerOptions {
                bind,
                executor_timeout: Duration::from_secs(executor_timeout),
            })
            .await?
        }
        BallistaSub::Executor {
            scheduler,
            bind_host,
            port,
            grpc_port,
            external_host,
            work_dir,
            concurrent_tasks,
            memory_limit_mb,
            heartbeat,
        } => {
            cluster_processes::run_executor(ExecutorOptions {
                scheduler: host_port(&scheduler)?,
                bind_host,
                port,
                grpc_port,
                external_host,
                work_dir,
                concurrent_tasks,
                memory_limit_bytes: memory_limit_mb.map(|m| m * 1024 * 1024),
                heartbeat: Duration::from_secs(heartbeat),
            })
            .await?
        }
    }
    Ok(EXIT_OK)
}

/// `HOST:PORT`, with or without `df://` or `http://` before it.
fn host_port(text: &str) -> anyhow::Result<(String, u16)> {
    let bare = text
        .strip_prefix("df://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text)
        .trim_end_matches('/');
    let parsed = bare
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_string(), port.parse::<u16>().ok()?)))
        .filter(|(host, _)| !host.is_empty());
    parsed.ok_or_else(|| {
        anyhow::anyhow!("--scheduler `{text}` is not HOST:PORT (e.g. 127.0.0.1:50050)")
    })
}
