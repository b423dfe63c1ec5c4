//! Which output columns of an operator tree can never be NULL: a column read from a source
//! where it is declared NOT NULL, passed on unchanged by filters, projections, unions and the
//! left side of joins. The right side of a LEFT JOIN is padded with NULLs, and a computed
//! expression is taken to be nullable. Aggregates use this to know that a sum counts every
//! row of its group (`maintain::algebraic`).

use super::{Expr, Rel};

impl Rel {
    /// Whether column `col` of this operator's rows is never NULL, given for each source (by
    /// `SourceId`) which of its scanned columns are declared NOT NULL (a source or column not
    /// listed counts as nullable).
    pub fn never_null(&self, col: usize, not_null: &[Vec<bool>]) -> bool {
        match self {
            Rel::Scan { source, .. } | Rel::Delta { source, .. } => not_null
                .get(*source)
                .and_then(|columns| columns.get(col))
                .copied()
                .unwrap_or(false),
            Rel::Filter { input, .. } | Rel::Negate(input) => input.never_null(col, not_null),
            Rel::Project { input, exprs } => match exprs.get(col) {
                Some(Expr::Col(i)) => input.never_null(*i, not_null),
                _ => false,
            },
            Rel::Join { left, right, .. } => {
                let width = left.arity();
                if col < width {
                    left.never_null(col, not_null)
                } else {
                    right.never_null(col - width, not_null)
                }
            }
            Rel::LeftJoin { left, .. } => col < left.arity() && left.never_null(col, not_null),
            Rel::AntiJoin { left, .. } | Rel::AntiJoinChange { left, .. } => {
                left.never_null(col, not_null)
            }
            Rel::UnionAll(inputs) => {
                !inputs.is_empty() && inputs.iter().all(|i| i.never_null(col, not_null))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(source: usize, arity: usize) -> Rel {
        Rel::Scan { source, arity }
    }

    #[test]
    fn declared_columns_stay_not_null_through_filters_projections_and_inner_joins() {
        let not_null = vec![vec![true, false], vec![false, true]];
        let join = Rel::Join {
            left: Box::new(scan(0, 2)),
            right: Box::new(scan(1, 2)),
            on: Expr::Const(crate::ir::Value::Bool(true)),
        };
        let projected = Rel::Project {
            input: Box::new(Rel::Filter {
                input: Box::new(join),
                predicate: Expr::Const(crate::ir::Value::Bool(true)),
            }),
            exprs: vec![
                Expr::Col(3),
                Expr::Col(0),
                Expr::Col(1),
                Expr::IsNull(Box::new(Expr::Col(0))),
            ],
        };
        let found: Vec<bool> = (0..4).map(|c| projected.never_null(c, &not_null)).collect();
        assert_eq!(found, vec![true, true, false, false]);
        assert!(!projected.never_null(9, &not_null));
    }

    #[test]
    fn the_right_side_of_a_left_join_can_be_null() {
        let not_null = vec![vec![true], vec![true]];
        let left_join = Rel::LeftJoin {
            left: Box::new(scan(0, 1)),
            right: Box::new(scan(1, 1)),
            on: Expr::Const(crate::ir::Value::Bool(true)),
        };
        assert!(left_join.never_null(0, &not_null));
        assert!(!left_join.never_null(1, &not_null));
        let side = |col: usize| Rel::Project {
            input: Box::new(left_join.clone()),
            exprs: vec![Expr::Col(col)],
        };
        assert!(Rel::UnionAll(vec![scan(0, 1), side(0)]).never_null(0, &not_null));
        assert!(!Rel::UnionAll(vec![scan(0, 1), side(1)]).never_null(0, &not_null));
        assert!(!Rel::UnionAll(Vec::new()).never_null(0, &not_null));
    }
}
