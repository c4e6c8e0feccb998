//! Running a job's query on Apache Ballista: the session that sends it to a scheduler, and
//! the in-process scheduler and executor of `scheduler = "standalone"`.
//!
//! Only the query goes to the cluster; the rows come back to this process, which fits,
//! profiles and writes them as it does the embedded engine's. What a Ballista plan may
//! hold is narrower than what a session may: tables must be files (a `ListingTable`) or
//! views of them, so an upstream Delta table is registered as its snapshot's Parquet files
//! (`delta::snapshot_files`), never through deltalake's scan.

use super::{Engine, EngineError};
use crate::config::Scheduler;
use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::execution::session_state::SessionState;
use deltalake::datafusion::prelude::SessionContext;
use std::time::Duration;

/// How long the in-process scheduler may take to answer after it starts.
const STANDALONE_START: Duration = Duration::from_secs(10);

impl Engine {
    /// The template's state, made ready for Ballista: the one the scheduler and executor
    /// of standalone mode build their sessions from, and the client's starting point.
    fn ballista_state(&self) -> SessionState {
        let config = self.template.config().clone().upgrade_for_ballista();
        SessionStateBuilder::new_from_existing(self.template.clone())
            .with_config(config)
            .build()
    }

    /// A fresh session whose queries run on `scheduler`, with an empty catalog of its own.
    pub(super) async fn cluster_session(
        &self,
        scheduler: &Scheduler,
    ) -> Result<SessionContext, EngineError> {
        let url = match scheduler {
            Scheduler::At(url) => url.clone(),
            Scheduler::Standalone => self
                .standalone
                .get_or_try_init(|| self.start_standalone())
                .await?
                .clone(),
        };
        let ctx = SessionContext::remote_with_state(&url, self.ballista_state())
            .await
            .map_err(|e| EngineError::Setup(format!("the Ballista scheduler at {url}: {e}")))?;
        ctx.register_catalog_list(self.own_catalogs());
        Ok(ctx)
    }

    /// Starts a scheduler and one executor in this process; returns the scheduler's URL.
    async fn start_standalone(&self) -> Result<String, EngineError> {
        let state = self.ballista_state();
        let failed =
            |e: String| EngineError::Setup(format!("starting Ballista in this process: {e}"));
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
            self.settings.target_partitions,
            &state,
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
        Ok(format!("df://localhost:{}", addr.port()))
    }
}
