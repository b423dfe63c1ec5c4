//! The statements that apply an aggregated change to a grouped stream table of the algebraic
//! strategy (`algebraic.rs` says what each group stores and why).
//!
//! The change is aggregated into one row per changed group (`d`: keys, the delta of each
//! state, the row id), in row-id order. The stored groups are found by index lookups, in that
//! order, in every plan: the row id is compared with `ROW_ID_EQ`, which an index scan takes as
//! its condition but a hash or merge join cannot use. Planners chose to hash the whole stream
//! table otherwise: for a large change (costing each lookup as a random page read; hashing
//! 100,000 groups to update 13,000 took 99 to 142 ms where the lookups took 59 to 88), and in
//! the generic plan kept for small changes to a table of 1,000 groups (a one-row change read
//! all 1,000: 0.29 ms of a 0.8 ms refresh). (`= ANY (ARRAY[d.rid])` did the same, with an array
//! built and prepared for each lookup: 4 to 5 ms more for 11,000 groups.)
//!
//! Without MIN or MAX, one `MERGE` adds each changed group's delta to its state, deletes the
//! groups whose row count reaches zero (a whole-table aggregate keeps its row) and inserts the
//! groups it did not find: `d` is read once, as it is produced, and nothing is returned. With
//! MIN or MAX, the groups whose extreme may have been deleted must come back to be recomputed,
//! which a `MERGE` cannot return (before PostgreSQL 17): an `UPDATE ... FROM d` with
//! `RETURNING` and an `INSERT` of the groups it did not update run in one statement, and two
//! more delete the emptied groups and recompute the extremes. (An `INSERT ... ON CONFLICT DO
//! UPDATE` did the same with one more WAL record per group, for locking the row first.)

use super::algebraic::{m_col, n_col, s_col, Algebraic, Input};
use super::{row_id, row_id_is, Apply, StreamPlan, COUNT, ROW_ID, ROW_ID_EQ};
use crate::sql::render::Rendered;

impl Algebraic {
    pub fn apply(&self, plan: &StreamPlan, delta: &Rendered) -> Apply {
        if self.aggs.iter().any(|agg| agg.kind.extreme().is_some()) {
            self.upsert(plan, delta)
        } else {
            self.merge(plan, delta)
        }
    }

    /// `d`: one row per group the delta changes (its rows may cancel out), in row-id order, so
    /// that the stored groups are looked up in index order (13,000 lookups into 100,000
    /// groups: 24 to 30 ms, against 28 to 63 ms in hash order).
    fn changed_groups(&self, plan: &StreamPlan, delta: &Rendered) -> (String, String) {
        let mut changed = vec!["g.cnt <> 0".to_string()];
        for (j, agg) in self.aggs.iter().enumerate() {
            if !self.n_is_row_count(j) {
                changed.push(format!("g.n{j} <> 0"));
            }
            if agg.kind.has_sum() {
                changed.push(format!("COALESCE(g.s{j}, 0) <> 0"));
            }
            if agg.kind.extreme().is_some() {
                changed.push(format!("g.p{j} IS NOT NULL OR g.q{j} IS NOT NULL"));
            }
        }
        (
            "d".to_string(),
            format!(
                "SELECT g.*, {} AS rid FROM ({}) g WHERE {} ORDER BY rid",
                row_id(&self.key_refs("g")),
                self.state_sums(
                    &delta.body,
                    Input::Delta {
                        lean_sums: plan.lean_sums
                    }
                ),
                changed.join(" OR ")
            ),
        )
    }

