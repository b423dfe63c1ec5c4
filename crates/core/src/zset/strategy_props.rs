//! The premises the grouped maintenance strategies (`maintain::{recompute, algebraic,
//! distinct}`) rest on, for random operator trees (the generators of `property_tests`)
//! followed by grouping on a random subset of their output columns. ΔQ is what a refresh
//! evaluates: the pruned delta tree over the new contents and the changes.
//!
//! - recompute: a group whose rows differ between Q(old) and Q(new) has a key in ΔQ;
//! - algebraic: COUNT(*), COUNT(x), SUM(x) (with FILTER) are old state + state of ΔQ;
//! - MIN/MAX: the insert-only rule is exact whenever it does not ask for a recompute, on the
//!   consolidated ΔQ and on its unconsolidated contributions (`contributions`);
//! - distinct: a row is in DISTINCT(Q(new)) iff its stored count plus ΔQ's weight is > 0.

use super::property_tests::{predicate, refresh, tree, Refresh, ARITY};
use super::{contributions, eval, eval::truthy, eval_expr, Contributions, Database, Row, ZSet};
use crate::dvm::{delta, prune};
use crate::ir::{Expr, Rel, Value};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Q(old), Q(new) and ΔQ, grouped by the columns `keys` (none: a whole-table aggregate).
struct Case {
    keys: Vec<usize>,
    old: BTreeMap<Row, ZSet>,
    new: BTreeMap<Row, ZSet>,
    delta: BTreeMap<Row, ZSet>,
    contributions: BTreeMap<Row, Contributions>,
}

fn key(row: &Row, keys: &[usize]) -> Row {
    keys.iter().map(|k| row[*k].clone()).collect()
}

fn grouped(z: &ZSet, keys: &[usize]) -> BTreeMap<Row, ZSet> {
    let mut out: BTreeMap<Row, ZSet> = BTreeMap::new();
    for (row, w) in z.iter() {
        out.entry(key(row, keys)).or_default().add(row.clone(), w);
    }
    out
}

impl Case {
    fn new(q: &Rel, r: &Refresh, mask: usize) -> Case {
        let keys: Vec<usize> = (0..ARITY).filter(|i| mask >> i & 1 == 1).collect();
        let db = r.db_new();
        let pruned = prune(&delta(q), &|s| r.is_changed(s));
        let list = pruned
            .as_ref()
            .map(|p| contributions(p, &db))
            .unwrap_or_default();
        let dq = pruned.as_ref().map(|p| eval(p, &db)).unwrap_or_default();
        let mut by_key: BTreeMap<Row, Contributions> = BTreeMap::new();
        for (row, w) in list {
            by_key.entry(key(&row, &keys)).or_default().push((row, w));
        }
        let old = eval(
            q,
            &Database {
                current: r.old.clone(),
                changes: vec![],
            },
        );
        Case {
            old: grouped(&old, &keys),
            new: grouped(&eval(q, &db), &keys),
            delta: grouped(&dq, &keys),
            contributions: by_key,
            keys,
        }
    }

    fn whole_table(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key in Q(old), Q(new) or ΔQ, and the whole-table aggregate's empty key.
    fn all_keys(&self) -> BTreeSet<Row> {
        let mut out: BTreeSet<Row> = [&self.old, &self.new, &self.delta]
            .iter()
            .flat_map(|m| m.keys().cloned())
            .collect();
        if self.whole_table() {
            out.insert(vec![]);
        }
        out
    }

    fn group(m: &BTreeMap<Row, ZSet>, g: &Row) -> ZSet {
        m.get(g).cloned().unwrap_or_default()
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Null => None,
        other => panic!("trees produce integers or NULL, not {other:?}"),
    }
}

/// `[COUNT(*), then per column x: n = Σ w·[x NOT NULL ∧ filter], s = Σ w·x·[…]]`.
fn state(rows: &ZSet, filter: &Option<Expr>) -> Vec<i64> {
    let mut st = vec![0; 1 + 2 * ARITY];
    for (row, w) in rows.iter() {
        st[0] += w;
        if filter.as_ref().is_some_and(|f| !truthy(&eval_expr(f, row))) {
            continue;
        }
        for x in 0..ARITY {
            if let Some(v) = int(&row[x]) {
                st[1 + 2 * x] += w;
                st[2 + 2 * x] += w * v;
            }
        }
    }
    st
}

/// COUNT(*) and, per column, COUNT(x) and SUM(x): what the stream table shows.
type Visible = (i64, Vec<(i64, Option<i64>)>);

fn visible(st: &[i64]) -> Visible {
    let per = (0..ARITY)
        .map(|x| {
            let (n, s) = (st[1 + 2 * x], st[2 + 2 * x]);
            (n, (n > 0).then_some(s))
        })
        .collect();
    (st[0], per)
}

/// The aggregates computed the way SQL does, over the rows' copies.
fn recomputed(rows: &ZSet, filter: &Option<Expr>) -> Visible {
    let copies: Vec<&Row> = rows
        .iter()
        .flat_map(|(r, w)| {
            assert!(w > 0, "a query result has positive multiplicities");
            std::iter::repeat_n(r, w as usize)
        })
        .collect();
    let counted: Vec<&Row> = copies
        .iter()
        .copied()
        .filter(|r| filter.as_ref().is_none_or(|f| truthy(&eval_expr(f, r))))
        .collect();
    let per = (0..ARITY)
        .map(|x| {
            let vals: Vec<i64> = counted.iter().filter_map(|r| int(&r[x])).collect();
            let n = vals.len() as i64;
            (n, (!vals.is_empty()).then(|| vals.iter().sum()))
        })
        .collect();
    (copies.len() as i64, per)
}

#[derive(Debug, Clone, Copy)]
enum Extreme {
    Min,
    Max,
}

impl Extreme {
    fn of(self, vals: impl Iterator<Item = i64>) -> Option<i64> {
        match self {
            Extreme::Min => vals.min(),
            Extreme::Max => vals.max(),
        }
    }

