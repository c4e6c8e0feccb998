//! A partition's profile, built batch by batch as the rows stream to the writer: per
//! column a null count, the bounds (DataFusion's Min/Max accumulators), a sum and a
//! distinct-count sketch. Nothing of the rows is kept, so a partition of any size is
//! profiled in memory bounded by its column count. The figures are SQL's COUNT,
//! approx_distinct, MIN, MAX and AVG (bounds as text, the way `CAST(.. AS VARCHAR)` writes
//! them).

use super::{ColumnProfile, Profile};
use deltalake::arrow::array::{Array, ArrayRef, AsArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Float64Type, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::common::hash_utils::{HLL_RANDOM_STATE, create_hashes};
use deltalake::datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use deltalake::datafusion::logical_expr::Accumulator;
use std::collections::HashSet;

pub struct Profiler {
    schema: SchemaRef,
    rows: u64,
    columns: Vec<ColumnState>,
    hashes: Vec<u64>,
}

/// One column's running figures. A figure a kernel cannot compute for a type (a nested
/// one, say) is dropped rather than failing the run: the profile describes, the checks
/// decide.
struct ColumnState {
    nulls: u64,
    distinct: Option<Distinct>,
    min: Option<MinAccumulator>,
    max: Option<MaxAccumulator>,
    sum: Option<f64>,
}

impl Profiler {
    pub fn new(schema: SchemaRef) -> Profiler {
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let t = f.data_type();
                let binary = matches!(
                    t,
                    DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                );
                ColumnState {
                    nulls: 0,
                    distinct: (!binary).then(Distinct::default),
                    min: (!binary).then(|| MinAccumulator::try_new(t).ok()).flatten(),
                    max: (!binary).then(|| MaxAccumulator::try_new(t).ok()).flatten(),
                    sum: (!binary && t.is_numeric()).then_some(0.0),
                }
            })
            .collect();
        Profiler {
            schema,
            rows: 0,
            columns,
            hashes: Vec::new(),
        }
    }

    /// Adds a batch of the schema's rows.
    pub fn update(&mut self, batch: &RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        self.rows += batch.num_rows() as u64;
        for (c, a) in self.columns.iter_mut().zip(batch.columns()) {
            c.nulls += a.null_count() as u64;
            if let Some(d) = &mut c.distinct
                && d.add(a, &mut self.hashes).is_none()
            {
                c.distinct = None;
            }
            if let Some(m) = &mut c.min
                && m.update_batch(std::slice::from_ref(a)).is_err()
            {
                c.min = None;
            }
            if let Some(m) = &mut c.max
                && m.update_batch(std::slice::from_ref(a)).is_err()
            {
                c.max = None;
            }
            if let Some(s) = &mut c.sum {
                match cast(a, &DataType::Float64) {
                    Ok(d) => {
                        *s += deltalake::arrow::compute::sum(d.as_primitive::<Float64Type>())
                            .unwrap_or(0.0)
                    }
                    Err(_) => c.sum = None,
                }
            }
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn finish(mut self) -> Profile {
        let rows = self.rows;
        let mut p = Profile {
            rows,
            ..Default::default()
        };
        if rows == 0 {
            return p;
        }
        for (f, c) in self.schema.fields().iter().zip(self.columns.iter_mut()) {
            let nulls = c.nulls.min(rows);
            let present = rows - nulls;
            let column = ColumnProfile {
                null_fraction: nulls as f64 / rows as f64,
                distinct: c.distinct.as_ref().map_or(0, Distinct::count),
                min: c.min.as_mut().and_then(|a| text(a)),
                max: c.max.as_mut().and_then(|a| text(a)),
                mean: c.sum.filter(|_| present > 0).map(|s| s / present as f64),
            };
            p.columns.insert(f.name().clone(), column);
        }
        p
    }
}

/// An accumulator's value as text, the way `CAST(.. AS VARCHAR)` writes it; `None` for no
/// value.
fn text(acc: &mut dyn Accumulator) -> Option<String> {
    let v = acc.evaluate().ok()?;
    if v.is_null() {
        return None;
    }
    let text = cast(&v.to_array().ok()?, &DataType::Utf8).ok()?;
    let text = text.as_string::<i32>();
    (text.len() == 1 && text.is_valid(0)).then(|| text.value(0).to_string())
}

/// The count of distinct non-null values, from the values' hashes: exact up to a few
/// thousand, then a HyperLogLog estimate (2^14 registers, about 1% error), as SQL's
/// approx_distinct gives, without turning every value into text first.
struct Distinct {
    registers: Vec<u8>,
    exact: Option<HashSet<u64, PreHashed>>,
}

const P: u32 = 14;
const M: usize = 1 << P;
const EXACT_UP_TO: usize = 4096;

impl Default for Distinct {
    fn default() -> Self {
        Distinct {
            registers: vec![0u8; M],
            exact: Some(HashSet::with_capacity_and_hasher(64, PreHashed::default())),
        }
    }
}

impl Distinct {
    /// While the values are few, only the exact set learns them; the registers learn
    /// them all at once when the set overflows. A column stays in one of the two, so each
    /// value costs one update, not two.
    fn add(&mut self, a: &ArrayRef, hashes: &mut Vec<u64>) -> Option<()> {
        hashes.clear();
        hashes.resize(a.len(), 0);
        create_hashes([a], &HLL_RANDOM_STATE, hashes).ok()?;
        let present = |row: usize| a.null_count() == 0 || a.is_valid(row);
        let mut rows = hashes.iter().enumerate().filter(|(row, _)| present(*row));
        if let Some(seen) = &mut self.exact {
            for (_, h) in rows.by_ref() {
                seen.insert(*h);
                if seen.len() > EXACT_UP_TO {
                    break;
                }
            }
            if seen.len() <= EXACT_UP_TO {
                return Some(());
            }
            for h in std::mem::take(seen) {
                self.register(h);
            }
            self.exact = None;
        }
        for (_, h) in rows {
            self.register(*h);
        }
        Some(())
    }

    fn register(&mut self, h: u64) {
        let index = (h & (M as u64 - 1)) as usize;
        let rank = ((h >> P) | (1 << (64 - P))).trailing_zeros() as u8 + 1;
        self.registers[index] = self.registers[index].max(rank);
    }

    fn count(&self) -> u64 {
        if let Some(seen) = &self.exact {
            return seen.len() as u64;
        }
        let m = M as f64;
        let zeros = self.registers.iter().filter(|r| **r == 0).count();
        let sum: f64 = self
            .registers
            .iter()
            .map(|r| 1.0 / (1u64 << *r) as f64)
            .sum();
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
        // Few values: linear counting over the empty registers is the better estimate.
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

/// The values of the exact set are hashes already: hashing them again would cost more than
/// the rest of the count.
type PreHashed = std::hash::BuildHasherDefault<PassThrough>;

#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch(ids: Vec<Option<i64>>, names: Vec<Option<String>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .expect("a batch of the schema")
    }

    /// Few values are counted exactly over many batches; many are estimated within the
    /// sketch's error, also when the exact set overflows in the middle of a batch; nulls
    /// are never counted.
    #[test]
    fn distinct_counts_are_exact_while_few_and_close_when_many() {
        let mut p = Profiler::new(batch(vec![], vec![]).schema());
        let per_batch = 1_000;
        for b in 0..30i64 {
            let ids = (0..per_batch)
                .map(|i| (i % 7 != 0).then_some(b * per_batch + i))
                .collect();
            let names = (0..per_batch)
                .map(|i| (i % 5 != 0).then(|| format!("name-{}", i % 12)))
                .collect();
            p.update(&batch(ids, names));
        }
        let profile = p.finish();
        let want_ids = (0..30 * per_batch)
            .filter(|i| (i % per_batch) % 7 != 0)
            .count();
        let ids = profile.columns["id"].distinct as f64;
        assert!(
            (ids - want_ids as f64).abs() / (want_ids as f64) < 0.03,
            "{ids} distinct ids estimated, {want_ids} there"
        );
        // `i % 5 != 0` leaves the names of i % 12 for every i % 12 (12 names).
        assert_eq!(profile.columns["name"].distinct, 12);
        assert_eq!(profile.rows, 30_000);
    }
}
