//! Filter (WHERE).
//!
//! `Δσ_p(R) = σ_p(ΔR)`: filtering is linear. Precondition: `p` is deterministic (the analyzer
//! refuses volatile functions for differential maintenance).

use super::delta as delta_of;
use crate::ir::{Expr, Rel};

pub fn delta(input: &Rel, predicate: &Expr) -> Rel {
    Rel::Filter {
        input: Box::new(delta_of(input)),
        predicate: predicate.clone(),
    }
}