    /// Deleting `v` may remove the old extreme `old` (or a copy of it).
    fn threatens(self, v: i64, old: i64) -> bool {
        match self {
            Extreme::Min => v <= old,
            Extreme::Max => v >= old,
        }
    }

    /// The rule of the algebraic strategy over the delta's non-NULL `(value, weight)`s: the
    /// candidate is the extreme of the old value and the inserted ones; `Some(candidate)`, or
    /// `None` (recompute the group) when a deleted value reaches the candidate, since that may
    /// be the very copy deleted. No candidate (no old or inserted value) needs no recompute.
    fn rule(self, old: Option<i64>, delta: &[(i64, i64)]) -> Option<Option<i64>> {
        let inserted = delta.iter().filter(|(_, w)| *w > 0).map(|(v, _)| *v);
        let candidate = self.of(old.into_iter().chain(inserted));
        let recompute = delta
            .iter()
            .any(|(v, w)| *w < 0 && candidate.is_some_and(|c| self.threatens(*v, c)));
        (!recompute).then_some(candidate)
    }
}

fn column_extreme(ext: Extreme, rows: &ZSet, x: usize) -> Option<i64> {
    ext.of(rows.iter().filter_map(|(r, _)| int(&r[x])))
}

/// MIN/MAX: wherever the rule needs no recompute, its value is the one recomputed over Q(new)
/// (and the group is gone if its COUNT(*) reached 0).
fn min_max_rule_holds(c: &Case) -> Result<(), TestCaseError> {
    for g in c.all_keys() {
        let (old, new) = (Case::group(&c.old, &g), Case::group(&c.new, &g));
        let consolidated: Contributions = Case::group(&c.delta, &g)
            .iter()
            .map(|(r, w)| (r.clone(), w))
            .collect();
        let unconsolidated = c.contributions.get(&g).cloned().unwrap_or_default();
        for (which, list) in [
            ("consolidated", consolidated),
            ("unconsolidated", unconsolidated),
        ] {
            let count =
                old.iter().map(|(_, w)| w).sum::<i64>() + list.iter().map(|(_, w)| w).sum::<i64>();
            for x in 0..ARITY {
                let vals: Vec<(i64, i64)> = list
                    .iter()
                    .filter_map(|(r, w)| Some((int(&r[x])?, *w)))
                    .collect();
                for ext in [Extreme::Min, Extreme::Max] {
                    let Some(value) = ext.rule(column_extreme(ext, &old, x), &vals) else {
                        continue;
                    };
                    if count == 0 && !c.whole_table() {
                        prop_assert!(new.is_empty(), "group {:?} should be gone", g);
                    } else {
                        prop_assert_eq!(
                            value,
                            column_extreme(ext, &new, x),
                            "{:?}({}) of group {:?}, {} ΔQ {:?}",
                            ext,
                            x,
                            g,
                            which,
                            vals
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn scenario() -> impl Strategy<Value = (Rel, Refresh, usize)> {
    (tree(), refresh(), 0usize..1 << ARITY)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Append-only apply: where a pruned delta tree says it only adds, insertions into the
    /// sources give contributions that are all positive, so they can be inserted as they come.
    #[test]
    fn insertions_give_positive_contributions_where_the_tree_only_adds(
        (q, mut r) in (tree(), refresh()),
    ) {
        for (i, change) in r.changes.iter_mut().enumerate() {
            let mut inserted = ZSet::new();
            for (row, w) in change.iter().filter(|(_, w)| *w > 0) {
                inserted.add(row.clone(), w);
            }
            let mut new = r.old[i].clone();
            new.add_all(&inserted, 1);
            r.new[i] = new;
            *change = inserted;
        }
        let Some(pruned) = prune(&delta(&q), &|s| r.is_changed(s)) else {
            return Ok(());
        };
        if pruned.only_adds() {
            for (row, w) in contributions(&pruned, &r.db_new()) {
                prop_assert!(w > 0, "{:?} with weight {} from {:?}", row, w, pruned);
            }
        }
    }

    /// Recompute: groups whose rows changed are among the keys ΔQ names.
    #[test]
    fn changed_groups_are_named_by_the_delta((q, r, mask) in scenario()) {
        let c = Case::new(&q, &r, mask);
        for g in c.all_keys() {
            if Case::group(&c.old, &g) != Case::group(&c.new, &g) {
                prop_assert!(c.delta.contains_key(&g), "group {:?} changed but is not in ΔQ", g);
            }
        }
    }

    /// Algebraic: old state + ΔQ's state gives Q(new)'s COUNT(*), COUNT(x), SUM(x).
    #[test]
    fn algebraic_state_plus_delta_state_is_new_state(
        (q, r, mask) in scenario(),
        filter in prop::option::of(predicate(ARITY)),
    ) {
        let c = Case::new(&q, &r, mask);
        let mut maintained = BTreeMap::new();
        for g in c.all_keys() {
            let old = state(&Case::group(&c.old, &g), &filter);
            let d = state(&Case::group(&c.delta, &g), &filter);
            let st: Vec<i64> = old.iter().zip(&d).map(|(a, b)| a + b).collect();
            // a group goes when its COUNT(*) reaches 0; a whole-table aggregate keeps its row
            if st[0] > 0 || c.whole_table() {
                maintained.insert(g, visible(&st));
            }
        }
        let mut expected: BTreeMap<Row, Visible> =
            c.new.iter().map(|(g, rows)| (g.clone(), recomputed(rows, &filter))).collect();
        if c.whole_table() {
            expected.entry(vec![]).or_insert_with(|| recomputed(&ZSet::new(), &filter));
        }
        prop_assert_eq!(maintained, expected, "filter {:?}", filter);
    }

    /// MIN/MAX: when the rule needs no recompute, its value is the recomputed one.
    #[test]
    fn min_max_rule_is_exact_when_it_needs_no_recompute((q, r, mask) in scenario()) {
        min_max_rule_holds(&Case::new(&q, &r, mask))?;
    }

    /// DISTINCT over the grouping columns: stored count + ΔQ's weight is Q(new)'s count, and
    /// the row is shown iff it is positive.
    #[test]
    fn distinct_count_plus_delta_weight_is_new_count((q, r, mask) in scenario()) {
        let c = Case::new(&q, &r, mask);
        let count = |m: &BTreeMap<Row, ZSet>, g: &Row| {
            Case::group(m, g).iter().map(|(_, w)| w).sum::<i64>()
        };
        for g in c.all_keys() {
            let stored = count(&c.old, &g) + count(&c.delta, &g);
            let now = count(&c.new, &g);
            prop_assert_eq!(stored > 0, now > 0, "row {:?}", g);
            prop_assert_eq!(stored, now, "count of row {:?}", g);
        }
    }
}

/// Found by the property: a whole-table MIN over a result that stays empty, whose delta
/// names (3, 3) once with +1 and once with -1 (`L ⋈ ΔR` and `-ΔL ⋈ ΔR`). With no old value,
/// reading `v <= old_min` as SQL does (NULL, so no recompute) would give MIN = 3.
#[test]
fn min_rule_recomputes_a_group_without_old_values() {
    let scan = |source| Rel::Scan {
        source,
        arity: ARITY,
    };
    let cols = |exprs: Vec<Expr>, input: Rel| Rel::Project {
        input: Box::new(input),
        exprs,
    };
    let int = |i| Expr::Const(Value::Int(i));
    let q = cols(
        vec![Expr::Col(0), Expr::Col(0)],
        Rel::Join {
            left: Box::new(cols(
                vec![
                    Expr::Col(0),
                    Expr::Add(Box::new(Expr::Col(0)), Box::new(int(1))),
                ],
                scan(0),
            )),
            right: Box::new(scan(2)),
            on: Expr::eq(Expr::Col(0), Expr::Col(2)),
        },
    );
    let z = |rows: &[(Value, i64)]| -> ZSet {
        rows.iter()
            .map(|(v, w)| (vec![v.clone(), Value::Null], *w))
            .collect()
    };
    let three = || Value::Int(3);
    let r = Refresh {
        old: vec![z(&[]), z(&[]), z(&[(Value::Null, 1), (three(), 1)])],
        new: vec![z(&[(three(), 1)]), z(&[]), z(&[(Value::Null, 1)])],
        changes: vec![z(&[(three(), 1)]), z(&[]), z(&[(three(), -1)])],
        changed: vec![true, false, true],
    };
    let c = Case::new(&q, &r, 0);
    assert_eq!(c.contributions[&vec![]].len(), 2, "{:?}", c.contributions);
    min_max_rule_holds(&c).unwrap();
}
