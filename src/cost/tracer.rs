//! The tracer DataFusion passes every task it spawns to: it carries the run spawning the
//! task into it, so that the task's work is counted against that run (see `cost`).

use super::{RunMeter, as_work_of, current};
use deltalake::datafusion::common::runtime::{JoinSetTracer, set_join_set_tracer};
use futures::future::BoxFuture;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::task::{Context, Poll};

/// Installs [`Carry`] as DataFusion's tracer, once per process.
pub(super) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if set_join_set_tracer(&Carry).is_err() {
            // Another tracer came first: tasks DataFusion spawns are not counted.
            tracing::debug!("DataFusion's task tracer is set already: the CPU time of the tasks a query spawns is not counted");
        }
    });
}

/// Carries the run a task is spawned for into the task.
struct Carry;

type Erased = Box<dyn Any + Send>;

impl JoinSetTracer for Carry {
    fn trace_future(&self, fut: BoxFuture<'static, Erased>) -> BoxFuture<'static, Erased> {
        match current() {
            Some(meter) => Box::pin(Carried { meter, fut }),
            None => fut,
        }
    }

    fn trace_block(
        &self,
        f: Box<dyn FnOnce() -> Erased + Send>,
    ) -> Box<dyn FnOnce() -> Erased + Send> {
        match current() {
            Some(meter) => Box::new(move || as_work_of(Some(&meter), f)),
            None => f,
        }
    }
}

/// A task's future, each poll counted against the run it was spawned for.
struct Carried {
    meter: Arc<RunMeter>,
    fut: BoxFuture<'static, Erased>,
}

impl Future for Carried {
    type Output = Erased;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Erased> {
        let this = &mut *self;
        as_work_of(Some(&this.meter), || this.fut.as_mut().poll(cx))
    }
}
