//! The kill soak: a backfill of the sample month (three jobs, 63 partitions, one at a
//! time: several seconds) SIGKILLed at random points spread over its whole run, rerun after each kill,
//! and at the end compared with a clean run: same rows (so same sums and no duplicated
//! key), every partition complete, no partition committed by two runs at once.
//! `SLUICE_SOAK_KILLS` kills (30 by default; 1000 for the long soak), at delays drawn
//! from `SLUICE_SOAK_SEED` (printed, so that a failure can be replayed).

use crate::backfill::all_rows;
use crate::util::{TestProject, assert_same_rows, commit_tokens, enlarge_orders};
use std::time::{Duration, Instant};

/// xorshift64*: enough randomness for kill times, and no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

#[tokio::test]
async fn a_backfill_killed_at_random_points_ends_with_a_clean_runs_tables() {
    let kills: usize = std::env::var("SLUICE_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("SLUICE_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("soak: {kills} kills, SLUICE_SOAK_SEED={seed}");
    let mut rng = Rng(seed);

    // The sample month made sixty times larger, so that a run lasts several seconds; the
    // jobs partitioned by time alone (the keyed one has a kill test of its own).
    let clean = {
        let p = TestProject::sample();
        enlarge_orders(&p, 60, None);
        p.ok(&["migrate"]);
        p.ok(&[
            "backfill",
            "clean_orders",
            "daily_revenue",
            "monthly_region_revenue",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-31",
        ]);
        all_rows(&p).await
    };

    let p = TestProject::sample();
    enlarge_orders(&p, 60, None);
    let mut cfg = p.read("sluice.toml");
    // A killed run's leases lapse in a second, so that the rerun takes its partitions over.
    cfg.push_str("\n[runner]\nlease_ttl_seconds = 1\n");
    p.write("sluice.toml", &cfg);
    p.ok(&["migrate"]);
    // --force: every rerun redoes the whole month, so each kill can land anywhere in it,
    // mid-query, mid-upload, mid-commit or mid-catalog-write, over earlier content.
    let args = [
        "backfill",
        "clean_orders",
        "daily_revenue",
        "monthly_region_revenue",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-31",
        "--force",
        "--concurrency",
        "1",
    ];
    // How long an uninterrupted run takes here (one partition at a time: a few seconds):
    // the kills fall anywhere in it.
    let started = Instant::now();
    p.ok(&args);
    let whole = started.elapsed();
    let (mut killed, mut finished) = (0, 0);
    for _ in 0..kills {
        let (mut child, _log) = p.spawn(&args, &[]);
        let delay = Duration::from_millis(rng.below(whole.as_millis() as u64 + 1));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            finished += 1;
            continue;
        }
        crate::util::sigkill(&mut child);
        killed += 1;
    }
    // The last rerun is left to finish.
    let summary = p
        .ok(&[
            "backfill",
            "clean_orders",
            "daily_revenue",
            "monthly_region_revenue",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-31",
            "--output",
            "json",
        ])
        .json();
    assert_eq!(summary["failed"], 0, "{summary:#}");
    eprintln!(
        "soak: {killed} killed, {finished} finished before their kill; a clean run takes {whole:?}"
    );

    let status = p.ok(&["status", "--output", "json"]).json();
    let states: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 63, "{status:#}");
    assert!(states.iter().all(|s| *s == "complete"), "{states:?}");
    let rows = all_rows(&p).await;
    for (t, want) in &clean {
        assert_same_rows(t, &rows[t], want);
    }
    // Within each partition's commits, fencing tokens only grow: no stale writer
    // committed after a newer one.
    for (partition, tokens) in commit_tokens(&p.warehouse_table("clean_orders", 1)) {
        assert!(
            tokens.windows(2).all(|w| w[0] < w[1]),
            "{partition}: commit tokens {tokens:?}"
        );
    }
}
