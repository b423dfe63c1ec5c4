//! Plumbing shared by the launcher, the schedulers and the refresh workers: signal handlers,
//! waiting on the latch, starting a background worker and watching it, and running a
//! transaction that reports its error instead of ending the process.

use pgrx::bgworkers::BackgroundWorkerBuilder;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;
use std::time::Duration;

extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler for backends (`tcop/postgres.c`), raw.
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
    /// PostgreSQL's SIGHUP handler for auxiliary processes (`postmaster/interrupt.c`), raw.
    #[link_name = "SignalHandlerForConfigReload"]
    fn postgres_reload_config(signal: std::ffi::c_int);
}

/// SIGTERM ends the process at the next interrupt check, also in the middle of a query (the
/// transaction is aborted); SIGHUP rereads the configuration at the next wait.
pub fn install_signal_handlers() {
    // SAFETY: installing PostgreSQL's own handlers before unblocking signals, as every
    // background worker does at start.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        {
            pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die));
            pg_sys::pqsignal(pg_sys::SIGHUP as i32, Some(postgres_reload_config));
        }
        #[cfg(feature = "pg18")]
        {
            pg_sys::pqsignal_be(pg_sys::SIGTERM as i32, Some(postgres_die));
            pg_sys::pqsignal_be(pg_sys::SIGHUP as i32, Some(postgres_reload_config));
        }
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// Sleep until `timeout` passes or the latch is set (another process woke us, a worker we
/// started came or went), leave at once when the postmaster dies, handle a pending SIGTERM,
/// and reread the configuration after a SIGHUP.
pub fn wait(timeout: Duration) {
    let millis = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    // SAFETY: the standard latch wait of a background worker; WL_EXIT_ON_PM_DEATH exits the
    // process if the postmaster is gone.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            millis,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pgrx::check_for_interrupts!();
    reload_config_if_asked();
}

/// Reread the configuration files if a SIGHUP arrived.
pub fn reload_config_if_asked() {
    // SAFETY: the flag is set by the SIGHUP handler; ProcessConfigFile runs outside any
    // transaction, as in every background worker's main loop.
    unsafe {
        if pg_sys::ConfigReloadPending != 0 {
            pg_sys::ConfigReloadPending = 0;
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
    }
}

/// End this process normally: the postmaster does not restart it.
pub fn exit_quietly() -> ! {
    // SAFETY: proc_exit runs the exit callbacks and never returns.
    unsafe { pg_sys::proc_exit(0) };
    // PostgreSQL 18's bindings do not mark proc_exit as diverging
    #[cfg(feature = "pg18")]
    unreachable!("proc_exit returned")
}

/// A background worker this process started, watched through its handle.
pub struct Worker {
    handle: *mut pg_sys::BackgroundWorkerHandle,
}

impl Worker {
    /// Start a dynamic background worker running `function` of this library. The postmaster
    /// sets our latch when it starts and when it stops. `None` when no worker slot is free.
    pub fn start(
        name: &str,
        kind: &str,
        function: &str,
        argument: pg_sys::Datum,
        extra: &str,
    ) -> Option<Worker> {
        // SAFETY: reading this process's id.
        let my_pid = unsafe { pg_sys::MyProcPid };
        let builder = BackgroundWorkerBuilder::new(name)
            .set_type(kind)
            .set_library("pg_trickle")
            .set_function(function)
            .set_argument(Some(argument))
            .set_extra(extra)
            .enable_spi_access()
            .set_start_time(pgrx::bgworkers::BgWorkerStartTime::RecoveryFinished)
            .set_notify_pid(my_pid);
        let mut worker: pg_sys::BackgroundWorker = (&builder).into();
        let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
        // SAFETY: the handle is allocated in TopMemoryContext so that it outlives transactions;
        // it is freed in Drop.
        let registered = unsafe {
            let previous = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
            let ok = pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut handle);
            pg_sys::MemoryContextSwitchTo(previous);
            ok
        };
        (registered && !handle.is_null()).then(|| Worker { handle })
    }

    /// Ask the postmaster to stop the worker (SIGTERM: its transaction rolls back).
    pub fn terminate(&self) {
        // SAFETY: the handle came from RegisterDynamicBackgroundWorker and is still allocated.
        unsafe { pg_sys::TerminateBackgroundWorker(self.handle) };
    }

    /// Whether the worker has stopped (or never could start).
    pub fn stopped(&self) -> bool {
        let mut pid: pg_sys::pid_t = 0;
        // SAFETY: the handle came from RegisterDynamicBackgroundWorker and is still allocated.
        let status = unsafe { pg_sys::GetBackgroundWorkerPid(self.handle, &mut pid) };
        status == pg_sys::BgwHandleStatus::BGWH_STOPPED
            || status == pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.handle.is_null() {
            return;
        }
        // SAFETY: the handle was palloc'd in TopMemoryContext by RegisterDynamicBackgroundWorker
        // and is not used after this.
        unsafe { pg_sys::pfree(self.handle.cast()) };
    }
}

/// Run `body` in a transaction of its own. An error aborts the transaction and comes back as
/// its message, so that the caller can record it; the process goes on.
pub fn in_transaction<R>(body: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    // SAFETY: the standard way a background worker starts a transaction and gives it a
    // snapshot; the matching end is below, for success and for failure.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        // whatever default_transaction_isolation / _read_only say: refreshes wait for each
        // other on row locks and write, which READ COMMITTED read-write allows
        pg_sys::XactIsoLevel = pg_sys::XACT_READ_COMMITTED as i32;
        pg_sys::XactReadOnly = false;
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let result = PgTryBuilder::new(move || {
        let value = body();
        // SAFETY: ends the transaction started above; an error in commit is caught below.
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(value)
    })
    .catch_others(|caught| Err(message_of(&caught)))
    .execute();
    if result.is_err() {
        // SAFETY: the error was copied and flushed by the catch; aborting releases the
        // transaction's locks, snapshots and SPI state.
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    result
}

fn message_of(caught: &CaughtError) -> String {
    match caught {
        CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
            report.message().to_string()
        }
        CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
    }
}

/// Run `body` in a subtransaction of the current transaction; if it raises an error, the
/// subtransaction rolls back and `fallback` is returned instead, so that one stream table's
/// problem does not abort a whole scheduler cycle.
pub fn in_subtransaction<R>(fallback: R, body: impl FnOnce() -> R + std::panic::UnwindSafe) -> R {
    crate::pg::try_in_subtransaction(body).unwrap_or(fallback)
}
