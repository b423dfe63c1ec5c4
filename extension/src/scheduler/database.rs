//! The scheduler of one database. Every `pg_trickle.scheduler_interval_ms`, and whenever a
//! refresh worker it started stops, it reads the catalog, asks the core's policy which stream
//! tables are due and in which order, and starts refresh workers for them, at most
//! `pg_trickle.max_concurrent_refreshes` at once.
//!
//! - A stream table is never handed to two workers at once; a manual refresh running at the
//!   same time makes the worker wait on the catalog row lock (refreshes of one stream table
//!   always serialize there).
//! - A stream table waits while one of its upstream stream tables is being refreshed; a
//!   `calculated` one is then due because its upstream changed (see the policy).
//! - Before starting a worker for a differentially maintained stream table, the scheduler
//!   looks at the change buffers; with nothing to apply it only notes the time, which counts
//!   as a refresh for the schedule (no history row, no worker).
//! - An atomic diamond group is handed to one worker whole when any member is due.
//! - The scheduler exits when the extension is dropped, when the database has no stream table
//!   left, when `pg_trickle.enabled` is off, and when another session wants the database to
//!   itself (DROP DATABASE, CREATE DATABASE with it as template, renaming it), so that it
//!   never blocks those commands. The launcher starts it again when there is work.

use super::process::{exit_quietly, in_transaction, install_signal_handlers, wait, Worker};
use super::state::{self, Picture};
use super::worker;
use crate::error::OrRaise;
use pg_trickle_core::schedule::policy::{next_actions, next_due, PolicySettings};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;
use std::collections::{BTreeSet, HashMap};

/// The function name the launcher registers schedulers with.
pub const ENTRY: &str = "pg_trickle_scheduler_main";

/// A refresh worker at work on some stream tables.
struct Running {
    ids: Vec<i64>,
    worker: Worker,
}

