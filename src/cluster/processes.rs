//! The processes of a Ballista cluster, inside the sluice binary: `sluice ballista
//! scheduler` and `sluice ballista executor`. Both are Ballista's own, run as libraries,
//! with sluice's codec registered, so that the executors run sluice's write node and one
//! binary is deployed everywhere.

use super::write_exec::SluiceCodec;
use crate::engine::EngineError;
use ballista_core::RuntimeProducer;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::execution::object_store::{
    DefaultObjectStoreRegistry, ObjectStoreRegistry,
};
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::SessionConfig;
use deltalake::{DeltaTableBuilder, ObjectStore};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How a scheduler is run.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Where it listens for clients and executors (gRPC).
    pub bind: SocketAddr,
    /// An executor silent this long is taken for dead, and its tasks run elsewhere.
    pub executor_timeout: Duration,
}

/// How an executor is run.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's host and port.
    pub scheduler: (String, u16),
    /// The address it binds: its Arrow Flight port (results and shuffles), and its gRPC
    /// port (tasks).
    pub bind_host: String,
    pub port: u16,
    pub grpc_port: u16,
    /// The host name the scheduler and other executors reach it by.
    pub external_host: Option<String>,
    /// Where shuffle files go; a temporary folder, deleted at exit, by default.
    pub work_dir: Option<PathBuf>,
    /// Tasks it runs at once (0: one per core).
    pub concurrent_tasks: usize,
    /// Its memory pool, split among its tasks; `None`: Ballista's share of the host's.
    pub memory_limit_bytes: Option<u64>,
    /// How often it tells the scheduler it is alive.
    pub heartbeat: Duration,
}

fn failed(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Setup(format!("the Ballista {what}: {e}"))
}

/// Runs a scheduler until the process is stopped.
pub async fn run_scheduler(o: SchedulerOptions) -> Result<(), EngineError> {
    let timeout = o.executor_timeout.as_secs().max(2);
    let config = SchedulerConfig {
        bind_host: o.bind.ip().to_string(),
        bind_port: o.bind.port(),
        external_host: o.bind.ip().to_string(),
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: (timeout / 3).max(1),
        no_executors_grace_period_seconds: timeout,
        override_physical_codec: Some(Arc::new(SluiceCodec::default())),
        override_session_builder: Some(scheduler_sessions()),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| failed("scheduler", e))?;
    ballista_scheduler::scheduler_process::start_server(cluster, o.bind, Arc::new(config))
        .await
        .map_err(|e| failed(&format!("scheduler at {}", o.bind), e))
}

/// Runs an executor until the process is stopped (or the scheduler tells it to stop).
pub async fn run_executor(o: ExecutorOptions) -> Result<(), EngineError> {
    // Ballista's own default is a temporary folder it deletes at once; this one lives as
    // long as the executor.
    let scratch = match &o.work_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir().map_err(|e| failed("executor's work folder", e))?),
    };
    let work_dir = o
        .work_dir
        .clone()
        .or_else(|| scratch.as_ref().map(|t| t.path().to_path_buf()))
        .unwrap_or_default();
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| failed(&format!("executor's work folder {}", work_dir.display()), e))?;
    let config = ExecutorProcessConfig {
        scheduler_host: o.scheduler.0.clone(),
        scheduler_port: o.scheduler.1,
        bind_host: o.bind_host.clone(),
        external_host: o.external_host.clone(),
        port: o.port,
        grpc_port: o.grpc_port,
        work_dir: Some(work_dir.to_string_lossy().into_owned()),
        vcores: o.concurrent_tasks,
        memory_pool_size: o.memory_limit_bytes,
        executor_heartbeat_interval_seconds: o.heartbeat.as_secs().max(1),
        override_physical_codec: Some(Arc::new(SluiceCodec::default())),
        override_runtime_producer: Some(runtime_producer(work_dir.clone())),
        ..ExecutorProcessConfig::default()
    };
    let run = start_executor_process(Arc::new(config)).await;
    drop(scratch);
    run.map_err(|e| {
        failed(
            &format!("executor (scheduler {}:{})", o.scheduler.0, o.scheduler.1),
            e,
        )
    })
}

/// The scheduler's sessions: Ballista's, with the warehouse's stores (decoding a plan
/// looks up the store of every file it names).
fn scheduler_sessions() -> ballista_scheduler::scheduler_server::SessionBuilder {
    let stores = Arc::new(WarehouseStores::default());
    Arc::new(move |config: SessionConfig| {
        let state = ballista_core::utils::default_session_builder(config)?;
        let env = RuntimeEnvBuilder::new()
            .with_object_store_registry(stores.clone())
            .build()?;
        Ok(SessionStateBuilder::new_from_existing(state)
            .with_runtime_env(Arc::new(env))
            .build())
    })
}

/// The runtime of an executor's tasks: spill files in its work folder, and the stores of
/// the warehouse found from the URLs the plans name.
fn runtime_producer(work_dir: PathBuf) -> RuntimeProducer {
    let stores = Arc::new(WarehouseStores::default());
    Arc::new(move |_: &SessionConfig| {
        let env = RuntimeEnvBuilder::new()
            .with_temp_file_path(work_dir.clone())
            .with_object_store_registry(stores.clone())
            .build()?;
        Ok(Arc::new(env))
    })
}

/// Object stores by URL, as deltalake opens them (`s3://`, `gs://`, `az://`, with their
/// credentials from the executor's environment, as for any sluice process): a plan names
/// a table's files by URL, and only the process that planned it had their store.
#[derive(Debug, Default)]
struct WarehouseStores {
    known: DefaultObjectStoreRegistry,
}

impl ObjectStoreRegistry for WarehouseStores {
    fn register_store(
        &self,
        url: &url::Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn get_store(&self, url: &url::Url) -> DfResult<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.known.get_store(url) {
            return Ok(store);
        }
        // The store rooted where the URL's path starts (the bucket), as the planning
        // process registered it.
        let mut root = url.clone();
        root.set_path("/");
        let store = DeltaTableBuilder::from_url(root.clone())
            .and_then(|b| b.build_storage())
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .root_object_store(None);
        self.known.register_store(&root, store.clone());
        Ok(store)
    }
}
