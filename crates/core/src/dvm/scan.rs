//! Scan of a base relation.
//!
//! `Δ(Scan S) = ΔS`: the change of a base relation is its consolidated change buffer for the
//! refresh window. No preconditions.

use crate::ir::{Rel, SourceId};

pub fn delta(source: SourceId, arity: usize) -> Rel {
    Rel::Delta { source, arity }
}
