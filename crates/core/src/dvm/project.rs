//! Projection (the SELECT list before grouping).
//!
//! `Δπ_e(R) = π_e(ΔR)`: projection without duplicate elimination is linear; duplicates stay as
//! weights. Precondition: `e` is deterministic.

use super::delta as delta_of;
use crate::ir::{Expr, Rel};

pub fn delta(input: &Rel, exprs: &[Expr]) -> Rel {
    Rel::Project {
        input: Box::new(delta_of(input)),
        exprs: exprs.to_vec(),
    }
}
