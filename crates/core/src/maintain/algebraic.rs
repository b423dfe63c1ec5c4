//! GROUP BY (or a whole-table aggregate) with COUNT(*), COUNT(x), SUM(x) and AVG(x) over exact
//! numbers, with or without FILTER. Each group stores, besides its visible columns:
//! `__pgt_count` (input rows in the group) and per aggregate j `__pgt_a{j}_n` (rows counted:
//! non-NULL argument and FILTER true) and, for SUM and AVG, `__pgt_a{j}_s` (their sum). The
//! delta of the input changes each state by a sum over the delta's rows (weight × value), so a
//! refresh reads only the delta and the affected groups' rows:
//!
//! `n' = n + Σ w·[x IS NOT NULL ∧ filter]`, `s' = s + Σ w·x·[…]`, `count(*)' = count(*) + Σ w`.
//!
//! Visible values: COUNT = n; SUM = s when n > 0 else NULL; AVG = s / n. A group whose
//! `__pgt_count` reaches 0 is deleted (a whole-table aggregate keeps its single row). Floating
//! point sums are not exact under reordering and use the recompute strategy instead.

use super::{counts_select, row_id, StreamPlan, COUNT, ROW_ID};
use crate::ir::Expr;
use crate::sql::quote_ident;
use crate::sql::render::{column, render_expr, Rendered, WEIGHT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    CountStar,
    Count,
    Sum,
    Avg,
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

fn n_col(j: usize) -> String {
    format!("__pgt_a{j}_n")
}

fn s_col(j: usize) -> String {
    format!("__pgt_a{j}_s")
}

impl AggKind {
    fn has_sum(self) -> bool {
        matches!(self, AggKind::Sum | AggKind::Avg)
    }
}

impl Algebraic {
    pub fn hidden_columns(&self) -> Vec<(String, String)> {
        let mut cols = vec![(COUNT.to_string(), "bigint".to_string())];
        for (j, agg) in self.aggs.iter().enumerate() {
            cols.push((n_col(j), "bigint".to_string()));
            if agg.kind.has_sum() {
                cols.push((s_col(j), "numeric".to_string()));
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
    fn key_column(&self, plan: &StreamPlan, i: usize) -> String {
        match self.key_visible[i] {
            Some(v) => plan.visible[v].to_string(),
            None => quote_ident(&hidden_key(i)),
        }
    }

    /// `SELECT keys, count, n_j, s_j` aggregates over input alias `x` (full or delta).
    fn state_sums(&self, input: &str) -> String {
        let col = |i: usize| format!("x.{}", column(i));
        let mut items: Vec<String> = (0..self.keys)
            .map(|i| format!("{} AS k{i}", col(i)))
            .collect();
        items.push(format!("COALESCE(sum(x.{WEIGHT}), 0)::bigint AS cnt"));
        for (j, agg) in self.aggs.iter().enumerate() {
            let mut conds: Vec<String> = Vec::new();
            if let Some(a) = agg.arg {
                conds.push(format!("{} IS NOT NULL", col(a)));
            }
            if let Some(f) = agg.filter {
                conds.push(format!("{} IS TRUE", col(f)));
            }
            let cond = if conds.is_empty() {
                "true".to_string()
            } else {
                conds.join(" AND ")
            };
            items.push(format!(
                "COALESCE(sum(CASE WHEN {cond} THEN x.{WEIGHT} ELSE 0 END), 0)::bigint AS n{j}"
            ));
            if let (true, Some(a)) = (agg.kind.has_sum(), agg.arg) {
                items.push(format!(
                    "sum(CASE WHEN {cond} THEN x.{WEIGHT} * ({})::numeric END) AS s{j}",
                    col(a)
                ));
            }
        }
        let group = if self.keys == 0 {
            String::new()
        } else {
            format!(
                " GROUP BY {}",
                (1..=self.keys)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!("SELECT {} FROM ({input}) x{group}", items.join(", "))
    }

    /// The visible value of aggregate `j` from its state columns in alias `g` (named n{j}, s{j}).
    fn agg_value(&self, j: usize, g: &str) -> String {
        let agg = &self.aggs[j];
        let value = match agg.kind {
            AggKind::CountStar | AggKind::Count => format!("{g}.n{j}"),
            AggKind::Sum => format!("CASE WHEN {g}.n{j} > 0 THEN {g}.s{j} END"),
            AggKind::Avg => format!("CASE WHEN {g}.n{j} > 0 THEN {g}.s{j} / {g}.n{j} END"),
        };
        format!("({value})::{}", agg.result_type)
    }

    fn visible_values(&self, g: &str) -> Vec<String> {
        self.targets
            .iter()
            .map(|t| {
                render_expr(t, &|i| {
                    if i < self.keys {
                        format!("{g}.k{i}")
                    } else {
                        self.agg_value(i - self.keys, g)
                    }
                })
            })
            .collect()
    }

    /// Stored hidden values (after the row id) from alias `g`, matching `hidden_columns`.
    fn hidden_values(&self, g: &str) -> Vec<String> {
        let mut vals = vec![format!("{g}.cnt")];
        for (j, agg) in self.aggs.iter().enumerate() {
            vals.push(format!("{g}.n{j}"));
            if agg.kind.has_sum() {
                vals.push(format!("{g}.s{j}"));
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

    pub fn full_sql(&self, body: &Rendered) -> String {
        let mut items = self.visible_values("g");
        items.push(row_id(&self.key_refs("g")));
        items.extend(self.hidden_values("g"));
        format!(
            "{}SELECT {} FROM ({}) g",
            body.with_ctes(&[]),
            items.join(", "),
            self.state_sums(&body.body)
        )
    }

    pub fn apply_sql(&self, plan: &StreamPlan, delta: &Rendered) -> String {
        let table = &plan.table;
        let d = ("d".to_string(), self.state_sums(&delta.body));
        let mut old_state = vec![format!("t.{COUNT} AS old_cnt")];
        let mut new_state = vec!["COALESCE(c.old_cnt, 0) + c.cnt AS cnt".to_string()];
        let mut changed = vec!["c.cnt <> 0".to_string()];
        for (j, agg) in self.aggs.iter().enumerate() {
            old_state.push(format!("t.{} AS old_n{j}", n_col(j)));
            new_state.push(format!("COALESCE(c.old_n{j}, 0) + c.n{j} AS n{j}"));
            changed.push(format!("c.n{j} <> 0"));
            if agg.kind.has_sum() {
                old_state.push(format!("t.{} AS old_s{j}", s_col(j)));
                new_state.push(format!(
                    "CASE WHEN COALESCE(c.old_n{j}, 0) + c.n{j} = 0 THEN NULL \
                     ELSE COALESCE(c.old_s{j}, 0) + COALESCE(c.s{j}, 0) END AS s{j}"
                ));
                changed.push(format!("COALESCE(c.s{j}, 0) <> 0"));
            }
        }
        let key_match: Vec<String> =
            std::iter::once(format!("t.{ROW_ID} = {}", row_id(&self.key_refs("d"))))
                .chain(
                    (0..self.keys).map(|i| {
                        format!("t.{} IS NOT DISTINCT FROM d.k{i}", self.key_column(plan, i))
                    }),
                )
                .collect();
        let whole = self.keys == 0;
        let stored = plan.stored_columns();
        let hidden_names: Vec<String> = self
            .hidden_columns()
            .into_iter()
            .map(|(n, _)| quote_ident(&n))
            .collect();
        let mut set: Vec<String> = plan
            .visible
            .iter()
            .zip(self.visible_values("n"))
            .map(|(col, v)| format!("{col} = {v}"))
            .collect();
        set.extend(
            hidden_names
                .iter()
                .zip(self.hidden_values("n"))
                .map(|(col, v)| format!("{col} = {v}")),
        );
        let mut insert_values = self.visible_values("n");
        insert_values.push("n.rid".to_string());
        insert_values.extend(self.hidden_values("n"));
        let keep = if whole {
            "true".to_string()
        } else {
            "n.cnt <> 0".to_string()
        };

        let mut sql = delta.with_ctes(&[d]);
        sql.push_str(&format!(
            ",\nc AS (SELECT d.*, {rid} AS rid, t.ctid AS tid, {old} FROM d LEFT JOIN {table} t ON {on}),\n\
             n AS (SELECT c.rid, c.tid, {keys}{new} FROM c WHERE c.tid IS NULL OR {changed}),\n\
             upd AS (UPDATE {table} t SET {set} FROM n \
                     WHERE t.{ROW_ID} = n.rid AND t.ctid = n.tid AND {keep} RETURNING 1),\n\
             del AS (DELETE FROM {table} t USING n \
                     WHERE t.{ROW_ID} = n.rid AND t.ctid = n.tid AND NOT ({keep}) RETURNING 1),\n\
             ins AS (INSERT INTO {table} ({stored}) SELECT {values} FROM n \
                     WHERE n.tid IS NULL AND {keep} RETURNING 1)\n",
            rid = row_id(&self.key_refs("d")),
            old = old_state.join(", "),
            on = key_match.join(" AND "),
            keys = self.key_refs("c").iter().map(|k| format!("{k}, ")).collect::<String>(),
            new = new_state.join(", "),
            changed = changed.join(" OR "),
            set = set.join(", "),
            stored = stored.join(", "),
            values = insert_values.join(", "),
        ));
        sql.push_str(&counts_select(&["del", "upd", "ins"]));
        sql
    }
}
