//! Delta rules: from an operator tree `Q` over the sources' current contents, the tree `ΔQ`
//! that computes how `Q`'s result changes when each source `S` changes by `ΔS`. Each operator's
//! rule lives in its own file, with the rule written at the top; this module only dispatches.
//!
//! Notation: `R` is an input's tree evaluated on the sources' *new* contents (what a `Scan`
//! reads during a refresh), `ΔR` its change, and `R_old = R - ΔR`. All rules are exact over
//! Z-sets; no rule re-runs the whole query.

mod filter;
mod join;
mod left_join;
mod project;
mod prune;
mod scan;
mod union;

pub use prune::prune;

use crate::ir::Rel;

/// The change of `rel`'s result, given the changes of its sources.
pub fn delta(rel: &Rel) -> Rel {
    match rel {
        Rel::Scan { source, arity } => scan::delta(*source, *arity),
        Rel::Filter { input, predicate } => filter::delta(input, predicate),
        Rel::Project { input, exprs } => project::delta(input, exprs),
        Rel::Join { left, right, on } => join::delta(left, right, on),
        Rel::LeftJoin { left, right, on } => left_join::delta(left, right, on),
        Rel::UnionAll(inputs) => union::delta_union(inputs),
        Rel::Negate(input) => union::delta_negate(input),
        // Internal operators appear only inside deltas, never in a defining tree.
        Rel::Delta { .. } | Rel::AntiJoin { .. } | Rel::AntiJoinChange { .. } => {
            Rel::UnionAll(vec![])
        }
    }
}

/// The old contents of `rel` as a Z-set: `R_old = R + (-ΔR)`. Unconsolidated: a row may
/// appear with weight +1 and -1; every rule that uses it only sums weights.
pub fn old_state(rel: &Rel) -> Rel {
    Rel::UnionAll(vec![rel.clone(), delta(rel).negate()])
}
