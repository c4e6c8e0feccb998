//! The rule against an oracle: a change feed over many partitions, merged in time order,
//! in reverse, and shuffled with reruns, gives one table, the oracle's.

use super::*;
use crate::merge::test_rng::Lcg;
use crate::merge::{MergeError, MergeInputs, MergeRule, resolve, split_deleted};
use crate::names::Name;
use crate::schema::{Column, ColumnType};
use deltalake::arrow::array::{Int64Array, StringArray};
use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::datasource::MemTable;
use std::collections::BTreeMap;
use std::sync::Arc;

fn column(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column {
        name: Name::new(name).unwrap(),
        ty,
        nullable,
        default: None,
        comment: None,
    }
}

fn columns() -> Vec<Column> {
    vec![
        column("id", ColumnType::BigInt, false),
        column("updated_at", ColumnType::BigInt, true),
        column("name", ColumnType::String, true),
        column("op", ColumnType::String, true),
    ]
}

fn rule() -> MergeRule {
    MergeRule {
        key: vec![Name::new("id").unwrap()],
        sequence_by: Name::new("updated_at").unwrap(),
        delete_when: Some("op = 'D'".into()),
    }
}

/// One change: key, sequence, name, op.
type Change = (i64, Option<i64>, Option<&'static str>, &'static str);

fn table_schema(cols: &[Column]) -> Arc<Schema> {
    crate::engine::columns_schema(cols)
}

fn changes_batch(changes: &[Change]) -> RecordBatch {
    let cols = columns();
    RecordBatch::try_new(
        table_schema(&cols),
        vec![
            Arc::new(Int64Array::from_iter_values(changes.iter().map(|c| c.0))),
            Arc::new(Int64Array::from_iter(changes.iter().map(|c| c.1))),
            Arc::new(StringArray::from_iter(changes.iter().map(|c| c.2))),
            Arc::new(StringArray::from_iter_values(changes.iter().map(|c| c.3))),
        ],
    )
    .unwrap()
}

/// A table's rows and tombstones, as merges leave them.
#[derive(Debug, Default, Clone)]
struct State {
    rows: Vec<RecordBatch>,
    tombs: Vec<RecordBatch>,
}

/// Rows as (id, seq, name, op), tombstones as (id, seq); sorted.
type Shown = (
    Vec<(i64, i64, Option<String>, Option<String>)>,
    Vec<(i64, i64)>,
);

impl State {
    fn shown(&self) -> Shown {
        let mut rows = Vec::new();
        for b in &self.rows {
            let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let seq = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            let name = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
            let op = b.column(3).as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..b.num_rows() {
                let s = |a: &StringArray| (!a.is_null(i)).then(|| a.value(i).to_string());
                rows.push((id.value(i), seq.value(i), s(name), s(op)));
            }
        }
        let mut tombs = Vec::new();
        for b in &self.tombs {
            let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            let seq = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                tombs.push((id.value(i), seq.value(i)));
            }
        }
        rows.sort();
        tombs.sort();
        (rows, tombs)
    }
}

fn mem(ctx: &SessionContext, schema: Arc<Schema>, batches: Vec<RecordBatch>) -> DataFrame {
    let t = MemTable::try_new(schema, vec![batches]).unwrap();
    ctx.read_table(Arc::new(t)).unwrap()
}

async fn merge(state: &State, changes: &[Change]) -> Result<State, MergeError> {
    merge_in(crate::engine::Engine::table_session(), state, changes).await
}

/// A session whose sorts give batches of one or two rows: every key's candidates straddle
/// the batches the winners are picked from.
fn tiny_batches(rows: usize) -> SessionContext {
    crate::engine::Engine::table_session_in_batches_of(rows)
}

