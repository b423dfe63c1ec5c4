//! Dropping the terms of a delta tree that read the change of a source with no pending
//! change: such a `Delta` is empty, and so is every join or filter over it. A refresh where
//! one of four joined tables changed evaluates one join term instead of fifteen.

use crate::ir::{Rel, SourceId};

/// `rel` without the parts that are empty because `changed(source)` is false; `None` when the
/// whole tree is empty.
pub fn prune(rel: &Rel, changed: &dyn Fn(SourceId) -> bool) -> Option<Rel> {
    let p = |r: &Rel| prune(r, changed).map(Box::new);
    match rel {
        Rel::Scan { .. } => Some(rel.clone()),
        Rel::Delta { source, .. } => changed(*source).then(|| rel.clone()),
        Rel::Filter { input, predicate } => Some(Rel::Filter {
            input: p(input)?,
            predicate: predicate.clone(),
        }),
        Rel::Project { input, exprs } => Some(Rel::Project {
            input: p(input)?,
            exprs: exprs.clone(),
        }),
        Rel::Negate(input) => Some(Rel::Negate(p(input)?)),
        Rel::Join { left, right, on } => Some(Rel::Join {
            left: p(left)?,
            right: p(right)?,
            on: on.clone(),
        }),
        Rel::LeftJoin { left, right, on } => {
            let left = p(left)?;
            match p(right) {
                Some(right) => Some(Rel::LeftJoin {
                    left,
                    right,
                    on: on.clone(),
                }),
                // every left row is unmatched: pad it
                None => Some(super::left_join::pad(
                    *left.clone(),
                    left.arity(),
                    rel.arity() - left.arity(),
                )),
            }
        }
        Rel::AntiJoin { left, right, on } => {
            let left = p(left)?;
            match p(right) {
                Some(right) => Some(Rel::AntiJoin {
                    left,
                    right,
                    on: on.clone(),
                }),
                None => Some(*left),
            }
        }
        Rel::AntiJoinChange {
            left,
            right_new,
            changed: ch,
            on,
        } => Some(Rel::AntiJoinChange {
            left: p(left)?,
            right_new: Box::new(prune(right_new, changed).unwrap_or(Rel::UnionAll(vec![]))),
            changed: p(ch)?,
            on: on.clone(),
        }),
        Rel::UnionAll(inputs) => {
            let kept: Vec<Rel> = inputs.iter().filter_map(|i| prune(i, changed)).collect();
            match kept.len() {
                0 => None,
                1 => kept.into_iter().next(),
                _ => Some(Rel::UnionAll(kept)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvm::delta;
    use crate::ir::Expr;

    #[test]
    fn one_changed_source_of_three_leaves_one_join_term() {
        let scan = |s| Rel::Scan {
            source: s,
            arity: 1,
        };
        let join = |l: Rel, r: Rel| Rel::Join {
            left: Box::new(l),
            right: Box::new(r),
            on: Expr::truth(),
        };
        let q = join(join(scan(0), scan(1)), scan(2));
        let pruned = prune(&delta(&q), &|s| s == 2).expect("not empty");
        assert_eq!(
            pruned,
            join(
                join(scan(0), scan(1)),
                Rel::Delta {
                    source: 2,
                    arity: 1
                }
            )
        );
        assert!(prune(&delta(&q), &|_| false).is_none());
    }
}
