//! The capture trigger function, `pgtrickle._pgt_capture(root_oid, tracked_column, ...)`,
//! written in Rust: the statement-level triggers of every event of a source (and of each of
//! its partitions) call it. It writes the statement's change into the source's buffer without
//! running SQL (`buffer_writer`), which is most of what a PL/pgSQL capture cost a single-row
//! INSERT:
//!
//! - INSERT: every new row with weight +1; DELETE: every old row with weight -1;
//! - UPDATE: PostgreSQL fills the old and new transition tables in step, one pair per updated
//!   row. A pair whose tracked columns have the same binary image writes nothing (so an UPDATE
//!   of columns no stream table reads costs little, while `1.0` -> `1.00`, `0` -> `-0` or a
//!   change of case under `citext` counts as a change); any other pair writes the old row
//!   with -1 and the new one with +1. Whatever the pairing, the rows written add up to the
//!   exact difference of the two tables: only identical rows are left out, in pairs.
//! - no transition table (TRUNCATE; UPDATE and DELETE of an append-only source): a reset
//!   marker, after which dependants recompute in full.
//!
//! The buffer is written directly, so no privilege on it is checked: the users writing to a
//! source need none, and the function needs no SECURITY DEFINER.

use super::buffer_writer::{tracked_attributes, BufferWriter, TransitionRows};
use crate::error::raise;
use crate::pg::{as_extension_owner, query_one, run};
use pg_trickle_core::CoreError;
use pgrx::prelude::*;

#[pg_trigger]
fn _pgt_capture<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByRust>>, PgHeapTupleError> {
    let args = trigger.extra_args().unwrap_or_default();
    let Some(root) = args
        .first()
        .and_then(|a| a.parse::<u32>().ok())
        .map(pg_sys::Oid::from)
    else {
        raise(CoreError::internal(
            "pgtrickle._pgt_capture() expects the source's OID and its tracked columns as arguments",
        ))
    };
    let data = trigger.trigger_data();
    // SAFETY: the trigger manager passes a valid TriggerData with an open relation.
    let (relid, desc) = unsafe { ((*data.tg_relation).rd_id, (*data.tg_relation).rd_att) };
    if relid != root && !descends_from(relid, root) {
        // a table detached from the source's partition tree keeps the trigger
        return Ok(None);
    }
    // SAFETY: a valid descriptor, not released while wrapped.
    let tracked = tracked_attributes(
        &unsafe { pgrx::PgTupleDesc::from_pg_unchecked(desc) },
        &args[1..],
    );
    let (old, new) = (data.tg_oldtable, data.tg_newtable);
    // SAFETY: the transition tables are the statement's, in the rowtype of tg_relation.
    unsafe {
        match data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK {
            pg_sys::TRIGGER_EVENT_INSERT if !new.is_null() => {
                copy_all(root, desc, &tracked, TransitionRows::open(new, desc), 1)
            }
            pg_sys::TRIGGER_EVENT_DELETE if !old.is_null() => {
                copy_all(root, desc, &tracked, TransitionRows::open(old, desc), -1)
            }
            pg_sys::TRIGGER_EVENT_UPDATE if !old.is_null() && !new.is_null() => copy_changed(
                root,
                desc,
                &tracked,
                TransitionRows::open(old, desc),
                TransitionRows::open(new, desc),
            ),
            _ => write_reset(root),
        }
    }
    Ok(None)
}

/// Write every row of `rows` with `weight`.
///
/// # Safety
/// Inside the trigger call; `desc` is the rowtype of `rows`.
unsafe fn copy_all(
    root: pg_sys::Oid,
    desc: pg_sys::TupleDesc,
    tracked: &[usize],
    mut rows: TransitionRows,
    weight: i16,
) {
    if rows.len() > 0 {
        // SAFETY: the caller's guarantees.
        let mut writer = unsafe { BufferWriter::open(root, desc, tracked, rows.len()) };
        while let Some(row) = rows.next() {
            // SAFETY: a row of `desc`.
            unsafe { writer.push(row, weight) };
        }
        writer.finish();
    }
    rows.close();
}

