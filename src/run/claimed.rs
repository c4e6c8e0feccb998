//! A partition claimed: what each step of an attempt works on once its lease is held.

use crate::catalog::Lease;
use crate::delta::{Scope, VersionHandle};
use crate::job::Job;
use crate::partition::PartitionKey;
use crate::schema::TableSchema;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What an attempt works on once its lease is held: handed to each step whole.
pub(super) struct Attempt<'a> {
    pub job: &'a Job,
    pub key: PartitionKey,
    pub schema: TableSchema,
    /// How the partition is named in its table's partition column.
    pub scope: Scope,
    pub handle: Arc<VersionHandle>,
    pub lease: Lease,
    /// Set by the heartbeat when another worker took the lease over.
    pub lost: Arc<AtomicBool>,
    pub fingerprint: String,
    pub run_id: String,
    /// Which try at the partition this is (1 for the first), as `[retry]` counts.
    pub attempt: u32,
    /// Set once the run's end is recorded, which releases the lease in the same write.
    pub released: AtomicBool,
    /// The request's place ahead of the compute, given back by [`Attempt::computed`].
    pub ahead: &'a std::sync::Mutex<Option<super::AheadPermit>>,
    /// What the run's compute and audit use, counted as they run.
    pub meter: Arc<crate::cost::RunMeter>,
}

impl Attempt<'_> {
    /// The output is computed: the run leaves the ones ahead of the compute.
    pub fn computed(&self) {
        drop(self.ahead.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}
