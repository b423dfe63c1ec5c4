//! UNION ALL and negation.
//!
//! `Δ(R₁ ⊎ … ⊎ Rₙ) = ΔR₁ ⊎ … ⊎ ΔRₙ` and `Δ(-R) = -ΔR`: both are linear.

use super::delta;
use crate::ir::Rel;

pub fn delta_union(inputs: &[Rel]) -> Rel {
    Rel::UnionAll(inputs.iter().map(delta).collect())
}

pub fn delta_negate(input: &Rel) -> Rel {
    delta(input).negate()
}
