//! The extension's configuration parameters (GUCs), registered when the library is loaded.
//! Each is read where it is used through the accessor here, so its name appears once.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `pg_trickle.history_retention_hours`: refresh history rows older than this are removed
/// when their stream table is refreshed again; 0 keeps them forever.
static HISTORY_RETENTION_HOURS: GucSetting<i32> = GucSetting::<i32>::new(168);

/// `pg_trickle.differential_max_change_ratio`: AUTO refreshes in full when a source's pending
/// change rows exceed this fraction of its rows.
static DIFFERENTIAL_MAX_CHANGE_RATIO: GucSetting<f64> = GucSetting::<f64>::new(0.1);

/// Register every parameter; called from `_PG_init`.
pub fn register() {
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
