//! Where each algebraic aggregate's state lives. A state is not stored twice: an unfiltered
//! COUNT(*) counts every row, and so does an unfiltered SUM or AVG of a value that is never
//! NULL, so their `n` is the group's row count, which is kept in the output column that is
//! exactly such a COUNT(*) if there is one, else in `__pgt_count`; a COUNT or
//! SUM that is itself an output column keeps its `n` or `s` in that column; every other state
//! has a hidden column (`__pgt_aN_n`, `__pgt_aN_s`). The apply and recompute statements name
//! states only through these functions.

use super::algebraic::{n_col, s_col, AggKind, Algebraic};
use super::{StreamPlan, COUNT};
use crate::ir::Expr;
use crate::sql::quote_ident;

impl Algebraic {
    /// Whether aggregate `j` counts every row (COUNT(*) without FILTER): its `n` is the
    /// group's row count.
    pub(super) fn counts_rows(&self, j: usize) -> bool {
        let agg = &self.aggs[j];
        agg.kind == AggKind::CountStar && agg.filter.is_none()
    }

    /// Whether aggregate `j` counts every row of its group: COUNT(*), or a SUM or AVG of a value
    /// that is never NULL, without FILTER. Its `n` is then the group's row count.
    pub(super) fn n_is_row_count(&self, j: usize) -> bool {
        self.counts_rows(j) || (self.unfiltered_sum(j) && self.aggs[j].arg_not_null)
    }

    /// Whether aggregate `j` is a SUM or AVG without FILTER: it counts every row its argument
    /// is not NULL in.
    fn unfiltered_sum(&self, j: usize) -> bool {
        self.aggs[j].kind.has_sum() && self.aggs[j].filter.is_none()
    }

    /// The output column that is exactly an unfiltered COUNT(*): it holds the group's row
    /// count.
    fn visible_row_count(&self) -> Option<usize> {
        (0..self.aggs.len())
            .filter(|&j| self.counts_rows(j))
            .find_map(|j| {
                self.targets
                    .iter()
                    .position(|t| *t == Expr::Col(self.keys + j))
            })
    }

    /// Whether the row count has its own hidden column, `__pgt_count`.
    pub(super) fn stores_count(&self) -> bool {
        self.visible_row_count().is_none()
    }

    /// The stored column holding the group's row count.
    pub(super) fn count_column(&self, plan: &StreamPlan) -> String {
        match self.visible_row_count() {
            Some(v) => plan.visible[v].to_string(),
            None => COUNT.to_string(),
        }
    }

    /// The output column that is exactly aggregate `j`, for a COUNT (which then holds `n`) or
    /// a SUM (which then holds `s`).
    fn output_state(&self, j: usize) -> Option<usize> {
        if !matches!(self.aggs[j].kind, AggKind::Count | AggKind::Sum) {
            return None;
        }
        self.targets
            .iter()
            .position(|t| *t == Expr::Col(self.keys + j))
    }

    pub(super) fn stores_n(&self, j: usize) -> bool {
        !self.n_is_row_count(j)
            && (self.aggs[j].kind != AggKind::Count || self.output_state(j).is_none())
    }

    pub(super) fn stores_s(&self, j: usize) -> bool {
        self.aggs[j].kind.has_sum()
            && (self.aggs[j].kind != AggKind::Sum || self.output_state(j).is_none())
    }

    /// The stored column holding `n` of aggregate `j`.
    pub(super) fn n_stored(&self, plan: &StreamPlan, j: usize) -> String {
        if self.n_is_row_count(j) {
            self.count_column(plan)
        } else if let (AggKind::Count, Some(v)) = (self.aggs[j].kind, self.output_state(j)) {
            plan.visible[v].to_string()
        } else {
            quote_ident(&n_col(j))
        }
    }

    /// The stored column holding `s` of SUM or AVG aggregate `j`.
    pub(super) fn s_stored(&self, plan: &StreamPlan, j: usize) -> String {
        match (self.aggs[j].kind, self.output_state(j)) {
            (AggKind::Sum, Some(v)) => plan.visible[v].to_string(),
            _ => quote_ident(&s_col(j)),
        }
    }

