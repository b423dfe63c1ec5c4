//! GROUP BY (or a whole-table aggregate) with COUNT(*), COUNT(x), SUM(x) and AVG(x) over exact
//! numbers, with or without FILTER. Each group stores, besides its visible columns:
//! `__pgt_count` (input rows in the group) and per aggregate j `__pgt_a{j}_n` (rows counted:
//! non-NULL argument and FILTER true) and, for SUM and AVG, `__pgt_a{j}_s` (their sum). The
//! delta of the input changes each state by a sum over the delta's rows (weight × value), so a
//! refresh reads only the delta and the affected groups' rows:
//!
//! `n' = n + Σ w·[x IS NOT NULL ∧ filter]`, `s' = s + Σ w·x·[…]`, `count(*)' = count(*) + Σ w`.
//!
//! A state is not stored twice: an unfiltered COUNT(*) is the row count, which an output
//! column that is exactly such a COUNT(*) holds instead of `__pgt_count`, and a COUNT or SUM
//! that is itself an output column keeps its `n` or `s` in that column (`state_columns.rs`).
//!
//! Visible values: COUNT = n; SUM = s when n > 0 else NULL; AVG = s / n. A group whose
//! row count reaches 0 is deleted (a whole-table aggregate keeps its single row). Floating
//! point sums are not exact under reordering and use the recompute strategy instead.
//!
//! MIN and MAX (over types without a collation) keep their value in `__pgt_a{j}_m`. With `p`
//! the least value the delta inserts and `q` the least it deletes (for MAX: the greatest),
//! `m' = least(m, p)`, exact unless `q <= m'`: then the deleted value may have been the
//! extreme, and only such groups are recomputed from the sources (`extremes.rs`).
//!
//! A SUM or AVG of `numeric` values without a declared scale prints with the largest scale
//! among its values: an extra SUM (added by `shape.rs`) counts the values of each scale, and
//! the visible sum is rounded to the largest (`agg_value`).

use super::{row_id, StreamPlan, COUNT, ROW_ID, ROW_ID_OPS};
use crate::ir::Expr;
use crate::sql::quote_ident;
use crate::sql::render::{column, render_expr, Rendered, WEIGHT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone)]
pub struct AggState {
    pub kind: AggKind,
    /// Body column with the argument (not for COUNT(*)).
    pub arg: Option<usize>,
    /// Body column with the FILTER condition.
    pub filter: Option<usize>,
    /// SQL type of the aggregate's result.
    pub result_type: String,
    /// For a SUM or AVG of `numeric` values of varying scale: the extra SUM aggregate (after
    /// the query's own) counting the values of each scale, from which the sum's scale follows.
    pub scale: Option<usize>,
    /// The argument is never NULL (a source column declared NOT NULL, not from the NULL side
    /// of an outer join): without FILTER, a SUM or AVG then counts every row of its group and
    /// needs no count of its own (`state_columns.rs`).
    pub arg_not_null: bool,
}

#[derive(Debug, Clone)]
pub struct Algebraic {
    /// Body columns `0..keys` are the group key.
    pub keys: usize,
    pub aggs: Vec<AggState>,
    /// Visible columns as expressions over `[key 0, .., key k-1, agg 0, .., agg m-1]`.
    pub targets: Vec<Expr>,
    /// For each key: the visible column that holds it, if any.
    pub key_visible: Vec<Option<usize>>,
    /// SQL type of each key (for keys stored in hidden columns).
    pub key_types: Vec<String>,
}

/// The sum of `numeric` values whose state is the running sum itself, starting from the first
/// value (created with the extension: `numeric_add` as its transition). PostgreSQL's `sum`
/// sets up an accumulator per group, which pays off over many values: aggregating 11,600
/// change rows into 11,300 groups took 12 ms with `sum` and 5 ms with this one, and 11,600
/// rows into 10 groups 2.9 ms with `sum` and 4.0 ms with this one.
pub const PLAIN_SUM: &str = "pgtrickle.plain_sum";

/// What `state_sums` aggregates.
#[derive(Debug, Clone, Copy)]
pub(super) enum Input {
    /// The query's whole input (a FULL refresh).
    Full,
    /// A change; with `lean_sums`, numeric sums use `PLAIN_SUM`.
    Delta { lean_sums: bool },
}

