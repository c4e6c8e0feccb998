//! A quick proof that a `unique` check passes: no two rows' key hashes are equal. Equal
//! keys have equal hashes, so distinct hashes prove the keys distinct; a repeated hash (a
//! repeated key, or, rarely, two keys that share a hash) proves nothing, and the check's
//! SQL then counts the repeated keys exactly. The proof holds 8 bytes per row instead of
//! an aggregation's key and count, in memory bounded by the engine's pool: the hashes are
//! split by their top bits into buckets of about a million, and a bucket past the first
//! goes to a scratch file until it is sorted on its own.

use super::QualityError;
use deltalake::arrow::array::ArrayRef;
use deltalake::datafusion::common::hash_utils::{HLL_RANDOM_STATE, create_hashes};
use deltalake::datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use deltalake::datafusion::prelude::SessionContext;
use futures::StreamExt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};

/// Hashes per bucket aimed at: a sort of 8 MB at a time.
const PER_BUCKET: u64 = 1 << 20;
/// Buckets at most (the open scratch files, each with its write buffer).
const MAX_BUCKETS: u64 = 256;
/// A bucket's write buffer.
const BUFFER: usize = 64 << 10;

/// `Ok(true)`: no two rows of table `output` (of `rows` rows) hold the same values of
/// `columns` (quoted names). `Ok(false)`: perhaps some do, or the pool has no room for the
/// proof; the caller counts them with SQL.
pub async fn proven_unique(
    ctx: &SessionContext,
    columns: &str,
    rows: u64,
) -> Result<bool, QualityError> {
    proven_unique_in(ctx, columns, rows, PER_BUCKET).await
}

async fn proven_unique_in(
    ctx: &SessionContext,
    columns: &str,
    rows: u64,
    per_bucket: u64,
) -> Result<bool, QualityError> {
    let buckets = rows.div_ceil(per_bucket).clamp(1, MAX_BUCKETS);
    let mut room = MemoryConsumer::new("unique check").register(&ctx.runtime_env().memory_pool);
    if buckets > 1 && room.try_grow(buckets as usize * BUFFER).is_err() {
        return Ok(false);
    }
    let mut sink = Buckets::new(buckets)?;
    let df = ctx.sql(&format!("SELECT {columns} FROM output")).await?;
    let mut stream = df.execute_stream().await?;
    let mut hashes = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        hashes.clear();
        hashes.resize(batch.num_rows(), 0);
        let arrays: Vec<ArrayRef> = batch.columns().to_vec();
        create_hashes(&arrays, &HLL_RANDOM_STATE, &mut hashes)?;
        if !sink.add(&hashes, &mut room)? {
            return Ok(false);
        }
    }
    drop(stream);
    // Sorting millions of hashes is CPU work: off the runtime's threads.
    // Spawned through DataFusion, so that its CPU time is counted as the run's (`cost`).
    deltalake::datafusion::common::runtime::SpawnedTask::spawn_blocking(move || {
        sink.none_repeated(&mut room)
    })
    .await?
}

/// The hashes by bucket: the only bucket in memory, or one scratch file per bucket.
enum Buckets {
    Memory(Vec<u64>),
    Files(Vec<BufWriter<File>>),
}

impl Buckets {
    fn new(n: u64) -> Result<Buckets, QualityError> {
        if n == 1 {
            return Ok(Buckets::Memory(Vec::new()));
        }
        (0..n)
            .map(|_| {
                tempfile::tempfile()
                    .map(|f| BufWriter::with_capacity(BUFFER, f))
                    .map_err(QualityError::Scratch)
            })
            .collect::<Result<_, _>>()
            .map(Buckets::Files)
    }

    /// `false` when the pool has no room for more.
    fn add(&mut self, hashes: &[u64], room: &mut MemoryReservation) -> Result<bool, QualityError> {
        match self {
            Buckets::Memory(all) => {
                if room.try_grow(hashes.len() * 8).is_err() {
                    return Ok(false);
                }
                all.extend_from_slice(hashes);
            }
            Buckets::Files(files) => {
                let n = files.len() as u64;
                for h in hashes {
                    // The top bits pick the bucket (a multiply-shift, for any count).
                    let b = (((h >> 32) * n) >> 32) as usize;
                    files[b]
                        .write_all(&h.to_le_bytes())
                        .map_err(QualityError::Scratch)?;
                }
            }
        }
        Ok(true)
    }

