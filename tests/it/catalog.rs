//! The catalog in-process, on SQLite or (with `SLUICE_TEST_CATALOG`) PostgreSQL: the lease
//! and run state machine, and alias flips with each precondition failing. Each scenario is
//! a table of steps, one line each, checked in order; a failing step names its line.

use crate::util::{create_database, remote_catalog};
use sluice::catalog::{
    Catalog, Claim, EnvBuild, FIRST_ENV_VERSION, Flip, Lease, NewEnv, PartitionState, RunEnd,
    RunStart, RunState, Trigger,
};
use sluice::schema::ddl::{Statement, parse};
use std::collections::HashMap;

const TTL: i64 = 1_000;
const TABLE: &str = "t";

/// A fresh, empty catalog: a SQLite file in a temp folder, or a new PostgreSQL database.
async fn fresh() -> (Catalog, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match remote_catalog() {
        Some(admin) => create_database(&admin),
        None => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("catalog.db").display()
        ),
    };
    let catalog = Catalog::connect(&url).await.expect("catalog connects");
    (catalog, dir)
}

/// Creates table `name` (as `sluice migrate` would) with physical versions 1..=versions;
/// the alias points at v1.
async fn table(c: &Catalog, name: &str, versions: i64) {
    let ddl = format!("CREATE TABLE {name} (x BIGINT, dt DATE NOT NULL) PARTITIONED BY (dt);");
    let Statement::CreateTable { schema, .. } = parse(&ddl).expect("ddl parses").remove(0) else {
        panic!("not a CREATE TABLE");
    };
    let mut tx = c
        .begin_migration(&format!("0001_{name}.sql"), "sum", "test", 0)
        .await
        .unwrap()
        .expect("migration is new");
    tx.create_table(&schema).await.unwrap();
    tx.commit().await.unwrap();
    for v in 1..=versions {
        c.register_table_version(
            name,
            v,
            &format!("file:///w/{name}/v{v}/"),
            &schema.to_json(),
            "test",
            0,
        )
        .await
        .unwrap();
    }
}

/// How a claim should come out.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Claimed {
    /// Lease taken with this fencing token; the run is recorded as started.
    Started(i64),
    /// Lease taken with this token; the partition (in this state) needs a look first.
    Look(i64, PartitionState),
    /// Another worker holds it.
    Held(&'static str),
}

