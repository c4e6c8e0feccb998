//! The lease and run state machine: claim (lease + run start), renew, finish, reconcile a
//! dead run from the Delta log, abandon, release.

use super::changes::{Followed, STAMP, bump_in};
use super::run_writes::{insert_run_start, release_lease_in};
use super::write_group::{Write, Written};
use super::{
    Catalog, CatalogError, Claim, DoneIf, FinishEvents, Lease, PartitionState, RunEnd, RunMeasures,
    RunRow, RunStart, RunState, query_err,
};

impl Catalog {
    /// Extends a lease still held with `lease.token` to `now_ms + ttl_ms`. False when it was
    /// lost: taken by another worker, which raises the token. A lease that lapsed (a
    /// heartbeat late on a loaded machine) but that nobody claimed is still this holder's:
    /// no other writer can have run under it, and the update is atomic with a claim's.
    /// A commit renews first, so it never commits under a lease that could be taken
    /// while it looks.
    pub async fn renew_lease(
        &self,
        lease: &Lease,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<bool, CatalogError> {
        let n = sqlx::query(
            "UPDATE leases SET expires_at = $1 WHERE table_name = $2 AND table_version = $3 AND partition_key = $4 AND token = $5 AND holder = $6",
        )
        .bind(now_ms + ttl_ms)
        .bind(&lease.table)
        .bind(lease.version)
        .bind(&lease.partition)
        .bind(lease.token)
        .bind(&lease.holder)
        .execute(&self.writer)
        .await
        .map_err(query_err("renew lease"))?
        .rows_affected();
        Ok(n == 1)
    }

    /// The unexpired leases `holder` holds: what a stopping daemon must settle.
    pub async fn leases_held_by(
        &self,
        holder: &str,
        now_ms: i64,
    ) -> Result<Vec<Lease>, CatalogError> {
        let rows: Vec<(String, i64, String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT table_name, table_version, partition_key, token, holder, run_id FROM leases WHERE holder = $1 AND expires_at > $2",
        )
        .bind(holder)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list leases"))?;
        Ok(rows
            .into_iter()
            .map(|(table, version, partition, token, holder, run_id)| Lease {
                table,
                version,
                partition,
                token,
                holder,
                run_id: run_id.unwrap_or_default(),
            })
            .collect())
    }

    pub async fn release_lease(&self, lease: &Lease) -> Result<(), CatalogError> {
        let mut conn = self
            .writer
            .acquire()
            .await
            .map_err(query_err("release lease"))?;
        release_lease_in(&mut conn, lease).await
    }

    /// Takes the partition's lease and, in the same transaction, records the run as started,
    /// unless the partition needs a look first: left running by another run (a dead worker:
    /// reconcile it), or done by another worker as `done_if` says. One
    /// catalog write for the common case, shared with the writes that arrive with it (see
    /// `write_group`). Sets `start.lease_token`. `(now_ms, ttl_ms)`: the lease's time (see
    /// [`crate::clock::Clock::lease_now_ms`]) and how long it lives.
    pub async fn claim(
        &self,
        start: &mut RunStart,
        holder: &str,
        (now_ms, ttl_ms): (i64, i64),
        done_if: Option<DoneIf>,
    ) -> Result<Claim, CatalogError> {
        let write = Write::Claim {
            start: start.clone(),
            holder: holder.to_string(),
            now_ms,
            ttl_ms,
            done_if,
            env: self.env.clone(),
        };
        match self.write(write).await? {
            Written::Claim(claim) => {
                if let Claim::Started(lease) | Claim::Look { lease, .. } = claim.as_ref() {
                    start.lease_token = lease.token;
                }
                Ok(*claim)
            }
            Written::Finish => Err(CatalogError::Lost("a claim was answered as a finish")),
        }
    }

    /// Records a run as started and its partition as running, in one transaction.
    pub async fn start_run(&self, r: &RunStart) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        bump_in(&mut tx, &r.table, Followed::ByPartition).await?;
        insert_run_start(&mut tx, r).await?;
        tx.commit().await.map_err(query_err("commit run start"))
    }

    /// Records how a run ended (and releases its lease, when given, in the same write). The
    /// partition row changes only if this run is still its last run: a stale worker's late
    /// report cannot overwrite a newer run's state.
    pub async fn finish_run(
        &self,
        start: &RunStart,
        end: &RunEnd,
        now_ms: i64,
        release: Option<&Lease>,
        measured: &RunMeasures,
    ) -> Result<(), CatalogError> {
        self.finish_run_telling(
            start,
            end,
            now_ms,
            release,
            measured,
            FinishEvents::default(),
        )
        .await
    }

