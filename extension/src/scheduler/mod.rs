//! The background scheduler: with `shared_preload_libraries = 'pg_trickle'`, one launcher per
//! cluster starts a scheduler in every database that has stream tables, and each scheduler
//! starts refresh workers for the stream tables that are due. Without preloading there are no
//! workers and refreshes are manual.
//!
//! - `launcher`: lists the databases and keeps one scheduler running in each that has work.
//! - `database`: the per-database scheduler process and its loop.
//! - `cycle`: one cycle of a scheduler: which units of stream tables to start now.
//! - `worker`: one refresh (or one atomic group of refreshes) in its own transaction, and the
//!   failure record when it fails.
//! - `state`: what the scheduler reads from the catalog.
//! - `shared`: state in shared memory (launcher pid, wake-ups, databases without work).
//! - `process`: the plumbing shared by the three kinds of process: signals, waiting, starting
//!   workers, transactions.

mod cycle;
mod database;
mod launcher;
mod process;
mod shared;
mod state;
mod worker;

pub use shared::wake_launcher_at_commit;

use pgrx::pg_sys;

/// Called from `_PG_init`: when the library is being preloaded, reserve the shared state and
/// register the launcher.
pub fn register() {
    // SAFETY: reading a flag the postmaster sets while it loads preloaded libraries.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    shared::init();
    launcher::register();
}