async fn merge_in(
    ctx: SessionContext,
    state: &State,
    changes: &[Change],
) -> Result<State, MergeError> {
    let cols = columns();
    let inputs = MergeInputs {
        changes: mem(
            &ctx,
            changes_batch(changes).schema(),
            vec![changes_batch(changes)],
        ),
        held: mem(&ctx, table_schema(&cols), state.rows.clone()),
        tombstones: mem(&ctx, table_schema(&cols[..2]), state.tombs.clone()),
    };
    let winners = resolve(&ctx, &cols, &rule(), inputs).await?;
    let mut next = State::default();
    for b in winners.collect().await? {
        let (rows, tombs) = split_deleted(&b)?;
        next.rows
            .push(rows.with_schema(table_schema(&cols)).unwrap());
        let tombs = tombs.project(&[0, 1])?;
        next.tombs
            .push(tombs.with_schema(table_schema(&cols[..2])).unwrap());
    }
    Ok(next)
}

#[tokio::test]
async fn an_older_change_loses_and_a_delete_keeps_a_tombstone() {
    let s = merge(
        &State::default(),
        &[(1, Some(10), Some("a"), "I"), (2, Some(10), Some("b"), "I")],
    )
    .await
    .unwrap();
    // 1 is updated, then an older update arrives; 2 is deleted, then an older update.
    let s = merge(&s, &[(1, Some(20), None, "U"), (2, Some(30), None, "D")])
        .await
        .unwrap();
    let s = merge(
        &s,
        &[
            (1, Some(15), Some("old"), "U"),
            (2, Some(25), Some("old"), "U"),
        ],
    )
    .await
    .unwrap();
    // A value to NULL is a change like any other.
    assert_eq!(
        s.shown(),
        (vec![(1, 20, None, Some("U".into()))], vec![(2, 30)])
    );
    // A newer insert brings the deleted key back, and its tombstone goes.
    let s = merge(&s, &[(2, Some(40), Some("again"), "I")])
        .await
        .unwrap();
    assert_eq!(
        s.shown(),
        (
            vec![
                (1, 20, None, Some("U".into())),
                (2, 40, Some("again".into()), Some("I".into()))
            ],
            vec![]
        )
    );
}

#[tokio::test]
async fn two_different_changes_with_one_sequence_value_are_refused_the_same_one_is_not() {
    let s = merge(&State::default(), &[(1, Some(10), Some("a"), "I")])
        .await
        .unwrap();
    // The same change again (a rerun, a duplicate row): nothing moves.
    let again = merge(
        &s,
        &[(1, Some(10), Some("a"), "I"), (1, Some(10), Some("a"), "I")],
    )
    .await
    .unwrap();
    assert_eq!(again.shown(), s.shown());
    let e = merge(&s, &[(1, Some(10), Some("b"), "U")])
        .await
        .unwrap_err();
    let said = e.to_string();
    assert!(matches!(e, MergeError::SameSequence { .. }), "{said}");
    assert!(
        said.contains("key id=1") && said.contains("`updated_at` value 10"),
        "{said}"
    );
    // Within one partition as well.
    let e = merge(
        &State::default(),
        &[(7, Some(5), Some("x"), "I"), (7, Some(5), Some("y"), "I")],
    )
    .await
    .unwrap_err();
    assert!(matches!(e, MergeError::SameSequence { .. }), "{e}");
    // Found across the sorted batches too, and a rerun's duplicate still is not refused.
    let e = merge_in(tiny_batches(1), &s, &[(1, Some(10), Some("b"), "U")])
        .await
        .unwrap_err();
    assert!(matches!(e, MergeError::SameSequence { .. }), "{e}");
    let twice = [(1, Some(10), Some("a"), "I"), (1, Some(10), Some("a"), "I")];
    let again = merge_in(tiny_batches(1), &s, &twice).await.unwrap();
    assert_eq!(again.shown(), s.shown());
    // A delete of one sequence value equals its tombstone, whatever else it carries.
    let d = merge(&s, &[(1, Some(11), Some("x"), "D")]).await.unwrap();
    let d2 = merge(&d, &[(1, Some(11), Some("y"), "D")]).await.unwrap();
    assert_eq!(d2.shown(), (vec![], vec![(1, 11)]));
}

