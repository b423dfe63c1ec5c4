//! The PostgreSQL version differences the analyzer meets, in one place: the signature of
//! `expression_tree_mutator`, the planner-root argument of `flatten_join_alias_vars`, and
//! PostgreSQL 18's grouping RTE (`flatten_group_exprs`).

use pgrx::pg_sys;
use std::ffi::c_void;

pub type MutatorFn =
    unsafe extern "C-unwind" fn(*mut pg_sys::Node, *mut c_void) -> *mut pg_sys::Node;

/// Copy `node`, letting `mutator` replace sub-nodes.
///
/// # Safety
/// `node` must be a valid expression tree and `context` what `mutator` expects.
pub unsafe fn expression_tree_mutator(
    node: *mut pg_sys::Node,
    mutator: MutatorFn,
    context: *mut c_void,
) -> *mut pg_sys::Node {
    #[cfg(feature = "pg15")]
    {
        // SAFETY: PostgreSQL 15 declares the callback without a prototype and calls it with
        // (node, context), which is exactly MutatorFn's signature.
        unsafe {
            let callback: unsafe extern "C-unwind" fn() -> *mut pg_sys::Node =
                std::mem::transmute(mutator);
            pg_sys::expression_tree_mutator(node, Some(callback), context)
        }
    }
    #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
    {
        // SAFETY: forwarded as is.
        unsafe { pg_sys::expression_tree_mutator_impl(node, Some(mutator), context) }
    }
}

/// Replace references to join aliases (and, on PostgreSQL 18, to the grouping step) by the
/// expressions they stand for, so that every Var names a base relation's column.
///
/// # Safety
/// `query` must be the analyzed query `node` belongs to.
pub unsafe fn flatten_vars(
    query: *mut pg_sys::Query,
    node: *mut pg_sys::Node,
) -> *mut pg_sys::Node {
    #[cfg(feature = "pg15")]
    {
        // SAFETY: forwarded as is.
        unsafe { pg_sys::flatten_join_alias_vars(query, node) }
    }
    #[cfg(any(feature = "pg16", feature = "pg17"))]
    {
        // SAFETY: a NULL planner root is allowed outside the planner.
        unsafe { pg_sys::flatten_join_alias_vars(std::ptr::null_mut(), query, node) }
    }
    #[cfg(feature = "pg18")]
    {
        // SAFETY: as above; group Vars are flattened first, their expressions may hold join
        // alias Vars.
        unsafe {
            let node = if (*query).hasGroupRTE {
                pg_sys::flatten_group_exprs(std::ptr::null_mut(), query, node)
            } else {
                node
            };
            pg_sys::flatten_join_alias_vars(std::ptr::null_mut(), query, node)
        }
    }
}
