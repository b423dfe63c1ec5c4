//! The scheduler of one database: a background worker that, every cycle (see `cycle`), starts
//! refresh workers for the units of stream tables that are due, at most
//! `pg_trickle.max_concurrent_refreshes` at once, and then sleeps until the next stream table
//! is due (at least `pg_trickle.scheduler_interval_ms`, at most a second); a refresh worker
//! stopping wakes it at once.
//!
//! There is at most one scheduler per database (a claim in shared memory before it connects,
//! and a session advisory lock once connected). It
//! exits when the extension is dropped, when the database has no stream table left, when
//! `pg_trickle.enabled` is off, and when another session wants the database to itself
//! (DROP DATABASE, CREATE DATABASE with it as template, renaming it); it then stops the refresh
//! workers it started, so that it never blocks those commands.

use super::cycle::{self, Cycle, Memory};
use super::process::{exit_quietly, in_transaction, install_signal_handlers, wait, Worker};
use super::{shared, worker};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;
use std::collections::BTreeSet;
use std::time::Duration;

/// The function name the launcher registers schedulers with.
pub const ENTRY: &str = "pg_trickle_scheduler_main";

/// The longest a scheduler sleeps, so that catalog changes made elsewhere (a new stream table,
/// a manual refresh upstream of a `calculated` one, an alter) are noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The advisory lock (two-key form) that makes the scheduler of a database unique.
const LOCK_KEYS: (i32, i32) = (0x7067_7472, 1);

/// A refresh worker at work on some stream tables.
struct Running {
    ids: Vec<i64>,
    worker: Worker,
}

/// Entry point of a database's scheduler; the database OID is the argument.
#[pgrx::pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_trickle_scheduler_main(argument: pg_sys::Datum) {
    install_signal_handlers();
    let database = pg_sys::Oid::from(argument.value() as u32);
    // before connecting, so that a second scheduler never shows in pg_stat_activity
    if !shared::claim_scheduler(database.to_u32()) {
        pgrx::debug1!("pg_trickle scheduler exits: another one runs in this database");
        exit_quietly();
    }
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    let sole = in_transaction(|| {
        crate::pg::query_one::<bool>(
            "SELECT pg_catalog.pg_try_advisory_lock($1, $2)",
            &[LOCK_KEYS.0.into(), LOCK_KEYS.1.into()],
        )
    });
    if !matches!(sole, Ok(Ok(Some(true)))) {
        pgrx::debug1!("pg_trickle scheduler exits: another one runs in this database");
        exit_quietly();
    }
    let mut running: Vec<Running> = Vec::new();
    let mut memory = Memory::default();
    loop {
        running.retain(|r| !r.worker.stopped());
        if !crate::config::enabled() {
            leave(&running, "pg_trickle.enabled is off");
        }
        let busy: BTreeSet<i64> = running.iter().flat_map(|r| r.ids.clone()).collect();
        let free = crate::config::max_concurrent_refreshes().saturating_sub(running.len());
        let now = unix_now();
        let wakes_seen = shared::wake_requests();
        let cycle = in_transaction(std::panic::AssertUnwindSafe(|| {
            cycle::plan(database, &busy, free, now, &mut memory)
        }));
        let sleep = match cycle {
            Ok(Cycle::Exit { why, idle }) => {
                if idle {
                    shared::mark_idle_unless_woken(database.to_u32(), wakes_seen);
                }
                leave(&running, why);
            }
            Ok(Cycle::Go(units, next_due)) => {
                for ids in units {
                    match worker::encode(&ids) {
                        Some(extra) => match start(database, &extra) {
                            Some(worker) => running.push(Running { ids, worker }),
                            None => break,
                        },
                        // too many ids to hand over: refreshed here
                        None => worker::run_unit(&ids),
                    }
                }
                sleep_until(next_due)
            }
            Err(why) => {
                pgrx::warning!("pg_trickle scheduler: {why}");
                MAX_SLEEP
            }
        };
        wait(sleep);
    }
}

/// Stop the refresh workers this scheduler started (their transactions roll back) and exit.
fn leave(running: &[Running], why: &str) -> ! {
    for r in running {
        r.worker.terminate();
    }
    pgrx::debug1!("pg_trickle scheduler exits: {why}");
    exit_quietly()
}

/// How long to sleep when the next stream table is due at `next_due`: until then, but at least
/// `pg_trickle.scheduler_interval_ms` and at most `MAX_SLEEP`.
fn sleep_until(next_due: Option<i64>) -> Duration {
    let minimum = crate::config::scheduler_interval().min(MAX_SLEEP);
    let until = next_due
        .map(|at| at.saturating_sub(unix_now()).max(0))
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or(MAX_SLEEP, Duration::from_millis);
    until.clamp(minimum, MAX_SLEEP)
}

/// Unix time in milliseconds, the unit of the policy.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Start a refresh worker for the ids in `extra`. `None` when no worker slot is free (the
/// unit is due again next cycle).
fn start(database: pg_sys::Oid, extra: &str) -> Option<Worker> {
    let started = Worker::start(
        &format!("pg_trickle refresh {extra}"),
        "pg_trickle refresh",
        worker::ENTRY,
        pg_sys::Datum::from(database.to_u32()),
        extra,
    );
    // said once until a worker starts again, not every cycle
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if started.is_none() {
        if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
            pgrx::log!(
                "pg_trickle: no background worker slot free for a refresh; raise max_worker_processes"
            );
        }
    } else {
        SAID.store(false, std::sync::atomic::Ordering::Relaxed);
    }
    started
}
