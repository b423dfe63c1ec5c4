//! How a stream table is kept equal to its query: the maintenance strategy chosen for its
//! query's shape, the hidden columns that strategy stores, the FULL query that fills them, and
//! the statement that applies a delta. Each strategy lives in its own file.
//!
//! - `linear`: no grouping or DISTINCT; rows are stored with their multiplicity as copies.
//! - `distinct`: SELECT DISTINCT; each row keeps the number of input rows behind it.
//! - `algebraic`: GROUP BY (or a whole-table aggregate) whose aggregates are COUNT, SUM and AVG
//!   over exact numbers, and MIN and MAX (`extremes`); per-group state is updated from the
//!   delta alone, except the groups whose MIN or MAX was deleted, which are recomputed.
//! - `recompute`: everything else that groups by visible columns (string_agg, HAVING,
//!   DISTINCT ON ...): only the groups the delta touches are recomputed from the query.

mod algebraic;
mod distinct;
mod extremes;
mod given_keys;
mod group_apply;
mod linear;
mod recompute;
pub mod shape;
mod state_columns;

pub use algebraic::{AggKind, AggState, Algebraic};
pub use recompute::Recompute;

use crate::ir::Rel;
use crate::sql::render::{render, SourceSql};
use crate::sql::{Ident, QualifiedName};

/// The column every maintained stream table carries: a hash of the row's identity (its
/// content, or its group key), indexed, used to find rows; never trusted alone (collisions
/// are checked against the identity itself).
pub const ROW_ID: &str = "__pgt_row_id";
/// Number of input rows behind a stored row (DISTINCT and grouped results).
pub const COUNT: &str = "__pgt_count";
/// The operator class of the row id in the unique index of a grouped stream table (created
/// with the extension). Its equality operator, `ROW_ID_EQ`, is `bigint` equality that has no
/// hash or merge support, so the planner can use a condition with it only as an index
/// condition: the stored groups a change touches are always found by index lookups, never by
/// hashing or scanning the whole stream table.
pub const ROW_ID_OPS: &str = "pgtrickle.row_id_ops";
/// See `ROW_ID_OPS`.
pub const ROW_ID_EQ: &str = "OPERATOR(pgtrickle.==)";

#[derive(Debug, Clone)]
pub enum Strategy {
    Linear,
    Distinct,
    Algebraic(Algebraic),
    Recompute(Recompute),
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Linear => "linear",
            Strategy::Distinct => "distinct",
            Strategy::Algebraic(_) => "algebraic aggregate",
            Strategy::Recompute(_) => "recompute affected groups",
        }
    }
}

/// Everything needed to maintain one stream table differentially.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub table: QualifiedName,
    /// The visible columns, in table order.
    pub visible: Vec<Ident>,
    /// The sources, in `SourceId` order; their windows are set per refresh.
    pub sources: Vec<SourceSql>,
    /// The input of the strategy, over the sources' current contents. For `Linear` and
    /// `Distinct` its columns are the visible ones; for the grouped strategies see each.
    pub body: Rel,
    pub strategy: Strategy,
    /// The defining query, schema-qualified.
    pub canonical_sql: String,
    /// The query reads CURRENT_DATE: its delta holds only while the date stays the same.
    pub reads_current_date: bool,
    /// Set per refresh: most groups of the change get one or two change rows (a large change
    /// to a stream table of many more groups), so the sums of a delta start from their first
    /// value (`algebraic::PLAIN_SUM`).
    pub lean_sums: bool,
}

/// A statement to run, and whether it takes the recompute strategy's key arrays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apply {
    /// Run as is; returns one row (deleted, updated, inserted).
    Statement(String),
    /// First run `keys_sql` (one row per affected key, each key column as text), then
    /// `apply_sql` with, for each key column i, `$(i+1)` = text[] of the values and
    /// `$(n+i+1)` = whether a NULL is among them.
    TwoPhase {
        keys_sql: String,
        apply_sql: String,
        key_count: usize,
    },
    /// Run `upsert_sql`, which returns one row: groups updated, groups inserted, and the row
    /// ids whose count reached zero as a `bigint[]` in text form (NULL when none); then, when
    /// given and that list is not NULL, `delete_sql` with `$1` = that text. With
    /// `extremes_sql`, the row goes on: the number of groups whose MIN or MAX must be
    /// recomputed, then per key column (`key_count`) the `text[]` of their values in text form
    /// and whether a NULL is among them; when that number is not 0, `extremes_sql` runs with
    /// those as `$1..$n` (text) and `$(n+1)..$(2n)` (boolean).
    Upsert {
        upsert_sql: String,
        delete_sql: Option<String>,
        extremes_sql: Option<String>,
        key_count: usize,
    },
    /// One `MERGE` that returns nothing: what it deleted, updated and inserted is what
    /// PostgreSQL counted for each of its actions.
    Merge { sql: String },
}

/// `{alias}.__pgt_row_id` equals `rid`, as an index condition only (`ROW_ID_OPS`).
pub(crate) fn row_id_is(alias: &str, rid: &str) -> String {
    format!("{alias}.{ROW_ID} {ROW_ID_EQ} {rid}")
}

pub(crate) fn row_id(exprs: &[String]) -> String {
    format!(
        "pg_catalog.hash_record_extended(ROW({}), 0)",
        exprs.join(", ")
    )
}