    /// The assignments that add delta row `d` to stored group `t`. A column holding a key
    /// keeps its value: the group matched on it.
    fn assignments(&self, plan: &StreamPlan) -> Vec<String> {
        let mut set = Vec::new();
        if self.stores_count() {
            set.push(format!("{COUNT} = t.{COUNT} + d.cnt"));
        }
        for j in 0..self.aggs.len() {
            if self.stores_n(j) {
                set.push(format!("{n} = t.{n} + d.n{j}", n = n_col(j)));
            }
            if self.stores_s(j) {
                set.push(format!("{} = {}", s_col(j), self.summed(plan, j)));
            }
            if let Some(extreme) = self.extreme(plan, j) {
                set.push(format!("{} = {extreme}", m_col(j)));
            }
        }
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
                .enumerate()
                .filter(|(v, _)| !self.key_visible.contains(&Some(*v)))
                .map(|(_, (col, value))| format!("{col} = {value}")),
        );
        set
    }

    /// Stored group `stored` is the group of delta row `d`: same row id (by index only) and
    /// same keys.
    fn same_group(&self, plan: &StreamPlan, stored: &str) -> String {
        std::iter::once(row_id_is(stored, "d.rid"))
            .chain((0..self.keys).map(|i| {
                format!(
                    "{stored}.{} IS NOT DISTINCT FROM d.k{i}",
                    self.key_column(plan, i)
                )
            }))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The stored columns of the new group of delta row `d`, in `stored_columns` order.
    fn new_group_values(&self) -> Vec<String> {
        let mut values = self.visible_values("d");
        values.push("d.rid".to_string());
        values.extend(self.hidden_values("d"));
        values
    }

    /// One `MERGE` (see the module's doc). PostgreSQL counts what each of its actions did;
    /// the refresh reads those counts when the statement ends.
    fn merge(&self, plan: &StreamPlan, delta: &Rendered) -> Apply {
        let count = self.count_column(plan);
        let delete = if self.keys > 0 {
            format!("WHEN MATCHED AND t.{count} + d.cnt = 0 THEN DELETE\n")
        } else {
            String::new()
        };
        let mut sql = delta.with_ctes(&[self.changed_groups(plan, delta)]);
        sql.push_str(&format!(
            "MERGE INTO {table} AS t USING d ON {matched}\n\
             {delete}\
             WHEN MATCHED THEN UPDATE SET {set}\n\
             WHEN NOT MATCHED AND d.cnt > 0 THEN INSERT ({stored}) VALUES ({values})",
            table = plan.table,
            matched = self.same_group(plan, "t"),
            set = self.assignments(plan).join(", "),
            stored = plan.stored_columns().join(", "),
            values = self.new_group_values().join(", "),
        ));
        Apply::Merge { sql }
    }

    /// The `UPDATE`, `INSERT`, `DELETE` and recompute statements used with MIN or MAX (see
    /// the module's doc): the first returns how many groups were updated and inserted, the
    /// ids of those whose count reached zero, and the keys of the groups whose MIN or MAX may
    /// have been deleted.
    fn upsert(&self, plan: &StreamPlan, delta: &Rendered) -> Apply {
        let table = &plan.table;
        let count = self.count_column(plan);
        // RETURNING sees the new row: its extreme is least(old, inserted) unless emptied
        let stale = self.deleted_extreme(&|j| format!("t.{}", m_col(j)));
        let update = format!(
            "UPDATE {table} AS t SET {set} FROM d WHERE {matched}\n\
             RETURNING t.{ROW_ID}, t.{count} AS cnt{keys}{stale}",
            set = self.assignments(plan).join(", "),
            matched = self.same_group(plan, "t"),
            keys = (0..self.keys)
                .map(|i| format!(", t.{} AS k{i}", self.key_column(plan, i)))
                .collect::<String>(),
            stale = stale
                .as_ref()
                .map(|s| format!(", COALESCE({s}, false) AS stale"))
                .unwrap_or_default(),
        );
        // a group is new when the stream table has no row for it (the statement reads the
        // table as it was before `up`): an index lookup per group, whatever the planner
        // estimates, where an anti-join against `up` could become a nested loop over both.
        // `up` holds one row per changed group that exists (row id and keys are unique on
        // both sides), so when it has as many rows as there are changed groups, none is new
        // and the lookups are skipped (a condition on no row: evaluated once)
        let new_group = format!(
            "d.cnt > 0 AND (SELECT n FROM upc) < (SELECT count(*) FROM d) \
             AND NOT EXISTS (SELECT 1 FROM {table} AS s WHERE {})",
            self.same_group(plan, "s")
        );
        let insert = format!(
            "INSERT INTO {table} ({stored}) SELECT {values} FROM d WHERE {new_group} RETURNING 1",
            stored = plan.stored_columns().join(", "),
            values = self.new_group_values().join(", "),
        );
        // `up` read once: groups updated, and those emptied
        let updated = format!(
            "SELECT count(*) AS n, array_agg(up.{ROW_ID}) FILTER (WHERE up.cnt = 0) AS emptied FROM up"
        );
        let mut ctes = vec![
            self.changed_groups(plan, delta),
            ("up".to_string(), update),
            ("upc".to_string(), updated),
            ("ins".to_string(), insert),
        ];
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
        // one summary row instead of one row per group: the emptied groups' ids as text, and
        // the groups to recompute
        let mut upsert_sql = delta.with_ctes(&ctes);
        upsert_sql.push_str(&format!(
            "SELECT (SELECT n FROM upc), (SELECT count(*) FROM ins), (SELECT emptied FROM upc)::text{}",
            self.stale_summary()
        ));
        let delete_sql = (self.keys > 0).then(|| {
            format!("DELETE FROM {table} t WHERE t.{ROW_ID} {ROW_ID_EQ} ANY($1::bigint[]) AND t.{count} = 0 RETURNING 1")
        });
        Apply::Upsert {
            upsert_sql,
            delete_sql,
            extremes_sql: Some(self.recompute_extremes(plan)),
            key_count: self.keys,
        }
    }

    /// The new sum of aggregate `j` of stored group `t` changed by delta row `d`: NULL when
    /// nothing is counted.
    pub(super) fn summed(&self, plan: &StreamPlan, j: usize) -> String {
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
    use super::super::algebraic::tests::{apply_of, grouped};
    use super::super::algebraic::AggKind;
    use super::Apply;

    const LOOKUP: &str = "__pgt_row_id OPERATOR(pgtrickle.==) d.rid";

    #[test]
    fn sums_and_counts_are_applied_by_one_merge_that_looks_groups_up_by_index() {
        let Apply::Merge { sql } = apply_of(AggKind::Sum) else {
            panic!("not a MERGE");
        };
        assert_eq!(sql.matches(LOOKUP).count(), 1, "{sql}");
        assert!(!sql.contains("= d.rid AND"), "{sql}");
        // emptied groups go; the key column is not assigned
        assert!(
            sql.contains("WHEN MATCHED AND t.__pgt_count + d.cnt = 0 THEN DELETE"),
            "{sql}"
        );
        assert!(!sql.contains(" k = "), "{sql}");
        assert!(!sql.contains("RETURNING"), "{sql}");
        let (plan, _) = grouped(AggKind::Sum);
        assert_eq!(
            plan.row_index(),
            (
                true,
                vec!["__pgt_row_id pgtrickle.row_id_ops".to_string(), "k".into()]
            )
        );
    }

    #[test]
    fn min_and_max_are_applied_by_an_update_that_returns_the_groups_to_recompute() {
        let Apply::Upsert {
            upsert_sql,
            delete_sql,
            extremes_sql,
            key_count,
        } = apply_of(AggKind::Max)
        else {
            panic!("not an upsert");
        };
        // the update, and the lookups of new groups (to insert them, and to recompute the
        // extreme of those whose inserted extreme the change also deleted)
        assert_eq!(upsert_sql.matches(LOOKUP).count(), 3, "{upsert_sql}");
        assert!(upsert_sql.contains("RETURNING"), "{upsert_sql}");
        assert!(delete_sql.is_some_and(|sql| sql.contains("OPERATOR(pgtrickle.==) ANY")));
        assert!(extremes_sql.is_some());
        assert_eq!(key_count, 1);
    }

    #[test]
    fn only_large_changes_to_many_groups_sum_from_the_first_value() {
        let (mut plan, algebraic) = grouped(AggKind::Sum);
        let delta = crate::sql::render::render(
            &crate::ir::Rel::Delta {
                source: 0,
                arity: 2,
            },
            &plan.sources,
        );
        let sql = |apply: Apply| match apply {
            Apply::Merge { sql } => sql,
            other => panic!("not a MERGE: {other:?}"),
        };
        let plain = sql(algebraic.apply(&plan, &delta));
        assert!(plain.contains(" sum(CASE"), "{plain}");
        assert!(!plain.contains("pgtrickle.plain_sum"), "{plain}");
        plan.lean_sums = true;
        let lean = sql(algebraic.apply(&plan, &delta));
        assert!(lean.contains("pgtrickle.plain_sum(CASE"), "{lean}");
    }
}
