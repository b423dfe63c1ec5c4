//! Parse and analyze a defining query with the server's parser (`raw_parser`,
//! `parse_analyze_fixedparams`), check that it can define a stream table, and deparse it with
//! an empty search path (`pg_get_querydef`) so the stored text names every object with its
//! schema and means the same thing whatever `search_path` a later refresh runs under.

use crate::error::PgtResult;
use crate::pg::{with_search_path, SAFE_SEARCH_PATH};
use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::prelude::*;
use pgrx::PgList;
use std::ffi::{CStr, CString};

/// What the analyzer tells us about a defining query.
#[derive(Debug, Clone)]
pub struct AnalyzedQuery {
    /// The query deparsed with every name schema-qualified.
    pub canonical_sql: String,
    /// Relations named anywhere in the query (FROM, subqueries, CTEs, sublinks), views not
    /// expanded.
    pub relation_oids: Vec<pg_sys::Oid>,
    /// Whether the query calls a volatile function (`random()`, `clock_timestamp()`, ...).
    pub has_volatile_functions: bool,
    /// The output columns: name, type OID and type modifier.
    pub columns: Vec<OutputColumn>,
}

/// One output column of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputColumn {
    pub name: String,
    pub type_oid: pg_sys::Oid,
    pub typmod: i32,
}

fn not_a_select(what: &str) -> CoreError {
    CoreError::new(
        ErrorKind::FeatureNotSupported,
        format!("the defining query of a stream table must be a SELECT, not {what}"),
    )
    .with_hint("Pass a single SELECT (or VALUES) statement as the query.")
}

/// Parse and analyze `text` under the caller's `search_path`.
pub fn analyze_defining_query(text: &str) -> PgtResult<AnalyzedQuery> {
    let c_text = c_query_text(text)?;
    // SAFETY: parse_to_query returns a valid analyzed Query living in the current memory
    // context for the rest of this call.
    unsafe {
        let query = parse_to_query(&c_text)?;
        if pg_sys::isQueryUsingTempRelation(query) {
            return Err(CoreError::new(
                ErrorKind::FeatureNotSupported,
                "a stream table cannot read temporary tables",
            )
            .with_detail("A stream table outlives the session that owns a temporary table.")
            .with_hint("Read from a regular or unlogged table instead."));
        }
        let has_volatile_functions = pg_sys::contain_volatile_functions(query.cast());
        let relation_oids = referenced_relations(query);
        let columns = output_columns(query);
        let canonical_sql = with_search_path(SAFE_SEARCH_PATH, || {
            CStr::from_ptr(pg_sys::pg_get_querydef(query, false))
                .to_string_lossy()
                .into_owned()
        });
        Ok(AnalyzedQuery {
            canonical_sql,
            relation_oids,
            has_volatile_functions,
            columns,
        })
    }
}

pub fn c_query_text(text: &str) -> PgtResult<CString> {
    CString::new(text)
        .map_err(|_| CoreError::new(ErrorKind::SyntaxError, "the query contains a NUL character"))
}

