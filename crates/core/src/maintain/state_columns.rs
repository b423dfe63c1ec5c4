//! Where each algebraic aggregate's state lives. A state is not stored twice: an unfiltered
//! COUNT(*) counts every row, so its `n` is the group's row count, which is kept in the output
//! column that is exactly such a COUNT(*) if there is one, else in `__pgt_count`; a COUNT or
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
        !self.counts_rows(j)
            && (self.aggs[j].kind != AggKind::Count || self.output_state(j).is_none())
    }

    pub(super) fn stores_s(&self, j: usize) -> bool {
        self.aggs[j].kind.has_sum()
            && (self.aggs[j].kind != AggKind::Sum || self.output_state(j).is_none())
    }

    /// The stored column holding `n` of aggregate `j`.
    pub(super) fn n_stored(&self, plan: &StreamPlan, j: usize) -> String {
        if self.counts_rows(j) {
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
        if self.counts_rows(j) {
            format!("{g}.cnt")
        } else {
            format!("{g}.n{j}")
        }
    }
}
