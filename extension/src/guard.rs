//! The write guard: a statement-level trigger on every stream table that refuses INSERT,
//! UPDATE, DELETE and TRUNCATE unless pg_trickle itself is applying a refresh in this backend.
//! The permission is a backend-local flag set only by refresh code, not a GUC, so no setting a
//! user can change switches the guard off; the trigger is `ENABLE ALWAYS`, so
//! `session_replication_role` does not either, and DDL that disables or drops it is refused
//! (see `ddl`).

use crate::error::{raise, PgtResult};
use crate::pg::run;
use pg_trickle_core::sql::QualifiedName;
use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// Name of the guard trigger on each stream table.
pub const GUARD_TRIGGER: &str = "__pgt_guard";

static WRITES_ALLOWED: AtomicU32 = AtomicU32::new(0);

/// While alive, pg_trickle's own statements may write to stream tables in this backend.
/// Dropped on return and during error unwinding.
pub struct RefreshWritePermit(());

impl RefreshWritePermit {
    pub fn acquire() -> Self {
        WRITES_ALLOWED.fetch_add(1, Ordering::SeqCst);
        RefreshWritePermit(())
    }
}

impl Drop for RefreshWritePermit {
    fn drop(&mut self) {
        WRITES_ALLOWED.fetch_sub(1, Ordering::SeqCst);
    }
}

#[pg_trigger]
fn _pgt_guard_stream_table<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByRust>>, PgHeapTupleError> {
    if WRITES_ALLOWED.load(Ordering::SeqCst) > 0 {
        return Ok(None);
    }
    let verb = match trigger.op() {
        Ok(op) => op.to_string().to_uppercase(),
        Err(_) => "WRITE".to_string(),
    };
    let name = match (trigger.table_schema(), trigger.table_name()) {
        (Ok(schema), Ok(table)) => QualifiedName::new(schema, table).to_string(),
        _ => "stream table".to_string(),
    };
    raise(
        CoreError::new(
            ErrorKind::WrongObjectType,
            format!("cannot {verb} stream table {name}"),
        )
        .with_detail("A stream table's contents are maintained by pg_trickle and always equal its defining query.")
        .with_hint(format!(
            "Change the source tables instead; to recompute now, call pgtrickle.refresh_stream_table('{}').",
            name.replace('\'', "''")
        )),
    )
}

/// Put the guard trigger on a new stream table.
pub fn install(table: &str) -> PgtResult<()> {
    run(
        &format!(
            "CREATE TRIGGER {GUARD_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} \
             FOR EACH STATEMENT EXECUTE FUNCTION pgtrickle._pgt_guard_stream_table()"
        ),
        &[],
    )?;
    run(
        &format!("ALTER TABLE {table} ENABLE ALWAYS TRIGGER {GUARD_TRIGGER}"),
        &[],
    )
}

/// Whether the guard of `relid` is present and enabled for every replication role.
pub fn is_intact(relid: pg_sys::Oid) -> PgtResult<bool> {
    Ok(crate::pg::query_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                        WHERE tgrelid = $1 AND tgname = $2 AND tgenabled = 'A')",
        &[relid.into(), GUARD_TRIGGER.into()],
    )?
    .unwrap_or(false))
}
