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

/// Databases without work for a scheduler.
static IDLE: PgLwLock<IdleDatabases> = unsafe { PgLwLock::new(c"pg_trickle_idle_databases") };

/// The scheduler of each database that has one.
static SCHEDULERS: PgLwLock<SchedulerPids> = unsafe { PgLwLock::new(c"pg_trickle_scheduler_pids") };

/// Whether this server loaded the library at start (the shared state exists only then).
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// A small set of database OIDs; when full, further databases are simply not remembered
/// (the launcher then looks at them as often as at any other).
#[derive(Clone, Copy)]
pub struct IdleDatabases {
    oids: [u32; 256],
    len: usize,
}

impl Default for IdleDatabases {
    fn default() -> Self {
        IdleDatabases {
            oids: [0; 256],
            len: 0,
        }
    }
}

// SAFETY: plain integers, no pointers.
unsafe impl PGRXSharedMemory for IdleDatabases {}

impl IdleDatabases {
    fn contains(&self, oid: u32) -> bool {
        self.oids[..self.len].contains(&oid)
    }

    fn insert(&mut self, oid: u32) {
        if !self.contains(oid) && self.len < self.oids.len() {
            self.oids[self.len] = oid;
            self.len += 1;
        }
    }

    fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        let kept: Vec<u32> = self.oids[..self.len]
            .iter()
            .copied()
            .filter(|o| keep(*o))
            .collect();
        self.oids = [0; 256];
        self.oids[..kept.len()].copy_from_slice(&kept);
        self.len = kept.len();
    }
}

/// (database OID, scheduler process id) pairs; when full, further schedulers run unregistered
/// (the advisory lock each scheduler takes still keeps them unique).
#[derive(Clone, Copy)]
pub struct SchedulerPids {
    entries: [(u32, i32); 256],
    len: usize,
}

impl Default for SchedulerPids {
    fn default() -> Self {
        SchedulerPids {
            entries: [(0, 0); 256],
            len: 0,
        }
    }
}

// SAFETY: plain integers, no pointers.
unsafe impl PGRXSharedMemory for SchedulerPids {}

impl SchedulerPids {
    /// The live scheduler of database `oid`, if one is registered.
    fn live(&self, oid: u32) -> Option<i32> {
        self.entries[..self.len]
            .iter()
            .find(|(o, pid)| *o == oid && process_exists(*pid))
            .map(|(_, pid)| *pid)
    }

    /// Register `pid` for `oid`, replacing an entry of a process that is gone.
    fn set(&mut self, oid: u32, pid: i32) {
        self.remove(|o, _| o == oid);
        if self.len < self.entries.len() {
            self.entries[self.len] = (oid, pid);
            self.len += 1;
        }
    }

    fn remove(&mut self, unwanted: impl Fn(u32, i32) -> bool) {
        let mut kept = 0;
        for i in 0..self.len {
            let (oid, pid) = self.entries[i];
            if !unwanted(oid, pid) {
                self.entries[kept] = (oid, pid);
                kept += 1;
            }
        }
        self.len = kept;
    }
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
    IDLE.share().contains(oid)
}

/// Remember that database `oid` has no work for a scheduler, unless a stream table was created
/// (anywhere) since `wakes_seen` was read: the scheduler may have looked before that
/// transaction committed.
pub fn mark_idle_unless_woken(oid: u32, wakes_seen: u64) {
    let mut idle = IDLE.exclusive();
    if WAKE_REQUESTS.get().load(Ordering::SeqCst) == wakes_seen {
        idle.insert(oid);
    }
}

/// Claim database `oid` for this process's scheduler: false when another live process holds
/// it. The claim is released when this process exits.
pub fn claim_scheduler(oid: u32) -> bool {
    // SAFETY: reading this process's id.
    let pid = unsafe { pg_sys::MyProcPid };
    {
        let mut schedulers = SCHEDULERS.exclusive();
        if schedulers.live(oid).is_some_and(|other| other != pid) {
            return false;
        }
        schedulers.set(oid, pid);
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
    SCHEDULERS.exclusive().remove(|o, p| o == oid && p == pid);
}

/// Whether database `oid` has a live scheduler (started by this launcher or an earlier one).
pub fn scheduler_running(oid: u32) -> bool {
    SCHEDULERS.share().live(oid).is_some()
}

/// Forget databases that are not in `existing`.
pub fn forget_idle_except(existing: &[u32]) {
    IDLE.exclusive().retain(|oid| existing.contains(&oid));
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
            idle.retain(|oid| oid != database);
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
