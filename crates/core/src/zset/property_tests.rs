//! The delta rules agree with recomputation: for random operator trees, random source
//! contents and random changes, `Q(new) - Q(old) = ΔQ(new, change)`.

use super::{eval, Database, Row, ZSet};
use crate::dvm::delta;
use crate::ir::{CmpOp, Expr, Rel, Value};
use proptest::prelude::*;

const SOURCES: usize = 3;
const ARITY: usize = 2;

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![1 => Just(Value::Null), 6 => (0i64..4).prop_map(Value::Int)]
}

fn row() -> impl Strategy<Value = Row> {
    proptest::collection::vec(value(), ARITY)
}

/// A source's old contents (positive multiplicities) and a change that keeps them positive.
fn source_state() -> impl Strategy<Value = (ZSet, ZSet)> {
    (
        proptest::collection::vec((row(), 1i64..3), 0..6),
        proptest::collection::vec((row(), 1i64..3), 0..4),
        any::<u64>(),
    )
        .prop_map(|(old_rows, inserts, pick)| {
            let old: ZSet = old_rows.into_iter().collect();
            let mut change: ZSet = inserts.into_iter().collect();
            // delete some existing rows, never more copies than exist
            for (i, (r, w)) in old.iter().enumerate() {
                if (pick >> (i % 64)) & 1 == 1 {
                    change.add(r.clone(), -w.min(1 + (pick as i64 % w.max(1))));
                }
            }
            (old, change)
        })
}

fn predicate(arity: usize) -> impl Strategy<Value = Expr> {
    let leaf = (0..arity, 0i64..4, 0usize..4).prop_map(|(c, k, op)| match op {
        0 => Expr::eq(Expr::Col(c), Expr::Const(Value::Int(k))),
        1 => Expr::Cmp(
            CmpOp::Lt,
            Box::new(Expr::Col(c)),
            Box::new(Expr::Const(Value::Int(k))),
        ),
        2 => Expr::IsNull(Box::new(Expr::Col(c))),
        _ => Expr::Not(Box::new(Expr::eq(Expr::Col(c), Expr::Const(Value::Int(k))))),
    });
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2).prop_map(Expr::And),
            proptest::collection::vec(inner, 2).prop_map(Expr::Or),
        ]
    })
}

/// Join conditions between a left input of arity `l` and a right one of arity `r`.
fn join_condition(l: usize, r: usize) -> impl Strategy<Value = Expr> {
    (0..l, 0..r, 0usize..3).prop_map(move |(a, b, kind)| match kind {
        0 | 1 => Expr::eq(Expr::Col(a), Expr::Col(l + b)),
        _ => Expr::Cmp(
            CmpOp::Le,
            Box::new(Expr::Col(a)),
            Box::new(Expr::Col(l + b)),
        ),
    })
}

/// Random trees whose output always has `ARITY` columns.
fn tree() -> impl Strategy<Value = Rel> {
    let leaf = (0..SOURCES).prop_map(|s| Rel::Scan {
        source: s,
        arity: ARITY,
    });
    leaf.prop_recursive(4, 24, 3, |inner| {
        let two = || (inner.clone(), inner.clone());
        prop_oneof![
            (inner.clone(), predicate(ARITY)).prop_map(|(i, p)| Rel::Filter {
                input: Box::new(i),
                predicate: p
            }),
            (inner.clone(), 0..ARITY, 0..ARITY).prop_map(|(i, a, b)| Rel::Project {
                input: Box::new(i),
                exprs: vec![
                    Expr::Col(a),
                    Expr::Add(Box::new(Expr::Col(b)), Box::new(Expr::Const(Value::Int(1))))
                ],
            }),
            (
                two(),
                join_condition(ARITY, ARITY),
                0..2 * ARITY,
                0..2 * ARITY
            )
                .prop_map(|((l, r), on, a, b)| {
                    narrow(
                        Rel::Join {
                            left: Box::new(l),
                            right: Box::new(r),
                            on,
                        },
                        a,
                        b,
                    )
                }),
            (
                two(),
                join_condition(ARITY, ARITY),
                0..2 * ARITY,
                0..2 * ARITY
            )
                .prop_map(|((l, r), on, a, b)| {
                    narrow(
                        Rel::LeftJoin {
                            left: Box::new(l),
                            right: Box::new(r),
                            on,
                        },
                        a,
                        b,
                    )
                }),
            two().prop_map(|(l, r)| Rel::UnionAll(vec![l, r])),
        ]
    })
}

fn narrow(rel: Rel, a: usize, b: usize) -> Rel {
    Rel::Project {
        input: Box::new(rel),
        exprs: vec![Expr::Col(a), Expr::Col(b)],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn delta_rules_agree_with_recomputation(
        q in tree(),
        states in proptest::collection::vec(source_state(), SOURCES),
    ) {
        let old: Vec<ZSet> = states.iter().map(|(o, _)| o.clone()).collect();
        let changes: Vec<ZSet> = states.iter().map(|(_, c)| c.clone()).collect();
        let new: Vec<ZSet> = old.iter().zip(&changes).map(|(o, c)| {
            let mut n = o.clone();
            n.add_all(c, 1);
            n
        }).collect();
        for n in &new {
            prop_assert!(n.iter().all(|(_, w)| w > 0), "generator produced a negative multiplicity");
        }
        let before = eval(&q, &Database { current: old, changes: vec![] });
        let after = eval(&q, &Database { current: new.clone(), changes: changes.clone() });
        let computed = eval(&delta(&q), &Database { current: new, changes });
        prop_assert_eq!(after.minus(&before), computed, "tree: {:?}", q);
    }
}

#[test]
fn left_join_rows_appear_and_disappear_with_matches() {
    // L = {(1, 0)}, R = {} then R gains (1, 5): the NULL-extended row must go, the match come.
    let l: ZSet = [(vec![Value::Int(1), Value::Int(0)], 1)]
        .into_iter()
        .collect();
    let dr: ZSet = [(vec![Value::Int(1), Value::Int(5)], 1)]
        .into_iter()
        .collect();
    let q = Rel::LeftJoin {
        left: Box::new(Rel::Scan {
            source: 0,
            arity: 2,
        }),
        right: Box::new(Rel::Scan {
            source: 1,
            arity: 2,
        }),
        on: Expr::eq(Expr::Col(0), Expr::Col(2)),
    };
    let db = Database {
        current: vec![l, dr.clone()],
        changes: vec![ZSet::new(), dr],
    };
    let d = eval(&delta(&q), &db);
    let row = |v: [Value; 4]| v.to_vec();
    assert_eq!(
        d.weight(&row([
            Value::Int(1),
            Value::Int(0),
            Value::Null,
            Value::Null
        ])),
        -1
    );
    assert_eq!(
        d.weight(&row([
            Value::Int(1),
            Value::Int(0),
            Value::Int(1),
            Value::Int(5)
        ])),
        1
    );
}
