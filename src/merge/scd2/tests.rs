//! The history against an oracle that applies the changes one by one in time order: the
//! same history whatever order the partitions are merged in, with reruns.

use super::*;
use crate::merge::MergeRule;
use crate::merge::test_rng::Lcg;
use crate::names::Name;
use crate::schema::ColumnType;
use deltalake::arrow::array::{Array, BooleanArray, Int64Array, StringArray};
use deltalake::arrow::datatypes::Schema;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::datasource::MemTable;
use std::collections::BTreeMap;
use std::sync::Arc;

fn column(name: &str, ty: ColumnType) -> Column {
    Column {
        name: Name::new(name).unwrap(),
        ty,
        nullable: true,
        default: None,
        comment: None,
    }
}

/// id, name (tracked), tier (not tracked), updated_at, op, and the history's columns.
fn table() -> Vec<Column> {
    vec![
        column("id", ColumnType::BigInt),
        column("name", ColumnType::String),
        column("tier", ColumnType::String),
        column("updated_at", ColumnType::BigInt),
        column("op", ColumnType::String),
        column("valid_from", ColumnType::BigInt),
        column("valid_to", ColumnType::BigInt),
        column("is_current", ColumnType::Boolean),
    ]
}

fn rule() -> Scd2Rule {
    let n = |s: &str| Name::new(s).unwrap();
    Scd2Rule {
        changes: MergeRule {
            key: vec![n("id")],
            sequence_by: n("updated_at"),
            delete_when: Some("op = 'D'".into()),
        },
        track: vec![n("name")],
        valid_from: n("valid_from"),
        valid_to: n("valid_to"),
        is_current: n("is_current"),
    }
}

/// id, seq, name, tier, op.
type Change = (i64, i64, Option<&'static str>, &'static str, &'static str);
/// id, name, tier, valid_from, valid_to, is_current.
type Version = (i64, Option<String>, String, i64, Option<i64>, bool);

fn change_schema() -> Arc<Schema> {
    let t = table();
    crate::engine::columns_schema(&t[..5])
}

fn batch(changes: &[Change]) -> RecordBatch {
    RecordBatch::try_new(
        change_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(changes.iter().map(|c| c.0))),
            Arc::new(StringArray::from_iter(changes.iter().map(|c| c.2))),
            Arc::new(StringArray::from_iter_values(changes.iter().map(|c| c.3))),
            Arc::new(Int64Array::from_iter_values(changes.iter().map(|c| c.1))),
            Arc::new(StringArray::from_iter_values(changes.iter().map(|c| c.4))),
        ],
    )
    .unwrap()
}

fn frame(ctx: &SessionContext, schema: Arc<Schema>, batches: Vec<RecordBatch>) -> DataFrame {
    ctx.read_table(Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()))
        .unwrap()
}

#[derive(Debug, Default, Clone)]
struct State {
    log: Vec<RecordBatch>,
    history: Vec<RecordBatch>,
}

async fn merge(state: &State, changes: &[Change]) -> Result<State, MergeError> {
    let ctx = crate::engine::Engine::table_session();
    let t = table();
    let changes = frame(&ctx, change_schema(), vec![batch(changes)]);
    let held = frame(&ctx, change_schema(), state.log.clone());
    let new_log: Vec<RecordBatch> = log(&ctx, &t, &rule(), changes, held)
        .await?
        .collect()
        .await?;
    let new_log: Vec<RecordBatch> = new_log
        .into_iter()
        .map(|b| RecordBatch::try_new(change_schema(), b.columns().to_vec()).unwrap())
        .collect();
    let ctx = crate::engine::Engine::table_session();
    let log_df = frame(&ctx, change_schema(), new_log.clone());
    let history = history(&ctx, &t, &rule(), log_df).await?.collect().await?;
    Ok(State {
        log: new_log,
        history,
    })
}

fn shown(state: &State) -> Vec<Version> {
    let mut out = Vec::new();
    for b in &state.history {
        let i64s = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone()
        };
        let strs = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let (id, name, tier, from, to) = (i64s(0), strs(1), strs(2), i64s(5), i64s(6));
        let current = b.column(7).as_any().downcast_ref::<BooleanArray>().unwrap();
        for r in 0..b.num_rows() {
            out.push((
                id.value(r),
                (!name.is_null(r)).then(|| name.value(r).to_string()),
                tier.value(r).to_string(),
                from.value(r),
                (!to.is_null(r)).then(|| to.value(r)),
                current.value(r),
            ));
        }
    }
    out.sort();
    out
}

