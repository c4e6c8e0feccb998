//! A merge's touched partitions in lanes: each lane resolves the winners of a group of the
//! partitions (their held rows, their tombstones and their changes: a key's candidates all
//! lie in its own partition, whose columns are part of the key) and writes them on a task
//! of its own. One lane sorted, picked and encoded every partition on one core while the
//! other waited; lanes use the engine's `target_partitions` cores at once. The lanes'
//! files are one commit's, as a single lane's were.
//!
//! Each lane also proves, as it writes, that the key is unique over the rows it publishes
//! (`merge::KeyOrder`): the key check the audit records, without reading the rows back.

use super::claimed::Attempt;
use super::merge::{Shape, Values, changed_files, fit, merge_err, read_touched, values_of};
use super::{RunError, write::PartitionWrite};
use crate::delta::store::delete_unpublished;
use crate::delta::{PartitionWriter, WriterTask};
use crate::merge::{KeyOrder, KeyTally, MergeError, MergeInputs, MergeRule, Winners};
use crate::merge::{resolve, split_deleted};
use crate::schema::TableSchema;
use deltalake::DeltaTable;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Add;

/// What a merge's lanes wrote, not yet committed.
#[derive(Default)]
pub(super) struct Written {
    /// The table's new files of the touched partitions.
    pub rows: Vec<Add>,
    /// Their tombstones' new files.
    pub dead: Vec<Add>,
    /// The rows published, watched for a repeated key as they were written.
    pub keys: KeyTally,
}