/// The text form of a row of `exprs` (`ROW(..)::text`): equal only for rows that print the same,
/// so `1.0` and `1.00`, equal as numbers, differ.
pub(crate) fn row_image(exprs: &[String]) -> String {
    format!("ROW({})::text", exprs.join(", "))
}

/// `SELECT c1.., sum(weight) AS w FROM (delta) x GROUP BY c1.. HAVING sum(weight) <> 0`: one
/// row per distinct value of the first `n` columns, with its net weight. With `by_image`, rows
/// are also told apart by their text form (`row_image`), given as column `img`.
pub(crate) fn consolidated_delta(delta_body: &str, n: usize, by_image: bool) -> String {
    use crate::sql::render::{column, WEIGHT};
    let mut cols: Vec<String> = (0..n)
        .map(|i| format!("x.{} AS {}", column(i), column(i)))
        .collect();
    if by_image {
        let x_cols: Vec<String> = (0..n).map(|i| format!("x.{}", column(i))).collect();
        cols.push(format!("{} AS img", row_image(&x_cols)));
    }
    let group = if cols.is_empty() {
        String::new()
    } else {
        format!(
            " GROUP BY {}",
            (1..=cols.len())
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "SELECT {}sum(x.{WEIGHT})::bigint AS w FROM ({delta_body}) x{group} HAVING sum(x.{WEIGHT}) <> 0",
        cols.iter().map(|c| format!("{c}, ")).collect::<String>()
    )
}

pub(crate) fn counts_select(ctes: &[&str]) -> String {
    let parts: Vec<String> = ["del", "upd", "ins"]
        .iter()
        .map(|name| {
            if ctes.contains(name) {
                format!("(SELECT count(*) FROM {name})")
            } else {
                "0::bigint".to_string()
            }
        })
        .collect();
    format!("SELECT {}", parts.join(", "))
}

impl StreamPlan {
    /// Hidden columns `(name, type)` the strategy stores after the visible ones.
    pub fn hidden_columns(&self) -> Vec<(String, String)> {
        let mut cols = vec![(ROW_ID.to_string(), "bigint".to_string())];
        match &self.strategy {
            Strategy::Linear | Strategy::Recompute(_) => {}
            Strategy::Distinct => cols.push((COUNT.to_string(), "bigint".to_string())),
            Strategy::Algebraic(a) => cols.extend(a.hidden_columns()),
        }
        cols
    }

    /// Follow the counts the stream table stores (`present`: its hidden columns), see
    /// `Algebraic::follow_stored_counts`.
    pub fn follow_stored_counts(&mut self, present: &[String]) {
        if let Strategy::Algebraic(a) = &mut self.strategy {
            a.follow_stored_counts(present);
        }
    }

    /// The count columns this plan stores that the table (`present`: its hidden columns)
    /// lacks, because a source column its sums read was NOT NULL when it was made and is not
    /// any more: `(column, stored column whose values it starts from)`.
    pub fn missing_counts(&self, present: &[String]) -> Vec<(String, String)> {
        match &self.strategy {
            Strategy::Algebraic(a) => a.missing_counts(self, present),
            _ => Vec::new(),
        }
    }

    /// The index on the row id: `(unique, columns)`. Grouped results maintained in place are
    /// identified exactly by the row id and the group key, so that index is unique (with NULLs
    /// not distinct) and serves as the conflict target of their apply statement.
    pub fn row_index(&self) -> (bool, Vec<String>) {
        match &self.strategy {
            Strategy::Algebraic(a) => (true, a.identity_columns(self)),
            _ => (false, vec![ROW_ID.to_string()]),
        }
    }

    /// All stored columns, visible then hidden, quoted.
    pub fn stored_columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = self.visible.iter().map(|c| c.to_string()).collect();
        cols.extend(
            self.hidden_columns()
                .into_iter()
                .map(|(n, _)| crate::sql::quote_ident(&n)),
        );
        cols
    }

    /// The query that computes every stored column from scratch.
    pub fn full_sql(&self) -> String {
        let visible: Vec<String> = self.visible.iter().map(|c| format!("q.{c}")).collect();
        match &self.strategy {
            Strategy::Linear => linear::full_sql(&self.canonical_sql, &visible),
            Strategy::Recompute(r) => r.full_sql(&self.canonical_sql, &visible),
            Strategy::Distinct => {
                distinct::full_sql(&render(&self.body, &self.sources), self.visible.len())
            }
            Strategy::Algebraic(a) => a.full_sql(&render(&self.body, &self.sources)),
        }
    }

    /// The statement(s) applying the change of `delta_body` (the pruned delta of `body`).
    pub fn apply(&self, delta_body: &Rel) -> Apply {
        let delta = render(delta_body, &self.sources);
        match &self.strategy {
            Strategy::Linear => Apply::Statement(linear::apply_sql(self, &delta)),
            Strategy::Distinct => Apply::Statement(distinct::apply_sql(self, &delta)),
            Strategy::Algebraic(a) => a.apply(self, &delta),
            Strategy::Recompute(r) => r.apply(self, &delta),
        }
    }

    /// For a delta known to hold only insertions (every weight positive), a cheaper statement
    /// than `apply`, where the strategy has one: ungrouped results insert the rows without
    /// looking at stored ones.
    pub fn apply_insertions(&self, delta_body: &Rel) -> Option<Apply> {
        match &self.strategy {
            Strategy::Linear => Some(Apply::Statement(linear::insert_only_sql(
                self,
                &render(delta_body, &self.sources),
            ))),
            _ => None,
        }
    }
}
