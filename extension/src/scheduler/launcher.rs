//! The launcher: one per cluster, registered at server start. Every second it lists the
//! databases that accept connections and keeps a scheduler running in each. A scheduler that
//! exits (no extension, no stream tables, the database is being dropped) is started again
//! after `PROBE_INTERVAL`, or at once when a `create_stream_table` commits anywhere. While
//! `pg_trickle.enabled` is off it starts none.

use super::process::{install_signal_handlers, wait, Worker};
use super::{database, LAUNCHER_PID, WAKE_REQUESTS};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long after a database's scheduler exited the launcher starts it again to look.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(10);

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
struct Database {
    scheduler: Option<Worker>,
    last_stop: Option<Instant>,
}

/// Entry point of the launcher.
#[pgrx::pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_trickle_launcher_main(_argument: pg_sys::Datum) {
    install_signal_handlers();
    // connected to no database: only the shared catalogs are readable
    BackgroundWorker::connect_worker_to_spi_by_oid(None, None);
    // SAFETY: reading this process's id.
    LAUNCHER_PID
        .get()
        .store(unsafe { pg_sys::MyProcPid }, Ordering::SeqCst);
    let mut known: HashMap<u32, Database> = HashMap::new();
    let mut wakes_seen = WAKE_REQUESTS.get().load(Ordering::SeqCst);
    loop {
        let wakes = WAKE_REQUESTS.get().load(Ordering::SeqCst);
        let woken = wakes != wakes_seen;
        wakes_seen = wakes;
        let listed = list_databases();
        known.retain(|oid, _| listed.iter().any(|(o, _)| o == oid));
        for db in known.values_mut() {
            if db.scheduler.as_ref().is_some_and(Worker::stopped) {
                db.scheduler = None;
                db.last_stop = Some(Instant::now());
            }
        }
        if crate::config::enabled() {
            for (oid, name) in &listed {
                let db = known.entry(*oid).or_insert(Database {
                    scheduler: None,
                    last_stop: None,
                });
                let due = db
                    .last_stop
                    .is_none_or(|stopped| woken || stopped.elapsed() >= PROBE_INTERVAL);
                if db.scheduler.is_none() && due {
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
