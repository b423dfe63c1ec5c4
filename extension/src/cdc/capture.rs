//! The capture trigger function of INSERT, DELETE and TRUNCATE, `pgtrickle._pgt_capture`. It
//! copies the rows of the statement's transition table straight into the source's change
//! buffer with batched heap inserts (as COPY does): no SQL statement is planned or executed per
//! write, which is most of what a PL/pgSQL capture costs a single-row INSERT. An UPDATE's net
//! change needs comparisons over the tracked columns and stays in the SQL of the generated
//! function (`triggers`). Without a transition table (TRUNCATE; UPDATE and DELETE of an
//! append-only source) it writes a reset marker.
//!
//! The buffer is written directly, so no privilege on it is checked: the users writing to a
//! source need none, as with the SECURITY DEFINER function this replaces for these events.

use crate::error::raise;
use crate::pg::{as_extension_owner, query_one, run};
use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::prelude::*;
use std::ffi::CStr;

/// Rows written per `heap_multi_insert` call.
const BATCH: usize = 1000;

/// Schema of the buffers and of the sequence ordering their rows.
const CHANGES_SCHEMA: &CStr = c"pgtrickle_changes";

#[pg_trigger]
fn _pgt_capture<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByRust>>, PgHeapTupleError> {
    let root = match trigger.extra_args().ok().as_deref() {
        Some([root]) => root.parse::<u32>().ok(),
        _ => None,
    }
    .map(pg_sys::Oid::from)
    .unwrap_or_else(|| {
        raise(CoreError::internal(
            "pgtrickle._pgt_capture() expects the source's OID as its only argument",
        ))
    });
    let data = trigger.trigger_data();
    // SAFETY: the trigger manager passes a valid TriggerData with an open relation.
    let relid = unsafe { (*data.tg_relation).rd_id };
    if relid != root && !descends_from(relid, root) {
        // a table detached from the source's partition tree keeps the trigger
        return Ok(None);
    }
    let op = data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    let (rows, weight) = match op {
        pg_sys::TRIGGER_EVENT_INSERT => (data.tg_newtable, 1),
        pg_sys::TRIGGER_EVENT_DELETE => (data.tg_oldtable, -1),
        _ => (std::ptr::null_mut(), 0),
    };
    if rows.is_null() {
        write_reset(root);
    } else {
        // SAFETY: `rows` is the statement's transition table, in the rowtype of tg_relation.
        unsafe { copy_rows(root, data.tg_relation, rows, weight) };
    }
    Ok(None)
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

fn missing(what: &str, root: pg_sys::Oid) -> ! {
    let table = query_one::<String>("SELECT $1::pg_catalog.regclass::text", &[root.into()])
        .ok()
        .flatten()
        .unwrap_or_else(|| root.to_u32().to_string());
    raise(
        CoreError::new(
            ErrorKind::ObjectNotInPrerequisiteState,
            format!("the change capture of table {table} has no {what}"),
        )
        .with_hint("Alter or recreate the stream tables that read this table."),
    )
}

/// Where each buffer column's value comes from.
#[derive(Clone, Copy)]
enum Source {
    Xid,
    Seq,
    Weight,
    /// Zero-based attribute of the source's rowtype.
    Column(usize),
    /// A buffer column without a source column of its name and type.
    Null,
}

/// The source of every buffer column: the source column of the same name and type. A buffer
/// keeps the columns of stream tables since dropped; a column no dependant reads any more may
/// have been dropped from the source or changed type since (DDL on a column a stream table
/// reads is refused), and is stored as NULL, as no refresh reads it.
fn column_sources(buffer: &pgrx::PgTupleDesc, source: &pgrx::PgTupleDesc) -> Vec<Source> {
    buffer
        .iter()
        .map(|attr| match attr.name() {
            _ if attr.is_dropped() => Source::Null,
            "__pgt_xid" => Source::Xid,
            "__pgt_seq" => Source::Seq,
            "__pgt_weight" => Source::Weight,
            wanted => source
                .iter()
                .position(|s| !s.is_dropped() && s.name() == wanted && s.atttypid == attr.atttypid)
                .map_or(Source::Null, Source::Column),
        })
        .collect()
}

unsafe extern "C-unwind" {
    /// `nextval` of sequence `relid` (commands/sequence.h), without the privilege check: the
    /// users writing to a source have none on pg_trickle's sequence. Called through
    /// `pg_guard_ffi_boundary`, which turns its errors into Rust unwinding.
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

/// Append every row of `rows` to the buffer of `root` with weight `weight`.
///
/// # Safety
/// `source` must be the trigger's open relation and `rows` a transition table in its rowtype.
unsafe fn copy_rows(
    root: pg_sys::Oid,
    source: pg_sys::Relation,
    rows: *mut pg_sys::Tuplestorestate,
    weight: i16,
) {
    // SAFETY: the caller's guarantees; every pointer below comes from PostgreSQL.
    unsafe {
        let count = pg_sys::tuplestore_tuple_count(rows);
        if count == 0 {
            return;
        }
        let namespace = pg_sys::get_namespace_oid(CHANGES_SCHEMA.as_ptr(), false);
        let buffer_name = std::ffi::CString::new(format!("changes_{}", root.to_u32()))
            .unwrap_or_else(|_| missing("valid buffer name", root));
        let buffer_oid = pg_sys::get_relname_relid(buffer_name.as_ptr(), namespace);
        let sequence = pg_sys::get_relname_relid(c"change_seq".as_ptr(), namespace);
        if buffer_oid == pg_sys::InvalidOid {
            missing("change buffer", root);
        }
        if sequence == pg_sys::InvalidOid {
            missing("sequence", root);
        }
        let buffer = pg_sys::table_open(buffer_oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        // (relhasindex stays set after the last index is dropped, until a VACUUM)
        if (*(*buffer).rd_rel).relhasindex && !pg_sys::RelationGetIndexList(buffer).is_null() {
            // rows are written without index maintenance
            raise(
                CoreError::new(
                    ErrorKind::ObjectNotInPrerequisiteState,
                    format!(
                        "change buffer pgtrickle_changes.{} has an index",
                        buffer_name.to_string_lossy()
                    ),
                )
                .with_hint("Drop the index: change buffers are read whole and never indexed."),
            );
        }
        let buffer_desc = (*buffer).rd_att;
        let sources = column_sources(
            &pgrx::PgTupleDesc::from_pg_unchecked(buffer_desc),
            &pgrx::PgTupleDesc::from_pg_unchecked((*source).rd_att),
        );
        let xid = pg_sys::Datum::from(pg_sys::GetTopFullTransactionId().value);
        let seq = pg_sys::Datum::from(pg_sys::ffi::pg_guard_ffi_boundary(|| {
            nextval_internal(sequence, false)
        }));

        // a reading position of our own: other triggers of the statement read the same store
        let reader = pg_sys::tuplestore_alloc_read_pointer(rows, pg_sys::EXEC_FLAG_REWIND as i32);
        pg_sys::tuplestore_select_read_pointer(rows, reader);
        pg_sys::tuplestore_rescan(rows);
        let input = pg_sys::MakeSingleTupleTableSlot((*source).rd_att, &pg_sys::TTSOpsMinimalTuple);
        let batch_size = (count as usize).min(BATCH);
        let outputs: Vec<*mut pg_sys::TupleTableSlot> = (0..batch_size)
            .map(|_| pg_sys::MakeSingleTupleTableSlot(buffer_desc, &pg_sys::TTSOpsHeapTuple))
            .collect();
        let bulk = if count as usize > 1 {
            pg_sys::GetBulkInsertState()
        } else {
            std::ptr::null_mut()
        };
        let command = pg_sys::GetCurrentCommandId(true);
        let width = sources.len();
        let mut values = vec![pg_sys::Datum::from(0usize); width];
        let mut nulls = vec![false; width];
        let mut filled = 0;
        loop {
            let more = pg_sys::tuplestore_gettupleslot(rows, true, false, input);
            if more {
                pg_sys::slot_getallattrs(input);
                for (i, source) in sources.iter().enumerate() {
                    (values[i], nulls[i]) = match *source {
                        Source::Xid => (xid, false),
                        Source::Seq => (seq, false),
                        Source::Weight => (pg_sys::Datum::from(weight), false),
                        Source::Column(c) => {
                            (*(*input).tts_values.add(c), *(*input).tts_isnull.add(c))
                        }
                        Source::Null => (pg_sys::Datum::from(0usize), true),
                    };
                }
                // the tuple is copied out of the input slot, which the next read overwrites; the
                // output slot frees it once inserted
                let tuple =
                    pg_sys::heap_form_tuple(buffer_desc, values.as_mut_ptr(), nulls.as_mut_ptr());
                pg_sys::ExecStoreHeapTuple(tuple, outputs[filled], true);
                filled += 1;
            }
            if filled == batch_size || (!more && filled > 0) {
                pg_sys::heap_multi_insert(
                    buffer,
                    outputs.as_ptr() as *mut _,
                    filled as i32,
                    command,
                    0,
                    bulk,
                );
                for slot in &outputs[..filled] {
                    pg_sys::ExecClearTuple(*slot);
                }
                filled = 0;
            }
            if !more {
                break;
            }
        }
        if !bulk.is_null() {
            pg_sys::FreeBulkInsertState(bulk);
        }
        for slot in outputs {
            pg_sys::ExecDropSingleTupleTableSlot(slot);
        }
        pg_sys::ExecDropSingleTupleTableSlot(input);
        pg_sys::table_close(buffer, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}
