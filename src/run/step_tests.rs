//! Each step of a run in-process, on the sample project with a temporary catalog and
//! warehouse and a manual clock: the open tables, the inputs, the lease (claim, heartbeat,
//! the check before a commit, reconciling a dead run, settling at shutdown), the write of a
//! partition, and the code ledger.

#![cfg(test)]

use super::claimed::Attempt;
use super::handles::Tables;
use super::inputs::Inputs;
use super::lease::{DIED, Leases};
use super::write::PartitionWrite;
use super::{RunError, RunReport, Trigger};
use crate::catalog::{Catalog, Claim, Lease, RunStart, RunState};
use crate::clock::{Clock as _, ManualClock, SharedClock};
use crate::config::Overrides;
use crate::delta::LeaseCheck;
use crate::engine::Engine;
use crate::job::Job;
use crate::partition::PartitionKey;
use crate::project::Project;
use chrono::TimeZone as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The sample project over a catalog and warehouse of its own, at a manual clock.
struct Fixture {
    _dir: tempfile::TempDir,
    project: Arc<Project>,
    catalog: Catalog,
    clock: ManualClock,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let overrides = Overrides {
            project: Some(env!("CARGO_MANIFEST_DIR").into()),
            catalog: Some(format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("catalog.db").display()
            )),
            warehouse: Some(dir.path().join("warehouse").display().to_string()),
            env: None,
        };
        let project = Project::load(&overrides).expect("the sample project loads");
        let catalog = Catalog::connect(&project.settings.catalog_url)
            .await
            .expect("catalog");
        // The tables exist in the catalog, as after `sluice migrate`.
        let engine = Engine::new(&project.settings.engine, &project.settings.root).expect("engine");
        let applied = catalog.applied_migrations().await.expect("ledger");
        let existing = crate::migrate::existing_tables(&catalog)
            .await
            .expect("tables");
        let plan = crate::migrate::plan(&project.migrations, &applied, &existing).expect("plan");
        let done = crate::migrate::apply(
            &project,
            &catalog,
            &engine,
            &plan,
            crate::migrate::Options::default(),
            "test",
            0,
        )
        .await
        .expect("migrate");
        assert!(done.refused.is_empty(), "{:?}", done.refused);
        let at = chrono::Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap();
        Fixture {
            _dir: dir,
            project: Arc::new(project),
            catalog,
            clock: ManualClock::new(at),
        }
    }

    fn clock(&self) -> SharedClock {
        Arc::new(self.clock.clone())
    }

    fn job(&self, name: &str) -> &Job {
        &self.project.jobs[name]
    }

    fn leases(&self, holder: &str, ttl: Duration) -> Leases {
        Leases::new(self.catalog.clone(), self.clock(), holder.into(), ttl)
    }

    fn start(&self, job: &Job, partition: &str, run_id: &str) -> RunStart {
        RunStart {
            run_id: run_id.into(),
            job: job.name.to_string(),
            table: job.table.to_string(),
            version: i64::from(job.version),
            partition: partition.into(),
            attempt: 1,
            trigger: Trigger::Run,
            fingerprint: "f".into(),
            lease_token: 0,
            host: "h".into(),
            pid: 1,
            started_at: self.clock.now_ms(),
            reads_json: None,
            data_version: None,
        }
    }

    async fn claimed(&self, leases: &Leases, start: &mut RunStart) -> Lease {
        match leases.claim(start, None).await.expect("claim") {
            Claim::Started(lease) | Claim::Look { lease, .. } => lease,
            other => panic!("expected the lease: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_tables_create_and_register_a_version_once() {
    let f = Fixture::new().await;
    let tables = Tables::new(f.catalog.clone(), f.clock());
    let job = f.job("clean_orders");
    let schema = &f.project.declared[&job.table];
    let warehouse = &f.project.settings.warehouse;
    let first = tables.output(warehouse, job, schema).await.expect("output");
    let again = tables.output(warehouse, job, schema).await.expect("output");
    assert!(Arc::ptr_eq(&first, &again), "one handle per version");
    let registered = f
        .catalog
        .table_version(job.table.as_str(), 1)
        .await
        .expect("catalog")
        .expect("the version is registered");
    assert_eq!(registered.uri, first.url.as_str());
    let log = first.url.to_file_path().expect("local").join("_delta_log");
    assert!(log.is_dir(), "{} holds the Delta log", log.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inputs_name_an_upstream_with_nothing_live_and_what_a_partition_waits_for() {
    let f = Fixture::new().await;
    let tables = Tables::new(f.catalog.clone(), f.clock());
    let inputs = Inputs {
        project: &f.project,
        catalog: &f.catalog,
        tables: &tables,
    };
    let job = f.job("daily_revenue");
    let key: PartitionKey = job.parse_partition("2024-01-05").expect("a day");
    match inputs.resolve(job, &key).await {
        Err(RunError::Upstream { table, why, .. }) => {
            assert_eq!(table, "clean_orders");
            assert!(why.contains("no data yet"), "{why}");
        }
        other => panic!("expected the upstream named: {other:?}"),
    }
    let mut seen = Default::default();
    let waits = inputs.waits(job, &key, &mut seen).await.expect("waits");
    assert_eq!(waits, ["clean_orders/2024-01-05"]);
}

/// Two rehearsals (`daemon --replay`) on one catalog: each has a simulated clock that jumps
/// (a retry's backoff passes at once), so one is soon hours ahead of the other. A lease
/// lives in real time all the same: the one ahead finds the other's lease held while that
/// process lives, rather than expired by its own jumps, and does not write the partition
/// a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsal_s_simulated_time_does_not_expire_another_process_s_lease() {
    use crate::clock::SimulatedClock;
    let f = Fixture::new().await;
    let ttl = Duration::from_secs(60);
    let at = chrono::Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap();
    let (a, b) = (ManualClock::new(at), ManualClock::new(at));
    let leases = |holder: &str, clock: &ManualClock| {
        let clock: SharedClock = Arc::new(SimulatedClock(clock.clone()));
        Leases::new(f.catalog.clone(), clock, holder.into(), ttl)
    };
    let (ours, rival) = (leases("ours", &a), leases("rival", &b));
    let job = f.job("clean_orders");
    f.claimed(&ours, &mut f.start(job, "2024-01-05", "run-1"))
        .await;
    // The rival waits out backoffs in its simulated time: hours pass for it at once.
    SimulatedClock(b.clone())
        .sleep(Duration::from_secs(6 * 3600))
        .await;
    let mut theirs = f.start(job, "2024-01-05", "run-2");
    let held = rival.claim(&mut theirs, None).await.expect("claim");
    assert!(
        matches!(held, Claim::Held { ref holder, .. } if holder == "ours"),
        "{held:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_the_lease_and_the_check_before_a_commit_sees_a_takeover() {
    let f = Fixture::new().await;
    let ttl = Duration::from_millis(300);
    let (ours, rival) = (f.leases("ours", ttl), f.leases("rival", ttl));
    let job = f.job("clean_orders");
    let lease = f
        .claimed(&ours, &mut f.start(job, "2024-01-05", "run-1"))
        .await;
    let lost = Arc::new(AtomicBool::new(false));
    let check = ours.still_leased(&lease, &lost);
    assert!(matches!(check().await, LeaseCheck::Held));
    // The clock passes most of the lease; the heartbeat (a third of it, in real time)
    // renews it from the clock's now, so a rival a little later still finds it held.
    let beat = ours.heartbeat(lease.clone(), lost.clone()).await;
    f.clock.advance(chrono::Duration::milliseconds(250));
    tokio::time::sleep(Duration::from_millis(250)).await;
    f.clock.advance(chrono::Duration::milliseconds(150));
    let mut theirs = f.start(job, "2024-01-05", "run-2");
    let held = rival.claim(&mut theirs, None).await.expect("claim");
    assert!(
        matches!(held, Claim::Held { ref holder, .. } if holder == "ours"),
        "{held:?}"
    );
    // Without a heartbeat the lease lapses and the rival takes it over: the check before
    // a commit says so, and so does the next beat.
    beat.abort();
    f.clock.advance(chrono::Duration::seconds(5));
    let mut theirs = f.start(job, "2024-01-05", "run-3");
    let taken = f.claimed(&rival, &mut theirs).await;
    assert_eq!(taken.token, lease.token + 1);
    assert!(matches!(check().await, LeaseCheck::TakenOver));
    let beat = ours.heartbeat(lease.clone(), lost.clone()).await;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !lost.load(Ordering::SeqCst) && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    beat.abort();
    assert!(
        lost.load(Ordering::SeqCst),
        "the heartbeat saw the takeover"
    );
    // A catalog that does not answer leaves the lease unconfirmed, not lost.
    let gone = Leases::new(f.catalog.clone(), f.clock(), "rival".into(), ttl);
    f.catalog.close().await;
    let check = gone.still_leased(&taken, &Arc::new(AtomicBool::new(false)));
    assert!(matches!(check().await, LeaseCheck::Unconfirmed(_)));
}

/// An attempt at `key` of `job` under `lease`, with its table open.
async fn attempt<'a>(
    f: &'a Fixture,
    tables: &Tables,
    job: &'a Job,
    key: PartitionKey,
    lease: Lease,
    ahead: &'a std::sync::Mutex<Option<super::AheadPermit>>,
) -> Attempt<'a> {
    let schema = f.project.declared[&job.table].clone();
    let handle = tables
        .output(&f.project.settings.warehouse, job, &schema)
        .await
        .expect("output");
    Attempt {
        job,
        key,
        scope: super::scope::partition_scope(&schema, job, &key),
        schema,
        handle,
        run_id: lease.run_id.clone(),
        attempt: 1,
        lease,
        lost: Arc::new(AtomicBool::new(false)),
        fingerprint: "f".into(),
        released: AtomicBool::new(false),
        ahead,
        meter: crate::cost::RunMeter::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_commits_a_partition_under_its_lease_and_a_dead_run_is_reconciled() {
    let f = Fixture::new().await;
    let ttl = Duration::from_secs(60);
    let leases = f.leases("ours", ttl);
    let tables = Tables::new(f.catalog.clone(), f.clock());
    let engine = Engine::new(&f.project.settings.engine, &f.project.settings.root).expect("engine");
    let job = f.job("clean_orders");
    let key: PartitionKey = job.parse_partition("2024-01-05").expect("a day");
    let lease = f
        .claimed(&leases, &mut f.start(job, "2024-01-05", "run-1"))
        .await;
    let ahead = std::sync::Mutex::new(None);
    let a = attempt(&f, &tables, job, key, lease, &ahead).await;
    let clock = f.clock();
    let write = PartitionWrite {
        project: f.project.clone(),
        catalog: &f.catalog,
        engine: &engine,
        cluster: &crate::cluster::Cluster::default(),
        clock: &clock,
        leases: &leases,
        compute: None,
    };
    let mut report = RunReport::new(job, &key, 1);
    let (rows, delta_version) = write
        .run(&a, Vec::new(), &mut report)
        .await
        .expect("written");
    assert!(rows > 0, "the day has orders");
    let table = a.handle.latest();
    let landed = crate::delta::landed_token(&mut (*table).clone(), "2024-01-05")
        .await
        .expect("log");
    assert_eq!(
        landed,
        Some(a.lease.token),
        "the commit carries the lease's token"
    );
    assert_eq!(table.version(), Some(delta_version));
    // The run dies before telling the catalog: the next worker, once the lease expired,
    // finds the commit in the log and records the dead run as succeeded.
    f.clock.advance(chrono::Duration::seconds(120));
    let next = f.leases("next", ttl);
    let mut start = f.start(job, "2024-01-05", "run-2");
    let (lease, status) = match next.claim(&mut start, None).await.expect("claim") {
        Claim::Look { lease, status } => (lease, status),
        other => panic!("expected a look at the dead run: {other:?}"),
    };
    let status = next
        .reconcile(&a.handle, &a.scope, &lease, *status, (DIED, &[]))
        .await
        .expect("reconciled");
    let dead = f.catalog.run("run-1").await.expect("catalog").expect("run");
    assert_eq!(dead.state, RunState::Succeeded);
    assert_eq!(status.and_then(|s| s.content_rows), Some(rows as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_at_shutdown_abandons_a_run_that_never_committed_and_frees_its_lease() {
    let f = Fixture::new().await;
    let leases = f.leases("ours", Duration::from_secs(60));
    let tables = Tables::new(f.catalog.clone(), f.clock());
    let job = f.job("clean_orders");
    f.claimed(&leases, &mut f.start(job, "2024-01-06", "run-1"))
        .await;
    // The daemon cancelled the run before its commit; the lease is still ours.
    assert_eq!(leases.settle_own(&f.project, &tables).await, 1);
    let run = f.catalog.run("run-1").await.expect("catalog").expect("run");
    assert_eq!(run.state, RunState::Abandoned);
    let held = f
        .catalog
        .leases_held_by("ours", f.clock.now_ms())
        .await
        .expect("catalog");
    assert!(held.is_empty(), "released at once: {held:?}");
    // Another worker claims it now, without waiting for the lease to expire.
    let next = f.leases("next", Duration::from_secs(60));
    f.claimed(&next, &mut f.start(job, "2024-01-06", "run-2"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_code_ledger_gives_back_the_job_as_the_code_that_wrote_a_version_had_it() {
    let f = Fixture::new().await;
    let ledger = super::code::CodeLedger::new(f.catalog.clone(), f.clock());
    let job = f.job("clean_orders");
    ledger.record(job, "fp-1").await;
    let root = &f.project.settings.root;
    let same = ledger
        .job_at_version(root, job, job.version)
        .await
        .expect("ledger");
    assert_eq!(same.map(|j| j.sql), Some(job.sql.clone()));
    // Version 2 is built by new code; a shadow run of v1 gets v1's recorded code back.
    let mut v2 = job.clone();
    v2.version = 2;
    let v1 = ledger.job_at_version(root, &v2, 1).await.expect("ledger");
    assert_eq!(v1.map(|j| (j.version, j.sql)), Some((1, job.sql.clone())));
    assert!(
        ledger
            .job_at_version(root, &v2, 7)
            .await
            .expect("ledger")
            .is_none()
    );
}
