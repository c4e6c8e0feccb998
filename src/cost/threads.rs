//! CPU time by thread, and the runtimes a measured phase's tasks run on (slots).
//!
//! A slot is a small multi-threaded tokio runtime that serves one measured phase at a
//! time. Its threads' CPU clocks are read when the phase takes it and when it gives it
//! back; the difference is the CPU its tasks used. Slots are made as phases need them, up
//! to twice as many as there are cores (a phase past that waits for one to be free: the
//! cores are all busy then anyway), and kept for the life of the process (a runtime cannot
//! be dropped inside another's tasks, and making one costs more than a no-op partition's
//! run).

use super::RunMeter;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// What a slot's threads share: the run it serves now and their CPU clocks.
#[derive(Debug, Default)]
struct Shared {
    serving: Mutex<Option<Arc<RunMeter>>>,
    /// The CPU clocks of the slot's live threads.
    clocks: Mutex<Vec<Clock>>,
    /// CPU time of the slot's threads that have ended.
    ended_ns: AtomicU64,
}

impl Shared {
    /// CPU time of all the slot's threads so far.
    fn cpu_ns(&self) -> u64 {
        // Read under the lock: a thread that ends moves its time from its clock to
        // `ended_ns` under it too, so it is counted once.
        let clocks = lock(&self.clocks);
        let live: u64 = clocks.iter().map(|c| c.read_ns()).sum();
        live + self.ended_ns.load(Ordering::Relaxed)
    }
}

/// A slot's runtime, idle in the pool or lent to a phase.
struct Runtime {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
}

static IDLE: Mutex<Vec<Runtime>> = Mutex::new(Vec::new());

/// The cores, as tokio counts them: each slot has as many threads.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Permits to hold a slot: twice as many as there are cores.
fn permits() -> Arc<tokio::sync::Semaphore> {
    static PERMITS: OnceLock<Arc<tokio::sync::Semaphore>> = OnceLock::new();
    PERMITS
        .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(2 * cores())))
        .clone()
}

thread_local! {
    /// On a slot's thread: that slot.
    static SLOT_OF_THREAD: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// The run served by the slot this thread belongs to.
pub(super) fn serving() -> Option<Arc<RunMeter>> {
    SLOT_OF_THREAD.with(|s| s.borrow().as_ref().and_then(|s| lock(&s.serving).clone()))
}

/// A slot lent to one phase; given back, with its threads' CPU time counted, when dropped.
pub(super) struct Slot {
    runtime: Option<Runtime>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    meter: Arc<RunMeter>,
    cpu_at_start: u64,
}

impl Slot {
    /// An idle slot, or a new one, once fewer than the most are lent; none if one cannot
    /// be made.
    pub(super) async fn take(meter: &Arc<RunMeter>) -> Option<Slot> {
        let permit = permits().acquire_owned().await.ok()?;
        let runtime = match lock(&IDLE).pop() {
            Some(r) => r,
            None => make()?,
        };
        *lock(&runtime.shared.serving) = Some(meter.clone());
        let cpu_at_start = runtime.shared.cpu_ns();
        Some(Slot {
            runtime: Some(runtime),
            _permit: permit,
            meter: meter.clone(),
            cpu_at_start,
        })
    }

    /// Makes the slot's runtime the current one (where `tokio::spawn` puts tasks).
    pub(super) fn enter(&self) -> Option<tokio::runtime::EnterGuard<'_>> {
        self.runtime.as_ref().map(|r| r.runtime.enter())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(r) = self.runtime.take() else {
            return;
        };
        let used = r.shared.cpu_ns().saturating_sub(self.cpu_at_start);
        self.meter.add_cpu(used);
        *lock(&r.shared.serving) = None;
        lock(&IDLE).push(r);
    }
}

/// A new slot runtime.
fn make() -> Option<Runtime> {
    let shared = Arc::new(Shared::default());
    let (on_start, on_stop) = (shared.clone(), shared.clone());
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .thread_name("sluice-run")
        .enable_all()
        .on_thread_start(move || {
            SLOT_OF_THREAD.with(|s| *s.borrow_mut() = Some(on_start.clone()));
            if let Some(c) = Clock::of_this_thread() {
                lock(&on_start.clocks).push(c);
            }
        })
        .on_thread_stop(move || {
            let me = std::thread::current().id();
            let mut clocks = lock(&on_stop.clocks);
            if let Some(i) = clocks.iter().position(|c| c.thread == me) {
                let c = clocks.swap_remove(i);
                on_stop.ended_ns.fetch_add(c.read_ns(), Ordering::Relaxed);
            }
        })
        .build();
    match built {
        Ok(runtime) => Some(Runtime { runtime, shared }),
        Err(e) => {
            tracing::debug!(error = %e, "could not make a runtime to measure a run's CPU time on");
            None
        }
    }
}

/// A thread's CPU clock, readable from any thread while it lives.
#[derive(Debug)]
struct Clock {
    thread: std::thread::ThreadId,
    #[cfg(target_os = "linux")]
    id: libc::clockid_t,
}

impl Clock {
    #[cfg(target_os = "linux")]
    fn of_this_thread() -> Option<Clock> {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self is this live thread; `id` is a valid place to write to.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        (rc == 0).then(|| Clock {
            thread: std::thread::current().id(),
            id,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn of_this_thread() -> Option<Clock> {
        None
    }

    #[cfg(target_os = "linux")]
    fn read_ns(&self) -> u64 {
        read_clock(self.id)
    }

    #[cfg(not(target_os = "linux"))]
    fn read_ns(&self) -> u64 {
        0
    }
}

/// The CPU time of the calling thread so far.
pub(super) fn this_thread_cpu_ns() -> u64 {
    #[cfg(target_os = "linux")]
    {
        read_clock(libc::CLOCK_THREAD_CPUTIME_ID)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(target_os = "linux")]
fn read_clock(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid place to write to; a clock id that is no longer valid makes
    // the call fail, which reads as zero.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A lock that a panic elsewhere does not make unusable: what it guards stays consistent
/// (each change is one push, pop or assignment).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