/// What one cycle decided: the units to start now and when something is next due (unix
/// milliseconds), or to leave.
enum Cycle {
    Go(Vec<Vec<i64>>, Option<i64>),
    Exit(&'static str),
}

/// The longest a scheduler sleeps, so that catalog changes made elsewhere (a new stream table,
/// a manual refresh upstream of a `calculated` one, an alter) are noticed.
const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Entry point of a database's scheduler; the database OID is the argument.
#[pgrx::pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_trickle_scheduler_main(argument: pg_sys::Datum) {
    install_signal_handlers();
    let database = pg_sys::Oid::from(argument.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    let mut running: Vec<Running> = Vec::new();
    let mut checked: HashMap<i64, i64> = HashMap::new();
    loop {
        running.retain(|r| !r.worker.stopped());
        if !crate::config::enabled() {
            exit_quietly();
        }
        let busy: BTreeSet<i64> = running.iter().flat_map(|r| r.ids.clone()).collect();
        let free = crate::config::max_concurrent_refreshes().saturating_sub(running.len());
        let now = unix_now();
        let cycle = in_transaction(std::panic::AssertUnwindSafe(|| {
            plan_cycle(database, &busy, free, now, &mut checked)
        }));
        match cycle {
            Ok(Cycle::Exit(why)) => {
                pgrx::debug1!("pg_trickle scheduler exits: {why}");
                exit_quietly();
            }
            Ok(Cycle::Go(units, next_due)) => {
                for ids in units {
                    match start(database, &ids) {
                        Some(worker) => running.push(Running { ids, worker }),
                        None => break,
                    }
                }
                wait(sleep_until(next_due));
                continue;
            }
            Err(why) => pgrx::warning!("pg_trickle scheduler: {why}"),
        }
        wait(crate::config::scheduler_interval());
    }
}

/// How long to sleep when the next stream table is due at `next_due`: until then, but at least
/// `pg_trickle.scheduler_interval_ms` and at most `MAX_SLEEP`. A refresh worker stopping wakes
/// the scheduler earlier.
fn sleep_until(next_due: Option<i64>) -> std::time::Duration {
    let minimum = crate::config::scheduler_interval();
    let until = next_due
        .map(|at| at.saturating_sub(unix_now()).max(0))
        .and_then(|ms| u64::try_from(ms).ok())
        .map_or(MAX_SLEEP, std::time::Duration::from_millis);
    until.clamp(minimum.min(MAX_SLEEP), MAX_SLEEP)
}

/// Unix time in milliseconds, the unit of the policy.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Start a worker for `ids`; a unit too large to hand over runs here. `None` when no worker
/// slot is free (the unit is due again next cycle).
fn start(database: pg_sys::Oid, ids: &[i64]) -> Option<Worker> {
    let Some(extra) = worker::encode(ids) else {
        worker::run_unit(ids);
        return None;
    };
    let name = format!("pg_trickle refresh {extra}");
    let started = Worker::start(
        &name,
        "pg_trickle refresh",
        worker::ENTRY,
        pg_sys::Datum::from(database.to_u32()),
        &extra,
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

/// One cycle, in a transaction: whether to go on, and the units to start now.
fn plan_cycle(
    database: pg_sys::Oid,
    busy: &BTreeSet<i64>,
    free: usize,
    now: i64,
    checked: &mut HashMap<i64, i64>,
) -> Cycle {
    if database_wanted_elsewhere(database) {
        return Cycle::Exit("another session needs the database to itself");
    }
    // SAFETY: a catalog lookup inside the transaction; missing_ok returns InvalidOid.
    let installed = unsafe { pg_sys::get_extension_oid(c"pg_trickle".as_ptr(), true) };
    if installed == pg_sys::Oid::INVALID {
        return Cycle::Exit("the extension is not installed");
    }
    let picture = state::read(checked).or_raise();
    if picture.tables.is_empty() {
        return Cycle::Exit("no stream tables");
    }
    let settings = PolicySettings {
        fallback_interval_seconds: crate::config::calculated_interval_seconds(),
        sla_scheduling: crate::config::sla_scheduling(),
    };
    let states: Vec<_> = picture.tables.values().map(|t| t.state.clone()).collect();
    let actions = next_actions(now, &states, &picture.dag, settings);
    let mut units = Vec::new();
    let mut taken: BTreeSet<i64> = busy.clone();
    let mut quiet = QuietSources::default();
    for action in actions {
        if units.len() >= free {
            break;
        }
        let unit = unit_of(action.id, &picture);
        if unit.iter().any(|id| taken.contains(id)) {
            continue;
        }
        // wait for upstreams being refreshed (or about to be) outside the unit
        let waits = unit.iter().any(|id| {
            picture
                .dag
                .upstreams(*id)
                .any(|up| taken.contains(&up) && !unit.contains(&up))
        });
        if waits {
            continue;
        }
        taken.extend(unit.iter().copied());
        if nothing_to_do(&unit, &picture, &mut quiet) {
            for id in &unit {
                checked.insert(*id, now);
            }
            continue;
        }
        units.push(unit);
    }
    // what is running or starting now wakes the scheduler when it ends
    let waiting: Vec<_> = states
        .into_iter()
        .filter(|s| !taken.contains(&s.id) || checked.get(&s.id) == Some(&now))
        .map(|mut s| {
            if checked.get(&s.id) == Some(&now) {
                s.last_refresh = Some(now);
            }
            s
        })
        .collect();
    Cycle::Go(units, next_due(now, &waiting, &picture.dag, settings))
}

/// The atomic group of `id`, or `id` alone.
fn unit_of(id: i64, picture: &Picture) -> Vec<i64> {
    picture
        .groups
        .iter()
        .find(|g| g.contains(&id))
        .cloned()
        .unwrap_or_else(|| vec![id])
}

/// Per source, within one cycle: whether its change buffer is empty and it has no reset
/// marker, in which case no stream table reading it has anything to apply from it.
#[derive(Default)]
struct QuietSources(HashMap<pg_sys::Oid, bool>);

impl QuietSources {
    fn is_quiet(&mut self, source: pg_sys::Oid) -> bool {
        *self.0.entry(source).or_insert_with(|| {
            let sql = format!(
                "SELECT NOT EXISTS (SELECT 1 FROM {})
                    AND NOT EXISTS (SELECT 1 FROM pgtrickle_changes.resets WHERE source_relid = $1)",
                crate::cdc::buffer_name(source)
            );
            crate::pg::with_cached_plan(&sql, vec![source.into()], false, |rows| {
                Ok(rows
                    .first()
                    .get_one::<bool>()
                    .ok()
                    .flatten()
                    .unwrap_or(false))
            })
            .unwrap_or(false)
        })
    }
}

/// Whether every stream table of the unit is maintained differentially and has no change to
/// apply: all its sources are quiet, or (when a buffer holds rows, possibly already applied)
/// its own window is empty.
fn nothing_to_do(unit: &[i64], picture: &Picture, quiet: &mut QuietSources) -> bool {
    unit.iter().all(|id| {
        let Some(table) = picture.tables.get(id) else {
            return true;
        };
        // never refreshed, or failed last time: the next refresh recomputes in full
        if !table.differential
            || table.state.last_refresh.is_none()
            || table.state.retry_at.is_some()
        {
            return false;
        }
        if table.captured.iter().all(|source| quiet.is_quiet(*source)) {
            return true;
        }
        let relid = pg_sys::Oid::from(table.relid);
        match crate::catalog::store::find_by_relid(relid) {
            Ok(Some(st)) => !crate::refresh::has_pending_changes(&st).unwrap_or(true),
            _ => false,
        }
    })
}

/// Whether another session holds or waits for a lock on this database that conflicts with a
/// connection's (DROP DATABASE, ALTER DATABASE RENAME, CREATE DATABASE ... TEMPLATE): such
/// commands wait a few seconds for other connections to go away, then fail.
fn database_wanted_elsewhere(database: pg_sys::Oid) -> bool {
    // SAFETY: a lock tag for the database object (as LockSharedObject builds it), tried
    // without waiting and released at once if granted.
    unsafe {
        let tag = pg_sys::LOCKTAG {
            locktag_field1: pg_sys::Oid::INVALID.to_u32(),
            locktag_field2: pg_sys::DatabaseRelationId.to_u32(),
            locktag_field3: database.to_u32(),
            locktag_field4: 0,
            locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
            locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
        };
        let mode = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
        #[cfg(not(feature = "pg18"))]
        let result =
            pg_sys::LockAcquireExtended(&tag, mode, false, true, true, std::ptr::null_mut());
        // PostgreSQL 18 added logLockFailure
        #[cfg(feature = "pg18")]
        let result =
            pg_sys::LockAcquireExtended(&tag, mode, false, true, true, std::ptr::null_mut(), false);
        if result == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
            return true;
        }
        pg_sys::LockRelease(&tag, mode, false);
        false
    }
}