/// One line of a lease scenario. `who` names a worker; times are milliseconds.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `who` claims partition `p` of v1 at `at`, skipping if done since `since`.
    Claim(&'static str, &'static str, i64, Option<i64>, Claimed),
    /// `who` renews its lease on `p` at `at`; whether that worked.
    Renew(&'static str, &'static str, i64, bool),
    /// `who` records its run on `p` as started (after a look).
    Start(&'static str, &'static str, i64),
    /// `who`'s run on `p` ends (ok or failed) at `at`, releasing its lease.
    Finish(&'static str, &'static str, i64, bool),
    /// `who`'s run on `p` was found committed in the Delta log: recorded as succeeded.
    Landed(&'static str, &'static str, i64),
    /// `who`'s run on `p` died before committing: abandoned.
    Abandon(&'static str, &'static str, i64),
    /// `who` releases its lease on `p` without finishing.
    Release(&'static str, &'static str),
    /// Partition `p` is in this state, its content written by `who`'s run (or nobody's).
    Partition(&'static str, PartitionState, Option<&'static str>),
    /// `who`'s last run on `p` is in this state.
    Run(&'static str, &'static str, RunState),
    /// The unexpired leases `who` holds at `at`, as partitions.
    HeldBy(&'static str, i64, &'static [&'static str]),
}

/// Plays `steps` on a fresh catalog with table `t` v1.
async fn play(steps: &[Step]) {
    let (c, _dir) = fresh().await;
    table(&c, TABLE, 1).await;
    let mut mine: HashMap<(&str, &str), (Lease, RunStart)> = HashMap::new();
    for (line, step) in steps.iter().enumerate() {
        let at = format!("step {} {step:?}", line + 1);
        match *step {
            Step::Claim(who, p, now, since, expect) => {
                let mut start = run_start(who, p, now);
                let got = c
                    .claim(
                        &mut start,
                        who,
                        (now, TTL),
                        since.map(sluice::catalog::DoneIf::CompletedSince),
                    )
                    .await
                    .expect(&at);
                let got = match got {
                    Claim::Started(lease) => {
                        let t = lease.token;
                        mine.insert((who, p), (lease, start));
                        Claimed::Started(t)
                    }
                    Claim::Look { lease, status } => {
                        let t = lease.token;
                        mine.insert((who, p), (lease, start));
                        Claimed::Look(t, status.state)
                    }
                    Claim::Held { holder, .. } => {
                        Claimed::Held(if holder.is_empty() { "" } else { leak(holder) })
                    }
                };
                assert_eq!(got, expect, "{at}");
            }
            Step::Renew(who, p, now, expect) => {
                let (lease, _) = &mine[&(who, p)];
                assert_eq!(
                    c.renew_lease(lease, TTL, now).await.expect(&at),
                    expect,
                    "{at}"
                );
            }
            Step::Start(who, p, now) => {
                let (_, start) = mine.get_mut(&(who, p)).expect(&at);
                start.started_at = now;
                c.start_run(start).await.expect(&at);
            }
            Step::Finish(who, p, now, ok) => {
                let (lease, start) = &mine[&(who, p)];
                let end = if ok {
                    RunEnd::Succeeded {
                        rows: 10,
                        delta_version: 1,
                    }
                } else {
                    RunEnd::Failed {
                        error: "boom".into(),
                    }
                };
                c.finish_run(start, &end, now, Some(lease), &Default::default())
                    .await
                    .expect(&at);
            }
            Step::Landed(who, p, now) => {
                let run = c
                    .run(&mine[&(who, p)].1.run_id)
                    .await
                    .expect(&at)
                    .expect(&at);
                c.reconcile_landed_run(&run, 10, 2, now, &[])
                    .await
                    .expect(&at);
            }
            Step::Abandon(who, p, now) => {
                c.abandon_run(&mine[&(who, p)].1.run_id, "died", now)
                    .await
                    .expect(&at);
            }
            Step::Release(who, p) => {
                c.release_lease(&mine[&(who, p)].0).await.expect(&at);
            }
            Step::Partition(p, state, content_by) => {
                let s = c
                    .partition_status(TABLE, 1, p)
                    .await
                    .expect(&at)
                    .expect(&at);
                assert_eq!(s.state, state, "{at}");
                let by = content_by.map(|w| mine[&(w, p)].1.run_id.clone());
                assert_eq!(s.content_run_id, by, "{at}: content run");
            }
            Step::Run(who, p, state) => {
                let run = c
                    .run(&mine[&(who, p)].1.run_id)
                    .await
                    .expect(&at)
                    .expect(&at);
                assert_eq!(run.state, state, "{at}");
            }
            Step::HeldBy(who, now, parts) => {
                let mut got: Vec<String> = c
                    .leases_held_by(who, now)
                    .await
                    .expect(&at)
                    .into_iter()
                    .map(|l| l.partition)
                    .collect();
                got.sort();
                assert_eq!(got, parts, "{at}");
            }
        }
    }
    c.close().await;
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn run_start(who: &str, p: &str, now: i64) -> RunStart {
    RunStart {
        run_id: uuid::Uuid::now_v7().to_string(),
        job: "j".into(),
        table: TABLE.into(),
        version: 1,
        partition: p.into(),
        attempt: 1,
        trigger: Trigger::Backfill,
        fingerprint: format!("fp-{who}"),
        lease_token: 0,
        host: who.into(),
        pid: 1,
        started_at: now,
        reads_json: None,
        data_version: None,
    }
}

use PartitionState as P;
use Step::*;

const D1: &str = "2024-01-01";
const D2: &str = "2024-01-02";

#[tokio::test]
async fn a_claim_starts_the_run_and_a_finish_records_content_and_frees_the_lease() {
    play(&[
        Claim("a", D1, 0, None, Claimed::Started(1)),
        Partition(D1, P::Running, None),
        Run("a", D1, RunState::Running),
        HeldBy("a", 10, &[D1]),
        Finish("a", D1, 20, true),
        Partition(D1, P::Complete, Some("a")),
        Run("a", D1, RunState::Succeeded),
        HeldBy("a", 30, &[]),
        // Released at once: the next claim needs no expiry, and its token is higher.
        Claim("b", D1, 40, None, Claimed::Started(2)),
    ])
    .await;
}

#[tokio::test]
async fn a_live_lease_is_held_and_renewing_keeps_it_even_after_a_lapse_nobody_claimed() {
    play(&[
        Claim("a", D1, 0, None, Claimed::Started(1)),
        Claim("b", D1, 500, None, Claimed::Held("a")),
        Renew("a", D1, 900, true),
        // Would have expired at 1000 without the renewal.
        Claim("b", D1, 1_500, None, Claimed::Held("a")),
        // Lapsed at 1900 (a late heartbeat), but nobody claimed it: still a's, and renewing
        // (as a commit does first) keeps it from the next claim.
        Renew("a", D1, 2_400, true),
        Claim("b", D1, 3_000, None, Claimed::Held("a")),
        HeldBy("a", 3_000, &[D1]),
    ])
    .await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_a_higher_token_and_the_old_holder_is_fenced() {
    play(&[
        Claim("a", D1, 0, None, Claimed::Started(1)),
        Claim("b", D1, 1_000, None, Claimed::Look(2, P::Running)),
        Renew("a", D1, 1_001, false),
        Renew("b", D1, 1_001, true),
        Claim("c", D1, 1_003, None, Claimed::Held("b")),
    ])
    .await;
}

#[tokio::test]
async fn other_partitions_lease_independently() {
    play(&[
        Claim("a", D1, 0, None, Claimed::Started(1)),
        Claim("b", D2, 0, None, Claimed::Started(1)),
        HeldBy("a", 1, &[D1]),
        HeldBy("b", 1, &[D2]),
    ])
    .await;
}

#[tokio::test]
async fn a_dead_runs_landed_commit_is_reconciled_as_its_success() {
    play(&[
        Claim("a", D1, 0, None, Claimed::Started(1)),
        Claim("b", D1, 2_000, None, Claimed::Look(2, P::Running)),
        Landed("a", D1, 2_001),
        Run("a", D1, RunState::Succeeded),
        Partition(D1, P::Complete, Some("a")),
    ])
    .await;
}

#[tokio::test]
async fn a_dead_run_that_never_committed_is_abandoned_and_the_partition_failed() {
    play(&[
        Claim("a", D1, 0, None, Claimed::Started(1)),
        Claim("b", D1, 2_000, None, Claimed::Look(2, P::Running)),
        Abandon("a", D1, 2_001),
        Run("a", D1, RunState::Abandoned),
        Partition(D1, P::Failed, None),
        Start("b", D1, 2_002),
        Partition(D1, P::Running, None),
        Finish("b", D1, 2_003, true),
        Partition(D1, P::Complete, Some("b")),
    ])
    .await;
}

#[tokio::test]
async fn a_stale_workers_late_finish_does_not_overwrite_the_newer_run() {
    play(&[
        Claim("a", D1, 0, None, Claimed::Started(1)),
        Claim("b", D1, 2_000, None, Claimed::Look(2, P::Running)),
        Abandon("a", D1, 2_001),
        Start("b", D1, 2_002),
        // `a` comes back from a pause and reports success: its own run row changes, the
        // partition (whose last run is b's) does not.
        Finish("a", D1, 2_003, true),
        Partition(D1, P::Running, None),
        Finish("b", D1, 2_004, false),
        Partition(D1, P::Failed, None),
        Run("b", D1, RunState::Failed),
    ])
    .await;
}

#[tokio::test]
async fn a_partition_done_since_the_callers_cut_off_needs_a_look_and_an_older_one_does_not() {
    play(&[
        Claim("a", D1, 0, None, Claimed::Started(1)),
        Finish("a", D1, 100, true),
        Claim("b", D1, 200, Some(50), Claimed::Look(2, P::Complete)),
        Release("b", D1),
        Claim("c", D1, 300, Some(150), Claimed::Started(3)),
    ])
    .await;
}

/// One flip to try, and the refusal expected (`None`: it flips).
struct FlipCase {
    name: &'static str,
    /// Partitions of v1 (live) and v2, with the state each run leaves.
    v1: &'static [(&'static str, bool)],
    v2: &'static [(&'static str, Option<bool>)],
    expect: i64,
    to: i64,
    partial: bool,
    refused: Option<&'static str>,
}