    /// [`Catalog::finish_run`], recording `events` (the notifications the end causes) in
    /// the same transaction.
    pub async fn finish_run_telling(
        &self,
        start: &RunStart,
        end: &RunEnd,
        now_ms: i64,
        release: Option<&Lease>,
        measured: &RunMeasures,
        events: FinishEvents,
    ) -> Result<(), CatalogError> {
        let write = Write::Finish {
            start: start.clone(),
            end: end.clone(),
            now_ms,
            release: release.cloned(),
            measured: Box::new(measured.clone()),
            events,
        };
        match self.write(write).await? {
            Written::Finish => Ok(()),
            Written::Claim(_) => Err(CatalogError::Lost("a finish was answered as a claim")),
        }
    }

    /// A run that was left `running` by a process that died, found committed in the Delta
    /// log (its fencing token is there): record it as the success it was.
    /// `tell`: the targets of `lease_lost` (its worker stopped; this one took the lease).
    pub async fn reconcile_landed_run(
        &self,
        run: &RunRow,
        rows: i64,
        delta_version: i64,
        now_ms: i64,
        tell: &[String],
    ) -> Result<(), CatalogError> {
        let start = RunStart {
            run_id: run.run_id.clone(),
            job: run.job.clone(),
            table: run.table_name.clone(),
            version: run.table_version,
            partition: run.partition_key.clone(),
            attempt: run.attempt,
            trigger: run.trigger_kind,
            fingerprint: run.fingerprint.clone(),
            lease_token: run.lease_token,
            host: run.host.clone(),
            pid: run.pid,
            started_at: run.started_at,
            reads_json: None,
            data_version: None,
        };
        let events = FinishEvents {
            events: vec![super::TellOf {
                kind: crate::notify::EventKind::LeaseLost,
                detail: None,
                to: tell.to_vec(),
            }],
            recovered: Vec::new(),
        };
        let end = RunEnd::Succeeded {
            rows,
            delta_version,
        };
        self.finish_run_telling(&start, &end, now_ms, None, &RunMeasures::default(), events)
            .await
    }

    /// Marks a run left `running` by a dead process as failed, if it is still running.
    pub async fn abandon_run(
        &self,
        run_id: &str,
        why: &str,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        self.abandon_run_telling(run_id, why, now_ms, None).await
    }

    /// [`Catalog::abandon_run`], recording `lease_lost` for `tell`'s targets in the same
    /// transaction: the run's worker stopped, and another took its lease over.
    pub async fn abandon_run_telling(
        &self,
        run_id: &str,
        why: &str,
        now_ms: i64,
        tell: Option<(&RunRow, &[String])>,
    ) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        // The run's table counts a change first, as every write of a partition does: on
        // PostgreSQL its counter is the first row each such transaction locks, so that
        // two of them never wait on each other's rows in turn.
        let table: Option<String> =
            sqlx::query_scalar("SELECT table_name FROM runs WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_err("abandon run"))?;
        if let Some(table) = &table {
            bump_in(&mut tx, table, Followed::ByPartition).await?;
        }
        if let Some((run, targets)) = tell {
            let ev = super::outbox::NewEvent {
                kind: crate::notify::EventKind::LeaseLost,
                job: Some(&run.job),
                partition: Some(&run.partition_key),
                run_id: Some(&run.run_id),
                error: Some(why),
                dedup_key: format!("lease_lost:{}", run.run_id),
            };
            super::outbox::insert_event(&mut tx, &ev, now_ms, targets).await?;
        }
        sqlx::query("UPDATE runs SET state = $4, error = $1, finished_at = $2 WHERE run_id = $3 AND state = $5")
            .bind(why)
            .bind(now_ms)
            .bind(run_id)
            .bind(RunState::Abandoned.as_str())
            .bind(RunState::Running.as_str())
            .execute(&mut *tx)
            .await
            .map_err(query_err("abandon run"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE partitions SET state = $4, error = $1, updated_at = $2, change_seq = {STAMP}, {end} \
             WHERE last_run_id = $3 AND state = $5",
            end = super::run_writes::last_run_end("$3")
        )))
            .bind(why)
            .bind(now_ms)
            .bind(run_id)
            .bind(PartitionState::Failed.as_str())
            .bind(PartitionState::Running.as_str())
            .execute(&mut *tx)
            .await
            .map_err(query_err("abandon partition"))?;
        tx.commit().await.map_err(query_err("commit abandon"))
    }
}
