//! `pgtrickle.drop_stream_table(name, cascade => false)`: remove a stream table, its storage and
//! its catalog rows.

use super::{check_owner, lock_stream_table, required};
use crate::catalog::store;
use crate::error::{OrRaise, PgtResult};
use crate::pg::run;
use pg_trickle_core::sql::quote_literal;
use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::prelude::*;

/// Drop the stream table. Stream tables that read it are dropped too with `cascade => true`;
/// otherwise their existence is an error.
#[pg_extern]
fn drop_stream_table(name: Option<&str>, cascade: default!(Option<bool>, "false")) {
    drop_impl(name, cascade.unwrap_or(false)).or_raise()
}

fn drop_impl(name: Option<&str>, cascade: bool) -> PgtResult<()> {
    let name = required(name, "name")?;
    // the refresh lock first, as refreshes take it, so that a drop waits for a refresh in
    // progress instead of deadlocking with it
    let st = lock_stream_table(name)?;
    check_owner(&st, "drop")?;
    let dependants: Vec<String> = store::dependants_of(&[st.relid])?
        .iter()
        .filter(|d| d.pgt_id != st.pgt_id)
        .map(|d| d.qualified_name())
        .collect();
    if !dependants.is_empty() && !cascade {
        return Err(CoreError::new(
            ErrorKind::DependentObjectsStillExist,
            format!(
                "cannot drop stream table {} because other stream tables read it",
                st.qualified_name()
            ),
        )
        .with_detail(format!("Read by: {}.", dependants.join(", ")))
        .with_hint(format!(
            "Drop those first, or call pgtrickle.drop_stream_table({}, cascade => true).",
            quote_literal(name)
        )));
    }
    let behaviour = if cascade { "CASCADE" } else { "RESTRICT" };
    run(
        &format!("DROP TABLE {} {behaviour}", st.qualified_name()),
        &[],
    )?;
    store::forget_dropped().map(|_| ())
}
