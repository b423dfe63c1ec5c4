//! GROUP BY (or a whole-table aggregate) with COUNT(*), COUNT(x), SUM(x) and AVG(x) over exact
//! numbers, with or without FILTER. Each group stores, besides its visible columns:
//! `__pgt_count` (input rows in the group) and per aggregate j `__pgt_a{j}_n` (rows counted:
//! non-NULL argument and FILTER true) and, for SUM and AVG, `__pgt_a{j}_s` (their sum). The
//! delta of the input changes each state by a sum over the delta's rows (weight × value), so a
//! refresh reads only the delta and the affected groups' rows:
//!
//! `n' = n + Σ w·[x IS NOT NULL ∧ filter]`, `s' = s + Σ w·x·[…]`, `count(*)' = count(*) + Σ w`.
//!
//! A state is not stored twice: an unfiltered COUNT(*) is `__pgt_count`, and a COUNT or SUM
//! that is itself an output column keeps its `n` or `s` in that column (`state_columns.rs`).
//!
//! Visible values: COUNT = n; SUM = s when n > 0 else NULL; AVG = s / n. A group whose
//! `__pgt_count` reaches 0 is deleted (a whole-table aggregate keeps its single row). Floating
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

use super::{row_id, Apply, StreamPlan, COUNT, ROW_ID};
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
        let mut cols = vec![(COUNT.to_string(), "bigint".to_string())];
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
        if let Some(a) = agg.arg {
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
    fn state_sums(&self, input: &str, delta: bool) -> String {
        let col = |i: usize| format!("x.{}", column(i));
        let mut items: Vec<String> = (0..self.keys)
            .map(|i| format!("{} AS k{i}", col(i)))
            .collect();
        items.push(format!("COALESCE(sum(x.{WEIGHT}), 0)::bigint AS cnt"));
        for (j, agg) in self.aggs.iter().enumerate() {
            let cond = Self::counted(agg);
            if !self.counts_rows(j) {
                items.push(format!(
                    "COALESCE(sum(CASE WHEN {cond} THEN x.{WEIGHT} ELSE 0 END), 0)::bigint AS n{j}"
                ));
            }
            if let (true, Some(a)) = (agg.kind.has_sum(), agg.arg) {
                // a weight is almost always 1 or -1: a sign change costs less than a numeric
                // multiplication (a third of the aggregation of a large change)
                let value = format!("({})::numeric", col(a));
                items.push(format!(
                    "sum(CASE WHEN {cond} THEN CASE x.{WEIGHT} WHEN 1 THEN {value} \
                     WHEN -1 THEN -{value} ELSE x.{WEIGHT} * {value} END END) AS s{j}"
                ));
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
    fn visible_values(&self, g: &str) -> Vec<String> {
        self.visible_with(
            &|i| format!("{g}.k{i}"),
            &|j| self.n_of(g, j),
            &|j| format!("{g}.s{j}"),
            &|j| format!("{g}.p{j}"),
        )
    }

    /// Stored hidden values (after the row id) from alias `g`, matching `hidden_columns`.
    fn hidden_values(&self, g: &str) -> Vec<String> {
        let mut vals = vec![format!("{g}.cnt")];
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

    fn key_refs(&self, g: &str) -> Vec<String> {
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
            self.state_sums(&body.body, false)
        )
    }

    /// The stored columns that identify a group exactly: the row id and the keys. A unique
    /// index on them (NULLS NOT DISTINCT) is the conflict target of the apply statement.
    pub fn identity_columns(&self, plan: &StreamPlan) -> Vec<String> {
        std::iter::once(ROW_ID.to_string())
            .chain((0..self.keys).map(|i| self.key_column(plan, i)))
            .collect()
    }

    /// One statement: an `UPDATE ... FROM` adds each changed group's delta to its state, an
    /// `INSERT` creates the groups it did not find; it returns how many groups were updated and
    /// inserted, the ids of those whose count reached zero, which a second statement deletes
    /// (a whole-table aggregate keeps its row), and the keys of groups whose MIN or MAX may
    /// have been deleted, which a third statement recomputes. (An `INSERT ... ON CONFLICT DO
    /// UPDATE` did the same with one more WAL record per group, for locking the row first.)
    ///
    /// The stored groups are found by index lookups (row id, in row-id order) in every plan:
    /// the row id is compared with `= ANY (ARRAY[...])`, which an index scan takes as its
    /// condition but a hash or merge join cannot use. Planners chose to hash the whole stream
    /// table otherwise: for a large change (costing each lookup as a random page read; hashing
    /// 100,000 groups to update 13,000 took 99 to 142 ms where the lookups took 59 to 88), and
    /// in the generic plan kept for small changes to a table of 1,000 groups (a one-row change
    /// read all 1,000: 0.29 ms of a 0.8 ms refresh).
    pub fn apply(&self, plan: &StreamPlan, delta: &Rendered) -> Apply {
        let table = &plan.table;
        let mut changed = vec!["g.cnt <> 0".to_string()];
        let mut set = vec![format!("{COUNT} = t.{COUNT} + d.cnt")];
        for (j, agg) in self.aggs.iter().enumerate() {
            if !self.counts_rows(j) {
                changed.push(format!("g.n{j} <> 0"));
            }
            if self.stores_n(j) {
                set.push(format!("{n} = t.{n} + d.n{j}", n = n_col(j)));
            }
            if agg.kind.has_sum() {
                changed.push(format!("COALESCE(g.s{j}, 0) <> 0"));
            }
            if self.stores_s(j) {
                set.push(format!("{} = {}", s_col(j), self.summed(plan, j)));
            }
            if let Some(extreme) = self.extreme(plan, j) {
                changed.push(format!("g.p{j} IS NOT NULL OR g.q{j} IS NOT NULL"));
                set.push(format!("{} = {extreme}", m_col(j)));
            }
        }
        // the groups the delta changes (its rows may cancel out), in row-id order, so that
        // the stored groups are looked up in index order (13,000 lookups into 100,000 groups:
        // 24 to 30 ms, against 28 to 63 ms in hash order)
        let d = (
            "d".to_string(),
            format!(
                "SELECT g.*, {} AS rid FROM ({}) g WHERE {} ORDER BY rid",
                row_id(&self.key_refs("g")),
                self.state_sums(&delta.body, true),
                changed.join(" OR ")
            ),
        );
        let visible = self.visible_with(
            &|i| format!("d.k{i}"),
            &|j| format!("(t.{} + {})", self.n_stored(plan, j), self.n_of("d", j)),
            &|j| format!("({})", self.summed(plan, j)),
            &|j| format!("({})", self.extreme(plan, j).unwrap_or_default()),
        );
        set.extend(
            plan.visible
                .iter()
                .zip(visible)
                .map(|(col, v)| format!("{col} = {v}")),
        );
        let same_group = |stored: &str, keys: &dyn Fn(usize) -> String| {
            std::iter::once(format!("{stored}.{ROW_ID} = ANY (ARRAY[d.rid])"))
                .chain((0..self.keys).map(|i| format!("{} IS NOT DISTINCT FROM d.k{i}", keys(i))))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        // RETURNING sees the new row: its extreme is least(old, inserted) unless emptied
        let stale = self.deleted_extreme(&|j| format!("t.{}", m_col(j)));
        let update = format!(
            "UPDATE {table} AS t SET {set} FROM d WHERE {matched}\n\
             RETURNING t.{ROW_ID}, t.{COUNT} AS cnt{keys}{stale}",
            set = set.join(", "),
            matched = same_group("t", &|i| format!("t.{}", self.key_column(plan, i))),
            keys = (0..self.keys)
                .map(|i| format!(", t.{} AS k{i}", self.key_column(plan, i)))
                .collect::<String>(),
            stale = stale
                .as_ref()
                .map(|s| format!(", COALESCE({s}, false) AS stale"))
                .unwrap_or_default(),
        );
        let mut values = self.visible_values("d");
        values.push("d.rid".to_string());
        values.extend(self.hidden_values("d"));
        // a group is new when the stream table has no row for it (the statement reads the
        // table as it was before `up`): an index lookup per group, whatever the planner
        // estimates, where an anti-join against `up` could become a nested loop over both.
        // `up` holds one row per changed group that exists (row id and keys are unique on
        // both sides), so when it has as many rows as there are changed groups, none is new
        // and the lookups are skipped (a condition on no row: evaluated once)
        let new_group = format!(
            "d.cnt > 0 AND (SELECT n FROM upc) < (SELECT count(*) FROM d) \
             AND NOT EXISTS (SELECT 1 FROM {table} AS s WHERE {})",
            same_group("s", &|i| format!("s.{}", self.key_column(plan, i)))
        );
        let insert = format!(
            "INSERT INTO {table} ({stored}) SELECT {values} FROM d WHERE {new_group} RETURNING 1",
            stored = plan.stored_columns().join(", "),
            values = values.join(", "),
        );
        // `up` read once: groups updated, and those emptied
        let updated = format!(
            "SELECT count(*) AS n, array_agg(up.{ROW_ID}) FILTER (WHERE up.cnt = 0) AS emptied FROM up"
        );
        let mut ctes = vec![
            d,
            ("up".to_string(), update),
            ("upc".to_string(), updated),
            ("ins".to_string(), insert),
        ];
        if stale.is_some() {
            let keys = |alias: &str| {
                (0..self.keys)
                    .map(|i| format!("{alias}.k{i}"))
                    .chain(std::iter::once("1".to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            // a new group's extreme is the inserted one, unless the window also deleted it
            let new_stale = self
                .deleted_extreme(&|j| format!("d.p{j}"))
                .unwrap_or_default();
            ctes.push((
                "stale".to_string(),
                format!(
                    "SELECT {} FROM up WHERE up.stale\n\
                     UNION ALL SELECT {} FROM d WHERE {new_group} AND ({new_stale})",
                    keys("up"),
                    keys("d")
                ),
            ));
        }
        // one summary row instead of one row per group: the emptied groups' ids as text, and
        // the groups to recompute
        let mut upsert_sql = delta.with_ctes(&ctes);
        upsert_sql.push_str(&format!(
            "SELECT (SELECT n FROM upc), (SELECT count(*) FROM ins), (SELECT emptied FROM upc)::text{}",
            if stale.is_some() {
                self.stale_summary()
            } else {
                String::new()
            }
        ));
        let delete_sql = (self.keys > 0).then(|| {
            format!("DELETE FROM {table} t WHERE t.{ROW_ID} = ANY($1::bigint[]) AND t.{COUNT} = 0 RETURNING 1")
        });
        Apply::Upsert {
            upsert_sql,
            delete_sql,
            extremes_sql: stale.map(|_| self.recompute_extremes(plan)),
            key_count: self.keys,
        }
    }

    /// The new sum of aggregate `j` of stored group `t` changed by delta row `d`: NULL when
    /// nothing is counted.
    fn summed(&self, plan: &StreamPlan, j: usize) -> String {
        format!(
            "CASE WHEN t.{n} + {dn} = 0 THEN NULL ELSE COALESCE(t.{s}, 0) + COALESCE(d.s{j}, 0) END",
            n = self.n_stored(plan, j),
            dn = self.n_of("d", j),
            s = self.s_stored(plan, j)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Rel;
    use crate::maintain::Strategy;
    use crate::sql::render::{render, SourceSql};
    use crate::sql::{Ident, QualifiedName};

    /// `SELECT k, sum(v) FROM t GROUP BY k` as the algebraic strategy sees it.
    fn sums() -> (StreamPlan, Algebraic) {
        let algebraic = Algebraic {
            keys: 1,
            aggs: vec![AggState {
                kind: AggKind::Sum,
                arg: Some(1),
                filter: None,
                result_type: "numeric".into(),
                scale: None,
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
            canonical_sql: "SELECT k, sum(v) AS s FROM public.t GROUP BY k".into(),
            reads_current_date: false,
        };
        (plan, algebraic)
    }

    fn upsert() -> String {
        let (plan, algebraic) = sums();
        let delta = render(
            &Rel::Delta {
                source: 0,
                arity: 2,
            },
            &plan.sources,
        );
        match algebraic.apply(&plan, &delta) {
            Apply::Upsert { upsert_sql, .. } => upsert_sql,
            other => panic!("not an upsert: {other:?}"),
        }
    }

    #[test]
    fn stored_groups_are_found_by_a_condition_no_hash_join_can_take() {
        let upsert = upsert();
        // the update and the lookup of new groups
        assert_eq!(
            upsert.matches("__pgt_row_id = ANY (ARRAY[d.rid])").count(),
            2,
            "{upsert}"
        );
        assert!(!upsert.contains("= d.rid AND"), "{upsert}");
    }

    #[test]
    fn a_full_refresh_writes_groups_in_row_id_order() {
        let (plan, _) = sums();
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
