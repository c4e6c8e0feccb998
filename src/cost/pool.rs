//! The engine's memory pool, metered: what a consumer registered by a run's work reserves
//! is counted against that run, and the run's peak is kept.

use super::{RunMeter, current};
use deltalake::datafusion::common::Result;
use deltalake::datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A memory pool that gives every request to `inner` and counts it against the run that
/// registered the consumer.
#[derive(Debug)]
pub struct MeteredPool {
    inner: Arc<dyn MemoryPool>,
    /// The run of each consumer registered by a run's work, by consumer id.
    runs: Mutex<HashMap<usize, Arc<RunMeter>>>,
}

impl MeteredPool {
    pub fn new(inner: Arc<dyn MemoryPool>) -> MeteredPool {
        MeteredPool {
            inner,
            runs: Mutex::new(HashMap::new()),
        }
    }

    fn count(&self, reservation: &MemoryReservation, delta: i64) {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = runs.get(&reservation.consumer().id()) {
            m.memory(delta);
        }
    }
}

impl std::fmt::Display for MeteredPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl MemoryPool for MeteredPool {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if let Some(m) = current() {
            let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            runs.insert(consumer.id(), m);
        }
        self.inner.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.remove(&consumer.id());
        drop(runs);
        self.inner.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.inner.grow(reservation, additional);
        self.count(reservation, additional as i64);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.inner.shrink(reservation, shrink);
        self.count(reservation, -(shrink as i64));
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.inner.try_grow(reservation, additional)?;
        self.count(reservation, additional as i64);
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.inner.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.inner.memory_limit()
    }
}