/// Parse `text` (one SELECT) and analyze it; the checks every defining query must pass.
///
/// # Safety
/// Must run inside a transaction; the result lives in the current memory context.
pub unsafe fn parse_to_query(c_text: &CStr) -> PgtResult<*mut pg_sys::Query> {
    // SAFETY: raw_parser and parse_analyze_fixedparams get a NUL-terminated string that
    // outlives them; the pointers read come from the trees they return. Server errors unwind
    // through pgrx's guard.
    unsafe {
        let raw_list = pg_sys::raw_parser(c_text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let statements = PgList::<pg_sys::RawStmt>::from_pg(raw_list);
        if statements.len() != 1 {
            return Err(CoreError::new(
                ErrorKind::SyntaxError,
                format!(
                    "the defining query must be exactly one SQL statement, found {}",
                    statements.len()
                ),
            )
            .with_hint(
                "Pass a single SELECT statement, without a second statement after a semicolon.",
            ));
        }
        let raw = statements
            .get_ptr(0)
            .ok_or_else(|| CoreError::internal("raw_parser returned an empty list cell"))?;
        let node = (*raw).stmt;
        if !pgrx::is_a(node, pg_sys::NodeTag::T_SelectStmt) {
            let tag = CStr::from_ptr(pg_sys::CreateCommandName(node))
                .to_string_lossy()
                .into_owned();
            return Err(not_a_select(&tag));
        }
        let query = pg_sys::parse_analyze_fixedparams(
            raw,
            c_text.as_ptr(),
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        );
        check_query_shape(query)?;
        Ok(query)
    }
}

/// Refuse analyzed queries that parse as SELECT but cannot define a table's contents.
///
/// # Safety
/// `query` must point to a valid analyzed `Query`.
unsafe fn check_query_shape(query: *mut pg_sys::Query) -> PgtResult<()> {
    // SAFETY: guaranteed by the caller.
    let q = unsafe { &*query };
    if q.commandType != pg_sys::CmdType::CMD_SELECT || !q.utilityStmt.is_null() {
        return Err(not_a_select("SELECT INTO")
            .with_hint("Remove the INTO clause; pg_trickle creates and fills the table itself."));
    }
    if !q.rowMarks.is_null() {
        return Err(CoreError::new(
            ErrorKind::FeatureNotSupported,
            "FOR UPDATE, FOR SHARE and other row-locking clauses are not allowed in a stream table's query",
        )
        .with_hint("Remove the locking clause."));
    }
    if q.hasModifyingCTE {
        return Err(CoreError::new(
            ErrorKind::FeatureNotSupported,
            "a stream table's query must not contain data-modifying statements in WITH",
        )
        .with_hint("Use only SELECT inside WITH."));
    }
    Ok(())
}

/// OIDs of every relation the query names, in first-seen order without repeats.
///
/// # Safety
/// `query` must point to a valid analyzed `Query`.
unsafe fn referenced_relations(query: *mut pg_sys::Query) -> Vec<pg_sys::Oid> {
    let mut relations: *mut pg_sys::List = std::ptr::null_mut();
    let mut inval_items: *mut pg_sys::List = std::ptr::null_mut();
    let mut has_row_security = false;
    // SAFETY: extract_query_dependencies walks the tree and appends to the lists we pass;
    // an OID list stores each value in the cell's oid_value.
    unsafe {
        pg_sys::extract_query_dependencies(
            query.cast(),
            &mut relations,
            &mut inval_items,
            &mut has_row_security,
        );
        let mut out: Vec<pg_sys::Oid> = Vec::new();
        if !relations.is_null() {
            for i in 0..(*relations).length as usize {
                let oid = (*(*relations).elements.add(i)).oid_value;
                if !out.contains(&oid) {
                    out.push(oid);
                }
            }
        }
        out
    }
}

/// The visible (non-junk) output columns of the query.
///
/// # Safety
/// `query` must point to a valid analyzed `Query`.
unsafe fn output_columns(query: *mut pg_sys::Query) -> Vec<OutputColumn> {
    // SAFETY: the target list of an analyzed query is a list of TargetEntry nodes.
    unsafe {
        let targets = PgList::<pg_sys::TargetEntry>::from_pg((*query).targetList);
        targets
            .iter_ptr()
            .filter(|te| !(**te).resjunk)
            .map(|te| {
                let expr = (*te).expr.cast::<pg_sys::Node>();
                let name = if (*te).resname.is_null() {
                    "?column?".to_string()
                } else {
                    CStr::from_ptr((*te).resname).to_string_lossy().into_owned()
                };
                OutputColumn {
                    name,
                    type_oid: pg_sys::exprType(expr),
                    typmod: pg_sys::exprTypmod(expr),
                }
            })
            .collect()
    }
}
