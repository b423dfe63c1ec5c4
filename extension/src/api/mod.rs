//! The SQL API, one file per verb. Each `#[pg_extern]` function checks its arguments, does its
//! work through `PgtResult`, and raises errors at the boundary only.

mod alter;
mod create;
mod definition;
mod drop;
mod refresh;

pub use definition::type_names as type_names_of;

use crate::catalog::store::{self, StreamTable};
use crate::error::{null_argument, PgtResult};
use crate::pg::query_one;
use pg_trickle_core::names::parse_relation_name;
use pg_trickle_core::sql::{quote_ident, quote_literal};
use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::prelude::*;

/// A required text argument.
pub fn required<'a>(value: Option<&'a str>, name: &str) -> PgtResult<&'a str> {
    value.ok_or_else(|| null_argument(name))
}

/// Find the stream table a user names, resolving an unqualified name through `search_path`
/// like any table reference.
pub fn lookup_stream_table(name: &str) -> PgtResult<StreamTable> {
    let rel = parse_relation_name(name)?;
    let quoted = match &rel.schema {
        Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(&rel.name)),
        None => quote_ident(&rel.name),
    };
    if let Some(st) = store::find_by_name(&quoted)? {
        return Ok(st);
    }
    let relid: Option<pg_sys::Oid> = query_one(
        "SELECT pg_catalog.to_regclass($1)::oid",
        &[quoted.as_str().into()],
    )?;
    if relid.is_none() {
        return Err(CoreError::new(
            ErrorKind::UndefinedTable,
            format!("stream table {name} does not exist"),
        )
        .with_hint("List stream tables with: SELECT * FROM pgtrickle.stream_tables_info;"));
    }
    Err(CoreError::new(
        ErrorKind::WrongObjectType,
        format!("{name} is not a stream table"),
    )
    .with_hint(format!(
        "Create one with pgtrickle.create_stream_table({}, query).",
        quote_literal(name)
    )))
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
