//! The delta rules agree with recomputation: for random operator trees, random source
//! contents and random changes, `Q(new) - Q(old) = ΔQ(new, change)`; and the delta tree a
//! refresh evaluates, pruned of the changes of sources with nothing pending, denotes the same
//! Z-set. The generators here are shared with `strategy_props`.

use super::{eval, Database, Row, ZSet};
use crate::dvm::{delta, prune};
use crate::ir::{CmpOp, Expr, Rel, SourceId, Value};
use proptest::prelude::*;

pub(super) const SOURCES: usize = 3;
pub(super) const ARITY: usize = 2;

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

pub(super) fn predicate(arity: usize) -> impl Strategy<Value = Expr> {
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
pub(super) fn tree() -> impl Strategy<Value = Rel> {
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

/// The sources' state at a refresh: old and new contents, the (consolidated) change, and the
/// refresh's `changed` flag per source.
#[derive(Debug, Clone)]
pub(super) struct Refresh {
    pub old: Vec<ZSet>,
    pub new: Vec<ZSet>,
    pub changes: Vec<ZSet>,
    pub changed: Vec<bool>,
}

impl Refresh {
    /// What a refresh reads: the new contents (`Scan`) and the changes (`Delta`).
    pub fn db_new(&self) -> Database {
        Database {
            current: self.new.clone(),
            changes: self.changes.clone(),
        }
    }

    /// Like `differential::refresh`: a source id outside the plan's sources is not changed.
    pub fn is_changed(&self, source: SourceId) -> bool {
        self.changed.get(source).is_some_and(|c| *c)
    }
}

/// About a third of the sources have no change. The extension's flag is "the buffer has a row
/// in the window" (`pending_flags`), so a source whose buffered rows cancel out (insert then
/// delete) is flagged although its consolidated change is empty; `netted` models that.
pub(super) fn refresh() -> impl Strategy<Value = Refresh> {
    let one = (
        source_state(),
        prop::bool::weighted(0.35),
        prop::bool::weighted(0.2),
    );
    proptest::collection::vec(one, SOURCES).prop_map(|states| {
        let mut r = Refresh {
            old: vec![],
            new: vec![],
            changes: vec![],
            changed: vec![],
        };
        for ((old, change), quiet, netted) in states {
            let change = if quiet { ZSet::new() } else { change };
            let mut new = old.clone();
            new.add_all(&change, 1);
            r.changed.push(!change.is_empty() || netted);
            r.old.push(old);
            r.new.push(new);
            r.changes.push(change);
        }
        r
    })
}

/// `rel` with the `Scan`s whose bit in `mask` (one bit per leaf, in order) is set reading
/// the source's change instead. Defining trees never do; it reaches `prune`'s branches for a
/// side that prunes to nothing (a left join's right side, an anti-join's right side).
fn with_deltas(rel: &Rel, mask: &mut u64) -> Rel {
    let mut sub = |r: &Rel| Box::new(with_deltas(r, mask));
    match rel {
        Rel::Scan { source, arity } => {
            let bit = *mask & 1 == 1;
            *mask = mask.rotate_right(1);
            if bit {
                Rel::Delta {
                    source: *source,
                    arity: *arity,
                }
            } else {
                rel.clone()
            }
        }
        Rel::Filter { input, predicate } => Rel::Filter {
            input: sub(input),
            predicate: predicate.clone(),
        },
        Rel::Project { input, exprs } => Rel::Project {
            input: sub(input),
            exprs: exprs.clone(),
        },
        Rel::Join { left, right, on } => Rel::Join {
            left: sub(left),
            right: sub(right),
            on: on.clone(),
        },
        Rel::LeftJoin { left, right, on } => Rel::LeftJoin {
            left: sub(left),
            right: sub(right),
            on: on.clone(),
        },
        Rel::UnionAll(inputs) => Rel::UnionAll(inputs.iter().map(|i| *sub(i)).collect()),
        other => other.clone(),
    }
}

/// The sources whose change `rel` reads.
fn delta_sources(rel: &Rel, out: &mut Vec<SourceId>) {
    match rel {
        Rel::Scan { .. } => {}
        Rel::Delta { source, .. } => out.push(*source),
        Rel::Filter { input, .. } | Rel::Project { input, .. } | Rel::Negate(input) => {
            delta_sources(input, out)
        }
        Rel::Join { left, right, .. }
        | Rel::LeftJoin { left, right, .. }
        | Rel::AntiJoin { left, right, .. } => {
            delta_sources(left, out);
            delta_sources(right, out);
        }
        Rel::AntiJoinChange {
            left,
            right_new,
            changed,
            ..
        } => {
            delta_sources(left, out);
            delta_sources(right_new, out);
            delta_sources(changed, out);
        }
        Rel::UnionAll(inputs) => inputs.iter().for_each(|i| delta_sources(i, out)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn delta_rules_agree_with_recomputation(q in tree(), r in refresh()) {
        for n in &r.new {
            prop_assert!(n.iter().all(|(_, w)| w > 0), "generator produced a negative multiplicity");
        }
        let db = r.db_new();
        let before = eval(&q, &Database { current: r.old.clone(), changes: vec![] });
        let after = eval(&q, &db);
        let dq = delta(&q);
        let computed = eval(&dq, &db);
        prop_assert_eq!(after.minus(&before), computed.clone(), "tree: {:?}", q);

        // what `differential::refresh` evaluates: `prune(&delta(&body), &changed)`, None = no-op
        let pruned = prune(&dq, &|s| r.is_changed(s));
        let pruned_value = pruned.as_ref().map(|p| eval(p, &db)).unwrap_or_default();
        prop_assert_eq!(pruned_value, computed, "pruned: {:?}\ntree: {:?}", pruned, q);
        let mut read = vec![];
        if let Some(p) = &pruned {
            delta_sources(p, &mut read);
        }
        prop_assert!(
            read.iter().all(|s| r.is_changed(*s)),
            "pruned tree reads the change of an unchanged source: {:?}", pruned
        );
        if !r.changed.iter().any(|c| *c) {
            prop_assert!(pruned.is_none(), "nothing changed but pruned to {:?}", pruned);
        }
    }

    /// `prune` keeps the value of any tree, not only of delta trees, when unchanged sources
    /// have empty changes.
    #[test]
    fn prune_keeps_the_value_of_trees_reading_changes(q in tree(), mut mask in any::<u64>(), r in refresh()) {
        let db = r.db_new();
        let mixed = with_deltas(&q, &mut mask);
        for t in [delta(&mixed), mixed] {
            let pruned = prune(&t, &|s| r.is_changed(s));
            let value = pruned.as_ref().map(|p| eval(p, &db)).unwrap_or_default();
            prop_assert_eq!(value, eval(&t, &db), "pruned: {:?}\ntree: {:?}", pruned, t);
        }
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
