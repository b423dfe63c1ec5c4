//! SELECT DISTINCT: each distinct row is stored once with `__pgt_count`, the number of input
//! rows equal to it. A delta adds its net weight to the count; a row appears when its count
//! becomes positive and disappears when it drops to zero.

use super::{consolidated_delta, counts_select, row_id, StreamPlan, COUNT, ROW_ID};
use crate::sql::render::{column, Rendered, WEIGHT};

pub fn full_sql(body: &Rendered, n: usize) -> String {
    let cols: Vec<String> = (0..n).map(|i| format!("b.{}", column(i))).collect();
    let group = if n == 0 {
        String::new()
    } else {
        format!(" GROUP BY {}", cols.join(", "))
    };
    format!(
        "{}SELECT {}{} AS {ROW_ID}, sum(b.{WEIGHT})::bigint AS {COUNT} FROM ({}) b{group}",
        body.with_ctes(&[]),
        cols.iter().map(|c| format!("{c}, ")).collect::<String>(),
        row_id(&cols),
        body.body
    )
}

pub fn apply_sql(plan: &StreamPlan, delta: &Rendered) -> String {
    let n = plan.visible.len();
    let table = &plan.table;
    let cols: Vec<String> = (0..n).map(column).collect();
    let d = (
        "d".to_string(),
        format!(
            "SELECT s.*, {} AS rid FROM ({}) s",
            row_id(&cols.iter().map(|c| format!("s.{c}")).collect::<Vec<_>>()),
            consolidated_delta(&delta.body, n, false)
        ),
    );
    let matches: Vec<String> = plan
        .visible
        .iter()
        .zip(&cols)
        .map(|(v, c)| format!("t.{v} IS NOT DISTINCT FROM d.{c}"))
        .collect();
    let join = std::iter::once(format!("t.{ROW_ID} = d.rid"))
        .chain(matches)
        .collect::<Vec<_>>()
        .join(" AND ");
    let visible: Vec<String> = plan.visible.iter().map(|v| v.to_string()).collect();
    let mut sql = delta.with_ctes(&[d]);
    sql.push_str(&format!(
        ",\ncur AS (SELECT d.*, t.ctid AS tid, t.{COUNT} AS old FROM d LEFT JOIN {table} t ON {join}),\n\
         upd AS (UPDATE {table} t SET {COUNT} = cur.old + cur.w FROM cur \
                 WHERE t.{ROW_ID} = cur.rid AND t.ctid = cur.tid AND cur.old + cur.w > 0 RETURNING 1),\n\
         del AS (DELETE FROM {table} t USING cur \
                 WHERE t.{ROW_ID} = cur.rid AND t.ctid = cur.tid AND cur.old + cur.w <= 0 RETURNING 1),\n\
         ins AS (INSERT INTO {table} ({}{ROW_ID}, {COUNT}) SELECT {}cur.rid, cur.w FROM cur \
                 WHERE cur.tid IS NULL AND cur.w > 0 RETURNING 1)\n",
        visible.iter().map(|v| format!("{v}, ")).collect::<String>(),
        cols.iter().map(|c| format!("cur.{c}, ")).collect::<String>(),
    ));
    sql.push_str(&counts_select(&["del", "upd", "ins"]));
    sql
}
