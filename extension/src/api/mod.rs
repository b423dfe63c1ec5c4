//! The SQL API, one file per verb. Each `#[pg_extern]` function checks its arguments, does its
//! work through `PgtResult`, and raises errors at the boundary only.

mod alter;
mod create;
pub(crate) mod definition;
mod drop;
mod refresh;

pub use definition::type_names as type_names_of;

use crate::catalog::store::{self, StreamTable};
use crate::error::{null_argument, PgtResult};
use pg_trickle_core::names::parse_relation_name;
use pg_trickle_core::sql::quote_literal;
use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::prelude::*;

/// A required text argument.
pub fn required<'a>(value: Option<&'a str>, name: &str) -> PgtResult<&'a str> {
    value.ok_or_else(|| null_argument(name))
}

/// The relation a user's name resolves to (an unqualified name through `search_path`, like
/// any table reference), without running a query.
fn resolve_relation(name: &str) -> PgtResult<Option<pg_sys::Oid>> {
    let rel = parse_relation_name(name)?;
    let text = |s: &str| {
        std::ffi::CString::new(s)
            .map_err(|_| CoreError::new(ErrorKind::InvalidName, "a name contains a NUL character"))
    };
    let relname = text(&rel.name)?;
    let schema = rel.schema.as_deref().map(text).transpose()?;
    // SAFETY: makeRangeVar copies nothing but keeps the pointers, which outlive the lookup;
    // RangeVarGetRelidExtended with RVR_MISSING_OK returns InvalidOid instead of raising.
    let relid = unsafe {
        let range_var = pg_sys::makeRangeVar(
            schema
                .as_ref()
                .map_or(std::ptr::null_mut(), |s| s.as_ptr().cast_mut()),
            relname.as_ptr().cast_mut(),
            -1,
        );
        pg_sys::RangeVarGetRelidExtended(
            range_var,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    Ok((relid != pg_sys::Oid::INVALID).then_some(relid))
}

fn not_found(name: &str) -> CoreError {
    CoreError::new(
        ErrorKind::UndefinedTable,
        format!("stream table {name} does not exist"),
    )
    .with_hint("List stream tables with: SELECT * FROM pgtrickle.stream_tables_info;")
}

fn not_a_stream_table(name: &str) -> CoreError {
    CoreError::new(
        ErrorKind::WrongObjectType,
        format!("{name} is not a stream table"),
    )
    .with_hint(format!(
        "Create one with pgtrickle.create_stream_table({}, query).",
        quote_literal(name)
    ))
}

/// Find the stream table a user names.
pub fn lookup_stream_table(name: &str) -> PgtResult<StreamTable> {
    let relid = resolve_relation(name)?.ok_or_else(|| not_found(name))?;
    store::find_by_relid(relid)?.ok_or_else(|| not_a_stream_table(name))
}

/// Find the stream table a user names and take its refresh lock (see `store::lock_for_refresh`).
pub fn lock_stream_table(name: &str) -> PgtResult<StreamTable> {
    let relid = resolve_relation(name)?.ok_or_else(|| not_found(name))?;
    store::lock_for_refresh(relid)?.ok_or_else(|| not_a_stream_table(name))
}

/// Refuse unless the current user owns (is a member of the owner of) the stream table.
pub fn check_owner(st: &StreamTable, action: &str) -> PgtResult<()> {
    if st.current_user_owns {
        Ok(())
    } else {
        Err(CoreError::new(
            ErrorKind::InsufficientPrivilege,
            format!(
                "must be owner of stream table {} to {action} it",
                st.qualified_name()
            ),
        ))
    }
}
