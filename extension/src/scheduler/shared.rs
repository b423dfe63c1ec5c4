//! State shared between the launcher, the schedulers and the backends that create stream
//! tables, in shared memory reserved at server start (so only when the library is preloaded):
//! the launcher's process id, a counter of wake-up requests, the databases whose scheduler
//! found nothing to do (no extension, or no stream tables), which the launcher then leaves
//! alone until a stream table is created there, and the process id of each database's
//! scheduler, claimed before it connects: a restarted launcher, which knows none of the
//! schedulers its predecessor started, leaves those databases alone, and a second scheduler
//! started for a database exits before it ever appears in `pg_stat_activity`.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic, PgLwLock};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

/// The launcher's process id, 0 while none runs.
static LAUNCHER_PID: PgAtomic<AtomicI32> = unsafe { PgAtomic::new(c"pg_trickle_launcher_pid") };

/// Bumped by every committed `create_stream_table`.
static WAKE_REQUESTS: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"pg_trickle_wake_requests") };

/// Databases without work for a scheduler (when the list is full, the launcher looks at the
/// others as often as at any database).
static IDLE: PgLwLock<Slots<u32>> = unsafe { PgLwLock::new(c"pg_trickle_idle_databases") };

/// The scheduler of each database that has one, as (database OID, process id); when the list
/// is full, further schedulers run unregistered (their advisory lock keeps them unique).
static SCHEDULERS: PgLwLock<Slots<(u32, i32)>> =
    unsafe { PgLwLock::new(c"pg_trickle_scheduler_pids") };

/// Whether this server loaded the library at start (the shared state exists only then).
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// A fixed-capacity list in shared memory (256 entries); when full, further entries are not
/// kept, which each user below tolerates.
#[derive(Clone, Copy)]
pub struct Slots<T: Copy + Default> {
    items: [T; 256],
    len: usize,
}

impl<T: Copy + Default> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            items: [T::default(); 256],
            len: 0,
        }
    }
}

// SAFETY: used only with plain integers, no pointers.
unsafe impl<T: Copy + Default> PGRXSharedMemory for Slots<T> {}

impl<T: Copy + Default> Slots<T> {
    fn iter(&self) -> impl Iterator<Item = &T> {
        self.items[..self.len].iter()
    }

    fn push(&mut self, item: T) {
        if self.len < self.items.len() {
            self.items[self.len] = item;
            self.len += 1;
        }
    }

    fn retain(&mut self, keep: impl Fn(&T) -> bool) {
        let mut kept = 0;
        for i in 0..self.len {
            if keep(&self.items[i]) {
                self.items[kept] = self.items[i];
                kept += 1;
            }
        }
        self.len = kept;
    }
}

/// The live scheduler of database `oid` among the (database OID, process id) pairs.
fn live_scheduler(schedulers: &Slots<(u32, i32)>, oid: u32) -> Option<i32> {
    schedulers
        .iter()
        .find(|(o, pid)| *o == oid && process_exists(*pid))
        .map(|(_, pid)| *pid)
}

unsafe extern "C" {
    /// POSIX `kill`; with signal 0 it only checks that the process exists.
    fn kill(pid: i32, signal: i32) -> i32;
}

/// Whether process `pid` exists. Every PostgreSQL process runs as the same OS user, so a
/// process of the server that exists can be signalled.
fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing.
    pid > 0 && unsafe { kill(pid, 0) } == 0
}

/// Reserve the shared state; called from `_PG_init` while preloading.
#[allow(unexpected_cfgs)] // pg_shmem_init! tests features of PostgreSQL versions not built here
pub fn init() {
    pg_shmem_init!(LAUNCHER_PID);
    pg_shmem_init!(WAKE_REQUESTS);
    pg_shmem_init!(IDLE);
    pg_shmem_init!(SCHEDULERS);
    PRELOADED.store(true, Ordering::SeqCst);
}

/// Record this process as the launcher.
pub fn set_launcher_pid(pid: i32) {
    LAUNCHER_PID.get().store(pid, Ordering::SeqCst);
}

/// The number of wake-up requests so far.
pub fn wake_requests() -> u64 {
    WAKE_REQUESTS.get().load(Ordering::SeqCst)
}

/// Whether database `oid`'s scheduler last found nothing to do.
pub fn is_idle(oid: u32) -> bool {
    IDLE.share().iter().any(|o| *o == oid)
}

/// Remember that database `oid` has no work for a scheduler, unless a stream table was created
/// (anywhere) since `wakes_seen` was read: the scheduler may have looked before that
/// transaction committed.
pub fn mark_idle_unless_woken(oid: u32, wakes_seen: u64) {
    let mut idle = IDLE.exclusive();
    if WAKE_REQUESTS.get().load(Ordering::SeqCst) == wakes_seen && !idle.iter().any(|o| *o == oid) {
        idle.push(oid);
    }
}

/// Claim database `oid` for this process's scheduler: false when another live process holds
/// it. The claim is released when this process exits.
pub fn claim_scheduler(oid: u32) -> bool {
    // SAFETY: reading this process's id.
    let pid = unsafe { pg_sys::MyProcPid };
    {
        let mut schedulers = SCHEDULERS.exclusive();
        if live_scheduler(&schedulers, oid).is_some_and(|other| other != pid) {
            return false;
        }
        // an entry of a process that is gone is replaced
        schedulers.retain(|(o, _)| *o != oid);
        schedulers.push((oid, pid));
    }
    // SAFETY: registers a callback with the argument it needs; run once at exit.
    unsafe { pg_sys::before_shmem_exit(Some(release_scheduler), pg_sys::Datum::from(oid)) };
    true
}

#[pg_guard]
unsafe extern "C-unwind" fn release_scheduler(_code: i32, oid: pg_sys::Datum) {
    let oid = oid.value() as u32;
    // SAFETY: reading this process's id.
    let pid = unsafe { pg_sys::MyProcPid };
    SCHEDULERS
        .exclusive()
        .retain(|(o, p)| !(*o == oid && *p == pid));
}

/// Whether database `oid` has a live scheduler (started by this launcher or an earlier one).
pub fn scheduler_running(oid: u32) -> bool {
    live_scheduler(&SCHEDULERS.share(), oid).is_some()
}

/// Forget databases that are not in `existing`.
pub fn forget_idle_except(existing: &[u32]) {
    IDLE.exclusive().retain(|oid| existing.contains(oid));
}

/// Once the current transaction commits: the current database has work, and the launcher is
/// asked to start schedulers where none runs. Does nothing when the library was not preloaded.
pub fn wake_launcher_at_commit() {
    if !PRELOADED.load(Ordering::SeqCst) {
        return;
    }
    // SAFETY: reading this backend's database.
    let database = unsafe { pg_sys::MyDatabaseId }.to_u32();
    pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, move || {
        {
            // both under the lock, so that a scheduler deciding its database is idle either
            // sees the new count or has its mark removed here
            let mut idle = IDLE.exclusive();
            idle.retain(|oid| *oid != database);
            WAKE_REQUESTS.get().fetch_add(1, Ordering::SeqCst);
        }
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
