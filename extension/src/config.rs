//! The extension's configuration parameters (GUCs), registered when the library is loaded.
//! Each is read where it is used through the accessor here, so its name appears once.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `pg_trickle.history_retention_hours`: refresh history rows older than this are removed
/// when their stream table is refreshed again; 0 keeps them forever.
static HISTORY_RETENTION_HOURS: GucSetting<i32> = GucSetting::<i32>::new(168);

/// `pg_trickle.differential_max_change_ratio`: AUTO refreshes in full when a source's pending
/// change rows exceed this fraction of its rows.
static DIFFERENTIAL_MAX_CHANGE_RATIO: GucSetting<f64> = GucSetting::<f64>::new(0.1);

/// `pg_trickle.enabled`: whether the background scheduler refreshes stream tables.
static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `pg_trickle.max_concurrent_refreshes`: refreshes one database's scheduler runs at once.
static MAX_CONCURRENT_REFRESHES: GucSetting<i32> = GucSetting::<i32>::new(4);

/// `pg_trickle.scheduler_interval_ms`: how often a scheduler looks for due stream tables.
static SCHEDULER_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(200);

/// `pg_trickle.sla_scheduling`: most overdue first when more are due than workers are free.
static SLA_SCHEDULING: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `pg_trickle.max_consecutive_failures`: failed scheduled refreshes in a row before a stream
/// table is suspended; 0 never suspends.
static MAX_CONSECUTIVE_FAILURES: GucSetting<i32> = GucSetting::<i32>::new(5);

/// `pg_trickle.calculated_interval_seconds`: the interval of a `calculated` stream table that
/// reads tables and has no dependant to take a schedule from.
static CALCULATED_INTERVAL_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(60);

/// Register every parameter; called from `_PG_init`.
pub fn register() {
    GucRegistry::define_bool_guc(
        c"pg_trickle.enabled",
        c"Whether the background scheduler refreshes stream tables.",
        c"Off pauses all scheduled refreshes in the cluster; manual refreshes still work.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.max_concurrent_refreshes",
        c"Refreshes the scheduler of one database runs at the same time.",
        c"Each runs in its own background worker; max_worker_processes must leave room for them.",
        &MAX_CONCURRENT_REFRESHES,
        1,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.scheduler_interval_ms",
        c"How often the scheduler looks for stream tables that are due.",
        c"A finished refresh wakes the scheduler at once.",
        &SCHEDULER_INTERVAL_MS,
        10,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"pg_trickle.sla_scheduling",
        c"Refresh the stream tables furthest past their schedule first.",
        c"Lateness is the time past the schedule divided by the schedule's interval.",
        &SLA_SCHEDULING,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.max_consecutive_failures",
        c"Failed scheduled refreshes in a row after which a stream table is suspended (0: never).",
        c"A suspended stream table is refreshed again after a manual refresh or an alter succeeds.",
        &MAX_CONSECUTIVE_FAILURES,
        0,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.calculated_interval_seconds",
        c"Interval of a 'calculated' stream table that reads tables and has no dependants.",
        c"A 'calculated' stream table with dependants takes the tightest of their schedules.",
        &CALCULATED_INTERVAL_SECONDS,
        1,
        365 * 24 * 3600,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_float_guc(
        c"pg_trickle.differential_max_change_ratio",
        c"AUTO refreshes in full when a source's pending change rows exceed this fraction of its rows.",
        c"Compared with the planner's row estimate of the source; sources never analyzed do not switch.",
        &DIFFERENTIAL_MAX_CHANGE_RATIO,
        0.0,
        1_000_000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_trickle.history_retention_hours",
        c"Hours of refresh history kept in pgtrickle.pgt_refresh_history (0 keeps it all).",
        c"Older rows of a stream table are removed when it is refreshed again.",
        &HISTORY_RETENTION_HOURS,
        0,
        24 * 365 * 100,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// The current value of `pg_trickle.history_retention_hours`.
pub fn history_retention_hours() -> i32 {
    HISTORY_RETENTION_HOURS.get()
}

/// The current value of `pg_trickle.differential_max_change_ratio`.
pub fn differential_max_change_ratio() -> f64 {
    DIFFERENTIAL_MAX_CHANGE_RATIO.get()
}

/// The current value of `pg_trickle.enabled`.
pub fn enabled() -> bool {
    ENABLED.get()
}

/// The current value of `pg_trickle.max_concurrent_refreshes`.
pub fn max_concurrent_refreshes() -> usize {
    usize::try_from(MAX_CONCURRENT_REFRESHES.get())
        .unwrap_or(1)
        .max(1)
}

/// The current value of `pg_trickle.scheduler_interval_ms`.
pub fn scheduler_interval() -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(SCHEDULER_INTERVAL_MS.get()).unwrap_or(200))
}

/// The current value of `pg_trickle.sla_scheduling`.
pub fn sla_scheduling() -> bool {
    SLA_SCHEDULING.get()
}

/// The current value of `pg_trickle.max_consecutive_failures`.
pub fn max_consecutive_failures() -> i32 {
    MAX_CONSECUTIVE_FAILURES.get()
}

/// The current value of `pg_trickle.calculated_interval_seconds`.
pub fn calculated_interval_seconds() -> u64 {
    u64::try_from(CALCULATED_INTERVAL_SECONDS.get()).unwrap_or(60)
}
