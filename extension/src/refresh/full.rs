//! FULL refresh: recompute the query and replace every row, in one statement under the pinned
//! snapshot (DELETE and INSERT as data-modifying CTEs), so readers keep seeing the previous
//! contents until commit and the recorded frontier matches what was read. Stream tables with a
//! maintenance plan get their hidden columns from the plan's FULL query.

use super::snapshot::{first_i64, PinnedSnapshot};
use super::{frontier, Outcome};
use crate::catalog::StreamTable;
use crate::error::PgtResult;
use crate::guard::RefreshWritePermit;
use pg_trickle_core::maintain::StreamPlan;
use pg_trickle_core::sql::quote_ident;
use std::time::Instant;

pub fn refresh(
    st: &StreamTable,
    plan: Option<&StreamPlan>,
    reason: Option<String>,
    started: Instant,
) -> PgtResult<Outcome> {
    let table = st.qualified_name();
    let (columns, query) = match plan {
        Some(plan) => (plan.stored_columns(), plan.full_sql()),
        None => (
            st.column_names.iter().map(|c| quote_ident(c)).collect(),
            st.defining_query.clone(),
        ),
    };
    let snapshot = PinnedSnapshot::take();
    let rows = {
        let _permit = RefreshWritePermit::acquire();
        snapshot.query(
            &format!(
                "WITH del AS (DELETE FROM {table} RETURNING 1),\n\
                 ins AS (INSERT INTO {table} ({}) {query}\nRETURNING 1)\n\
                 SELECT (SELECT count(*) FROM del), (SELECT count(*) FROM ins)",
                columns.join(", ")
            ),
            &[],
        )?
    };
    if plan.is_some() {
        // fresh statistics, so that the apply statements of later differential refreshes find
        // rows by index (a stream table refreshed only in full has no use for them)
        crate::pg::run(&format!("ANALYZE {table}"), &[])?;
    }
    let outcome = Outcome {
        mode: "FULL",
        reason,
        deleted: first_i64(&rows, 0),
        updated: 0,
        inserted: first_i64(&rows, 1),
    };
    frontier::record(
        &snapshot,
        st,
        &outcome,
        started,
        plan.is_some_and(|p| p.reads_current_date),
        &st.captured_sources,
    )?;
    Ok(outcome)
}
