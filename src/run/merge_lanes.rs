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
use deltalake::DeltaTable;
use deltalake::arrow::datatypes::SchemaRef;
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
        tables: (&DeltaTable, &DeltaTable, &url::Url),
        changes: &[Add],
        touched: Option<&[Values]>,
    ) -> Result<Written, RunError> {
        let mut running = tokio::task::JoinSet::new();
        for group in lanes(touched, self.engine.settings().target_partitions) {
            // An error here drops `running`, which stops the lanes already started.
            let lane = self
                .open_lane(a, rule, tables, changes, group.as_deref())
                .await?;
            let (meter, measure) = (a.meter.clone(), self.engine.settings().measure_cost);
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
            delete_unpublished(tables.2, &written.dead).await;
            return Err(e);
        }
        Ok(written)
    }

    /// A lane of the partitions `group` (all of the table: `None`): its winners' stream
    /// and the writers of its files.
    async fn open_lane(
        &self,
        a: &Attempt<'_>,
        rule: &MergeRule,
        (table, tombs, tomb_url): (&DeltaTable, &DeltaTable, &url::Url),
        changes: &[Add],
        group: Option<&[Values]>,
    ) -> Result<Lane, RunError> {
        let ctx = self.engine.session();
        let schema = &a.schema;
        let tomb_schema = Shape::Merge(rule).sidecar_schema(schema);
        let held = read_touched(&ctx, (table, schema), group).await?;
        let dead = read_touched(&ctx, (tombs, &tomb_schema), group).await?;
        let mine: Vec<Add> = match group {
            None => changes.to_vec(),
            Some(g) => changes
                .iter()
                .filter(|c| g.contains(&values_of(schema, c)))
                .cloned()
                .collect(),
        };
        let changed = changed_files(&ctx, table, schema, &mine)?;
        let read = |e| merge_err(a, MergeError::Engine(e));
        let (held, dead) = (held.map_err(read)?, dead.map_err(read)?);
        let inputs = MergeInputs {
            changes: ctx.read_table(changed).map_err(read)?,
            held,
            tombstones: dead,
        };
        let winners = resolve(&ctx, &schema.columns, rule, inputs)
            .await
            .map_err(|e| merge_err(a, e))?;
        let measure = self.engine.settings().measure_cost;
        let rows = PartitionWriter::new(&a.handle.url, table)?;
        let full = schema.to_arrow();
        Ok(Lane {
            winners,
            keys: KeyOrder::new(&full, &rule.key).map_err(|e| merge_err(a, e))?,
            rows: WriterTask::spawn(rows, a.meter.clone(), measure),
            dead: PartitionWriter::new(tomb_url, tombs)?,
            full,
            tomb_full: tomb_schema.to_arrow(),
            table: a.job.table.to_string(),
        })
    }
}

/// One lane: its winners, read in key order, go to the table's files and its tombstones'.
struct Lane {
    winners: Winners,
    keys: KeyOrder,
    rows: WriterTask,
    dead: PartitionWriter,
    full: SchemaRef,
    tomb_full: SchemaRef,
    table: String,
}

impl Lane {
    async fn run(mut self) -> Result<Written, RunError> {
        let table = self.table.clone();
        let err = |source| RunError::Merge {
            table: table.clone(),
            source,
        };
        // A refusal found mid-way (two changes of a key with one sequence value) leaves
        // the files written so far unlisted in any log: data to no reader, gone with gc.
        while let Some(batch) = self.winners.next().await {
            let (live, gone) = split_deleted(&batch.map_err(err)?).map_err(err)?;
            let live = fit(&live, &self.full).map_err(err)?;
            self.keys.add(&live).map_err(err)?;
            self.rows.write(live).await?;
            self.dead
                .write(fit(&gone, &self.tomb_full).map_err(err)?)
                .await?;
        }
        Ok(Written {
            rows: self.rows.finish().await?,
            dead: self.dead.finish().await?,
            keys: self.keys.tally(),
        })
    }
}

/// The touched partitions dealt round into at most `n` lanes (adjacent partitions, often
/// days of like size, go to different lanes). No partition named (nothing changed) is one
/// lane that reads nothing; an unpartitioned table, one lane over all of it.
fn lanes(touched: Option<&[Values]>, n: usize) -> Vec<Option<Vec<Values>>> {
    let Some(touched) = touched else {
        return vec![None];
    };
    let n = n.clamp(1, touched.len().max(1));
    let mut lanes = vec![Vec::new(); n];
    for (i, p) in touched.iter().enumerate() {
        lanes[i % n].push(p.clone());
    }
    lanes.into_iter().map(Some).collect()
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
        assert_eq!(
            dealt,
            vec![
                Some(vec![day(1), day(3), day(5)]),
                Some(vec![day(2), day(4)])
            ]
        );
        assert_eq!(lanes(Some(&touched[..1]), 4), vec![Some(vec![day(1)])]);
        assert_eq!(lanes(Some(&[]), 2), vec![Some(vec![])]);
        assert_eq!(lanes(None, 2), vec![None]);
    }
}
