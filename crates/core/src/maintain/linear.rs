//! Linear results (no grouping, no DISTINCT): every output row of the query is stored, and
//! duplicates are stored as copies. The delta's net weight per distinct row says how many
//! copies to add or remove; copies are found by row id, then compared by their text form (so
//! an UPDATE from `1.0` to `1.00` replaces the copy, although the two are equal as numbers).
//! A delta known to hold only insertions (an append-only source) is inserted as it comes, with
//! no grouping and no look at the stored rows.

use super::{consolidated_delta, counts_select, row_id, row_image, StreamPlan, ROW_ID};
use crate::sql::render::{column, Rendered, WEIGHT};

pub fn full_sql(canonical: &str, visible: &[String]) -> String {
    format!(
        "SELECT {}, {} FROM ({canonical}) q",
        visible.join(", "),
        row_id(visible)
    )
}

pub fn apply_sql(plan: &StreamPlan, delta: &Rendered) -> String {
    let n = plan.visible.len();
    let table = &plan.table;
    let cols: Vec<String> = (0..n).map(column).collect();
    let s_cols: Vec<String> = cols.iter().map(|c| format!("s.{c}")).collect();
    let d = (
        "d".to_string(),
        format!(
            "SELECT {}, s.img, {} AS rid, s.w, row_number() OVER () AS ord FROM ({}) s",
            s_cols.join(", "),
            row_id(&s_cols),
            consolidated_delta(&delta.body, n, true)
        ),
    );
    let visible: Vec<String> = plan.visible.iter().map(|v| v.to_string()).collect();
    let t_cols: Vec<String> = visible.iter().map(|v| format!("t.{v}")).collect();
    let matches = [
        format!("t.{ROW_ID} = d.rid"),
        format!("{} = d.img", row_image(&t_cols)),
    ];
    let d_cols: Vec<String> = cols.iter().map(|c| format!("d.{c}")).collect();
    let mut sql = delta.with_ctes(&[d]);
    sql.push_str(&format!(
        ",\ndoomed AS (SELECT m.tid, m.rid FROM (SELECT t.ctid AS tid, d.rid, d.w, \
         row_number() OVER (PARTITION BY d.ord ORDER BY t.ctid) AS rn \
         FROM d JOIN {table} t ON {} WHERE d.w < 0) m WHERE m.rn <= -m.w),\n\
         del AS (DELETE FROM {table} t USING doomed \
                 WHERE t.{ROW_ID} = doomed.rid AND t.ctid = doomed.tid RETURNING 1),\n\
         ins AS (INSERT INTO {table} ({}, {ROW_ID}) SELECT {}, d.rid FROM d \
                 CROSS JOIN LATERAL pg_catalog.generate_series(1, d.w) WHERE d.w > 0 RETURNING 1)\n",
        matches.join(" AND "),
        visible.join(", "),
        d_cols.join(", "),
    ));
    sql.push_str(&counts_select(&["del", "ins"]));
    sql
}

/// The apply statement for a delta whose weights are all positive.
pub fn insert_only_sql(plan: &StreamPlan, delta: &Rendered) -> String {
    let table = &plan.table;
    let x_cols: Vec<String> = (0..plan.visible.len())
        .map(|i| format!("x.{}", column(i)))
        .collect();
    let visible: Vec<String> = plan.visible.iter().map(|v| v.to_string()).collect();
    let ins = (
        "ins".to_string(),
        format!(
            "INSERT INTO {table} ({}, {ROW_ID}) SELECT {}, {} FROM ({}) x \
             CROSS JOIN LATERAL pg_catalog.generate_series(1, x.{WEIGHT}) RETURNING 1",
            visible.join(", "),
            x_cols.join(", "),
            row_id(&x_cols),
            delta.body
        ),
    );
    let mut sql = delta.with_ctes(&[ins]);
    sql.push_str(&counts_select(&["ins"]));
    sql
}