fn hidden_key(i: usize) -> String {
    format!("__pgt_k{i}")
}

pub(super) fn n_col(j: usize) -> String {
    format!("__pgt_a{j}_n")
}

pub(super) fn s_col(j: usize) -> String {
    format!("__pgt_a{j}_s")
}

pub(super) fn m_col(j: usize) -> String {
    format!("__pgt_a{j}_m")
}

impl AggKind {
    pub(super) fn has_sum(self) -> bool {
        matches!(self, AggKind::Sum | AggKind::Avg)
    }

    /// For MIN and MAX: the aggregate and the function choosing between two values.
    pub(super) fn extreme(self) -> Option<(&'static str, &'static str)> {
        match self {
            AggKind::Min => Some(("min", "LEAST")),
            AggKind::Max => Some(("max", "GREATEST")),
            _ => None,
        }
    }
}

impl Algebraic {
    pub fn hidden_columns(&self) -> Vec<(String, String)> {
        let mut cols = Vec::new();
        if self.stores_count() {
            cols.push((COUNT.to_string(), "bigint".to_string()));
        }
        for (j, agg) in self.aggs.iter().enumerate() {
            if self.stores_n(j) {
                cols.push((n_col(j), "bigint".to_string()));
            }
            if self.stores_s(j) {
                cols.push((s_col(j), "numeric".to_string()));
            }
            if agg.kind.extreme().is_some() {
                cols.push((m_col(j), agg.result_type.clone()));
            }
        }
        for (i, visible) in self.key_visible.iter().enumerate() {
            if visible.is_none() {
                cols.push((hidden_key(i), self.key_types[i].clone()));
            }
        }
        cols
    }

    /// The stored column holding key `i`.
    pub(super) fn key_column(&self, plan: &StreamPlan, i: usize) -> String {
        match self.key_visible[i] {
            Some(v) => plan.visible[v].to_string(),
            None => quote_ident(&hidden_key(i)),
        }
    }

    /// When a row of alias `x` counts for aggregate `agg`: its argument is not NULL and its
    /// FILTER holds.
    pub(super) fn counted(agg: &AggState) -> String {
        let col = |i: usize| format!("x.{}", column(i));
        let mut conds: Vec<String> = Vec::new();
        if let (Some(a), false) = (agg.arg, agg.arg_not_null) {
            conds.push(format!("{} IS NOT NULL", col(a)));
        }
        if let Some(f) = agg.filter {
            conds.push(format!("{} IS TRUE", col(f)));
        }
        if conds.is_empty() {
            "true".to_string()
        } else {
            conds.join(" AND ")
        }
    }