    /// Whether no hash appears twice in any bucket (`Err` carries a file's error; a
    /// bucket too big for the pool answers `Ok(false)`).
    fn none_repeated(self, room: &mut MemoryReservation) -> Result<bool, QualityError> {
        let repeated = |v: &mut Vec<u64>| {
            v.sort_unstable();
            v.windows(2).any(|w| w[0] == w[1])
        };
        match self {
            Buckets::Memory(mut all) => Ok(!repeated(&mut all)),
            Buckets::Files(files) => {
                let io = QualityError::Scratch;
                let mut v: Vec<u64> = Vec::new();
                // The write buffers taken at the start (the buckets not read yet keep
                // theirs), a read buffer, and the biggest bucket's hashes so far.
                let base = room.size() + BUFFER;
                for f in files {
                    let mut f = f.into_inner().map_err(|e| io(e.into_error()))?;
                    let count = (f.stream_position().map_err(io)? / 8) as usize;
                    f.rewind().map_err(io)?;
                    let needed = room.size().max(base + count * 8);
                    if room.try_resize(needed).is_err() {
                        return Ok(false);
                    }
                    v.clear();
                    v.reserve_exact(count);
                    let mut bytes = BufReader::with_capacity(BUFFER, f);
                    let mut word = [0u8; 8];
                    for _ in 0..count {
                        bytes.read_exact(&mut word).map_err(io)?;
                        v.push(u64::from_le_bytes(word));
                    }
                    if repeated(&mut v) {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::execution::memory_pool::FairSpillPool;
    use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use deltalake::datafusion::prelude::SessionConfig;
    use std::sync::Arc;

    /// Table `output` of `ids` (with `name` the id's parity), in batches of 1,000, in a
    /// session whose pool holds `pool` bytes.
    fn output(ids: Vec<Option<i64>>, pool: usize) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batches = ids
            .chunks(1000)
            .map(|c| {
                let names: Vec<Option<String>> = c
                    .iter()
                    .map(|i| i.map(|i| if i % 2 == 0 { "even" } else { "odd" }.to_string()))
                    .collect();
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(c.to_vec())),
                        Arc::new(StringArray::from(names)),
                    ],
                )
                .expect("batch")
            })
            .collect();
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(pool)))
            .build_arc()
            .expect("runtime");
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        let table = MemTable::try_new(schema, vec![batches]).expect("table");
        ctx.register_table("output", Arc::new(table))
            .expect("register");
        ctx
    }

    async fn unique(ids: Vec<Option<i64>>, columns: &str, per_bucket: u64, pool: usize) -> bool {
        let rows = ids.len() as u64;
        proven_unique_in(&output(ids, pool), columns, rows, per_bucket)
            .await
            .expect("the proof runs")
    }

    /// In memory (one bucket) and through scratch files (ten), distinct keys are proven
    /// distinct; a key repeated far from its first copy, two nulls, or a key of several
    /// columns repeated are not; a pool too small for the proof proves nothing.
    #[tokio::test]
    async fn distinct_keys_are_proven_and_repeated_ones_are_not() {
        let ids = |n: i64| (0..n).map(|i| Some(i * 7919)).collect::<Vec<_>>();
        let big = 64 << 20;
        for per_bucket in [20_000, 1_000] {
            assert!(unique(ids(10_000), "\"id\"", per_bucket, big).await);
            let mut twice = ids(10_000);
            twice[9_999] = twice[3];
            assert!(!unique(twice, "\"id\"", per_bucket, big).await);
            let mut nulls = ids(10_000);
            nulls[10] = None;
            nulls[5_000] = None;
            assert!(!unique(nulls, "\"id\"", per_bucket, big).await);
            assert!(!unique(ids(10_000), "\"name\"", per_bucket, big).await);
            assert!(unique(ids(10_000), "\"id\", \"name\"", per_bucket, big).await);
        }
        // 10,000 hashes are 80 KB: more than a pool of 16 KB holds, in memory or not.
        assert!(!unique(ids(10_000), "\"id\"", 20_000, 16 << 10).await);
        assert!(!unique(ids(10_000), "\"id\"", 1_000, 16 << 10).await);
        // Ten buckets' write buffers (640 KiB) fit 700 KiB, a bucket read back beside them
        // does not; 1 MiB holds both.
        assert!(!unique(ids(10_000), "\"id\"", 1_000, 700 << 10).await);
        assert!(unique(ids(10_000), "\"id\"", 1_000, 1 << 20).await);
    }
}