/// The changes applied one by one in sequence order, as a careful person would.
fn oracle(changes: &[Change]) -> Vec<Version> {
    let mut by_key: BTreeMap<i64, Vec<Change>> = BTreeMap::new();
    for c in changes {
        let v = by_key.entry(c.0).or_default();
        if !v.contains(c) {
            v.push(*c);
        }
    }
    let mut out = Vec::new();
    for (_, mut cs) in by_key {
        cs.sort_by_key(|c| c.1);
        let mut open: Option<Version> = None;
        for c in cs {
            if c.4 == "D" {
                if let Some(mut v) = open.take() {
                    v.4 = Some(c.1);
                    v.5 = false;
                    out.push(v);
                }
                continue;
            }
            let name = c.2.map(String::from);
            match &mut open {
                Some(v) if v.1 == name => {}
                _ => {
                    if let Some(mut v) = open.take() {
                        v.4 = Some(c.1);
                        v.5 = false;
                        out.push(v);
                    }
                    open = Some((c.0, name, c.3.to_string(), c.1, None, true));
                }
            }
        }
        out.extend(open);
    }
    out.sort();
    out
}

#[tokio::test]
async fn late_changes_split_intervals_and_a_change_of_an_untracked_column_alone_is_no_version() {
    let days: Vec<Vec<Change>> = vec![
        vec![
            (1, 10, Some("ann"), "gold", "I"),
            (2, 10, Some("bob"), "gold", "I"),
            (3, 10, Some("cy"), "gold", "I"),
        ],
        // 1: the tier (not tracked) changes: no version. 2: NULL, then deleted.
        vec![
            (1, 20, Some("ann"), "silver", "U"),
            (2, 20, None, "gold", "U"),
            (2, 30, None, "gold", "D"),
        ],
        // 1 changes at 40; a change at 15 arrives late and splits [10, 40).
        // 3: only the tier changes: no version.
        vec![
            (1, 40, Some("anne"), "gold", "U"),
            (3, 20, Some("cy"), "silver", "U"),
        ],
        vec![
            (1, 15, Some("an"), "gold", "U"),
            (2, 50, Some("bob"), "gold", "I"),
        ],
    ];
    // The late change makes the one at 20 a change of name again (back to "ann"): a
    // version, which takes the tier it came with.
    let mut want = vec![
        (
            1,
            Some("ann".to_string()),
            "gold".to_string(),
            10,
            Some(15),
            false,
        ),
        (
            1,
            Some("an".to_string()),
            "gold".to_string(),
            15,
            Some(20),
            false,
        ),
        (
            1,
            Some("ann".to_string()),
            "silver".to_string(),
            20,
            Some(40),
            false,
        ),
        (
            1,
            Some("anne".to_string()),
            "gold".to_string(),
            40,
            None,
            true,
        ),
        (
            2,
            Some("bob".to_string()),
            "gold".to_string(),
            10,
            Some(20),
            false,
        ),
        (2, None, "gold".to_string(), 20, Some(30), false),
        (
            2,
            Some("bob".to_string()),
            "gold".to_string(),
            50,
            None,
            true,
        ),
        (
            3,
            Some("cy".to_string()),
            "gold".to_string(),
            10,
            None,
            true,
        ),
    ];
    want.sort();
    assert_eq!(oracle(&days.concat()), want);
    for order in [vec![0, 1, 2, 3], vec![3, 2, 1, 0], vec![2, 0, 3, 1, 2, 0]] {
        let mut s = State::default();
        for d in &order {
            s = merge(&s, &days[*d]).await.unwrap();
        }
        assert_eq!(shown(&s), want, "order {order:?}");
    }
}

#[tokio::test]
async fn two_different_changes_with_one_sequence_value_are_refused() {
    let s = merge(&State::default(), &[(1, 10, Some("a"), "x", "I")])
        .await
        .unwrap();
    let again = merge(&s, &[(1, 10, Some("a"), "x", "I")]).await.unwrap();
    assert_eq!(shown(&again), shown(&s));
    let e = merge(&s, &[(1, 10, Some("b"), "x", "U")])
        .await
        .unwrap_err();
    assert!(matches!(e, MergeError::SameSequence { .. }), "{e}");
}

#[tokio::test]
async fn a_random_feed_in_any_order_with_reruns_is_the_oracle_s_history() {
    const NAMES: [Option<&str>; 4] = [Some("a"), Some("b"), None, Some("c")];
    const TIERS: [&str; 2] = ["x", "y"];
    let mut rng = Lcg(5);
    let mut days: Vec<Vec<Change>> = vec![Vec::new(); 21];
    let mut seq = 0;
    for d in 0..20 {
        for _ in 0..10 {
            seq += 1;
            let op = ["I", "U", "U", "U", "D"][rng.next(5) as usize];
            let c = (
                rng.next(12) as i64,
                seq,
                NAMES[rng.next(4) as usize],
                TIERS[rng.next(2) as usize],
                op,
            );
            days[d + usize::from(rng.next(4) == 0)].push(c);
        }
    }
    let want = oracle(&days.concat());
    assert!(want.len() > 20 && want.iter().any(|v| !v.5), "{want:?}");
    let mut order: Vec<usize> = (0..days.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.next(i as u64 + 1) as usize);
    }
    order.extend([3, 0, 17]);
    for order in [(0..days.len()).collect::<Vec<_>>(), order] {
        let mut s = State::default();
        for d in &order {
            s = merge(&s, &days[*d]).await.unwrap();
        }
        assert_eq!(shown(&s), want, "order {order:?}");
    }
}
