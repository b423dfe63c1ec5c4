//! Inner join (equi or not; any number of tables, as nested binary joins).
//!
//! `Δ(L ⋈ R) = ΔL ⋈ R + L ⋈ ΔR - ΔL ⋈ ΔR`, which equals `ΔL ⋈ R_old + L ⋈ ΔR` with
//! `R_old = R - ΔR` and only ever reads the inputs' new contents and their (small) changes.
//! Weights multiply, so duplicate rows stay exact. For nested joins the rule recurses: `ΔL` of
//! a join is itself a sum of joins. Precondition: `on` is deterministic.

use super::delta as delta_of;
use crate::ir::{Expr, Rel};

pub fn delta(left: &Rel, right: &Rel, on: &Expr) -> Rel {
    let dl = delta_of(left);
    let dr = delta_of(right);
    let join = |l: Rel, r: Rel| Rel::Join {
        left: Box::new(l),
        right: Box::new(r),
        on: on.clone(),
    };
    Rel::UnionAll(vec![
        join(dl.clone(), right.clone()),
        join(left.clone(), dr.clone()),
        join(dl, dr).negate(),
    ])
}
