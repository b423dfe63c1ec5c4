//! The scheduler's policy, without a server: from each stream table's schedule, tier, state
//! and last refresh, and the graph of stream tables reading stream tables, which stream tables
//! to refresh in this cycle and in which order. The background worker asks this module and
//! carries the answer out.
//!
//! Rules:
//! - An interval schedule is due when its interval, times the tier's factor (hot 1, warm 2,
//!   cold 10), has passed since the last refresh. A cron schedule is due when the expression
//!   fired (in UTC, to the minute) after the last refresh. Never refreshed means due.
//! - `calculated`: the stream table takes the tightest effective interval among its downstream
//!   dependants (times its own tier's factor); without dependants it uses the fallback
//!   interval. That interval applies when it reads tables other than stream tables. It is also
//!   due ([`Trigger::Upstream`]) when an upstream stream table applied a change after its own
//!   last refresh, and, ordered after them, when an upstream is due in the same cycle (the
//!   worker runs it once those finished and skips it when they applied nothing).
//! - Never scheduled: the frozen tier, `IMMEDIATE`, suspended stream tables, and failed ones
//!   before their retry time.
//! - Order: upstreams before downstreams; otherwise, with SLA scheduling, the stream table
//!   furthest past its target (overdue time divided by its interval) first, else by id.

use super::{CronTime, Schedule};
use crate::dag::Dag;
use crate::options::Tier;
use std::collections::{BTreeMap, BTreeSet};

/// What the policy needs to know about one stream table.
#[derive(Debug, Clone)]
pub struct TableState {
    pub id: i64,
    pub schedule: Schedule,
    pub tier: Tier,
    /// Unix time (milliseconds) of the last refresh, or of the last check that found nothing
    /// to do; `None` when never refreshed.
    pub last_refresh: Option<i64>,
    /// Unix time (milliseconds) of the last refresh that changed the stream table's contents.
    pub last_change: Option<i64>,
    /// Whether the query reads tables other than stream tables.
    pub reads_tables: bool,
    pub suspended: bool,
    /// After a failure: not retried before this unix time (milliseconds).
    pub retry_at: Option<i64>,
}

/// Scheduler-wide settings.
#[derive(Debug, Clone, Copy)]
pub struct PolicySettings {
    /// The interval of a `calculated` stream table that no dependant gives one.
    pub fallback_interval_seconds: u64,
    /// Most overdue first, instead of by id.
    pub sla_scheduling: bool,
}

/// Why a stream table is refreshed in this cycle.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// Its (effective) interval passed, or its cron expression fired, or it was never refreshed.
    Schedule,
    /// Only because these upstream stream tables are refreshed earlier in the cycle.
    Upstream(Vec<i64>),
}

/// One refresh to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub id: i64,
    pub trigger: Trigger,
    /// Seconds past the target (0 when not overdue or cron-driven).
    pub overdue_seconds: i64,
}

/// The refreshes of this cycle at unix time `now` (milliseconds), in the order to start them:
/// every action comes after the actions of its upstreams.
pub fn next_actions(
    now: i64,
    states: &[TableState],
    dag: &Dag<i64>,
    settings: PolicySettings,
) -> Vec<Action> {
    let by_id: BTreeMap<i64, &TableState> = states.iter().map(|s| (s.id, s)).collect();
    let intervals = effective_intervals(&by_id, dag, settings.fallback_interval_seconds);
    let Ok(order) = topological(dag, &by_id) else {
        return Vec::new();
    };
    let mut due: BTreeMap<i64, (Trigger, i64, f64)> = BTreeMap::new();
    for id in order {
        let Some(state) = by_id.get(&id) else {
            continue;
        };
        if !is_schedulable(state, now) {
            continue;
        }
        let interval = intervals.get(&id).copied().flatten();
        let (scheduled, overdue, lateness) = schedule_due(state, interval, now);
        if scheduled {
            due.insert(id, (Trigger::Schedule, overdue, lateness));
            continue;
        }
        if state.schedule == Schedule::Calculated {
            let changed_since = |u: &i64| {
                let upstream_change = by_id.get(u).and_then(|s| s.last_change);
                match (upstream_change, state.last_refresh) {
                    (Some(change), Some(last)) => change > last,
                    _ => false,
                }
            };
            let ups: Vec<i64> = dag
                .upstreams(id)
                .filter(|u| due.contains_key(u) || changed_since(u))
                .collect();
            if !ups.is_empty() {
                due.insert(id, (Trigger::Upstream(ups), 0, 0.0));
            }
        }
    }
    order_actions(dag, due, settings.sla_scheduling)
}