#[tokio::test]
async fn alias_flips_refuse_each_failing_precondition_and_change_nothing() {
    let cases = [
        FlipCase {
            name: "complete coverage flips",
            v1: &[(D1, true)],
            v2: &[(D1, Some(true))],
            expect: 1,
            to: 2,
            partial: false,
            refused: None,
        },
        FlipCase {
            name: "alias moved",
            v1: &[],
            v2: &[],
            expect: 2,
            to: 2,
            partial: false,
            refused: Some("moved"),
        },
        FlipCase {
            name: "no such version",
            v1: &[],
            v2: &[],
            expect: 1,
            to: 3,
            partial: false,
            refused: Some("no_such_version"),
        },
        FlipCase {
            name: "missing partition",
            v1: &[(D1, true), (D2, true)],
            v2: &[(D1, Some(true))],
            expect: 1,
            to: 2,
            partial: false,
            refused: Some("missing"),
        },
        FlipCase {
            name: "failed partition",
            v1: &[(D1, true)],
            v2: &[(D1, Some(true)), (D2, Some(false))],
            expect: 1,
            to: 2,
            partial: false,
            refused: Some("unfinished"),
        },
        FlipCase {
            name: "running partition",
            v1: &[(D1, true)],
            v2: &[(D1, Some(true)), (D2, None)],
            expect: 1,
            to: 2,
            partial: false,
            refused: Some("unfinished"),
        },
        FlipCase {
            name: "partial skips coverage",
            v1: &[(D1, true), (D2, true)],
            v2: &[(D1, Some(false))],
            expect: 1,
            to: 2,
            partial: true,
            refused: None,
        },
    ];
    for case in cases {
        let (c, _dir) = fresh().await;
        table(&c, TABLE, 2).await;
        for (p, ok) in case.v1 {
            write_partition(&c, TABLE, 1, p, Some(*ok)).await;
        }
        for (p, ok) in case.v2 {
            write_partition(&c, TABLE, 2, p, *ok).await;
        }
        let flip = Flip {
            table: TABLE.into(),
            expect: case.expect,
            to: case.to,
        };
        let refusals = c
            .flip_aliases(&[flip], case.partial, "test", "m", 5, false)
            .await
            .unwrap();
        let reasons: Vec<String> = refusals
            .iter()
            .map(|r| {
                serde_json::to_value(r).unwrap()["reason"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let history = c.alias_history(TABLE).await.unwrap();
        match case.refused {
            None => {
                assert!(reasons.is_empty(), "{}: {refusals:?}", case.name);
                assert_eq!(
                    c.alias(TABLE).await.unwrap(),
                    Some(case.to),
                    "{}",
                    case.name
                );
                assert_eq!(
                    history.len(),
                    2,
                    "{}: the flip is in the history",
                    case.name
                );
            }
            Some(why) => {
                assert_eq!(reasons, [why], "{}", case.name);
                assert_eq!(
                    c.alias(TABLE).await.unwrap(),
                    Some(1),
                    "{}: alias unchanged",
                    case.name
                );
                assert_eq!(history.len(), 1, "{}: nothing recorded", case.name);
            }
        }
        c.close().await;
    }
}

#[tokio::test]
async fn a_multi_table_flip_with_one_refusal_flips_neither() {
    let (c, _dir) = fresh().await;
    table(&c, "a", 2).await;
    table(&c, "b", 2).await;
    write_partition(&c, "a", 1, D1, Some(true)).await;
    write_partition(&c, "a", 2, D1, Some(true)).await;
    write_partition(&c, "b", 1, D1, Some(true)).await;
    let flips = [
        Flip {
            table: "a".into(),
            expect: 1,
            to: 2,
        },
        Flip {
            table: "b".into(),
            expect: 1,
            to: 2,
        },
    ];
    let refusals = c
        .flip_aliases(&flips, false, "test", "m", 5, false)
        .await
        .unwrap();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(c.alias("a").await.unwrap(), Some(1));
    assert_eq!(c.alias("b").await.unwrap(), Some(1));
    write_partition(&c, "b", 2, D1, Some(true)).await;
    assert!(
        c.flip_aliases(&flips, false, "test", "m", 6, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(c.alias("a").await.unwrap(), Some(2));
    assert_eq!(c.alias("b").await.unwrap(), Some(2));
    c.close().await;
}

/// A run of partition `p` of `table` v`version` through the state machine: succeeded,
/// failed, or (None) still running.
async fn write_partition(c: &Catalog, table: &str, version: i64, p: &str, ok: Option<bool>) {
    let mut start = run_start("w", p, 0);
    start.table = table.into();
    start.version = version;
    let Claim::Started(lease) = c.claim(&mut start, "w", (0, TTL), None).await.unwrap() else {
        panic!("{table} v{version} {p}: the lease is free");
    };
    let end = match ok {
        Some(true) => RunEnd::Succeeded {
            rows: 1,
            delta_version: 1,
        },
        Some(false) => RunEnd::Failed {
            error: "boom".into(),
        },
        None => return,
    };
    c.finish_run(&start, &end, 1, Some(&lease), &Default::default())
        .await
        .unwrap();
}

/// A version an environment built is written by that environment alone: production's
/// claim and another environment's are refused, naming the owner, and the environment
/// cannot claim production's. Its next build reuses it only while no one else points there.
#[tokio::test]
async fn only_the_environment_that_built_a_version_may_claim_it() {
    let (c, _dir) = fresh().await;
    table(&c, TABLE, 1).await;
    let env = |name: &'static str, from: &'static str| NewEnv {
        name,
        from,
        by: "test",
        now_ms: 0,
        expires_at: None,
    };
    for name in ["dev", "other"] {
        c.create_env(&env(name, "prod")).await.unwrap().unwrap();
    }
    let dev = c.in_env("dev");
    let uri_of = |v: i64| format!("file:///w/t/v{v}/");
    let build = EnvBuild {
        table: TABLE,
        spec_version: 1,
        schema_json: "{}",
        uri_of: &uri_of,
        now_ms: 0,
    };
    let v = dev.env_build_version(&build).await.unwrap();
    assert_eq!(v, FIRST_ENV_VERSION);
    assert_eq!(dev.alias(TABLE).await.unwrap(), Some(v));
    assert_eq!(
        c.alias(TABLE).await.unwrap(),
        Some(1),
        "production's alias stays"
    );
    assert_eq!(
        dev.env_build_version(&build).await.unwrap(),
        v,
        "its own, alone"
    );
    let claim = |cat: Catalog, version: i64| async move {
        let mut s = run_start("a", D1, 0);
        s.version = version;
        cat.claim(&mut s, "a", (0, TTL), None).await
    };
    for (who, cat) in [
        ("production", c.clone()),
        ("environment other", c.in_env("other")),
    ] {
        let refused = claim(cat, v).await.expect_err(who).to_string();
        let says = format!("table t v{v} belongs to environment dev; {who} may not write it");
        assert!(refused.contains(&says), "{refused}");
    }
    let refused = claim(dev.clone(), 1).await.expect_err("v1").to_string();
    let says = "table t v1 belongs to production; environment dev may not write it";
    assert!(refused.contains(says), "{refused}");
    assert!(matches!(
        claim(dev.clone(), v).await.unwrap(),
        Claim::Started(_)
    ));
    // A copy of dev points at it too: dev's next build takes a version of its own.
    c.create_env(&env("copy", "dev")).await.unwrap().unwrap();
    assert_eq!(dev.env_build_version(&build).await.unwrap(), v + 1);
    assert_eq!(c.in_env("copy").alias(TABLE).await.unwrap(), Some(v));
}

/// Many partitions read the same whichever way they are read: on PostgreSQL as rows of its
/// own driver (`pg_rows`) and folded into JSON by the server (a twin's reads), on SQLite
/// from the file both times. Rows running, failed and complete, with NULLs, and with texts
/// JSON escapes in the error and in what the run read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_read_the_same_by_every_path() {
    let (c, _dir) = fresh().await;
    table(&c, TABLE, 1).await;
    let ends = [Some(true), Some(false), None];
    for (i, end) in ends.into_iter().cycle().take(30).enumerate() {
        let p = format!("2024-01-{:02}", i + 1);
        let mut start = run_start("w", &p, 10 + i as i64);
        start.reads_json = Some(format!(
            r#"{{"files":[{{"path":"a \"{i}\"\n","hash":"ü"}}]}}"#
        ));
        start.data_version = (i % 2 == 0).then(|| format!("dv-{i}"));
        let Claim::Started(lease) = c.claim(&mut start, "w", (0, TTL), None).await.unwrap() else {
            panic!("{p}: the lease is free");
        };
        let end = match end {
            Some(true) => RunEnd::Succeeded {
                rows: i as i64,
                delta_version: 1,
            },
            Some(false) => RunEnd::Failed {
                error: format!("line \"{i}\"\n\tü \\ end"),
            },
            None => continue,
        };
        c.finish_run(
            &start,
            &end,
            100 + i as i64,
            Some(&lease),
            &Default::default(),
        )
        .await
        .unwrap();
    }
    let twin = c.twin().expect("twin");
    let of_job = c.partition_statuses(Some("j")).await.expect("of job");
    assert_eq!(of_job.len(), 30);
    let states: std::collections::BTreeSet<String> =
        of_job.iter().map(|p| p.state.to_string()).collect();
    assert_eq!(states.len(), 3, "running, failed and complete: {states:?}");
    let folded = twin
        .partition_statuses(Some("j"))
        .await
        .expect("of job, folded");
    assert_eq!(format!("{of_job:?}"), format!("{folded:?}"));
    let of_version = c.partitions_of(TABLE, 1).await.expect("of version");
    let folded = twin
        .partitions_of(TABLE, 1)
        .await
        .expect("of version, folded");
    assert_eq!(format!("{of_version:?}"), format!("{folded:?}"));
    assert_eq!(format!("{of_version:?}"), format!("{of_job:?}"));
}
