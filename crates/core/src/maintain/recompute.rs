//! Recomputing only the affected groups: for results grouped by visible columns whose
//! aggregates cannot be updated from the delta alone (MIN, MAX, string_agg, array_agg,
//! bool_and, stddev, COUNT(DISTINCT), floating-point SUM ...), for HAVING, and for
//! DISTINCT ON. The delta of the query's input names the affected keys; the defining query,
//! restricted to those keys (a filter PostgreSQL pushes down into the grouping, so an index on
//! the key column is used), gives their new rows; the old rows of those keys are replaced, and
//! rows that come out the same are left untouched.
//! Groups the delta does not touch are not read.

use super::given_keys::{among_given_keys, given_keys};
use super::{counts_select, row_id, row_image, Apply, StreamPlan, ROW_ID};
use crate::sql::render::{column, Rendered};

/// The DELETE and INSERT that replace the affected keys' rows (`t_match` selects the stored rows
/// of an affected key `a`) with the recomputed rows `fx`, leaving rows that came out the same
/// untouched, and the counts.
fn replace_changed(plan: &StreamPlan, t_match: &str) -> String {
    let table = &plan.table;
    let cols: Vec<String> = plan.visible.iter().map(|v| v.to_string()).collect();
    // rows are the same when they print the same (`1.0` and `1.00` are not)
    let row = |alias: &str| {
        row_image(
            &cols
                .iter()
                .map(|c| format!("{alias}.{c}"))
                .collect::<Vec<_>>(),
        )
    };
    format!(
        "del AS (DELETE FROM {table} t USING a WHERE {t_match}
                   AND NOT EXISTS (SELECT 1 FROM fx WHERE fx.rid = t.{ROW_ID} AND {fx_row} = {t_row})
                 RETURNING 1),\n\
         ins AS (INSERT INTO {table} ({list}, {ROW_ID}) SELECT {fx_cols}, fx.rid FROM fx
                   WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{ROW_ID} = fx.rid AND {t_row} = {fx_row})
                 RETURNING 1)\n{counts}",
        fx_row = row("fx"),
        t_row = row("t"),
        list = cols.join(", "),
        fx_cols = cols.iter().map(|c| format!("fx.{c}")).collect::<Vec<_>>().join(", "),
        counts = counts_select(&["del", "ins"]),
    )
}

#[derive(Debug, Clone)]
pub struct Recompute {
    /// For each key (body columns `0..n`): the visible column that holds it.
    pub key_columns: Vec<usize>,
    /// The SQL type of each key.
    pub key_types: Vec<String>,
}

impl Recompute {
    fn keys_of(&self, plan: &StreamPlan, alias: &str) -> Vec<String> {
        self.key_columns
            .iter()
            .map(|k| format!("{alias}.{}", plan.visible[*k]))
            .collect()
    }

    pub fn full_sql(&self, canonical: &str, visible: &[String]) -> String {
        let keys: Vec<String> = self
            .key_columns
            .iter()
            .map(|k| visible[*k].clone())
            .collect();
        format!(
            "SELECT {}, {} FROM ({canonical}) q",
            visible.join(", "),
            row_id(&keys)
        )
    }

    pub fn apply(&self, plan: &StreamPlan, delta: &Rendered) -> Apply {
        let n = self.key_columns.len();
        let visible: Vec<String> = plan.visible.iter().map(|v| v.to_string()).collect();
        let f_visible: Vec<String> = visible.iter().map(|v| format!("f.{v}")).collect();
        if n == 0 {
            // one group: any change recomputes it
            let sql = format!(
                "WITH a AS (SELECT {rid} AS rid),\n\
                 fx AS MATERIALIZED (SELECT {fcols}, a.rid FROM ({canonical}) f, a),\n{tail}",
                rid = row_id(&[]),
                canonical = plan.canonical_sql,
                fcols = f_visible.join(", "),
                tail = replace_changed(plan, &format!("t.{ROW_ID} = a.rid")),
            );
            let keys_sql = format!(
                "{}SELECT 1 FROM ({}) x LIMIT 1",
                delta.with_ctes(&[]),
                delta.body
            );
            return Apply::TwoPhase {
                keys_sql,
                apply_sql: sql,
                key_count: 0,
            };
        }
        let keys_sql = format!(
            "{}SELECT DISTINCT {} FROM ({}) x",
            delta.with_ctes(&[]),
            (0..n)
                .map(|i| format!("x.{}::text", column(i)))
                .collect::<Vec<_>>()
                .join(", "),
            delta.body
        );
        let restrict = among_given_keys(&self.keys_of(plan, "q"), &self.key_types);
        let t_match: Vec<String> = std::iter::once(format!("t.{ROW_ID} = a.rid"))
            .chain(
                self.keys_of(plan, "t")
                    .iter()
                    .enumerate()
                    .map(|(i, k)| format!("{k} IS NOT DISTINCT FROM a.k{i}")),
            )
            .collect();
        let f_match: Vec<String> = self
            .keys_of(plan, "f")
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} IS NOT DISTINCT FROM a.k{i}"))
            .collect();
        let apply_sql = format!(
            "WITH a AS ({given}),\n\
             fresh AS (SELECT q.* FROM ({canonical}) q WHERE {restrict}),\n\
             fx AS MATERIALIZED (SELECT {fcols}, a.rid FROM fresh f JOIN a ON {f_match}),\n{tail}",
            given = given_keys(&self.key_types),
            canonical = plan.canonical_sql,
            restrict = restrict.join(" AND "),
            tail = replace_changed(plan, &t_match.join(" AND ")),
            fcols = f_visible.join(", "),
            f_match = if f_match.is_empty() {
                "true".to_string()
            } else {
                f_match.join(" AND ")
            },
        );
        Apply::TwoPhase {
            keys_sql,
            apply_sql,
            key_count: n,
        }
    }
}