/// The earliest unix time (milliseconds) at which some stream table becomes due through its
/// own schedule, its retry time or never having been refreshed (`now` when one already is);
/// `None` when none ever will. A `calculated` stream table following its upstreams becomes due
/// when an upstream's refresh ends, which the scheduler learns from the refresh worker
/// stopping, so it is not counted here.
pub fn next_due(
    now: i64,
    states: &[TableState],
    dag: &Dag<i64>,
    settings: PolicySettings,
) -> Option<i64> {
    let by_id: BTreeMap<i64, &TableState> = states.iter().map(|s| (s.id, s)).collect();
    let intervals = effective_intervals(&by_id, dag, settings.fallback_interval_seconds);
    states
        .iter()
        .filter(|s| !s.suspended && s.tier.interval_multiplier().is_some())
        .filter_map(|s| {
            let own = match (&s.schedule, s.last_refresh) {
                (Schedule::Immediate, _) => None,
                (_, None) => Some(now),
                (Schedule::Cron(_), Some(_)) => Some((now.div_euclid(60_000) + 1) * 60_000),
                (Schedule::Calculated, Some(_)) if !s.reads_tables => None,
                (_, Some(last)) => intervals.get(&s.id).copied().flatten().map(|i| {
                    last.saturating_add(i64::try_from(i).unwrap_or(i64::MAX).saturating_mul(1000))
                }),
            }?;
            Some(own.max(s.retry_at.unwrap_or(i64::MIN)).max(now))
        })
        .min()
}

/// How long the scheduler waits before retrying a stream table whose last `failures` refreshes
/// in a row failed: 1 s, doubling with each failure, at most 5 minutes.
pub fn retry_delay_seconds(failures: u32) -> i64 {
    const MAX_DELAY: i64 = 300;
    match failures {
        0 => 0,
        n if n > 9 => MAX_DELAY,
        n => (1i64 << (n - 1)).min(MAX_DELAY),
    }
}

/// Whether the scheduler may refresh the stream table at `now` at all: not suspended, not
/// frozen, not IMMEDIATE, not waiting out a retry delay.
pub fn is_schedulable(state: &TableState, now: i64) -> bool {
    !state.suspended
        && state.tier.interval_multiplier().is_some()
        && state.schedule != Schedule::Immediate
        && state.retry_at.is_none_or(|at| at <= now)
}

/// Whether the stream table's own schedule makes it due, how many seconds past its target it
/// is, and that as a fraction of its interval.
fn schedule_due(state: &TableState, interval: Option<u64>, now: i64) -> (bool, i64, f64) {
    let Some(last) = state.last_refresh else {
        return (true, 0, 0.0);
    };
    match (&state.schedule, interval) {
        (Schedule::Cron(cron), _) => (
            cron_fired_since(cron, last.div_euclid(1000), now.div_euclid(1000)),
            0,
            0.0,
        ),
        (Schedule::Calculated, _) if !state.reads_tables => (false, 0, 0.0),
        (_, Some(interval)) => {
            let interval = i64::try_from(interval)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000);
            let overdue = now.saturating_sub(last).saturating_sub(interval);
            (
                overdue >= 0,
                overdue.div_euclid(1000),
                overdue as f64 / interval.max(1) as f64,
            )
        }
        _ => (false, 0, 0.0),
    }
}

/// Each stream table's interval in seconds, tier applied; `None` for cron, IMMEDIATE and
/// frozen. A `calculated` stream table takes the smallest among its dependants, recursively.
fn effective_intervals(
    by_id: &BTreeMap<i64, &TableState>,
    dag: &Dag<i64>,
    fallback: u64,
) -> BTreeMap<i64, Option<u64>> {
    let mut memo: BTreeMap<i64, Option<u64>> = BTreeMap::new();
    for id in by_id.keys() {
        interval_of(*id, by_id, dag, fallback, &mut memo, &mut BTreeSet::new());
    }
    memo
}

