//! Left outer join.
//!
//! `L ⟕ R = (L ⋈ R) + pad(L ▷ R)` where `L ▷ R` keeps the left rows with no match and `pad`
//! appends NULLs for R's columns. So
//!
//! `Δ(L ⟕ R) = Δ(L ⋈ R) + pad(Δ(L ▷ R))`, and, since `▷` is linear in its left input,
//!
//! `Δ(L ▷ R) = ΔL ▷ R_old + Σ_{l ∈ L, l matches some row of ΔR} w(l)·([l ▷ R] − [l ▷ R_old])`.
//!
//! The first term handles changed left rows against the old right side; the second handles
//! left rows whose match count crossed zero because the right side changed (NULL-extended rows
//! appearing and disappearing). Match counts are sums of weights, so `R_old` may be the
//! unconsolidated Z-set `R - ΔR`. Precondition: `on` is deterministic.

use super::{delta as delta_of, join, old_state};
use crate::ir::{Expr, Rel, Value};

pub fn delta(left: &Rel, right: &Rel, on: &Expr) -> Rel {
    let inner = join::delta(left, right, on);
    let dl = delta_of(left);
    let dr = delta_of(right);
    let from_left = Rel::AntiJoin {
        left: Box::new(dl),
        right: Box::new(old_state(right)),
        on: on.clone(),
    };
    let from_right = Rel::AntiJoinChange {
        left: Box::new(left.clone()),
        right_new: Box::new(right.clone()),
        changed: Box::new(dr),
        on: on.clone(),
    };
    let anti = Rel::UnionAll(vec![from_left, from_right]);
    Rel::UnionAll(vec![inner, pad(anti, left.arity(), right.arity())])
}

/// Left rows followed by `right_arity` NULLs.
pub fn pad(rel: Rel, left_arity: usize, right_arity: usize) -> Rel {
    let mut exprs: Vec<Expr> = (0..left_arity).map(Expr::Col).collect();
    exprs.extend((0..right_arity).map(|_| Expr::Const(Value::Null)));
    Rel::Project {
        input: Box::new(rel),
        exprs,
    }
}
