//! The launcher: one per cluster, registered at server start. Every second it lists the
//! databases that accept connections and keeps a scheduler running in each that has work.
//!
//! - At start, and whenever `pg_trickle.enabled` is turned on, it starts a scheduler in every
//!   database (each leaves at once if there is nothing for it to do).
//! - A database whose scheduler found no extension or no stream tables is marked idle in
//!   shared memory; the launcher leaves it alone until a `create_stream_table` commits there
//!   (which also wakes the launcher at once), looking again only every `IDLE_PROBE_INTERVAL`.
//! - A database whose scheduler an earlier launcher started (this one was restarted) keeps it;
//!   it counts as stopped from the last time it was seen running.
//! - A scheduler that exited for another reason (the database was wanted by DROP DATABASE or
//!   similar, an error) is started again after `RESTART_DELAY`.
//! - While `pg_trickle.enabled` is off it starts none.

use super::process::{install_signal_handlers, wait, Worker};
use super::{database, shared};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long after a database's scheduler exited the launcher starts it again.
const RESTART_DELAY: Duration = Duration::from_secs(10);

/// How often the launcher looks again at a database marked idle.
const IDLE_PROBE_INTERVAL: Duration = Duration::from_secs(600);

/// How often the launcher looks at the list of databases.
const LAUNCHER_INTERVAL: Duration = Duration::from_secs(1);

const ENTRY: &str = "pg_trickle_launcher_main";

/// Register the launcher with the postmaster (during `shared_preload_libraries` loading).
pub fn register() {
    BackgroundWorkerBuilder::new("pg_trickle launcher")
        .set_type("pg_trickle launcher")
        .set_library("pg_trickle")
        .set_function(ENTRY)
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// A database the launcher knows.
#[derive(Default)]
struct Database {
    scheduler: Option<Worker>,
    last_stop: Option<Instant>,
}

impl Database {
    /// Whether to start a scheduler now.
    fn wants_scheduler(&mut self, oid: u32, woken: bool) -> bool {
        if self.scheduler.is_some() {
            return false;
        }
        if shared::scheduler_running(oid) {
            // started by an earlier launcher: once it exits, it counts as stopped from the
            // last time it was seen
            self.last_stop = Some(Instant::now());
            return false;
        }
        let Some(stopped) = self.last_stop else {
            return true;
        };
        if shared::is_idle(oid) {
            stopped.elapsed() >= IDLE_PROBE_INTERVAL
        } else {
            woken || stopped.elapsed() >= RESTART_DELAY
        }
    }
}

/// Entry point of the launcher.
#[pgrx::pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_trickle_launcher_main(_argument: pg_sys::Datum) {
    install_signal_handlers();
    // connected to no database: only the shared catalogs are readable
    BackgroundWorker::connect_worker_to_spi_by_oid(None, None);
    // SAFETY: reading this process's id.
    shared::set_launcher_pid(unsafe { pg_sys::MyProcPid });
    let mut known: HashMap<u32, Database> = HashMap::new();
    let mut wakes_seen = shared::wake_requests();
    let mut was_enabled = true;
    loop {
        let wakes = shared::wake_requests();
        let woken = wakes != wakes_seen;
        wakes_seen = wakes;
        let listed = list_databases();
        let oids: Vec<u32> = listed.iter().map(|(oid, _)| *oid).collect();
        known.retain(|oid, _| oids.contains(oid));
        shared::forget_idle_except(&oids);
        for db in known.values_mut() {
            if db.scheduler.as_ref().is_some_and(Worker::stopped) {
                db.scheduler = None;
                db.last_stop = Some(Instant::now());
            }
        }
        let enabled = crate::config::enabled();
        if enabled && !was_enabled {
            // turned on again: look everywhere at once
            for db in known.values_mut() {
                db.last_stop = None;
            }
        }
        was_enabled = enabled;
        if enabled {
            for (oid, name) in &listed {
                let db = known.entry(*oid).or_default();
                if db.wants_scheduler(*oid, woken) {
                    db.scheduler = start_scheduler(*oid, name);
                    if db.scheduler.is_none() {
                        db.last_stop = Some(Instant::now());
                    }
                }
            }
        }
        wait(LAUNCHER_INTERVAL);
    }
}

fn start_scheduler(oid: u32, name: &str) -> Option<Worker> {
    Worker::start(
        &format!("pg_trickle scheduler {name}"),
        "pg_trickle scheduler",
        database::ENTRY,
        pg_sys::Datum::from(oid),
        "",
    )
}

/// The databases that accept connections (not templates, not half-dropped), by OID and name,
/// read straight from `pg_database` (the launcher has no database to run queries in).
fn list_databases() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    // SAFETY: a catalog heap scan inside a transaction of its own, the way PostgreSQL's own
    // autovacuum launcher lists databases; tuples are read before the scan ends.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let rel = pg_sys::table_open(
            pg_sys::DatabaseRelationId,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            // datconnlimit -2 marks a database whose DROP was interrupted
            if (*form).datallowconn && !(*form).datistemplate && (*form).datconnlimit != -2 {
                let name = std::ffi::CStr::from_ptr((*form).datname.data.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                out.push(((*form).oid.to_u32(), name));
            }
        }
        pg_sys::heap_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    out
}
