//! Bringing a stream table up to date. Every refresh runs as the stream table's owner (with
//! PostgreSQL's security-restricted-operation rules), inside the caller's transaction, under
//! one pinned snapshot, and records its outcome and new frontier in the catalog.
//!
//! Which refresh runs: FULL for `refresh_mode => 'FULL'`, for queries the differential engine
//! cannot maintain (the reason is recorded), on the first refresh, and after a source was
//! truncated; in AUTO mode also when a source's pending change is large against its size
//! (`auto`), and after a failed scheduled refresh (the change buffers still hold what made it
//! fail); otherwise DIFFERENTIAL, which applies only the change since the frontier.

mod auto;
mod differential;
mod frontier;
mod full;
pub mod merge_counts;
mod snapshot;
mod sql_objects;

use crate::analyze::lower_query;
use crate::catalog::StreamTable;
use crate::error::PgtResult;
use crate::pg::as_role;
use pg_trickle_core::maintain::StreamPlan;
use pg_trickle_core::options::RefreshMode;
use pg_trickle_core::CoreError;

pub use differential::{build_plan, has_pending_changes};
pub use snapshot::with_shared_snapshot;

/// What a refresh did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub mode: &'static str,
    pub reason: Option<String>,
    pub deleted: i64,
    pub updated: i64,
    pub inserted: i64,
}

impl Outcome {
    /// A refresh that found nothing to apply.
    pub fn noop() -> Outcome {
        Outcome {
            mode: "NOOP",
            reason: None,
            deleted: 0,
            updated: 0,
            inserted: 0,
        }
    }
}

/// Refresh `st` now.
pub fn refresh(relid: pgrx::pg_sys::Oid) -> PgtResult<Outcome> {
    // Refreshes of one stream table serialize on its catalog row (readers of the stream table
    // are never blocked); the row is read under the lock, so a refresh that waited starts
    // from the frontier the other one left.
    let st = &crate::catalog::store::lock_for_refresh(relid)?.ok_or_else(|| {
        CoreError::internal(format!(
            "stream table {} is missing from the catalog",
            relid.to_u32()
        ))
    })?;
    refresh_locked(st)
}

/// Refresh `st`, whose catalog row this transaction has just read with the refresh lock.
/// Every refresh that returns is recorded in `pgtrickle.pgt_refresh_history` (by the same
/// statement that records its frontier).
pub fn refresh_locked(st: &StreamTable) -> PgtResult<Outcome> {
    let started = std::time::Instant::now();
    as_role(st.owner, true, || refresh_as_owner(st, started))
}

fn refresh_as_owner(st: &StreamTable, started: std::time::Instant) -> PgtResult<Outcome> {
    let reason = if st.settings.refresh_mode == RefreshMode::Full {
        Some("refresh mode FULL".to_string())
    } else if st.consecutive_failures > 0 && st.maintenance.is_some() {
        // the change buffers still hold whatever made it fail (a value a cast rejects, say),
        // even when the source no longer does: recompute from the sources as they are now
        Some("the previous refresh failed".to_string())
    } else if st.maintenance.is_none() {
        Some(
            st.differential_blocker
                .clone()
                .unwrap_or_else(|| "the query is not maintained differentially".into()),
        )
    } else {
        None
    };
    match (&st.maintenance, reason) {
        (Some(_), None) => differential_or_full(st, started),
        (Some(_), reason) => full::refresh(st, Some(&planned(st)?), reason, started),
        (None, reason) => full::refresh(st, None, reason, started),
    }
}

/// A differential refresh; if it fails on a value (a data exception, SQLSTATE class 22: a cast
/// or a division the defining query makes), it is undone and a FULL refresh runs instead. The
/// change buffers keep every row since the frontier, also those of a value that was fixed
/// since, so without this a differential refresh would fail again on it until an alter; a
/// FULL refresh reads the sources as they are now (and fails in turn if the value is still
/// there). Other errors (cancellation, lock timeouts, ...) are raised as they are.
fn differential_or_full(st: &StreamTable, started: std::time::Instant) -> PgtResult<Outcome> {
    use pgrx::pg_sys::panic::CaughtError;
    // finding nothing to apply needs no subtransaction
    let pending = match differential::start(st, started)? {
        differential::Start::Done(outcome) => return Ok(outcome),
        differential::Start::Changes(pending) => pending,
    };
    let attempt = crate::pg::try_in_subtransaction(std::panic::AssertUnwindSafe(|| {
        differential::apply(st, &pending, started)
    }));
    drop(pending);
    let caught = match attempt {
        Ok(result) => return result,
        Err(caught) => *caught,
    };
    match caught {
        CaughtError::PostgresError(report) if is_data_exception(&report) => full::refresh(
            st,
            Some(&planned(st)?),
            Some(format!(
                "the differential refresh failed: {}",
                report.message()
            )),
            started,
        ),
        other => other.rethrow(),
    }
}

