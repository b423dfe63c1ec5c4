//! Evaluation of operator trees and expressions over in-memory Z-sets.

use super::{Row, ZSet};
use crate::ir::{CmpOp, Expr, Rel, Value};

/// Each source's current contents and pending change.
#[derive(Debug, Clone, Default)]
pub struct Database {
    pub current: Vec<ZSet>,
    pub changes: Vec<ZSet>,
}

pub(super) fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

/// SQL semantics: comparisons with NULL are NULL; AND/OR use three-valued logic.
pub fn eval_expr(expr: &Expr, row: &[Value]) -> Value {
    match expr {
        Expr::Col(i) => row.get(*i).cloned().unwrap_or(Value::Null),
        Expr::Const(v) => v.clone(),
        Expr::Cmp(op, a, b) => {
            let (a, b) = (eval_expr(a, row), eval_expr(b, row));
            if a == Value::Null || b == Value::Null {
                return Value::Null;
            }
            let ord = a.cmp(&b);
            Value::Bool(match op {
                CmpOp::Eq => ord.is_eq(),
                CmpOp::Ne => ord.is_ne(),
                CmpOp::Lt => ord.is_lt(),
                CmpOp::Le => ord.is_le(),
                CmpOp::Gt => ord.is_gt(),
                CmpOp::Ge => ord.is_ge(),
            })
        }
        Expr::And(xs) => {
            let vals: Vec<Value> = xs.iter().map(|x| eval_expr(x, row)).collect();
            if vals.contains(&Value::Bool(false)) {
                Value::Bool(false)
            } else if vals.contains(&Value::Null) {
                Value::Null
            } else {
                Value::Bool(true)
            }
        }
        Expr::Or(xs) => {
            let vals: Vec<Value> = xs.iter().map(|x| eval_expr(x, row)).collect();
            if vals.iter().any(truthy) {
                Value::Bool(true)
            } else if vals.contains(&Value::Null) {
                Value::Null
            } else {
                Value::Bool(false)
            }
        }
        Expr::Not(a) => match eval_expr(a, row) {
            Value::Bool(b) => Value::Bool(!b),
            _ => Value::Null,
        },
        Expr::IsNull(a) => Value::Bool(eval_expr(a, row) == Value::Null),
        Expr::Add(a, b) => match (eval_expr(a, row), eval_expr(b, row)) {
            (Value::Int(x), Value::Int(y)) => Value::Int(x.wrapping_add(y)),
            _ => Value::Null,
        },
        Expr::Sql { .. } => Value::Null,
    }
}

fn concat(l: &Row, r: &Row) -> Row {
    l.iter().chain(r.iter()).cloned().collect()
}

/// A relation's rows with their weights, not summed: the same row may come with +1 from one
/// term and -1 from another, as SQL produces a delta's rows before any GROUP BY.
pub type Contributions = Vec<(Row, i64)>;

/// Sum of the weights of `right`'s rows that `on` pairs with `l`.
fn match_weight(l: &Row, right: &Contributions, on: &Expr) -> i64 {
    right
        .iter()
        .filter(|(r, _)| truthy(&eval_expr(on, &concat(l, r))))
        .map(|(_, w)| w)
        .sum()
}

/// The Z-set `rel` denotes over `db`.
pub fn eval(rel: &Rel, db: &Database) -> ZSet {
    contributions(rel, db).into_iter().collect()
}

/// The rows `rel` produces over `db`, each with its weight, never summed; summing them gives
/// `eval`. Rules that look at single rows (the MIN/MAX rule) are checked on this list.
pub fn contributions(rel: &Rel, db: &Database) -> Contributions {
    let all = |z: Option<&ZSet>| -> Contributions {
        z.map(|z| z.iter().map(|(r, w)| (r.clone(), w)).collect())
            .unwrap_or_default()
    };
    match rel {
        Rel::Scan { source, .. } => all(db.current.get(*source)),
        Rel::Delta { source, .. } => all(db.changes.get(*source)),
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
            }
            if matches!(rel, Rel::LeftJoin { .. }) {
                // each left row with no match, padded with NULLs
                let nulls = vec![Value::Null; right.arity()];
                for (lr, lw) in &l {
                    if match_weight(lr, &r, on) == 0 {
                        out.push((concat(lr, &nulls), *lw));
                    }
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
                let touched = ch
                    .iter()
                    .any(|(r, _)| truthy(&eval_expr(on, &concat(&lr, r))));
                if !touched {
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
