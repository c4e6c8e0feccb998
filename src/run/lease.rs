//! The lease's lifecycle around a run, as a step of its own ([`Leases`]): the claim, the
//! heartbeat that renews it, the check just before a commit, reconciling a run that died
//! under it (the Delta log says whether its commit landed), and settling this process's
//! own leases when a daemon cancels its runs at shutdown.

use super::RunError;
use super::handles::Tables;
use super::scope::partition_scope;
use crate::catalog::{Catalog, Claim, DoneIf, Lease, PartitionState, PartitionStatus, RunStart};
use crate::clock::SharedClock;
use crate::delta::{self, LeaseCheck, Scope, StillLeased, VersionHandle};
use crate::project::Project;
use futures::FutureExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::{Instrument as _, info, warn};

/// Why a run that never committed is abandoned: its process died (found by the next
/// worker once the lease expired), or its daemon cancelled it at shutdown.
pub(super) const DIED: &str = "the process stopped before committing; its lease expired";
const CANCELLED: &str = "cancelled by the daemon's shutdown after the grace period, before committing; nothing was written";

/// A spawned task that ends with its owner.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The lease heartbeats' own thread, with a runtime and a catalog connection of its own:
/// a partition whose compute holds every worker thread of the main runtime (DataFusion's
/// operators run there) cannot hold a heartbeat back past the lease, and another worker
/// never takes a live partition over. The thread ends when the runner drops this.
pub(super) struct Heartbeats {
    handle: tokio::runtime::Handle,
    catalog: Catalog,
    /// Dropped with the runner: the thread's runtime then stops.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Heartbeats {
    async fn start(main: Catalog) -> Result<Heartbeats, String> {
        let (ready, answer) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sluice-heartbeat".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                };
                // Made inside this runtime: its connection is driven here.
                let catalog = rt.block_on(async { main.twin() });
                drop(main);
                let catalog = catalog.map_err(|e| e.to_string());
                let _ = ready.send(catalog.map(|c| (rt.handle().clone(), c)));
                let _ = rt.block_on(stopped);
            });
        thread.map_err(|e| e.to_string())?;
        let (handle, catalog) = answer
            .await
            .map_err(|_| "the heartbeat thread stopped".to_string())??;
        Ok(Heartbeats {
            handle,
            catalog,
            _stop: stop,
        })
    }
}

/// This process's leases: who it is in the leases table, how long a lease lives, and the
/// heartbeats' thread (started with the first run).
pub(super) struct Leases {
    catalog: Catalog,
    clock: SharedClock,
    /// Who we are in the leases table: host, process, and a random part.
    holder: String,
    ttl: Duration,
    heartbeats: tokio::sync::OnceCell<Heartbeats>,
}

impl Leases {
    pub(super) fn new(
        catalog: Catalog,
        clock: SharedClock,
        holder: String,
        ttl: Duration,
    ) -> Leases {
        Leases {
            catalog,
            clock,
            holder,
            ttl,
            heartbeats: tokio::sync::OnceCell::new(),
        }
    }

