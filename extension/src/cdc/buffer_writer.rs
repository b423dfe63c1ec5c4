//! Writing change rows into a buffer from the capture trigger (`capture`), without SQL: the
//! buffer is opened directly and rows are appended with batched heap inserts, as COPY does.
//! Also the reading of a statement's transition tables. Everything here runs inside the
//! trigger call and works on pointers PostgreSQL hands it.

use crate::error::raise;
use crate::pg::query_one;
use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

/// Rows written per `heap_multi_insert` call.
const BATCH: usize = 1000;

/// Schema of the buffers and of the sequence ordering their rows.
const CHANGES_SCHEMA: &CStr = c"pgtrickle_changes";

unsafe extern "C-unwind" {
    /// `nextval` of sequence `relid` (commands/sequence.h), without the privilege check: the
    /// users writing to a source have none on pg_trickle's sequence. Called through
    /// `pg_guard_ffi_boundary`, which turns its errors into Rust unwinding.
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

/// The error for a capture whose buffer or sequence is gone.
pub fn missing(what: &str, root: pg_sys::Oid) -> ! {
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

/// The zero-based attributes of `source` named in `tracked`, in `tracked`'s order (a name the
/// source lacks is skipped: DDL on a column a stream table reads is refused).
pub fn tracked_attributes(source: &pgrx::PgTupleDesc, tracked: &[String]) -> Vec<usize> {
    tracked
        .iter()
        .filter_map(|name| {
            source
                .iter()
                .position(|a| !a.is_dropped() && a.name() == name)
        })
        .collect()
}

/// Where each buffer column's value comes from.
#[derive(Clone, Copy)]
enum Source {
    Xid,
    Seq,
    Weight,
    /// Zero-based attribute of the source's rowtype.
    Column(usize),
    /// A column no dependant reads any more (buffers keep the columns of stream tables since
    /// dropped, and the source may have dropped or retyped it since): stored as NULL.
    Null,
}

/// The source of every buffer column: the tracked source column of the same name and type.
fn column_sources(
    buffer: &pgrx::PgTupleDesc,
    source: &pgrx::PgTupleDesc,
    tracked: &[usize],
) -> Vec<Source> {
    buffer
        .iter()
        .map(|attr| match attr.name() {
            _ if attr.is_dropped() => Source::Null,
            "__pgt_xid" => Source::Xid,
            "__pgt_seq" => Source::Seq,
            "__pgt_weight" => Source::Weight,
            wanted => tracked
                .iter()
                .copied()
                .find(|&i| {
                    source
                        .get(i)
                        .is_some_and(|s| s.name() == wanted && s.atttypid == attr.atttypid)
                })
                .map_or(Source::Null, Source::Column),
        })
        .collect()
}

/// An open change buffer being appended to; `finish` writes what is pending and closes it.
pub struct BufferWriter {
    buffer: pg_sys::Relation,
    sources: Vec<Source>,
    xid: pg_sys::Datum,
    seq: pg_sys::Datum,
    outputs: Vec<*mut pg_sys::TupleTableSlot>,
    filled: usize,
    bulk: *mut pg_sys::BulkInsertStateData,
    command: pg_sys::CommandId,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
}

impl BufferWriter {
    /// Open the buffer of source `root` for about `rows` rows of the rowtype `source` (the
    /// trigger's relation, which may be a partition), copying the `tracked` attributes.
    ///
    /// # Safety
    /// Inside a trigger call; `source` must be a valid descriptor.
    pub unsafe fn open(
        root: pg_sys::Oid,
        source: pg_sys::TupleDesc,
        tracked: &[usize],
        rows: usize,
    ) -> Self {
        // SAFETY: catalog lookups and a relation opened under a lock held to commit.
        unsafe {
            let namespace = pg_sys::get_namespace_oid(CHANGES_SCHEMA.as_ptr(), false);
            let name = CString::new(format!("changes_{}", root.to_u32()))
                .unwrap_or_else(|_| missing("valid buffer name", root));
            let buffer_oid = pg_sys::get_relname_relid(name.as_ptr(), namespace);
            let sequence = pg_sys::get_relname_relid(c"change_seq".as_ptr(), namespace);
            if buffer_oid == pg_sys::InvalidOid {
                missing("change buffer", root);
            }
            if sequence == pg_sys::InvalidOid {
                missing("sequence", root);
            }
            let buffer =
                pg_sys::table_open(buffer_oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            // (relhasindex stays set after the last index is dropped, until a VACUUM)
            if (*(*buffer).rd_rel).relhasindex && !pg_sys::RelationGetIndexList(buffer).is_null() {
                // rows are written without index maintenance
                raise(
                    CoreError::new(
                        ErrorKind::ObjectNotInPrerequisiteState,
                        format!(
                            "change buffer pgtrickle_changes.{} has an index",
                            name.to_string_lossy()
                        ),
                    )
                    .with_hint("Drop the index: change buffers are read whole and never indexed."),
                );
            }
            let desc = (*buffer).rd_att;
            let sources = column_sources(
                &pgrx::PgTupleDesc::from_pg_unchecked(desc),
                &pgrx::PgTupleDesc::from_pg_unchecked(source),
                tracked,
            );
            let width = sources.len();
            BufferWriter {
                buffer,
                sources,
                // every row of one statement has the same transaction id and sequence number
                xid: pg_sys::Datum::from(pg_sys::GetTopFullTransactionId().value),
                seq: pg_sys::Datum::from(pg_sys::ffi::pg_guard_ffi_boundary(|| {
                    nextval_internal(sequence, false)
                })),
                outputs: (0..rows.clamp(1, BATCH))
                    .map(|_| pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsHeapTuple))
                    .collect(),
                filled: 0,
                bulk: if rows > 1 {
                    pg_sys::GetBulkInsertState()
                } else {
                    std::ptr::null_mut()
                },
                command: pg_sys::GetCurrentCommandId(true),
                values: vec![pg_sys::Datum::from(0usize); width],
                nulls: vec![false; width],
            }
        }
    }

    /// Append the row in `input` (all its attributes read) with weight `weight`.
    ///
    /// # Safety
    /// `input` must hold a row of the source rowtype given to `open`.
    pub unsafe fn push(&mut self, input: *mut pg_sys::TupleTableSlot, weight: i16) {
        // SAFETY: the caller's guarantees.
        unsafe {
            for (i, source) in self.sources.iter().enumerate() {
                (self.values[i], self.nulls[i]) = match *source {
                    Source::Xid => (self.xid, false),
                    Source::Seq => (self.seq, false),
                    Source::Weight => (pg_sys::Datum::from(weight), false),
                    Source::Column(c) => (*(*input).tts_values.add(c), *(*input).tts_isnull.add(c)),
                    Source::Null => (pg_sys::Datum::from(0usize), true),
                };
            }
            // copied out of the input slot, which the next read overwrites; the output slot
            // frees it once inserted
            let tuple = pg_sys::heap_form_tuple(
                (*self.buffer).rd_att,
                self.values.as_mut_ptr(),
                self.nulls.as_mut_ptr(),
            );
            pg_sys::ExecStoreHeapTuple(tuple, self.outputs[self.filled], true);
            self.filled += 1;
            if self.filled == self.outputs.len() {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if self.filled == 0 {
            return;
        }
        // SAFETY: the slots hold tuples of the buffer's rowtype; the buffer is open.
        unsafe {
            pg_sys::heap_multi_insert(
                self.buffer,
                self.outputs.as_mut_ptr(),
                self.filled as i32,
                self.command,
                0,
                self.bulk,
            );
            for slot in &self.outputs[..self.filled] {
                pg_sys::ExecClearTuple(*slot);
            }
        }
        self.filled = 0;
    }

    /// Write what is pending and close the buffer (its lock is kept to commit).
    pub fn finish(mut self) {
        self.flush();
        // SAFETY: releases what `open` acquired, once.
        unsafe {
            if !self.bulk.is_null() {
                pg_sys::FreeBulkInsertState(self.bulk);
            }
            for slot in &self.outputs {
                pg_sys::ExecDropSingleTupleTableSlot(*slot);
            }
            pg_sys::table_close(self.buffer, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
    }
}

/// A reading of one transition table, with a read position of its own (other triggers of the
/// statement read the same store).
pub struct TransitionRows {
    store: *mut pg_sys::Tuplestorestate,
    slot: *mut pg_sys::TupleTableSlot,
}

impl TransitionRows {
    /// # Safety
    /// `store` must be a transition table of the statement, with rows of rowtype `desc`.
    pub unsafe fn open(store: *mut pg_sys::Tuplestorestate, desc: pg_sys::TupleDesc) -> Self {
        // SAFETY: the caller's guarantees.
        unsafe {
            let reader =
                pg_sys::tuplestore_alloc_read_pointer(store, pg_sys::EXEC_FLAG_REWIND as i32);
            pg_sys::tuplestore_select_read_pointer(store, reader);
            pg_sys::tuplestore_rescan(store);
            TransitionRows {
                store,
                slot: pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple),
            }
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        // SAFETY: a valid store.
        unsafe { pg_sys::tuplestore_tuple_count(self.store) as usize }
    }

    /// The next row, with all its attributes read; valid until the next call.
    pub fn next(&mut self) -> Option<*mut pg_sys::TupleTableSlot> {
        // SAFETY: a valid store and slot; only this reading moves the selected read pointer
        // during the trigger call.
        unsafe {
            if pg_sys::tuplestore_gettupleslot(self.store, true, false, self.slot) {
                pg_sys::slot_getallattrs(self.slot);
                Some(self.slot)
            } else {
                None
            }
        }
    }

    pub fn close(self) {
        // SAFETY: made by `open`, dropped once.
        unsafe { pg_sys::ExecDropSingleTupleTableSlot(self.slot) };
    }
}
