//! The operator tree of a defining query's maintainable part, over Z-sets: every relation is a
//! multiset of rows where each row carries an integer weight (+n present n times, -n removed n
//! times). Base relations appear as `Scan` (their current contents, each row weight 1) or
//! `Delta` (their pending change). Rows are positional; operators refer to input columns by
//! index. The same tree is evaluated in memory (`zset`) and rendered to SQL (`sql::render`).

mod expr;
mod nullability;

pub use expr::{CmpOp, Expr, Template, TemplatePiece, Value};

/// Index of a base relation in the plan's source list.
pub type SourceId = usize;

/// A Z-set-valued operator tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Rel {
    /// The current contents of source `source`, projected to its `arity` used columns.
    Scan { source: SourceId, arity: usize },
    /// The pending change of source `source` (consolidated, weights net).
    Delta { source: SourceId, arity: usize },
    /// Rows of `input` for which `predicate` is true (NULL counts as false).
    Filter { input: Box<Rel>, predicate: Expr },
    /// One output row per input row, computed by `exprs`, same weight.
    Project { input: Box<Rel>, exprs: Vec<Expr> },
    /// Inner join: pairs of rows with `on` true; columns are left ++ right; weights multiply.
    Join {
        left: Box<Rel>,
        right: Box<Rel>,
        on: Expr,
    },
    /// Left outer join: the inner join plus each left row with no match, padded with NULLs.
    LeftJoin {
        left: Box<Rel>,
        right: Box<Rel>,
        on: Expr,
    },
    /// Left rows whose matches in `right` have weights summing to zero (no match), with their
    /// own weight. Used by the delta of `LeftJoin`; `right` may be an unconsolidated Z-set.
    AntiJoin {
        left: Box<Rel>,
        right: Box<Rel>,
        on: Expr,
    },
    /// For each row `l` of `left` that matches some row of `changed`: `l` with weight
    /// `w(l) * ([no match in right_new] - [no match in right_new - changed])`. The change of the
    /// anti-join caused by a change of its right side.
    AntiJoinChange {
        left: Box<Rel>,
        right_new: Box<Rel>,
        changed: Box<Rel>,
        on: Expr,
    },
    /// Z-set sum.
    UnionAll(Vec<Rel>),
    /// Every weight negated.
    Negate(Box<Rel>),
}

impl Rel {
    /// Number of columns of the rows this operator produces.
    pub fn arity(&self) -> usize {
        match self {
            Rel::Scan { arity, .. } | Rel::Delta { arity, .. } => *arity,
            Rel::Filter { input, .. } | Rel::Negate(input) => input.arity(),
            Rel::Project { exprs, .. } => exprs.len(),
            Rel::Join { left, right, .. } | Rel::LeftJoin { left, right, .. } => {
                left.arity() + right.arity()
            }
            Rel::AntiJoin { left, .. } | Rel::AntiJoinChange { left, .. } => left.arity(),
            Rel::UnionAll(inputs) => inputs.first().map_or(0, Rel::arity),
        }
    }

    /// The sources read, in first-seen order.
    pub fn sources(&self) -> Vec<SourceId> {
        let mut out = Vec::new();
        self.collect_sources(&mut out);
        out
    }

    fn collect_sources(&self, out: &mut Vec<SourceId>) {
        match self {
            Rel::Scan { source, .. } | Rel::Delta { source, .. } => {
                if !out.contains(source) {
                    out.push(*source);
                }
            }
            Rel::Filter { input, .. } | Rel::Project { input, .. } | Rel::Negate(input) => {
                input.collect_sources(out)
            }
            Rel::Join { left, right, .. }
            | Rel::LeftJoin { left, right, .. }
            | Rel::AntiJoin { left, right, .. } => {
                left.collect_sources(out);
                right.collect_sources(out);
            }
            Rel::AntiJoinChange {
                left,
                right_new,
                changed,
                ..
            } => {
                left.collect_sources(out);
                right_new.collect_sources(out);
                changed.collect_sources(out);
            }
            Rel::UnionAll(inputs) => inputs.iter().for_each(|i| i.collect_sources(out)),
        }
    }

    pub fn negate(self) -> Rel {
        Rel::Negate(Box::new(self))
    }

    /// Whether every weight this produces is positive when every input weight is: no
    /// negation, and no change of an anti-join (which removes NULL-padded rows).
    pub fn only_adds(&self) -> bool {
        match self {
            Rel::Scan { .. } | Rel::Delta { .. } => true,
            Rel::Negate(_) | Rel::AntiJoinChange { .. } => false,
            Rel::Filter { input, .. } | Rel::Project { input, .. } => input.only_adds(),
            Rel::Join { left, right, .. }
            | Rel::LeftJoin { left, right, .. }
            | Rel::AntiJoin { left, right, .. } => left.only_adds() && right.only_adds(),
            Rel::UnionAll(inputs) => inputs.iter().all(Rel::only_adds),
        }
    }
}