    pub(super) fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes the partition's lease for `start`'s run (recorded as started in the same
    /// write), unless another worker holds it; see [`Catalog::claim`].
    pub(super) async fn claim(
        &self,
        start: &mut RunStart,
        done_if: Option<DoneIf>,
    ) -> Result<Claim, RunError> {
        let ttl_ms = self.ttl.as_millis() as i64;
        Ok(self
            .catalog
            .claim(
                start,
                &self.holder,
                (self.clock.lease_now_ms(), ttl_ms),
                done_if,
            )
            .await?)
    }

    /// Asked just before a commit of the run's output or dead letters: is the lease still
    /// ours? Renewed rather than only looked at: a lease whose heartbeat came late but that
    /// nobody took is still ours, and the commit that follows gets a whole TTL.
    pub(super) fn still_leased(&self, lease: &Lease, lost: &Arc<AtomicBool>) -> StillLeased {
        let (catalog, clock) = (self.catalog.clone(), self.clock.clone());
        let (lease, lost) = (lease.clone(), lost.clone());
        let ttl_ms = self.ttl.as_millis() as i64;
        Arc::new(move || {
            let (catalog, clock, lease, lost) =
                (catalog.clone(), clock.clone(), lease.clone(), lost.clone());
            async move {
                if lost.load(Ordering::SeqCst) {
                    return LeaseCheck::TakenOver;
                }
                match catalog
                    .renew_lease(&lease, ttl_ms, clock.lease_now_ms())
                    .await
                {
                    Ok(true) => LeaseCheck::Held,
                    Ok(false) => LeaseCheck::TakenOver,
                    Err(e) => LeaseCheck::Unconfirmed(crate::redact::redact_text(&e.to_string())),
                }
            }
            .boxed()
        })
    }

    /// Renews the lease every third of its time to live until aborted; sets `lost` when
    /// another worker took the partition. Runs on the heartbeat thread (see
    /// [`Heartbeats`]), or on the caller's runtime if that thread could not start.
    pub(super) async fn heartbeat(
        &self,
        lease: Lease,
        lost: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let own = self
            .heartbeats
            .get_or_try_init(|| Heartbeats::start(self.catalog.clone()))
            .await;
        let (catalog, handle) = match own {
            Ok(h) => (h.catalog.clone(), Some(h.handle.clone())),
            Err(e) => {
                warn!(error = %crate::redact::redact_text(&e), "the lease heartbeat has no thread of its own; it shares the runtime");
                (self.catalog.clone(), None)
            }
        };
        let clock = self.clock.clone();
        let ttl = self.ttl;
        let beat = async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if crate::failpoint::is_set("no_heartbeat") {
                    continue;
                }
                match catalog
                    .renew_lease(&lease, ttl.as_millis() as i64, clock.lease_now_ms())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!("lease lost: another worker took the partition");
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => warn!(error = %e, "lease heartbeat failed; will retry"),
                }
            }
        }
        .in_current_span();
        match handle {
            Some(h) => h.spawn(beat),
            None => tokio::spawn(beat),
        }
    }

    /// A previous run of this partition, `p.last_run_id`, is still marked running, and it
    /// died: we hold the lease now, so its lease expired. The Delta log says whether its
    /// commit landed: the partition's `txn` carries the token of the last writer that
    /// committed. Returns the partition's state after reconciling.
    pub(super) async fn reconcile(
        &self,
        handle: &VersionHandle,
        scope: &Scope,
        lease: &Lease,
        p: PartitionStatus,
        (why, tell): (&str, &[String]),
    ) -> Result<Option<PartitionStatus>, RunError> {
        let partition = lease.partition.as_str();
        let status = Some(p.clone());
        let Some(prev) = self.catalog.run(&p.last_run_id).await? else {
            return Ok(status);
        };
        let mut table = handle.lock().await;
        let landed = delta::landed_token(&mut table, partition).await?;
        let now = self.clock.now_ms();
        if landed.is_some_and(|t| t >= prev.lease_token) {
            let rows = delta::partition_rows(&table, scope).await?;
            let dv = table.version().unwrap_or_default() as i64;
            info!(previous_run = %prev.run_id, rows, "previous run's commit had landed; recording it as succeeded");
            self.catalog
                .reconcile_landed_run(&prev, rows, dv, now, tell)
                .await?;
        } else {
            if why == DIED {
                info!(previous_run = %prev.run_id, "previous run died before committing; marking it abandoned");
            } else {
                info!(previous_run = %prev.run_id, why, "run ended before committing; marking it abandoned");
            }
            let told = (!tell.is_empty()).then_some((&prev, tell));
            self.catalog
                .abandon_run_telling(&prev.run_id, why, now, told)
                .await?;
        }
        drop(table);
        Ok(self
            .catalog
            .partition_status(&lease.table, lease.version, partition)
            .await?)
    }

    /// After runs were cancelled (a daemon's shutdown after its grace period): for each
    /// lease this process still holds, records what became of the run, as a later worker
    /// would after the lease expired (its commit landed, or it is abandoned), and releases
    /// the lease at once. Returns how many were settled.
    pub(super) async fn settle_own(&self, project: &Project, tables: &Tables) -> usize {
        let leases = match self
            .catalog
            .leases_held_by(&self.holder, self.clock.lease_now_ms())
            .await
        {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "could not list this process's leases; they expire by themselves");
                return 0;
            }
        };
        let mut settled = 0;
        for lease in leases {
            if let Err(e) = self.settle_one(project, tables, &lease).await {
                warn!(table = %lease.table, partition = %lease.partition, error = %e, "could not settle a cancelled run; the next worker does it once the lease expires");
                continue;
            }
            settled += 1;
        }
        settled
    }

    async fn settle_one(
        &self,
        project: &Project,
        tables: &Tables,
        lease: &Lease,
    ) -> Result<(), RunError> {
        let job = project
            .jobs
            .values()
            .find(|j| j.table.as_str() == lease.table && i64::from(j.version) == lease.version);
        let status = self
            .catalog
            .partition_status(&lease.table, lease.version, &lease.partition)
            .await?;
        if let (Some(job), Some(status)) = (job, status)
            && status.state == PartitionState::Running
        {
            let schema = self
                .catalog
                .table(&lease.table)
                .await?
                .ok_or_else(|| RunError::TableNotMigrated {
                    table: lease.table.clone(),
                })?
                .schema;
            let key = job
                .parse_partition(&lease.partition)
                .map_err(|e| RunError::NotRunnable(format!("lease on unknown partition: {e}")))?;
            let scope = partition_scope(&schema, job, &key);
            let handle = tables
                .output(&project.settings.warehouse, job, &schema)
                .await?;
            self.reconcile(&handle, &scope, lease, status, (CANCELLED, &[]))
                .await?;
        }
        self.catalog.release_lease(lease).await?;
        Ok(())
    }
}
