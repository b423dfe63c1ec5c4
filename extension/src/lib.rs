//! pg_trickle: stream tables for PostgreSQL.
//!
//! This crate is the thin layer that does inside the server what the pure core
//! (`pg_trickle_core`) decides. Table of contents:
//! - `api`: one file per SQL verb (`create_stream_table`, `alter_stream_table`, ...).
//! - `analyze`: PostgreSQL's parser and analyzer applied to defining queries (all parse-tree
//!   `unsafe` lives there).
//! - `catalog`: the extension's own tables and the one place that reads and writes them.
//! - `cdc`: change capture: per-source change buffers and the triggers that fill them.
//! - `refresh`: bringing a stream table up to date, in full or differentially.
//! - `guard`: the trigger that refuses writes to stream tables from outside the extension.
//! - `ddl`: reactions to DDL on stream tables and their sources (event triggers).
//! - `error`: the one place that turns typed errors into PostgreSQL errors.
//! - `pg`: small helpers around SPI, GUCs and the current user.
//! - `config`: the extension's configuration parameters (`pg_trickle.*`).
//! - `scheduler`: the background workers that refresh stream tables on their schedules.

mod analyze;
mod api;
mod catalog;
mod cdc;
mod config;
mod ddl;
mod error;
mod guard;
mod pg;
mod refresh;
mod scheduler;

::pgrx::pg_module_magic!();

/// Called when the library is loaded (at server start with `shared_preload_libraries`).
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    config::register();
    scheduler::register();
    refresh::merge_counts::install();
    // SAFETY: registering a callback with PostgreSQL's invalidation machinery; the function
    // lives as long as the library.
    unsafe {
        pgrx::pg_sys::CacheRegisterRelcacheCallback(
            Some(refresh::forget_plans),
            pgrx::pg_sys::Datum::from(0),
        );
    }
}
