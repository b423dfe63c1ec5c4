//! MIN and MAX in the algebraic strategy. A group stores its extreme in `__pgt_a{j}_m`; a delta
//! that inserts values `P` and deletes values `Q` (least of each, for MIN) changes it to
//! `m' = least(m, min P)`, which is exact unless `min Q <= m'`: the deleted value may then be
//! the very copy that was the extreme. Only those groups are recomputed, from the sources'
//! current contents, restricted to their keys (a condition PostgreSQL pushes down to the scan,
//! so an index on the key is used). A group whose counted values are all gone has NULL.
//!
//! Only types without a collation are maintained this way (the stored column would carry the
//! default collation, not the source's); MIN and MAX of text recompute affected groups.

use super::algebraic::{m_col, Algebraic};
use super::given_keys::{among_given_keys, given_keys};
use super::{row_id_is, StreamPlan};
use crate::sql::render::{column, render};

impl Algebraic {
    /// For MIN or MAX aggregate `j`: the new extreme of stored group `t` changed by delta row
    /// `d` (before any recompute).
    pub(super) fn extreme(&self, plan: &StreamPlan, j: usize) -> Option<String> {
        let (_, choose) = self.aggs[j].kind.extreme()?;
        Some(format!(
            "CASE WHEN t.{n} + {dn} = 0 THEN NULL ELSE {choose}(t.{m}, d.p{j}) END",
            n = self.n_stored(plan, j),
            dn = self.n_of("d", j),
            m = m_col(j)
        ))
    }

    /// Whether delta row `d` deleted a value that reaches the new extreme `m(j)` of some MIN or
    /// MAX aggregate (NULL when it reaches none); `None` without such aggregates.
    pub(super) fn deleted_extreme(&self, m: &dyn Fn(usize) -> String) -> Option<String> {
        let conds: Vec<String> = self
            .aggs
            .iter()
            .enumerate()
            .filter_map(|(j, agg)| {
                let op = match agg.kind.extreme()? {
                    ("min", _) => "<=",
                    _ => ">=",
                };
                Some(format!("d.q{j} {op} {}", m(j)))
            })
            .collect();
        (!conds.is_empty()).then(|| format!("({})", conds.join(" OR ")))
    }

    /// Summary columns describing CTE `stale` (`k0.., 1`): how many groups, and per key the
    /// text[] of its values (as text) and whether a NULL is among them.
    pub(super) fn stale_summary(&self) -> String {
        let mut cols = vec![", (SELECT count(*) FROM stale)".to_string()];
        for i in 0..self.keys {
            cols.push(format!(
                ", (SELECT array_agg(s.k{i}::text) FROM stale s)::text, \
                 (SELECT bool_or(s.k{i} IS NULL) FROM stale s)"
            ));
        }
        cols.concat()
    }

    /// The statement recomputing every MIN and MAX of the groups whose keys are given as
    /// `$(i+1)` = text[] of key i's values and `$(n+i+1)` = whether a NULL is among them, and
    /// rewriting their visible columns.
    pub fn recompute_extremes(&self, plan: &StreamPlan) -> String {
        let body = render(&plan.body, &plan.sources);
        let n = self.keys;
        let mut items: Vec<String> = (0..n).map(|i| format!("x.{} AS k{i}", column(i))).collect();
        let mut set = Vec::new();
        for (j, agg) in self.aggs.iter().enumerate() {
            if let (Some((aggregate, _)), Some(a)) = (agg.kind.extreme(), agg.arg) {
                items.push(format!(
                    "pg_catalog.{aggregate}(CASE WHEN {} THEN x.{} END) AS m{j}",
                    Self::counted(agg),
                    column(a)
                ));
                set.push(format!("{} = r.m{j}", m_col(j)));
            }
        }
        let visible = self.visible_with(
            &|i| format!("r.k{i}"),
            &|j| format!("t.{}", self.n_stored(plan, j)),
            &|j| format!("t.{}", self.s_stored(plan, j)),
            &|j| format!("r.m{j}"),
        );
        set.extend(
            plan.visible
                .iter()
                .zip(visible)
                .map(|(col, v)| format!("{col} = {v}")),
        );
        let restrict = among_given_keys(
            &(0..n)
                .map(|i| format!("x.{}", column(i)))
                .collect::<Vec<_>>(),
            &self.key_types,
        );
        let mut ctes = Vec::new();
        let mut matched = Vec::new();
        if n > 0 {
            ctes.push(("a".to_string(), given_keys(&self.key_types)));
            matched.push(row_id_is("t", "a.rid"));
            for i in 0..n {
                matched.push(format!("a.k{i} IS NOT DISTINCT FROM r.k{i}"));
                matched.push(format!(
                    "t.{} IS NOT DISTINCT FROM r.k{i}",
                    self.key_column(plan, i)
                ));
            }
        }
        ctes.push((
            "r".to_string(),
            format!(
                "SELECT {} FROM ({}) x{}{}",
                items.join(", "),
                body.body,
                if restrict.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", restrict.join(" AND "))
                },
                self.group_by_keys()
            ),
        ));
        format!(
            "{}UPDATE {} AS t SET {} FROM r{} WHERE {} RETURNING 1",
            body.with_ctes(&ctes),
            plan.table,
            set.join(", "),
            if n > 0 { ", a" } else { "" },
            if matched.is_empty() {
                "true".to_string()
            } else {
                matched.join(" AND ")
            }
        )
    }
}