/// Write the pairs of old and new rows that differ in a tracked column (see the module's
/// comment); the buffer is opened only if one does.
///
/// # Safety
/// Inside the trigger call; `desc` is the rowtype of both tables.
unsafe fn copy_changed(
    root: pg_sys::Oid,
    desc: pg_sys::TupleDesc,
    tracked: &[usize],
    mut old: TransitionRows,
    mut new: TransitionRows,
) {
    // SAFETY: a valid descriptor, not released while wrapped.
    let compared = compared_attributes(
        &unsafe { pgrx::PgTupleDesc::from_pg_unchecked(desc) },
        tracked,
    );
    let expected = 2 * old.len().max(new.len());
    let mut writer: Option<BufferWriter> = None;
    let mut write = |row: *mut pg_sys::TupleTableSlot, weight: i16| {
        // SAFETY: the caller's guarantees; `row` is a row of `desc`.
        unsafe {
            writer
                .get_or_insert_with(|| BufferWriter::open(root, desc, tracked, expected))
                .push(row, weight)
        }
    };
    loop {
        match (old.next(), new.next()) {
            (Some(before), Some(after)) => {
                // SAFETY: two rows of `desc`.
                if !unsafe { same_image(before, after, &compared) } {
                    write(before, -1);
                    write(after, 1);
                }
            }
            (Some(before), None) => write(before, -1),
            (None, Some(after)) => write(after, 1),
            (None, None) => break,
        }
    }
    if let Some(writer) = writer {
        writer.finish();
    }
    old.close();
    new.close();
}

unsafe extern "C-unwind" {
    /// Whether two values of a type have the same binary image once detoasted
    /// (utils/datum.h).
    fn datum_image_eq(
        value1: pg_sys::Datum,
        value2: pg_sys::Datum,
        by_value: bool,
        length: i32,
    ) -> bool;
}

/// A tracked attribute as compared: zero-based number, passed by value, length.
struct Compared {
    attribute: usize,
    by_value: bool,
    length: i32,
}

fn compared_attributes(desc: &pgrx::PgTupleDesc, tracked: &[usize]) -> Vec<Compared> {
    tracked
        .iter()
        .filter_map(|&attribute| {
            desc.get(attribute).map(|a| Compared {
                attribute,
                by_value: a.attbyval,
                length: a.attlen.into(),
            })
        })
        .collect()
}

/// Whether rows `a` and `b` (all attributes read) have the same image in every compared
/// attribute.
///
/// # Safety
/// Both slots hold rows of the descriptor `compared` was made from.
unsafe fn same_image(
    a: *mut pg_sys::TupleTableSlot,
    b: *mut pg_sys::TupleTableSlot,
    compared: &[Compared],
) -> bool {
    compared.iter().all(|c| {
        let i = c.attribute;
        // SAFETY: i is an attribute of both rows, whose values are read.
        unsafe {
            let (a_null, b_null) = (*(*a).tts_isnull.add(i), *(*b).tts_isnull.add(i));
            if a_null || b_null {
                return a_null == b_null;
            }
            let (a_value, b_value) = (*(*a).tts_values.add(i), *(*b).tts_values.add(i));
            pg_sys::ffi::pg_guard_ffi_boundary(|| {
                datum_image_eq(a_value, b_value, c.by_value, c.length)
            })
        }
    })
}

/// Whether partition `relid` is (still) below `root`.
fn descends_from(relid: pg_sys::Oid, root: pg_sys::Oid) -> bool {
    query_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_partition_ancestors($1) a WHERE a.relid = $2)",
        &[relid.into(), root.into()],
    )
    .unwrap_or_else(|e| raise(e))
    .unwrap_or(false)
}

fn write_reset(root: pg_sys::Oid) {
    // the resets table is not writable by the users writing to sources
    as_extension_owner(|| {
        run(
            "INSERT INTO pgtrickle_changes.resets (source_relid) VALUES ($1)",
            &[root.into()],
        )
    })
    .unwrap_or_else(|e| raise(e));
}
