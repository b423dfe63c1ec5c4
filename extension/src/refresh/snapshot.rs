//! Running every statement of one refresh under one snapshot (`SPI_execute_snapshot`), so that
//! the change window, the sources' contents read by join terms and the recorded frontier all
//! describe the same moment, also under READ COMMITTED where each statement would otherwise
//! take a newer snapshot.

use crate::error::PgtResult;
use pg_trickle_core::CoreError;
use pgrx::datum::IntoDatum;
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

thread_local! {
    /// Plans of refresh statements, kept per backend by their text (which carries no values
    /// that change between refreshes: frontiers and keys are parameters): generic plans
    /// first, then statements replanned at each run. PostgreSQL's plan cache revalidates them
    /// after DDL.
    static KEPT: std::cell::RefCell<[std::collections::HashMap<String, pg_sys::SPIPlanPtr>; 2]> =
        std::cell::RefCell::new(Default::default());
}

/// At most this many refresh statements of each kind keep their plans in one backend.
const MAX_KEPT_PLANS: usize = 512;

/// A registered snapshot; unregistered when dropped.
pub struct PinnedSnapshot {
    snapshot: pg_sys::Snapshot,
    /// Whether, when the snapshot was taken, the transaction was no transaction block (no
    /// BEGIN): it ends when the statement that refreshes does.
    standalone: bool,
}

/// A statement parameter: its type and value (a by-reference value is shared by copies).
#[derive(Clone, Copy)]
pub struct Param {
    pub type_oid: pg_sys::Oid,
    pub value: Option<pg_sys::Datum>,
}

impl Param {
    pub fn new<T: IntoDatum>(value: T) -> Param {
        Param {
            type_oid: T::type_oid(),
            value: value.into_datum(),
        }
    }

    /// A value of type `type_oid` from its text form (`None`: NULL), converted once by the
    /// type's input function, so that a statement uses it as it is: no cast in the statement,
    /// which a generic plan would evaluate per row or need a sub-select for.
    pub fn from_text(type_oid: pg_sys::Oid, text: Option<&str>) -> PgtResult<Param> {
        let Some(text) = text else {
            return Ok(Param {
                type_oid,
                value: None,
            });
        };
        let text = CString::new(text)
            .map_err(|_| CoreError::internal("a parameter's text contains a NUL"))?;
        let (mut input, mut io_param) = (pg_sys::Oid::INVALID, pg_sys::Oid::INVALID);
        // SAFETY: a valid type oid and a NUL-terminated string; the input function raises an
        // error (turned into a Rust panic by pgrx) for text that is no value of the type
        let value = unsafe {
            pg_sys::getTypeInputInfo(type_oid, &mut input, &mut io_param);
            pg_sys::OidInputFunctionCall(input, text.as_ptr() as *mut _, io_param, -1)
        };
        Ok(Param {
            type_oid,
            value: Some(value),
        })
    }
}

pub type Rows = Vec<Vec<Option<String>>>;

/// Column `i` of the first row as a number (0 when absent or not a number).
pub fn first_i64(rows: &Rows, i: usize) -> i64 {
    rows.first()
        .and_then(|r| r.get(i).cloned().flatten())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

thread_local! {
    /// While refreshing an atomic group: the snapshot every refresh of the group runs under.
    static SHARED: std::cell::Cell<Option<pg_sys::Snapshot>> = const { std::cell::Cell::new(None) };
}

/// Run `f` (refreshes of an atomic group, in one transaction) so that every refresh in it
/// reads the sources as of the same moment: they all take one snapshot, which also sees what
/// the group's earlier refreshes wrote in this transaction.
pub fn with_shared_snapshot<R>(f: impl FnOnce() -> R) -> R {
    struct Shared(pg_sys::Snapshot);
    impl Drop for Shared {
        fn drop(&mut self) {
            SHARED.with(|s| s.set(None));
            if !std::thread::panicking() {
                // SAFETY: registered below, unregistered once; on an error the transaction's
                // abort releases it instead.
                unsafe { pg_sys::UnregisterSnapshot(self.0) }
            }
        }
    }
    // SAFETY: inside a transaction; RegisterSnapshot copies the snapshot and keeps it alive.
    let shared = Shared(unsafe { pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot()) });
    SHARED.with(|s| s.set(Some(shared.0)));
    f()
}