impl PartitionWrite<'_> {
    /// Each key's winner in the touched partitions, written (not committed) to the table and
    /// to its tombstones by lanes of partitions. A lane that fails stops the others; what
    /// the finished ones wrote is deleted (what a stopped one had uploaded is listed in no
    /// log: data to no reader, gone with gc).
    pub(super) async fn write_winners(
        &self,
        a: &Attempt<'_>,
        rule: &MergeRule,
        (table, tombs, tomb_url): (&DeltaTable, &DeltaTable, &url::Url),
        changes: &[Add],
        touched: Option<&[Values]>,
    ) -> Result<Written, RunError> {
        let mut running = tokio::task::JoinSet::new();
        let cores = self.engine.settings().target_partitions;
        let groups = lanes(touched, cores);
        // The cores shared out: each lane's sorts hold their share of the memory pool, and
        // a sort per input partition in every lane would leave each too little.
        let per_lane = (cores / groups.len()).max(1);
        let (meter, measure) = (&a.meter, self.engine.settings().measure_cost);
        for partitions in groups {
            let full = a.schema.to_arrow();
            let lane = Lane {
                reads: LaneReads {
                    ctx: self
                        .engine
                        .session_with(|c| c.with_target_partitions(per_lane)),
                    tables: (table.clone(), tombs.clone()),
                    schema: a.schema.clone(),
                    rule: rule.clone(),
                    changes: changes.to_vec(),
                    table: a.job.table.to_string(),
                },
                partitions,
                keys: KeyOrder::new(&full, &rule.key).map_err(|e| merge_err(a, e))?,
                rows: WriterTask::spawn(
                    PartitionWriter::new(&a.handle.url, table)?,
                    meter.clone(),
                    measure,
                ),
                dead: PartitionWriter::new(tomb_url, tombs)?,
                full,
                began: std::time::Instant::now(),
            };
            let meter = meter.clone();
            running.spawn(async move { crate::cost::measure(&meter, measure, lane.run()).await });
        }
        let mut written = Written::default();
        let mut failed = None;
        while let Some(done) = running.join_next().await {
            let lane = done.unwrap_or_else(|e| {
                let stopped = MergeError::Lane(e.to_string());
                Err(merge_err(a, stopped))
            });
            match lane {
                Ok(w) => {
                    written.rows.extend(w.rows);
                    written.dead.extend(w.dead);
                    written.keys.add(w.keys);
                }
                Err(e) => {
                    running.abort_all();
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            delete_unpublished(&a.handle.url, &written.rows).await;
            delete_unpublished(tomb_url, &written.dead).await;
            return Err(e);
        }
        Ok(written)
    }
}

/// One lane: its partitions' winners, each partition resolved on its own (a sort of one
/// partition's candidates, whose partition columns are constant), read in key order and
/// written to the table's files and its tombstones'.
struct Lane {
    reads: LaneReads,
    /// Its partitions (`None`: all of an unpartitioned table).
    partitions: Vec<Option<Values>>,
    keys: KeyOrder,
    rows: WriterTask,
    dead: PartitionWriter,
    full: SchemaRef,
    began: std::time::Instant,
}

/// What a lane reads its partitions' candidates from.
struct LaneReads {
    ctx: SessionContext,
    /// The table and its tombstones, as of the merge's snapshot.
    tables: (DeltaTable, DeltaTable),
    schema: TableSchema,
    rule: MergeRule,
    /// The change files (each partition reads its own).
    changes: Vec<Add>,
    /// The table's name, for errors.
    table: String,
}

impl Lane {
    async fn run(mut self) -> Result<Written, RunError> {
        let table = self.reads.table.clone();
        let err = |source| RunError::Merge {
            table: table.clone(),
            source,
        };
        let tomb_full = Shape::Merge(&self.reads.rule)
            .sidecar_schema(&self.reads.schema)
            .to_arrow();
        for partition in std::mem::take(&mut self.partitions) {
            let mut winners = self.reads.winners(partition.as_ref()).await?;
            // A refusal found mid-way (two changes of a key with one sequence value)
            // leaves the files written so far unlisted in any log: data to no reader,
            // gone with gc.
            while let Some(batch) = winners.next().await {
                let (live, gone) = split_deleted(&batch.map_err(err)?).map_err(err)?;
                let live = fit(&live, &self.full).map_err(err)?;
                self.keys.add(&live).map_err(err)?;
                self.rows.write(live).await?;
                self.dead
                    .write(fit(&gone, &tomb_full).map_err(err)?)
                    .await?;
            }
        }
        tracing::debug!(
            elapsed_ms = ms(self.began),
            "a merge lane's winners are read"
        );
        let written = Written {
            rows: self.rows.finish().await?,
            dead: self.dead.finish().await?,
            keys: self.keys.tally(),
        };
        tracing::debug!(
            elapsed_ms = ms(self.began),
            "a merge lane's files are written"
        );
        Ok(written)
    }
}

impl LaneReads {
    /// The winners of one partition (all of the table: `None`): its held rows, its
    /// tombstones and its changes, resolved.
    async fn winners(&self, partition: Option<&Values>) -> Result<Winners, RunError> {
        let (ctx, schema) = (&self.ctx, &self.schema);
        let (table, tombs) = (&self.tables.0, &self.tables.1);
        let err = |source| RunError::Merge {
            table: self.table.clone(),
            source,
        };
        let read = |e| err(MergeError::Engine(e));
        let only = partition.map(std::slice::from_ref);
        let tomb_schema = Shape::Merge(&self.rule).sidecar_schema(schema);
        let held = read_touched(ctx, (table, schema), only).await?;
        let dead = read_touched(ctx, (tombs, &tomb_schema), only).await?;
        let mine: Vec<Add> = match partition {
            None => self.changes.clone(),
            Some(p) => self
                .changes
                .iter()
                .filter(|c| values_of(schema, c) == *p)
                .cloned()
                .collect(),
        };
        let changed = changed_files(ctx, table, schema, &mine)?;
        let inputs = MergeInputs {
            changes: ctx.read_table(changed).map_err(read)?,
            held: held.map_err(read)?,
            tombstones: dead.map_err(read)?,
        };
        resolve(ctx, &schema.columns, &self.rule, inputs)
            .await
            .map_err(err)
    }
}

fn ms(since: std::time::Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// The touched partitions dealt round into at most `n` lanes (adjacent partitions, often
/// days of like size, go to different lanes). No partition named (nothing changed) is one
/// lane of none; an unpartitioned table, one lane over all of it (`None`).
fn lanes(touched: Option<&[Values]>, n: usize) -> Vec<Vec<Option<Values>>> {
    let Some(touched) = touched else {
        return vec![vec![None]];
    };
    let n = n.clamp(1, touched.len().max(1));
    let mut lanes = vec![Vec::new(); n];
    for (i, p) in touched.iter().enumerate() {
        lanes[i % n].push(Some(p.clone()));
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::lanes;

    fn day(d: u32) -> Vec<(String, String)> {
        vec![("dt".into(), format!("2024-01-{d:02}"))]
    }

    #[test]
    fn partitions_are_dealt_into_at_most_n_lanes_each_in_one() {
        let touched: Vec<_> = (1..=5).map(day).collect();
        let dealt = lanes(Some(&touched), 2);
        let some = |days: &[u32]| days.iter().map(|d| Some(day(*d))).collect::<Vec<_>>();
        assert_eq!(dealt, vec![some(&[1, 3, 5]), some(&[2, 4])]);
        assert_eq!(lanes(Some(&touched[..1]), 4), vec![some(&[1])]);
        assert_eq!(lanes(Some(&[]), 2), vec![Vec::<Option<_>>::new()]);
        assert_eq!(lanes(None, 2), vec![vec![None]]);
    }
}
