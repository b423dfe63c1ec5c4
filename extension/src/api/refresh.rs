//! `pgtrickle.refresh_stream_table(name)`: bring one stream table up to date now.

use super::{check_owner, lock_stream_table, required};
use crate::error::OrRaise;
use pgrx::prelude::*;

/// Refresh the stream table now, in the caller's transaction. Readers see the previous contents
/// until the transaction commits.
#[pg_extern]
fn refresh_stream_table(name: Option<&str>) {
    (|| {
        let name = required(name, "name")?;
        let st = lock_stream_table(name)?;
        check_owner(&st, "refresh")?;
        let outcome = crate::refresh::refresh_locked(&st)?;
        pgrx::debug1!(
            "pg_trickle: refreshed {} ({}{}): {} deleted, {} updated, {} inserted",
            st.qualified_name(),
            outcome.mode,
            outcome.reason.map(|r| format!(", {r}")).unwrap_or_default(),
            outcome.deleted,
            outcome.updated,
            outcome.inserted
        );
        Ok(())
    })()
    .or_raise()
}