    /// ` GROUP BY 1, .., k` over the keys (empty for a whole-table aggregate).
    pub(super) fn group_by_keys(&self) -> String {
        if self.keys == 0 {
            String::new()
        } else {
            format!(
                " GROUP BY {}",
                (1..=self.keys)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }

    /// `SELECT keys, count, n_j, s_j, p_j, q_j` aggregates over input alias `x` (full or
    /// delta); `p_j` / `q_j` are the extreme values inserted / deleted for MIN and MAX (`q_j`
    /// only for a delta).
    pub(super) fn state_sums(&self, input: &str, of: Input) -> String {
        let delta = matches!(of, Input::Delta { .. });
        let sum = match of {
            Input::Delta { lean_sums: true } => PLAIN_SUM,
            _ => "sum",
        };
        let col = |i: usize| format!("x.{}", column(i));
        let mut items: Vec<String> = (0..self.keys)
            .map(|i| format!("{} AS k{i}", col(i)))
            .collect();
        items.push(format!("COALESCE(sum(x.{WEIGHT}), 0)::bigint AS cnt"));
        for (j, agg) in self.aggs.iter().enumerate() {
            let cond = Self::counted(agg);
            if !self.n_is_row_count(j) {
                items.push(format!(
                    "COALESCE(sum(CASE WHEN {cond} THEN x.{WEIGHT} ELSE 0 END), 0)::bigint AS n{j}"
                ));
            }
            if let (true, Some(a)) = (agg.kind.has_sum(), agg.arg) {
                // a weight is almost always 1 or -1: a sign change costs less than a numeric
                // multiplication (a third of the aggregation of a large change)
                let value = format!("({})::numeric", col(a));
                let weighted = format!(
                    "CASE x.{WEIGHT} WHEN 1 THEN {value} WHEN -1 THEN -{value} \
                     ELSE x.{WEIGHT} * {value} END"
                );
                let counted = if cond == "true" {
                    weighted
                } else {
                    format!("CASE WHEN {cond} THEN {weighted} END")
                };
                items.push(format!("{sum}({counted}) AS s{j}"));
            }
            if let (Some((aggregate, _)), Some(a)) = (agg.kind.extreme(), agg.arg) {
                items.push(format!(
                    "pg_catalog.{aggregate}(CASE WHEN {cond} AND x.{WEIGHT} > 0 THEN {} END) AS p{j}",
                    col(a)
                ));
                if delta {
                    items.push(format!(
                        "pg_catalog.{aggregate}(CASE WHEN {cond} AND x.{WEIGHT} < 0 THEN {} END) AS q{j}",
                        col(a)
                    ));
                }
            }
        }
        format!(
            "SELECT {} FROM ({input}) x{}",
            items.join(", "),
            self.group_by_keys()
        )
    }

    /// The visible value of aggregate `j` from its state: `n` its count, `s(k)` the sum and
    /// `m(k)` the extreme of aggregate `k` (SQL).
    fn agg_value(
        &self,
        j: usize,
        n: &str,
        s: &dyn Fn(usize) -> String,
        m: &dyn Fn(usize) -> String,
    ) -> String {
        let agg = &self.aggs[j];
        // The sum as the recomputed one prints it: with the largest scale among the values
        // (rounding to it changes no digit). The scale counter holds Σ 10^(12·scale) over the
        // values, so its number of integer digits, less one, divided by 12 is the largest
        // scale (exact while a group has fewer than 10^12 values of one scale).
        let sum = match agg.scale {
            Some(k) => format!(
                "pg_catalog.round({}, (pg_catalog.length(pg_catalog.trunc({})::text) - 1) / 12)",
                s(j),
                s(k)
            ),
            None => s(j),
        };
        let value = match agg.kind {
            AggKind::CountStar | AggKind::Count => n.to_string(),
            AggKind::Sum => format!("CASE WHEN {n} > 0 THEN {sum} END"),
            AggKind::Avg => format!("CASE WHEN {n} > 0 THEN {sum} / {n} END"),
            AggKind::Min | AggKind::Max => m(j),
        };
        format!("({value})::{}", agg.result_type)
    }

    /// The visible columns, given SQL for each key and each aggregate's count, sum and extreme.
    pub(super) fn visible_with(
        &self,
        key: &dyn Fn(usize) -> String,
        n: &dyn Fn(usize) -> String,
        s: &dyn Fn(usize) -> String,
        m: &dyn Fn(usize) -> String,
    ) -> Vec<String> {
        self.targets
            .iter()
            .map(|t| {
                render_expr(t, &|i| {
                    if i < self.keys {
                        key(i)
                    } else {
                        let j = i - self.keys;
                        self.agg_value(j, &n(j), s, m)
                    }
                })
            })
            .collect()
    }

    /// The visible columns from the state columns of alias `g` (k{i}, n{j}, s{j}, p{j}).
    pub(super) fn visible_values(&self, g: &str) -> Vec<String> {
        self.visible_with(
            &|i| format!("{g}.k{i}"),
            &|j| self.n_of(g, j),
            &|j| format!("{g}.s{j}"),
            &|j| format!("{g}.p{j}"),
        )
    }

    /// Stored hidden values (after the row id) from alias `g`, matching `hidden_columns`.
    pub(super) fn hidden_values(&self, g: &str) -> Vec<String> {
        let mut vals = Vec::new();
        if self.stores_count() {
            vals.push(format!("{g}.cnt"));
        }
        for (j, agg) in self.aggs.iter().enumerate() {
            if self.stores_n(j) {
                vals.push(format!("{g}.n{j}"));
            }
            if self.stores_s(j) {
                vals.push(format!("{g}.s{j}"));
            }
            if agg.kind.extreme().is_some() {
                vals.push(format!("{g}.p{j}"));
            }
        }
        for (i, visible) in self.key_visible.iter().enumerate() {
            if visible.is_none() {
                vals.push(format!("{g}.k{i}"));
            }
        }
        vals
    }

    pub(super) fn key_refs(&self, g: &str) -> Vec<String> {
        (0..self.keys).map(|i| format!("{g}.k{i}")).collect()
    }

    /// Every group's stored columns, in row-id order: groups are updated in place (HOT), so
    /// they stay near that order, and the apply statement, which visits a change's groups by
    /// row id, then reads the stream table's pages one after the other instead of at random.
    pub fn full_sql(&self, body: &Rendered) -> String {
        let mut items = self.visible_values("g");
        items.push(row_id(&self.key_refs("g")));
        let row_id_position = items.len();
        items.extend(self.hidden_values("g"));
        let order = if self.keys == 0 {
            String::new()
        } else {
            format!(" ORDER BY {row_id_position}")
        };
        format!(
            "{}SELECT {} FROM ({}) g{order}",
            body.with_ctes(&[]),
            items.join(", "),
            self.state_sums(&body.body, Input::Full)
        )
    }

    /// The stored columns that identify a group exactly: the row id (with its operator class,
    /// `ROW_ID_OPS`) and the keys, as the elements of a unique index on them (NULLS NOT
    /// DISTINCT), through which the apply statements find the stored groups.
    pub fn identity_columns(&self, plan: &StreamPlan) -> Vec<String> {
        std::iter::once(format!("{ROW_ID} {ROW_ID_OPS}"))
            .chain((0..self.keys).map(|i| self.key_column(plan, i)))
            .collect()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ir::Rel;
    use crate::maintain::{Apply, Strategy};
    use crate::sql::render::{render, SourceSql};
    use crate::sql::{Ident, QualifiedName};

    /// `SELECT k, agg(v) FROM t GROUP BY k` as the algebraic strategy sees it (`v` an integer).
    pub(in crate::maintain) fn grouped(kind: AggKind) -> (StreamPlan, Algebraic) {
        let algebraic = Algebraic {
            keys: 1,
            aggs: vec![AggState {
                kind,
                arg: Some(1),
                filter: None,
                result_type: if kind.has_sum() { "numeric" } else { "integer" }.into(),
                scale: None,
                arg_not_null: false,
            }],
            targets: vec![Expr::Col(0), Expr::Col(1)],
            key_visible: vec![Some(0)],
            key_types: vec!["integer".into()],
        };
        let plan = StreamPlan {
            table: QualifiedName::new("public", "sums"),
            visible: vec![Ident::new("k"), Ident::new("s")],
            sources: vec![SourceSql {
                relation: QualifiedName::new("public", "t"),
                columns: vec![Ident::new("k"), Ident::new("v")],
                buffer: QualifiedName::new("pgtrickle_changes", "changes_1"),
                window: "true".into(),
                limit: None,
            }],
            body: Rel::Scan {
                source: 0,
                arity: 2,
            },
            strategy: Strategy::Algebraic(algebraic.clone()),
            canonical_sql: "SELECT k, agg(v) AS s FROM public.t GROUP BY k".into(),
            reads_current_date: false,
            lean_sums: false,
        };
        (plan, algebraic)
    }

    /// The apply statement of `grouped(kind)` for a change of `t`.
    pub(in crate::maintain) fn apply_of(kind: AggKind) -> Apply {
        let (plan, algebraic) = grouped(kind);
        let delta = render(
            &Rel::Delta {
                source: 0,
                arity: 2,
            },
            &plan.sources,
        );
        algebraic.apply(&plan, &delta)
    }

    #[test]
    fn a_full_refresh_writes_groups_in_row_id_order() {
        let (plan, _) = grouped(AggKind::Sum);
        let full = plan.full_sql();
        // stored: k, s, then the row id, the third column of the full query too
        assert_eq!(plan.stored_columns()[2], ROW_ID);
        assert!(
            full.contains(", pg_catalog.hash_record_extended(ROW(g.k0), 0), "),
            "{full}"
        );
        assert!(full.ends_with(" ORDER BY 3"), "{full}");
    }
}
