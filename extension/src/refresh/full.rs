//! FULL refresh: recompute the defining query and replace the stream table's rows, in one
//! transaction. Rows are replaced with DELETE and INSERT rather than TRUNCATE, so readers keep
//! seeing the previous contents until the refresh commits and are never blocked by it.

use crate::catalog::StreamTable;
use crate::error::PgtResult;
use crate::guard::RefreshWritePermit;
use crate::pg::run;
use pg_trickle_core::sql::quote_ident;

pub fn refresh_full(st: &StreamTable) -> PgtResult<()> {
    let table = st.qualified_name();
    // EXCLUSIVE conflicts with itself and with writers, not with readers: two refreshes of the
    // same stream table never overlap.
    run(&format!("LOCK TABLE {table} IN EXCLUSIVE MODE"), &[])?;
    let columns: Vec<String> = st.column_names.iter().map(|c| quote_ident(c)).collect();
    let _permit = RefreshWritePermit::acquire();
    run(&format!("DELETE FROM {table}"), &[])?;
    run(
        &format!(
            "INSERT INTO {table} ({}) {}",
            columns.join(", "),
            st.defining_query
        ),
        &[],
    )
}
