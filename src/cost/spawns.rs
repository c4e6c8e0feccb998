//! Tasks a run's work spawns outside DataFusion (deltalake's writer uploads each finished
//! file in a task of its own, and ends the file there): a writer takes a runtime of its
//! own (`Spawns`), current while the writer is polled, so that what it spawns runs there;
//! the CPU clocks of that runtime's threads are read when the writer takes it and when it
//! gives it back, and what they ran is counted against the run. Runtimes are made as
//! writers need them and kept for the life of the process (a runtime cannot be dropped
//! inside another's tasks, and making one costs more than a no-op partition's run).

use super::{RunMeter, current};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Runtimes made at most: a writer past this many at once spawns where it is polled, and
/// its uploads' CPU time is not counted.
const MOST: usize = 64;

/// What a runtime's threads share: the run it serves now and their CPU clocks.
#[derive(Debug, Default)]
struct Shared {
    serving: Mutex<Option<Arc<RunMeter>>>,
    /// The CPU clocks of the runtime's live threads.
    clocks: Mutex<Vec<Clock>>,
    /// CPU time of the runtime's threads that have ended.
    ended_ns: AtomicU64,
}

impl Shared {
    /// CPU time of all the runtime's threads so far.
    fn cpu_ns(&self) -> u64 {
        // Read under the lock: a thread that ends moves its time from its clock to
        // `ended_ns` under it too, so it is counted once.
        let clocks = lock(&self.clocks);
        let live: u64 = clocks.iter().map(Clock::read_ns).sum();
        live + self.ended_ns.load(Ordering::Relaxed)
    }
}

struct Runtime {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
}

static IDLE: Mutex<Vec<Runtime>> = Mutex::new(Vec::new());
static MADE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// On a thread of one of these runtimes: that runtime.
    static RUNTIME_OF_THREAD: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// The run served by the runtime this thread belongs to.
pub(super) fn serving() -> Option<Arc<RunMeter>> {
    RUNTIME_OF_THREAD.with(|s| s.borrow().as_ref().and_then(|s| lock(&s.serving).clone()))
}

/// A runtime lent to one writer of a run; given back, its threads' CPU time counted, when
/// dropped. Outside a run (or past [`MOST`]) it lends nothing.
pub struct Spawns {
    lent: Option<Lent>,
}

struct Lent {
    runtime: Option<Runtime>,
    meter: Arc<RunMeter>,
    cpu_at_start: u64,
}

impl Spawns {
    /// A runtime for the run whose work calls this, if any.
    pub fn for_this_run() -> Spawns {
        let lent = current().and_then(|meter| {
            let runtime = lock(&IDLE).pop().or_else(make)?;
            *lock(&runtime.shared.serving) = Some(meter.clone());
            let cpu_at_start = runtime.shared.cpu_ns();
            Some(Lent {
                runtime: Some(runtime),
                meter,
                cpu_at_start,
            })
        });
        Spawns { lent }
    }

    /// `fut`, polled with this runtime current: what it spawns runs there.
    pub fn run<'s, F: Future + 's>(&'s self, fut: F) -> impl Future<Output = F::Output> + 's {
        Entered {
            spawns: self,
            fut: Box::pin(fut),
        }
    }
}

struct Entered<'s, F: Future> {
    spawns: &'s Spawns,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for Entered<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let runtime = this.spawns.lent.as_ref().and_then(|l| l.runtime.as_ref());
        let _current = runtime.map(|r| r.runtime.enter());
        this.fut.as_mut().poll(cx)
    }
}

impl Drop for Lent {
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

/// A new runtime, if fewer than [`MOST`] were made: one worker (what runs there is
/// uploads, mostly waiting on the store).
fn make() -> Option<Runtime> {
    if MADE.fetch_add(1, Ordering::SeqCst) >= MOST {
        MADE.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
    let shared = Arc::new(Shared::default());
    let (on_start, on_stop) = (shared.clone(), shared.clone());
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sluice-writer")
        .enable_all()
        .on_thread_start(move || {
            RUNTIME_OF_THREAD.with(|s| *s.borrow_mut() = Some(on_start.clone()));
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
            MADE.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!(error = %e, "could not make a runtime to count a writer's uploads on");
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
        super::clock::read_ns(self.id)
    }

    #[cfg(not(target_os = "linux"))]
    fn read_ns(&self) -> u64 {
        0
    }
}

/// A lock that a panic elsewhere does not make unusable: what it guards stays consistent
/// (each change is one push, pop or assignment).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