/// Whether `report` is a data exception (SQLSTATE class 22).
fn is_data_exception(report: &pgrx::pg_sys::panic::ErrorReportWithLevel) -> bool {
    // a packed SQLSTATE keeps its first two characters, the class, in the low 12 bits
    let class = |code: pgrx::PgSqlErrorCode| (code as i32) & 0xFFF;
    class(report.sql_error_code()) == class(pgrx::PgSqlErrorCode::ERRCODE_DATA_EXCEPTION)
}

/// A cached plan: the defining query it was made from, the relations it depends on, the plan.
type CachedPlan = (String, Vec<pgrx::pg_sys::Oid>, StreamPlan);

thread_local! {
    /// Maintenance plans by stream table, with the defining query they were made from and the
    /// relations they depend on; dropped when any of those relations is invalidated.
    static PLANS: std::cell::RefCell<std::collections::HashMap<i64, CachedPlan>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Relcache invalidation callback (registered in `_PG_init`): forget the plans that involve
/// `relid` (all of them when `relid` is invalid, meaning every relation).
///
/// # Safety
/// Called by PostgreSQL's invalidation machinery with a valid (or invalid) OID.
pub unsafe extern "C-unwind" fn forget_plans(_arg: pgrx::pg_sys::Datum, relid: pgrx::pg_sys::Oid) {
    PLANS.with(|plans| {
        if let Ok(mut plans) = plans.try_borrow_mut() {
            if relid == pgrx::pg_sys::Oid::INVALID {
                plans.clear();
            } else {
                plans.retain(|_, (_, relids, _)| !relids.contains(&relid));
            }
        }
    });
}

/// The maintenance plan of a stream table created with one, from this backend's cache when
/// nothing it depends on changed.
pub(crate) fn planned(st: &StreamTable) -> PgtResult<StreamPlan> {
    let cached = PLANS.with(|plans| {
        plans
            .borrow()
            .get(&st.pgt_id)
            .filter(|(query, _, _)| *query == st.defining_query)
            .map(|(_, _, plan)| plan.clone())
    });
    if let Some(plan) = cached {
        return Ok(plan);
    }
    let plan = plan_from_catalog(st)?;
    let mut relids = st.captured_sources.clone();
    relids.push(st.relid);
    PLANS.with(|plans| {
        plans
            .borrow_mut()
            .insert(st.pgt_id, (st.defining_query.clone(), relids, plan.clone()))
    });
    Ok(plan)
}

/// The plan of `st` from its query, with the counts its table stores (a sum's count column
/// stays when its source column became NOT NULL after the table was made).
fn plan_from_catalog(st: &StreamTable) -> PgtResult<StreamPlan> {
    let mut plan = plan_from_query(st)?;
    plan.follow_stored_counts(&crate::api::definition::hidden_column_names(st.relid)?);
    Ok(plan)
}

/// The plan of `st` as its query and the sources' columns (NOT NULL or not) give it now.
pub(crate) fn plan_from_query(st: &StreamTable) -> PgtResult<StreamPlan> {
    match lower_query(&st.defining_query)? {
        Ok(lowered) => build_plan(
            &st.schema,
            &st.name,
            &st.column_names,
            &st.defining_query,
            &lowered,
        )
        .map_err(|reason| {
            CoreError::internal(format!(
                "the maintenance plan of {} no longer applies: {reason}",
                st.qualified_name()
            ))
        }),
        Err(blocker) if blocker.time_dependent => {
            Err(CoreError::internal("time-dependent query with a plan"))
        }
        Err(blocker) => Err(CoreError::internal(format!(
            "the maintenance plan of {} no longer applies: {}",
            st.qualified_name(),
            blocker.construct
        ))),
    }
}