#[tokio::test]
async fn a_change_without_a_sequence_value_is_refused_naming_its_key() {
    let e = merge(
        &State::default(),
        &[
            (3, None, Some("a"), "I"),
            (4, None, None, "I"),
            (5, Some(1), None, "I"),
        ],
    )
    .await
    .unwrap_err();
    let said = e.to_string();
    assert!(
        matches!(e, MergeError::NoSequence { count: 2, .. }),
        "{said}"
    );
    assert!(said.contains("id=3") || said.contains("id=4"), "{said}");
}

const NAMES: [&str; 4] = ["ann", "bob", "cy", "dee"];

/// 30 days of changes over 25 keys: inserts, updates, deletes, re-inserts, a NULL name,
/// and a fifth of them arriving a day late (in the next day's partition, older than that
/// day's own changes). Sequence values are unique, as `sequence_by` must make them.
fn feed() -> Vec<Vec<Change>> {
    let mut rng = Lcg(7);
    let mut days: Vec<Vec<Change>> = vec![Vec::new(); 31];
    let mut seq = 0;
    for day in 0..30 {
        for _ in 0..12 {
            seq += 1;
            let key = rng.next(25) as i64;
            let op = match rng.next(10) {
                0..=1 => "D",
                2..=4 => "I",
                _ => "U",
            };
            let name = match rng.next(5) {
                4 => None,
                n => Some(NAMES[n as usize]),
            };
            let late = rng.next(5) == 0;
            days[day + usize::from(late)].push((key, Some(seq), name, op));
        }
    }
    days
}

/// Each key's change of the greatest sequence, from every partition: a row unless a delete.
fn oracle(days: &[Vec<Change>]) -> Shown {
    let mut last: BTreeMap<i64, Change> = BTreeMap::new();
    for c in days.iter().flatten() {
        if last.get(&c.0).is_none_or(|l| l.1 < c.1) {
            last.insert(c.0, *c);
        }
    }
    let mut rows = Vec::new();
    let mut tombs = Vec::new();
    for (k, c) in last {
        let seq = c.1.unwrap();
        if c.3 == "D" {
            tombs.push((k, seq));
        } else {
            rows.push((k, seq, c.2.map(String::from), Some(c.3.to_string())));
        }
    }
    (rows, tombs)
}

#[tokio::test]
async fn a_change_feed_merged_in_any_order_with_reruns_is_the_oracle_s_table() {
    let days = feed();
    let want = oracle(&days);
    assert!(want.0.len() > 5 && !want.1.is_empty(), "{want:?}");
    let mut orders: Vec<Vec<usize>> =
        vec![(0..days.len()).collect(), (0..days.len()).rev().collect()];
    let mut rng = Lcg(42);
    for _ in 0..3 {
        // Shuffled, and a third of the partitions run again at some later point.
        let mut order: Vec<usize> = (0..days.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.next(i as u64 + 1) as usize);
        }
        for _ in 0..10 {
            let again = order[rng.next(order.len() as u64) as usize];
            let at = rng.next(order.len() as u64 + 1) as usize;
            order.insert(
                at.max(order.iter().position(|d| *d == again).unwrap() + 1),
                again,
            );
        }
        orders.push(order);
    }
    for order in orders {
        let mut s = State::default();
        for d in &order {
            s = merge(&s, &days[*d]).await.unwrap();
        }
        assert_eq!(s.shown(), want, "order {order:?}");
    }
    for rows in [1, 2] {
        let mut s = State::default();
        for d in (0..days.len()).rev() {
            s = merge_in(tiny_batches(rows), &s, &days[d]).await.unwrap();
        }
        assert_eq!(s.shown(), want, "batches of {rows}");
    }
}
