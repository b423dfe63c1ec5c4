//! A refresh worker: refreshes one stream table, or one atomic group in dependency order, in a
//! single transaction, then exits. When the transaction fails, nothing of it is applied and a
//! second transaction records the failure on every stream table of the unit (status ERROR, or
//! SUSPENDED after `pg_trickle.max_consecutive_failures`; message, time, FAILED history row).

use super::process::{in_transaction, install_signal_handlers};
use crate::error::OrRaise;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;
use std::sync::atomic::{AtomicI64, Ordering};

/// The stream table being refreshed, so that a failure can name it.
static CURRENT: AtomicI64 = AtomicI64::new(0);

/// The function name the scheduler registers refresh workers with.
pub const ENTRY: &str = "pg_trickle_refresh_worker_main";

/// The most bytes of stream table ids a worker can be handed (the rest of PostgreSQL's 128-byte
/// `bgw_extra` is kept free); a larger unit is refreshed by the scheduler itself.
pub const MAX_EXTRA: usize = 120;

/// `ids` as the worker's `bgw_extra`, when they fit.
pub fn encode(ids: &[i64]) -> Option<String> {
    let text = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    (text.len() <= MAX_EXTRA).then_some(text)
}

fn decode(text: &str) -> Vec<i64> {
    text.split(',').filter_map(|id| id.parse().ok()).collect()
}

/// Entry point of a refresh worker: the database OID is the argument, the stream table ids the
/// extra data.
#[pgrx::pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_trickle_refresh_worker_main(argument: pg_sys::Datum) {
    install_signal_handlers();
    let database = pg_sys::Oid::from(argument.value() as u32);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    let ids = decode(BackgroundWorker::get_extra());
    run_unit(&ids);
}

/// Refresh the stream tables `ids` (in this order) in one transaction; on failure record it.
/// Called outside any transaction.
pub fn run_unit(ids: &[i64]) {
    let started = std::time::Instant::now();
    let owned = ids.to_vec();
    let outcome = in_transaction(move || {
        let refresh_all = || {
            for id in &owned {
                CURRENT.store(*id, Ordering::SeqCst);
                refresh_one(*id).or_raise();
            }
        };
        if owned.len() > 1 {
            // an atomic group: every member as of the same moment
            crate::refresh::with_shared_snapshot(refresh_all);
        } else {
            refresh_all();
        }
    });
    report_idle();
    let Err(message) = outcome else {
        return;
    };
    pgrx::warning!("pg_trickle: scheduled refresh of stream tables {ids:?} failed: {message}");
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let owned = ids.to_vec();
    let failing = CURRENT.load(Ordering::SeqCst);
    let recorded = in_transaction(move || {
        crate::catalog::store::record_failure(
            &owned,
            failing,
            &message,
            duration_ms,
            crate::config::max_consecutive_failures(),
        )
        .or_raise()
    });
    match recorded {
        Ok(suspended) if !suspended.is_empty() => pgrx::log!(
            "pg_trickle: stream tables {suspended:?} suspended after repeated refresh failures"
        ),
        Ok(_) => {}
        Err(why) => pgrx::warning!("pg_trickle: could not record a refresh failure: {why}"),
    }
}

/// Show this backend as idle in `pg_stat_activity` again.
fn report_idle() {
    // SAFETY: reports this backend's state; NULL keeps no query text.
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null()) };
}

/// Refresh stream table `id` if it still exists, showing which in `pg_stat_activity`.
fn refresh_one(id: i64) -> crate::error::PgtResult<()> {
    let Some(st) = crate::catalog::store::lock_id_for_refresh(id)? else {
        return Ok(());
    };
    let activity = std::ffi::CString::new(format!("pg_trickle refresh of stream table {id}"))
        .unwrap_or_default();
    // SAFETY: reports this backend's current activity; the string is copied.
    unsafe {
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, activity.as_ptr())
    };
    crate::refresh::refresh_locked(&st).map(|_| ())
}
