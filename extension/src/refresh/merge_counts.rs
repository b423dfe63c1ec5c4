//! What a refresh's `MERGE` did, action by action. PostgreSQL counts the rows a `MERGE`
//! inserted, updated and deleted (in its `ModifyTableState`, as `EXPLAIN ANALYZE` shows them),
//! but SPI reports only their sum, and a `MERGE` cannot return rows before PostgreSQL 17. An
//! `ExecutorEnd` hook, installed when the library is loaded, reads the counts of the `MERGE`
//! into a stream table while `counting` watches for it; otherwise it only passes the call on.

use crate::error::PgtResult;
use pgrx::pg_sys;
use std::cell::Cell;

/// Rows a `MERGE` deleted, updated and inserted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MergeCounts {
    pub deleted: i64,
    pub updated: i64,
    pub inserted: i64,
}

thread_local! {
    /// While `counting` runs: the stream table watched, and the counts of its `MERGE`s so far.
    static WATCHED: Cell<Option<(pg_sys::Oid, MergeCounts)>> = const { Cell::new(None) };
}

static mut PREVIOUS_EXECUTOR_END: pg_sys::ExecutorEnd_hook_type = None;

/// Install the hook. Called once, from `_PG_init`.
pub fn install() {
    // SAFETY: `_PG_init` runs once per process before any query; the previous hook is kept
    // and called by ours.
    unsafe {
        PREVIOUS_EXECUTOR_END = pg_sys::ExecutorEnd_hook;
        pg_sys::ExecutorEnd_hook = Some(executor_end);
    }
}

/// Run `f`, and return with its result what the `MERGE`s into `table` it ran did.
pub fn counting<T>(
    table: pg_sys::Oid,
    f: impl FnOnce() -> PgtResult<T>,
) -> PgtResult<(T, MergeCounts)> {
    /// Stops watching however `f` ends (an error raised by PostgreSQL unwinds through here).
    struct Unwatch;
    impl Drop for Unwatch {
        fn drop(&mut self) {
            WATCHED.set(None);
        }
    }
    WATCHED.set(Some((table, MergeCounts::default())));
    let _unwatch = Unwatch;
    let value = f()?;
    let counts = WATCHED.get().map(|(_, counts)| counts).unwrap_or_default();
    Ok((value, counts))
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn executor_end(query_desc: *mut pg_sys::QueryDesc) {
    if let Some((table, counts)) = WATCHED.get() {
        // SAFETY: PostgreSQL passes the QueryDesc of a query that ran; its plan state is
        // valid until the standard ExecutorEnd below frees it.
        if let Some(done) = unsafe { merged(query_desc, table) } {
            WATCHED.set(Some((
                table,
                MergeCounts {
                    deleted: counts.deleted + done.deleted,
                    updated: counts.updated + done.updated,
                    inserted: counts.inserted + done.inserted,
                },
            )));
        }
    }
    // SAFETY: the chain of hooks as PostgreSQL expects it.
    unsafe {
        match PREVIOUS_EXECUTOR_END {
            Some(previous) => previous(query_desc),
            None => pg_sys::standard_ExecutorEnd(query_desc),
        }
    }
}

/// The counts of `query_desc` if it is a `MERGE` into `table`.
///
/// # Safety
/// `query_desc` is a QueryDesc whose executor state has not been freed.
unsafe fn merged(query_desc: *mut pg_sys::QueryDesc, table: pg_sys::Oid) -> Option<MergeCounts> {
    let desc = unsafe { query_desc.as_ref() }?;
    if desc.operation != pg_sys::CmdType::CMD_MERGE {
        return None;
    }
    let state = unsafe { desc.planstate.as_ref() }?;
    if state.type_ != pg_sys::NodeTag::T_ModifyTableState {
        return None;
    }
    let modify = unsafe { (desc.planstate as *const pg_sys::ModifyTableState).as_ref() }?;
    let result = unsafe { modify.resultRelInfo.as_ref() }?;
    let relation = unsafe { result.ri_RelationDesc.as_ref() }?;
    (relation.rd_id == table).then_some(MergeCounts {
        deleted: modify.mt_merge_deleted as i64,
        updated: modify.mt_merge_updated as i64,
        inserted: modify.mt_merge_inserted as i64,
    })
}
