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

pub(super) fn concat(l: &Row, r: &Row) -> Row {
    l.iter().chain(r.iter()).cloned().collect()
}

/// Sum of the weights of `right`'s rows that `on` pairs with `l`.
fn match_weight(l: &Row, right: &ZSet, on: &Expr) -> i64 {
    right
        .iter()
        .filter(|(r, _)| truthy(&eval_expr(on, &concat(l, r))))
        .map(|(_, w)| w)
        .sum()
}

/// The Z-set `rel` denotes over `db`.
pub fn eval(rel: &Rel, db: &Database) -> ZSet {
    match rel {
        Rel::Scan { source, .. } => db.current.get(*source).cloned().unwrap_or_default(),
        Rel::Delta { source, .. } => db.changes.get(*source).cloned().unwrap_or_default(),
        Rel::Filter { input, predicate } => eval(input, db)
            .iter()
            .filter(|(row, _)| truthy(&eval_expr(predicate, row)))
            .map(|(row, w)| (row.clone(), w))
            .collect(),
        Rel::Project { input, exprs } => eval(input, db)
            .iter()
            .map(|(row, w)| (exprs.iter().map(|e| eval_expr(e, row)).collect(), w))
            .collect(),
        Rel::Join { left, right, on } => {
            let (l, r) = (eval(left, db), eval(right, db));
            let mut out = ZSet::new();
            for (lr, lw) in l.iter() {
                for (rr, rw) in r.iter() {
                    let row = concat(lr, rr);
                    if truthy(&eval_expr(on, &row)) {
                        out.add(row, lw * rw);
                    }
                }
            }
            out
        }
        Rel::LeftJoin { left, right, on } => {
            let inner = eval(
                &Rel::Join {
                    left: left.clone(),
                    right: right.clone(),
                    on: on.clone(),
                },
                db,
            );
            let (l, r) = (eval(left, db), eval(right, db));
            let nulls = vec![Value::Null; right.arity()];
            let mut out = inner;
            for (lr, lw) in l.iter() {
                if match_weight(lr, &r, on) == 0 {
                    out.add(concat(lr, &nulls), lw);
                }
            }
            out
        }
        Rel::AntiJoin { left, right, on } => {
            let r = eval(right, db);
            eval(left, db)
                .iter()
                .filter(|(lr, _)| match_weight(lr, &r, on) == 0)
                .map(|(lr, w)| (lr.clone(), w))
                .collect()
        }
        Rel::AntiJoinChange {
            left,
            right_new,
            changed,
            on,
        } => {
            let (rn, ch) = (eval(right_new, db), eval(changed, db));
            let mut out = ZSet::new();
            for (lr, lw) in eval(left, db).iter() {
                let touched = ch
                    .iter()
                    .any(|(r, _)| truthy(&eval_expr(on, &concat(lr, r))));
                if !touched {
                    continue;
                }
                let now = match_weight(lr, &rn, on);
                let before = now - match_weight(lr, &ch, on);
                out.add(
                    lr.clone(),
                    lw * (i64::from(now == 0) - i64::from(before == 0)),
                );
            }
            out
        }
        Rel::UnionAll(inputs) => {
            let mut out = ZSet::new();
            for input in inputs {
                out.add_all(&eval(input, db), 1);
            }
            out
        }
        Rel::Negate(input) => {
            let mut out = ZSet::new();
            out.add_all(&eval(input, db), -1);
            out
        }
    }
}
