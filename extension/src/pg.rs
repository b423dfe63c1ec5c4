//! Small helpers around the server: running SPI statements, pinning `search_path`, and acting
//! as the extension's owner for writes to the extension's own catalog.

use crate::error::{spi_error, PgtResult};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use std::ffi::CString;

/// Run a statement that returns no rows we need.
pub fn run(sql: &str, args: &[DatumWithOid]) -> PgtResult<()> {
    Spi::run_with_args(sql, args).map_err(spi_error)
}

/// The first column of the first row, or `None` when there is no row or it is NULL.
pub fn query_one<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid],
) -> PgtResult<Option<T>> {
    Spi::connect_mut(|client| {
        let table = client.update(sql, Some(1), args)?;
        if table.is_empty() {
            Ok(None)
        } else {
            table.first().get_one::<T>()
        }
    })
    .map_err(spi_error)
}

/// Run `f` with `search_path` set to `path`; the previous value comes back afterwards, and also
/// if `f` raises an error (the transaction's GUC nesting undoes it).
pub fn with_search_path<R>(path: &str, f: impl FnOnce() -> R) -> R {
    with_settings(&[("search_path", path)], f)
}

/// Run `f` with the given settings; the previous values come back afterwards, and also if `f`
/// raises an error (the transaction's GUC nesting undoes it).
pub fn with_settings<R>(settings: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
    let settings: Vec<(CString, CString)> = settings
        .iter()
        .map(|(name, value)| {
            (
                CString::new(*name).unwrap_or_default(),
                CString::new(*value).unwrap_or_default(),
            )
        })
        .collect();
    // SAFETY: NewGUCNestLevel/AtEOXact_GUC pair up around `f`; set_config_option is given
    // NUL-terminated strings that outlive the call. On error, transaction abort pops the level.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        for (name, value) in &settings {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        let result = f();
        pg_sys::AtEOXact_GUC(true, level);
        result
    }
}

/// The search path used for all SQL the extension generates: nothing but the system catalog,
/// so every name in generated SQL must be schema-qualified.
pub const SAFE_SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// Run `f` as `role`, the way PostgreSQL runs a materialized view's refresh as its owner:
/// `restricted` adds SECURITY_RESTRICTED_OPERATION, which forbids `f` from changing the session
/// (SET ROLE, temporary tables, ...). The previous user comes back afterwards, and on error the
/// transaction abort restores it.
pub fn as_role<R>(
    role: pg_sys::Oid,
    restricted: bool,
    f: impl FnOnce() -> PgtResult<R>,
) -> PgtResult<R> {
    let mut saved_user = pg_sys::Oid::INVALID;
    let mut saved_context: i32 = 0;
    let mut context_flags = pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32;
    if restricted {
        context_flags |= pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
    }
    // SAFETY: plain getters/setters of backend-local state; restored below and on abort.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(role, saved_context | context_flags);
    }
    let result = with_search_path(SAFE_SEARCH_PATH, f);
    // SAFETY: as above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) };
    result
}

/// Run `f` as the owner of the extension, for writes to the extension's catalog that the
/// calling user (who may own only their stream tables) has no privilege for. Only fixed
/// catalog statements run inside.
pub fn as_extension_owner<R>(f: impl FnOnce() -> PgtResult<R>) -> PgtResult<R> {
    as_role(extension_owner()?, false, f)
}

thread_local! {
    /// The extension owner, looked up once per transaction (keyed by its start time).
    static OWNER_CACHE: std::cell::Cell<Option<(pg_sys::TimestampTz, pg_sys::Oid)>> =
        const { std::cell::Cell::new(None) };
}

fn extension_owner() -> PgtResult<pg_sys::Oid> {
    // SAFETY: reads the current transaction's start timestamp, always set inside a transaction.
    let xact_start = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    if let Some((start, owner)) = OWNER_CACHE.with(|c| c.get()) {
        if start == xact_start {
            return Ok(owner);
        }
    }
    // a kept plan: this runs once in every transaction that refreshes
    let owner: pg_sys::Oid = with_cached_plan(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_trickle'",
        Vec::new(),
        false,
        |table| {
            if table.is_empty() {
                Ok(None)
            } else {
                table.first().get_one::<pg_sys::Oid>().map_err(spi_error)
            }
        },
    )?
    .ok_or_else(|| pg_trickle_core::CoreError::internal("extension pg_trickle is not installed"))?;
    OWNER_CACHE.with(|c| c.set(Some((xact_start, owner))));
    Ok(owner)
}

thread_local! {
    /// Plans of the statements every refresh issues, prepared once per backend. PostgreSQL's
    /// plan cache revalidates them after DDL on what they read.
    static PLANS: std::cell::RefCell<std::collections::HashMap<String, pgrx::spi::OwnedPreparedStatement>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Run `sql` with a plan prepared on first use in this backend (the statement text must not
/// embed values that change between calls: pass them as `args`). `read` turns the result
/// into a value before the SPI connection closes.
pub fn with_cached_plan<R>(
    sql: &str,
    args: Vec<DatumWithOid>,
    read_write: bool,
    read: impl FnOnce(pgrx::spi::SpiTupleTable) -> PgtResult<R>,
) -> PgtResult<R> {
    let types: Vec<pgrx::PgOid> = args.iter().map(|a| pgrx::PgOid::from(a.oid())).collect();
    Spi::connect_mut(|client| {
        // taken out while in use, so that a nested call for the same statement prepares its own
        let cached = PLANS.with(|p| p.borrow_mut().remove(sql));
        let plan = match cached {
            Some(plan) => plan,
            None => {
                let prepared = if read_write {
                    client.prepare_mut(sql, &types)
                } else {
                    client.prepare(sql, &types)
                };
                prepared.map_err(spi_error)?.keep()
            }
        };
        let result = if read_write {
            client.update(&plan, None, &args)
        } else {
            client.select(&plan, None, &args)
        };
        let value = result.map_err(spi_error).and_then(read);
        PLANS.with(|p| p.borrow_mut().insert(sql.to_string(), plan));
        value
    })
}

/// Run `body` in a subtransaction of the current transaction. If it raises an error, the
/// subtransaction rolls back (undoing what `body` did) and the error comes back as `Err`, for
/// the caller to handle or raise again with `CaughtError::rethrow`.
pub fn try_in_subtransaction<R>(
    body: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> Result<R, Box<pgrx::pg_sys::panic::CaughtError>> {
    // SAFETY: the pattern PL/pgSQL uses for exception blocks: the memory context and resource
    // owner are restored after the subtransaction ends, in both outcomes.
    let (context, owner) = unsafe {
        let saved = (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner);
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(saved.0);
        saved
    };
    let result = pgrx::PgTryBuilder::new(move || {
        let value = body();
        // SAFETY: ends the subtransaction begun above.
        unsafe { pg_sys::ReleaseCurrentSubTransaction() };
        Ok(value)
    })
    .catch_others(|caught| Err(Box::new(caught)))
    .execute();
    // SAFETY: back to the caller's context and owner; on error the subtransaction is rolled
    // back first (the error itself was copied and flushed by the catch).
    unsafe {
        if result.is_err() {
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    }
    result
}