    /// `n` of aggregate `j` in state row `g` (of `state_sums`).
    pub(super) fn n_of(&self, g: &str, j: usize) -> String {
        if self.n_is_row_count(j) {
            format!("{g}.cnt")
        } else {
            format!("{g}.n{j}")
        }
    }

    /// Keep the counts a stream table stores: an aggregate whose argument was nullable when the
    /// table was made has its `__pgt_aN_n` column, and keeps using it after the source column
    /// was declared NOT NULL (`present`: the table's hidden columns).
    pub(super) fn follow_stored_counts(&mut self, present: &[String]) {
        for (j, agg) in self.aggs.iter_mut().enumerate() {
            if agg.arg_not_null && present.contains(&n_col(j)) {
                agg.arg_not_null = false;
            }
        }
    }

    /// The counts this layout stores that `present` (the table's hidden columns) lacks, each
    /// with the stored column that holds its value until now: an aggregate made without a
    /// count of its own (its argument was NOT NULL) counted every row of its group.
    pub(super) fn missing_counts(
        &self,
        plan: &StreamPlan,
        present: &[String],
    ) -> Vec<(String, String)> {
        (0..self.aggs.len())
            .filter(|&j| self.stores_n(j) && self.unfiltered_sum(j) && !present.contains(&n_col(j)))
            .map(|j| (n_col(j), self.count_column(plan)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::algebraic::tests::grouped;
    use super::super::algebraic::AggKind;
    use crate::ir::Rel;
    use crate::maintain::{Apply, Strategy, StreamPlan};

    /// `grouped(Sum)` with its argument never NULL.
    fn sum_of_not_null() -> StreamPlan {
        let (mut plan, mut algebraic) = grouped(AggKind::Sum);
        algebraic.aggs[0].arg_not_null = true;
        plan.strategy = Strategy::Algebraic(algebraic);
        plan
    }

    fn hidden(plan: &StreamPlan) -> Vec<String> {
        plan.hidden_columns()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    fn merge_sql(plan: &StreamPlan) -> String {
        let delta = Rel::Delta {
            source: 0,
            arity: 2,
        };
        match plan.apply(&delta) {
            Apply::Merge { sql } => sql,
            other => panic!("not a MERGE: {other:?}"),
        }
    }

    #[test]
    fn a_sum_of_values_never_null_is_counted_by_the_row_count() {
        let plan = sum_of_not_null();
        assert_eq!(hidden(&plan), ["__pgt_row_id", "__pgt_count"]);
        let sql = merge_sql(&plan);
        assert!(
            !sql.contains(" AS n0") && !sql.contains("IS NOT NULL"),
            "{sql}"
        );
        // SUM is NULL once the group has no rows, from the row count
        assert!(
            sql.contains("WHEN (t.__pgt_count + d.cnt) > 0 THEN"),
            "{sql}"
        );
        let (nullable, _) = grouped(AggKind::Sum);
        assert_eq!(
            hidden(&nullable),
            ["__pgt_row_id", "__pgt_count", "__pgt_a0_n"]
        );
    }

    #[test]
    fn a_stored_count_is_kept_and_a_missing_one_starts_from_the_row_count() {
        let mut plan = sum_of_not_null();
        plan.follow_stored_counts(&[
            "__pgt_row_id".into(),
            "__pgt_count".into(),
            "__pgt_a0_n".into(),
        ]);
        assert_eq!(hidden(&plan), ["__pgt_row_id", "__pgt_count", "__pgt_a0_n"]);
        assert!(merge_sql(&plan).contains(" AS n0"));
        assert!(plan.missing_counts(&["__pgt_a0_n".into()]).is_empty());
        let (nullable, _) = grouped(AggKind::Sum);
        assert_eq!(
            nullable.missing_counts(&["__pgt_row_id".into(), "__pgt_count".into()]),
            [("__pgt_a0_n".to_string(), "__pgt_count".to_string())]
        );
        let (count, _) = grouped(AggKind::Count);
        assert!(count.missing_counts(&[]).is_empty());
    }
}
