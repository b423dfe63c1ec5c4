//! The background scheduler: with `shared_preload_libraries = 'pg_trickle'`, one launcher per
//! cluster starts a scheduler in every database that has stream tables, and each scheduler
//! starts refresh workers for the stream tables that are due. Without preloading there are no
//! workers and refreshes are manual.
//!
//! - `launcher`: lists the databases and keeps one scheduler per database running.
//! - `database`: the per-database loop: which stream tables are due (the core's policy), and
//!   which refresh worker runs them.
//! - `worker`: one refresh (or one atomic group of refreshes) in its own transaction, and the
//!   failure record when it fails.
//! - `state`: what the scheduler reads from the catalog.
//! - `process`: the plumbing shared by the three kinds of process: signals, waiting, starting
//!   workers, transactions.

mod database;
mod launcher;
mod process;
mod state;
mod worker;

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PgAtomic};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

/// The launcher's process id, 0 while none runs.
static LAUNCHER_PID: PgAtomic<AtomicI32> = unsafe { PgAtomic::new(c"pg_trickle_launcher_pid") };

/// Bumped by every committed `create_stream_table`; the launcher then starts schedulers for
/// databases that have none instead of waiting for its next probe.
static WAKE_REQUESTS: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"pg_trickle_wake_requests") };

/// Whether this server loaded the library at start (the shared state above exists only then).
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Called from `_PG_init`: when the library is being preloaded, reserve the shared state and
/// register the launcher.
#[allow(unexpected_cfgs)] // pg_shmem_init! tests features of PostgreSQL versions not built here
pub fn register() {
    // SAFETY: reading a flag the postmaster sets while it loads preloaded libraries.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    pg_shmem_init!(LAUNCHER_PID);
    pg_shmem_init!(WAKE_REQUESTS);
    PRELOADED.store(true, Ordering::SeqCst);
    launcher::register();
}

/// Ask the launcher, once the current transaction commits, to look for databases without a
/// scheduler now. Does nothing when the library was not preloaded.
pub fn wake_launcher_at_commit() {
    if !PRELOADED.load(Ordering::SeqCst) {
        return;
    }
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, || {
        WAKE_REQUESTS.get().fetch_add(1, Ordering::SeqCst);
        let pid = LAUNCHER_PID.get().load(Ordering::SeqCst);
        if pid != 0 {
            // SAFETY: BackendPidGetProc returns NULL or a live PGPROC; setting its latch is
            // how one process wakes another.
            unsafe {
                let proc_ = pg_sys::BackendPidGetProc(pid);
                if !proc_.is_null() {
                    pg_sys::SetLatch(&raw mut (*proc_).procLatch);
                }
            }
        }
    });
}
