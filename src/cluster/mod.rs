//! Apache Ballista, in a room of its own: writing a job's partition on a cluster (the plan
//! sent to a scheduler, and the in-process scheduler and executor of `scheduler =
//! "standalone"`), the write node the executors run (`write_exec`), and the cluster's
//! processes inside the sluice binary (`processes`). It uses the engine (a session made
//! for a cluster, the query planned as the embedded engine plans it, the fit rules) and
//! `delta`; neither knows of it.
//!
//! This process plans the query as the embedded engine does (with Ballista's settings),
//! puts sluice's write node on top (`cluster_write`), and submits that physical plan; the
//! executors compute, fit and upload the files, and send back their `add` actions, which
//! the runner commits under its lease. What a plan may hold is narrower than what a
//! session may: tables must be files (a `ListingTable`) or views of them, so an upstream
//! Delta table is registered as its snapshot's Parquet files (`delta::snapshot_files`),
//! never through deltalake's scan.

pub mod processes;
pub mod write_exec;

use crate::config::Scheduler;
use crate::delta::WriterLayout;
use crate::engine::fit::{FitRules, Fitter};
use crate::engine::output::{OutputError, OutputFailure};
use crate::engine::{BadRow, BadRowError, Engine, EngineError, PartitionQuery, TextFile};
use crate::schema::TableSchema;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion_proto::protobuf::PhysicalPlanNode;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::execution::session_state::SessionState;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::kernel::Add;
use futures::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use write_exec::{PartitionWriteExec, Sent, SluiceCodec, WriteSpec};

/// How long the in-process scheduler may take to answer after it starts.
const STANDALONE_START: Duration = Duration::from_secs(10);

/// How long a scheduler may take to answer a connection.
const DIAL: Duration = Duration::from_secs(10);

/// A partition's files, uploaded by the executors and not committed.
pub struct ClusterWritten {
    pub adds: Vec<Add>,
    pub rows: u64,
    /// The table's Arrow schema: what the files hold.
    pub target: SchemaRef,
    /// The CSV and JSON files the query reads (for the bad-row scan when a read fails).
    pub text_files: Vec<TextFile>,
}

/// This process's way to a cluster: the in-process scheduler of standalone mode, started
/// on first use. Built by the composition root and handed to the runner.
#[derive(Default)]
pub struct Cluster {
    /// The scheduler URL of standalone mode, once it is started.
    standalone: tokio::sync::OnceCell<String>,
}

/// The engine's settings made ready for Ballista: its own settings and sluice's codec. A
/// big file is read in ranges by several tasks: what the cluster is for. (The embedded
/// engine reads a file whole, for CSV errors' line numbers; the bad-row scan finds exact
/// lines either way.)
fn for_ballista(config: SessionConfig) -> SessionConfig {
    config
        .with_repartition_file_scans(true)
        .upgrade_for_ballista()
        .with_ballista_physical_extension_codec(Arc::new(SluiceCodec::default()))
}

/// A fresh session of `engine`, with an empty catalog of its own, that plans queries for
/// a cluster.
fn cluster_session(engine: &Engine) -> SessionContext {
    engine.session_with(for_ballista)
}

/// The state the scheduler and executor of standalone mode build their sessions from.
fn ballista_state(engine: &Engine) -> SessionState {
    cluster_session(engine).state()
}