impl PinnedSnapshot {
    /// The transaction's current snapshot (a new one under READ COMMITTED), or the shared
    /// snapshot of the atomic group being refreshed, brought up to this transaction's latest
    /// command so that it sees the group's earlier writes.
    pub fn take() -> PinnedSnapshot {
        let snapshot = match SHARED.with(|s| s.get()) {
            // SAFETY: the shared snapshot is a registered copy owned by `with_shared_snapshot`;
            // moving its command id forward is what PostgreSQL does to its active snapshot.
            Some(shared) => unsafe {
                (*shared).curcid = pg_sys::GetCurrentCommandId(false);
                pg_sys::RegisterSnapshot(shared)
            },
            // SAFETY: GetTransactionSnapshot returns a valid snapshot inside a transaction;
            // RegisterSnapshot copies it and keeps it alive until UnregisterSnapshot.
            None => unsafe { pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot()) },
        };
        // SAFETY: reads backend-local transaction state.
        let standalone = unsafe { !pg_sys::IsTransactionBlock() };
        PinnedSnapshot {
            snapshot,
            standalone,
        }
    }

    /// Whether the transaction was no transaction block when this snapshot was taken (false
    /// also when it was taken inside a subtransaction).
    pub fn standalone(&self) -> bool {
        self.standalone
    }

    /// Run `sql` under this snapshot (seeing this transaction's earlier writes, and firing
    /// triggers), returning every row with each column as text. The plan is generic, made at
    /// the first run in this backend and kept.
    pub fn query(&self, sql: &str, params: &[Param]) -> PgtResult<Rows> {
        self.run(sql, params, false)
    }

    /// `query`, planned at every run for the tables as they are now (the statement is parsed
    /// once and kept): for a large change, whose best joins are not those of a small one.
    pub fn query_replanned(&self, sql: &str, params: &[Param]) -> PgtResult<Rows> {
        self.run(sql, params, true)
    }

    fn run(&self, sql: &str, params: &[Param], replanned: bool) -> PgtResult<Rows> {
        let c_sql =
            CString::new(sql).map_err(|_| CoreError::internal("generated SQL contains a NUL"))?;
        pgrx::debug2!("pg_trickle refresh statement: {sql}");
        let mut types: Vec<pg_sys::Oid> = params.iter().map(|p| p.type_oid).collect();
        let mut values: Vec<pg_sys::Datum> = params
            .iter()
            .map(|p| p.value.unwrap_or(pg_sys::Datum::from(0)))
            .collect();
        let nulls: Vec<std::ffi::c_char> = params
            .iter()
            .map(|p| {
                if p.value.is_some() {
                    b' ' as _
                } else {
                    b'n' as _
                }
            })
            .collect();
        Spi::connect_mut(|_client| {
            // SAFETY: SPI is connected for the closure; the plan, argument arrays and snapshot
            // outlive the calls; result tuples are read before the connection closes.
            unsafe {
                // kept plans, taken out while in use (see `pg::with_cached_plan`)
                let kind = usize::from(replanned);
                let plan = match KEPT.with(|k| k.borrow_mut()[kind].remove(sql)) {
                    Some(plan) => plan,
                    None => {
                        // a generic plan, made once: the parameters (frontier, keys) do not
                        // change which plan is good, and a custom plan per refresh cost more
                        // than the rest of a small refresh together; or, asked for, a custom
                        // plan each time
                        let option = if replanned {
                            pg_sys::CURSOR_OPT_CUSTOM_PLAN
                        } else {
                            pg_sys::CURSOR_OPT_GENERIC_PLAN
                        };
                        let plan = pg_sys::SPI_prepare_cursor(
                            c_sql.as_ptr(),
                            types.len() as i32,
                            types.as_mut_ptr(),
                            option as i32,
                        );
                        if plan.is_null() {
                            return Err(CoreError::internal(format!(
                                "SPI_prepare failed for: {sql}"
                            )));
                        }
                        pg_sys::SPI_keepplan(plan);
                        plan
                    }
                };
                let rc = pg_sys::SPI_execute_snapshot(
                    plan,
                    values.as_mut_ptr(),
                    nulls.as_ptr(),
                    self.snapshot,
                    std::ptr::null_mut(),
                    false,
                    true,
                    0,
                );
                if rc < 0 {
                    return Err(CoreError::internal(format!(
                        "SPI_execute_snapshot returned {rc} for: {sql}"
                    )));
                }
                let mut rows = Vec::new();
                let table = pg_sys::SPI_tuptable;
                if !table.is_null() {
                    let natts = (*(*table).tupdesc).natts;
                    for i in 0..pg_sys::SPI_processed as usize {
                        let tuple = *(*table).vals.add(i);
                        let mut row = Vec::with_capacity(natts as usize);
                        for col in 1..=natts {
                            let text = pg_sys::SPI_getvalue(tuple, (*table).tupdesc, col);
                            row.push(
                                (!text.is_null())
                                    .then(|| CStr::from_ptr(text).to_string_lossy().into_owned()),
                            );
                        }
                        rows.push(row);
                    }
                }
                KEPT.with(|k| {
                    let kept = &mut k.borrow_mut()[kind];
                    if kept.len() >= MAX_KEPT_PLANS {
                        // statements of dropped or altered stream tables would otherwise stay
                        // for the life of the backend; start over instead
                        for (_, old) in kept.drain() {
                            pg_sys::SPI_freeplan(old);
                        }
                    }
                    kept.insert(sql.to_string(), plan)
                });
                Ok(rows)
            }
        })
    }
}

impl Drop for PinnedSnapshot {
    fn drop(&mut self) {
        // SAFETY: registered in `take`, unregistered once.
        unsafe { pg_sys::UnregisterSnapshot(self.snapshot) }
    }
}
