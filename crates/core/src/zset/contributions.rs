//! Test-only: an operator tree evaluated to its list of (row, weight) contributions, never
//! summed, the way SQL produces a delta's rows before any GROUP BY: the same row may come
//! with +1 from one join term and -1 from another. `eval` consolidates at every operator, so
//! rules that look at individual contributions (the MIN/MAX rule in `strategy_props`) are
//! checked on this list too. Consolidating it gives `eval` (checked there).

use super::eval::{concat, truthy};
use super::{eval_expr, Database, Row};
use crate::ir::{Expr, Rel, Value};

pub(super) type Contributions = Vec<(Row, i64)>;

fn match_weight(l: &Row, right: &Contributions, on: &Expr) -> i64 {
    right
        .iter()
        .filter(|(r, _)| truthy(&eval_expr(on, &concat(l, r))))
        .map(|(_, w)| w)
        .sum()
}

pub(super) fn contributions(rel: &Rel, db: &Database) -> Contributions {
    let all = |source: &usize, z: &[super::ZSet]| -> Contributions {
        z.get(*source)
            .map(|z| z.iter().map(|(r, w)| (r.clone(), w)).collect())
            .unwrap_or_default()
    };
    match rel {
        Rel::Scan { source, .. } => all(source, &db.current),
        Rel::Delta { source, .. } => all(source, &db.changes),
        Rel::Filter { input, predicate } => contributions(input, db)
            .into_iter()
            .filter(|(row, _)| truthy(&eval_expr(predicate, row)))
            .collect(),
        Rel::Project { input, exprs } => contributions(input, db)
            .into_iter()
            .map(|(row, w)| (exprs.iter().map(|e| eval_expr(e, &row)).collect(), w))
            .collect(),
        Rel::Join { left, right, on } | Rel::LeftJoin { left, right, on } => {
            let (l, r) = (contributions(left, db), contributions(right, db));
            let mut out = vec![];
            for (lr, lw) in &l {
                for (rr, rw) in &r {
                    let row = concat(lr, rr);
                    if truthy(&eval_expr(on, &row)) {
                        out.push((row, lw * rw));
                    }
                }
                if matches!(rel, Rel::LeftJoin { .. }) && match_weight(lr, &r, on) == 0 {
                    out.push((concat(lr, &vec![Value::Null; right.arity()]), *lw));
                }
            }
            out
        }
        Rel::AntiJoin { left, right, on } => {
            let r = contributions(right, db);
            contributions(left, db)
                .into_iter()
                .filter(|(lr, _)| match_weight(lr, &r, on) == 0)
                .collect()
        }
        Rel::AntiJoinChange {
            left,
            right_new,
            changed,
            on,
        } => {
            let (rn, ch) = (contributions(right_new, db), contributions(changed, db));
            let mut out = vec![];
            for (lr, lw) in contributions(left, db) {
                if !ch
                    .iter()
                    .any(|(r, _)| truthy(&eval_expr(on, &concat(&lr, r))))
                {
                    continue;
                }
                let now = match_weight(&lr, &rn, on);
                let before = now - match_weight(&lr, &ch, on);
                let w = lw * (i64::from(now == 0) - i64::from(before == 0));
                if w != 0 {
                    out.push((lr, w));
                }
            }
            out
        }
        Rel::UnionAll(inputs) => inputs.iter().flat_map(|i| contributions(i, db)).collect(),
        Rel::Negate(input) => contributions(input, db)
            .into_iter()
            .map(|(r, w)| (r, -w))
            .collect(),
    }
}
