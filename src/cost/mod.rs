//! What a run costs, measured while it runs (never estimated): CPU time, bytes read and
//! written through object stores, object-store requests and the peak of the engine's
//! memory it reserved. `measure` wraps a phase of a run (its compute, its audit):
//!
//! - **CPU**: the CPU clock of the thread that polls the phase, read around each poll; and
//!   the same for every task the phase's work spawns through DataFusion (its partitions'
//!   tasks, blocking work): DataFusion passes each task it spawns to a tracer
//!   (`tracer::Carry`), which carries the run spawning it into the task, so that each of
//!   the task's polls is timed by its thread's CPU clock and counted against that run. What
//!   deltalake's writer spawns (a task per finished file: its end, its upload) runs on a
//!   runtime the writer holds (`Spawns`), whose threads' CPU clocks are read.
//! - **Bytes and requests**: every object store sluice or deltalake makes is wrapped
//!   (`delta::MeteredStore`) and counts a call, and the bytes it moves, against the run
//!   whose work makes it: the one the calling thread is polling for.
//! - **Memory**: the engine's memory pool is wrapped (`pool::MeteredPool`): a consumer
//!   registered by a run's work counts what it reserves against that run, whose peak is kept.
//!   That is the memory DataFusion accounts for (what its operators hold, the rows kept for
//!   the audit); batches in flight between operators are not reserved and not counted.

mod clock;
mod pool;
mod spawns;
mod tracer;

pub use pool::MeteredPool;
pub use spawns::Spawns;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};

/// What one run used, as the catalog records it and `status`, the pages, the lineage
/// events and the metrics show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunCost {
    /// CPU time of the run's compute and audit, user and system, in microseconds.
    pub cpu_us: u64,
    /// Bytes the run read from object stores (inputs, upstream tables, files read back).
    pub bytes_read: u64,
    /// Bytes the run wrote to object stores (its data files).
    pub bytes_written: u64,
    /// Object-store calls: gets, heads, puts, upload parts, lists, deletes, copies.
    pub requests: u64,
    /// The most of the engine's memory pool the run held at once, in bytes.
    pub peak_memory_bytes: u64,
}

impl RunCost {
    pub fn cpu_seconds(&self) -> f64 {
        self.cpu_us as f64 / 1e6
    }
}

/// The counters of one run, shared by everything its work touches.
#[derive(Debug, Default)]
pub struct RunMeter {
    cpu_ns: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    requests: AtomicU64,
    memory_now: AtomicI64,
    memory_peak: AtomicU64,
}

impl RunMeter {
    pub fn new() -> Arc<RunMeter> {
        Arc::new(RunMeter::default())
    }

    /// What the run has used so far.
    pub fn cost(&self) -> RunCost {
        RunCost {
            cpu_us: self.cpu_ns.load(Ordering::Relaxed) / 1_000,
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            peak_memory_bytes: self.memory_peak.load(Ordering::Relaxed),
        }
    }

    fn add_cpu(&self, ns: u64) {
        self.cpu_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub(crate) fn request(&self, read: u64, written: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if read > 0 {
            self.bytes_read.fetch_add(read, Ordering::Relaxed);
        }
        if written > 0 {
            self.bytes_written.fetch_add(written, Ordering::Relaxed);
        }
    }

    fn memory(&self, delta: i64) {
        let now = self.memory_now.fetch_add(delta, Ordering::Relaxed) + delta;
        if now > 0 {
            self.memory_peak.fetch_max(now as u64, Ordering::Relaxed);
        }
    }
}

thread_local! {
    /// The run whose phase this thread is polling now.
    static POLLING: RefCell<Option<Arc<RunMeter>>> = const { RefCell::new(None) };
}

/// The run the work on this thread belongs to, if any: the one whose phase, or task, this
/// thread is polling; else the one whose writer the runtime of this thread serves.
pub(crate) fn current() -> Option<Arc<RunMeter>> {
    POLLING
        .with(|p| p.borrow().clone())
        .or_else(spawns::serving)
}

/// Runs `f` as work of `meter`'s run (none: of no run), its thread's CPU time counted.
fn as_work_of<R>(meter: Option<&Arc<RunMeter>>, f: impl FnOnce() -> R) -> R {
    let Some(meter) = meter else {
        return f();
    };
    let before = clock::this_thread_cpu_ns();
    let outer = POLLING.with(|p| p.replace(Some(meter.clone())));
    let out = f();
    POLLING.with(|p| *p.borrow_mut() = outer);
    meter.add_cpu(clock::this_thread_cpu_ns().saturating_sub(before));
    out
}

/// Runs `phase`, counting what it uses against `meter`; `on` false (`[engine]
/// measure_cost = false`): runs it as it is, counting nothing.
pub async fn measure<F: Future>(meter: &Arc<RunMeter>, on: bool, phase: F) -> F::Output {
    if !on {
        return phase.await;
    }
    tracer::install();
    Measured {
        phase: Box::pin(phase),
        meter: meter.clone(),
    }
    .await
}

/// A future polled as work of a run (see [`measure`]).
struct Measured<F: Future> {
    meter: Arc<RunMeter>,
    phase: Pin<Box<F>>,
}

impl<F: Future> Future for Measured<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        as_work_of(Some(&this.meter), || this.phase.as_mut().poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::datafusion::execution::memory_pool::{
        MemoryConsumer, MemoryPool, UnboundedMemoryPool,
    };

    use deltalake::datafusion::common::runtime::SpawnedTask;

    /// Spins until this thread has used `ms` more of CPU time.
    fn burn(ms: u64) {
        let until = clock::this_thread_cpu_ns() + ms * 1_000_000;
        let mut x = 0u64;
        while clock::this_thread_cpu_ns() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cpu_of_what_a_phase_spawns_is_counted_and_of_nothing_else() {
        let meter = RunMeter::new();
        // Work outside the phase, on another task at the same time: not the run's.
        let other = tokio::spawn(async { burn(150) });
        measure(&meter, true, async {
            burn(100);
            // Tasks DataFusion spawns, on other threads: the run's too, and theirs.
            SpawnedTask::spawn(async {
                burn(100);
                SpawnedTask::spawn(async { burn(100) })
                    .await
                    .expect("joined");
            })
            .await
            .expect("joined");
            SpawnedTask::spawn_blocking(|| burn(100))
                .await
                .expect("joined");
        })
        .await;
        other.await.expect("joined");
        let cpu_ms = meter.cost().cpu_us / 1_000;
        assert!((400..550).contains(&cpu_ms), "{cpu_ms} ms");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn measuring_off_counts_nothing() {
        let meter = RunMeter::new();
        measure(&meter, false, async { burn(20) }).await;
        assert_eq!(meter.cost(), RunCost::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_s_memory_peak_is_the_most_its_consumers_held_at_once() {
        let pool: Arc<dyn MemoryPool> =
            Arc::new(MeteredPool::new(Arc::new(UnboundedMemoryPool::default())));
        let meter = RunMeter::new();
        // A consumer registered outside a run counts against none.
        let outside = MemoryConsumer::new("outside").register(&pool);
        outside.grow(10_000);
        let p = pool.clone();
        let inside = measure(&meter, true, async move {
            let a = MemoryConsumer::new("a").register(&p);
            let b = MemoryConsumer::new("b").register(&p);
            a.grow(1_000);
            b.grow(500);
            a.shrink(800);
            b.grow(100);
            drop(a);
            b
        })
        .await;
        // Still the run's after the phase: it registered there.
        inside.grow(2_000);
        assert_eq!(meter.cost().peak_memory_bytes, 2_600);
        inside.free();
        outside.free();
    }
}