/// The effective interval of `id`, tier factor applied; a `calculated` upstream inherits the
/// smallest of its dependants' and applies its own factor on top.
fn interval_of(
    id: i64,
    by_id: &BTreeMap<i64, &TableState>,
    dag: &Dag<i64>,
    fallback: u64,
    memo: &mut BTreeMap<i64, Option<u64>>,
    visiting: &mut BTreeSet<i64>,
) -> Option<u64> {
    if let Some(known) = memo.get(&id) {
        return *known;
    }
    let state = by_id.get(&id)?;
    if !visiting.insert(id) {
        return None; // a cycle: refused at create time, ignored here
    }
    let factor = state.tier.interval_multiplier().map(u64::from);
    let base = match &state.schedule {
        Schedule::Every(secs) => Some(*secs),
        Schedule::Calculated => Some(
            dag.downstreams(id)
                .filter_map(|d| interval_of(d, by_id, dag, fallback, memo, visiting))
                .min()
                .unwrap_or(fallback),
        ),
        Schedule::Cron(_) | Schedule::Immediate => None,
    };
    visiting.remove(&id);
    let interval = base.zip(factor).map(|(b, f)| b.saturating_mul(f));
    memo.insert(id, interval);
    interval
}

/// The stream tables in dependency order (those the graph does not know at the end).
fn topological(dag: &Dag<i64>, by_id: &BTreeMap<i64, &TableState>) -> Result<Vec<i64>, ()> {
    let mut order = dag.topological_order().map_err(|_| ())?;
    let known: BTreeSet<i64> = order.iter().copied().collect();
    order.extend(by_id.keys().filter(|id| !known.contains(id)));
    Ok(order)
}

/// Kahn's algorithm over the due stream tables, picking among the ready ones by priority.
fn order_actions(
    dag: &Dag<i64>,
    due: BTreeMap<i64, (Trigger, i64, f64)>,
    sla: bool,
) -> Vec<Action> {
    let waits_for =
        |id: i64| -> usize { dag.upstreams(id).filter(|u| due.contains_key(u)).count() };
    let mut pending: BTreeMap<i64, usize> = due.keys().map(|id| (*id, waits_for(*id))).collect();
    let mut actions = Vec::with_capacity(due.len());
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .filter(|(_, waiting)| **waiting == 0)
            .map(|(id, _)| *id)
            .max_by(|a, b| {
                let lateness = |id: &i64| due.get(id).map_or(0.0, |d| d.2);
                let by_sla = if sla {
                    lateness(a).total_cmp(&lateness(b))
                } else {
                    std::cmp::Ordering::Equal
                };
                by_sla.then(b.cmp(a))
            });
        let Some(id) = ready else {
            break; // unreachable for an acyclic graph
        };
        pending.remove(&id);
        for d in dag.downstreams(id) {
            if let Some(waiting) = pending.get_mut(&d) {
                *waiting = waiting.saturating_sub(1);
            }
        }
        if let Some((trigger, overdue, _)) = due.get(&id) {
            actions.push(Action {
                id,
                trigger: trigger.clone(),
                overdue_seconds: *overdue,
            });
        }
    }
    actions
}

/// Whether `cron` fired in a minute after `last` and up to `now` (unix seconds, UTC).
pub fn cron_fired_since(cron: &super::CronSchedule, last: i64, now: i64) -> bool {
    // at most four years and a day of minutes: every expression fires within that
    const MAX_MINUTES: i64 = (4 * 366 + 1) * 24 * 60;
    let first = last.div_euclid(60) + 1;
    let latest = now.div_euclid(60);
    if latest - first >= MAX_MINUTES {
        return true;
    }
    (first..=latest).rev().any(|m| cron.matches(utc_minute(m)))
}

/// The UTC calendar minute `minute` minutes after the unix epoch.
pub fn utc_minute(minute: i64) -> CronTime {
    let days = minute.div_euclid(24 * 60);
    let in_day = minute.rem_euclid(24 * 60);
    // day and month from days since 0000-03-01 in 400-year eras (proleptic Gregorian)
    let z = days + 719_468;
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    CronTime {
        minute: (in_day % 60) as u32,
        hour: (in_day / 60) as u32,
        day_of_month: day as u32,
        month: month as u32,
        // 1970-01-01 was a Thursday (4)
        day_of_week: (days + 4).rem_euclid(7) as u32,
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