impl Cluster {
    /// Runs the partition's query on the cluster, which fits its output to `table` and
    /// uploads it as new files of the Delta table at `url` (nothing is committed). Rows
    /// left out under `bad_rows = "skip"` go to `set_aside` as they come back.
    pub async fn write(
        &self,
        engine: &Engine,
        q: &PartitionQuery<'_>,
        table: &TableSchema,
        (url, layout): (&Url, WriterLayout),
        unknown_column_hint: impl Fn(&str) -> String,
        mut set_aside: impl FnMut(BadRow) -> Result<(), BadRowError>,
    ) -> Result<ClusterWritten, OutputFailure> {
        let prepared = engine
            .prepare_in(cluster_session(engine), q)
            .await
            .map_err(|e| (e.into(), Vec::new()))?;
        let text_files = prepared.text_files.clone();
        let fail = |e: OutputError| (e, text_files.clone());
        let config = prepared.df.task_ctx().session_config().clone();
        let plan = prepared
            .df
            .create_physical_plan()
            .await
            .map_err(|e| fail(crate::engine::execution_error(e).into()))?;
        let rules = FitRules::of(q.job, table, &q.key);
        // Fitted here first, so that a column the table lacks is named with its remedy
        // before anything is sent.
        let target = Fitter::with_rules(rules.clone(), table, &plan.schema(), unknown_column_hint)
            .map_err(|e| fail(e.into()))?
            .target_schema();
        let spec = WriteSpec {
            url: url.clone(),
            table: table.clone(),
            layout,
            fit: rules,
        };
        let plan = Arc::new(PartitionWriteExec::new(plan, Arc::new(spec)));
        let scheduler = self
            .scheduler_url(engine, q)
            .await
            .map_err(|e| fail(e.into()))?;
        // Dialled first, so that a scheduler nobody answers at is told apart from a job
        // that failed (whose error the bad-row scan may need).
        reachable(&scheduler).await.map_err(|e| fail(e.into()))?;
        let mut sent = execute_physical_plan::<PhysicalPlanNode>(
            scheduler.clone(),
            &config.ballista_config(),
            plan,
            &SluiceCodec::default(),
            uuid::Uuid::now_v7().to_string(),
            config,
        )
        .await
        .map_err(|e| fail(cluster_failure(e).into()))?;
        let (mut adds, mut rows) = (Vec::new(), 0u64);
        let bad = |message: String| {
            fail(
                EngineError::Execution {
                    message,
                    transient: false,
                }
                .into(),
            )
        };
        while let Some(batch) = sent.next().await {
            let batch = batch.map_err(|e| fail(cluster_failure(e).into()))?;
            for (kind, payload) in write_exec::read_sent(&batch).map_err(bad)? {
                match kind {
                    Sent::Add => adds.push(
                        serde_json::from_str::<Add>(payload)
                            .map_err(|e| bad(format!("an add action sent back: {e}")))?,
                    ),
                    Sent::Rejected => set_aside(write_exec::rejected_row(payload).map_err(bad)?)
                        .map_err(|e| fail(EngineError::from(e).into()))?,
                    Sent::Rows => {
                        rows += payload
                            .parse::<u64>()
                            .map_err(|e| bad(format!("a row count sent back: {e}")))?
                    }
                }
            }
        }
        // Read by now: the copies put for the executors go (a failed run's go when the
        // scratch drops, best effort).
        prepared.scratch.release().await;
        Ok(ClusterWritten {
            adds,
            rows,
            target,
            text_files: text_files.clone(),
        })
    }

    /// The gRPC URL of the scheduler `q`'s job runs on: the configured one, or this
    /// process's own (started on first use).
    async fn scheduler_url(
        &self,
        engine: &Engine,
        q: &PartitionQuery<'_>,
    ) -> Result<String, EngineError> {
        let scheduler = engine.settings().scheduler.as_ref().ok_or_else(|| {
            EngineError::Setup(format!(
                "job `{}` runs on Ballista (`[engine] kind = \"ballista\"` in its spec), but sluice.toml names no `[engine] scheduler`: add one (df://HOST:50050, or \"standalone\")",
                q.job.name
            ))
        })?;
        match scheduler {
            Scheduler::At(url) => Ok(grpc_url(url)),
            Scheduler::Standalone => Ok(self
                .standalone
                .get_or_try_init(|| start_standalone(engine))
                .await?
                .clone()),
        }
    }
}

/// Starts a scheduler and one executor in this process; returns the scheduler's URL.
async fn start_standalone(engine: &Engine) -> Result<String, EngineError> {
    let state = ballista_state(engine);
    let failed = |e: String| EngineError::Setup(format!("starting Ballista in this process: {e}"));
    let addr = ballista_scheduler::standalone::new_standalone_scheduler_from_state(&state)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let url = format!("http://localhost:{}", addr.port());
    let started = tokio::time::Instant::now();
    let client = loop {
        match SchedulerGrpcClient::connect(url.clone()).await {
            Ok(c) => break c,
            Err(e) if started.elapsed() > STANDALONE_START => {
                return Err(failed(format!(
                    "its scheduler at {url} does not answer: {e}"
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    ballista_executor::new_standalone_executor_from_state(
        client,
        engine.settings().target_partitions,
        &state,
    )
    .await
    .map_err(|e| failed(e.to_string()))?;
    Ok(url)
}

/// `df://host:port` (how sluice.toml names a scheduler) as the URL its gRPC client dials.
fn grpc_url(configured: &str) -> String {
    match Url::parse(configured) {
        Ok(u) => format!(
            "http://{}:{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(50050)
        ),
        Err(_) => configured.to_string(),
    }
}

/// Whether a scheduler answers at `url`; if not, an error naming it.
async fn reachable(url: &str) -> Result<(), EngineError> {
    let dialled = tokio::time::timeout(DIAL, SchedulerGrpcClient::connect(url.to_string())).await;
    let why = match dialled {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", DIAL.as_secs()),
    };
    Err(EngineError::Setup(format!(
        "the Ballista scheduler at {url} cannot be reached ({why}); check that it runs (`sluice ballista scheduler`) and that [engine] scheduler names it"
    )))
}

/// A job the cluster failed. Ballista says why only in text: a lost executor or a broken
/// connection is worth another try (transient); anything else (a bad input row, an error
/// in the SQL) fails the same way again.
fn cluster_failure(e: deltalake::datafusion::error::DataFusionError) -> EngineError {
    let mut failure = crate::engine::execution_error(e);
    if let EngineError::Execution { message, transient } = &mut failure {
        let lower = message.to_lowercase();
        *transient |= [
            "lost",
            "transport error",
            "connection",
            "unavailable",
            "broken pipe",
        ]
        .iter()
        .any(|w| lower.contains(w));
    }
    failure
}
