//! One cycle of a database's scheduler, inside one transaction: read the catalog, ask the
//! core's policy which stream tables are due, and pick the units (a stream table, or a whole
//! atomic group) to start now.
//!
//! Rules on top of the policy:
//! - A unit waits while one of its upstreams is being refreshed or starts in this cycle, and
//!   does not start while one of its dependants is being refreshed or starts in this cycle;
//!   a unit that had to wait goes first next time, so that a busy upstream cannot starve its
//!   dependants.
//! - A `calculated` stream table maintained differentially is also due whenever its change
//!   buffers hold changes it has not applied (this, not only the time of its upstreams' last
//!   change, decides: a change committed while it was being refreshed is not lost).
//! - Before a unit starts, the change buffers are looked at: with nothing to apply, the time is
//!   noted in memory (it counts as a refresh for the schedule) and no worker starts.
//! - An atomic group is refreshed whole, without members that are suspended, frozen or waiting
//!   out a retry delay.

use super::process::in_subtransaction;
use super::state::{self, Picture};
use crate::error::OrRaise;
use pg_trickle_core::schedule::policy::{is_schedulable, next_actions, next_due, PolicySettings};
use pg_trickle_core::schedule::Schedule;
use pgrx::pg_sys;
use std::collections::{BTreeSet, HashMap};

/// What a scheduler remembers between cycles.
#[derive(Default)]
pub struct Memory {
    /// Per stream table, when it was last found to have nothing to apply (unix ms).
    pub checked: HashMap<i64, i64>,
    /// Stream tables that had to wait for an upstream; they go first next time.
    pub deferred: BTreeSet<i64>,
}

/// What one cycle decided: the units to start now and when something is next due (unix
/// milliseconds), or to leave.
pub enum Cycle {
    Go(Vec<Vec<i64>>, Option<i64>),
    /// Leave; `idle` when the database has no work for a scheduler at all.
    Exit {
        why: &'static str,
        idle: bool,
    },
}

/// Plan one cycle at unix time `now` (ms), with the stream tables of `busy` being refreshed by
/// running workers and room for `free` more.
pub fn plan(
    database: pg_sys::Oid,
    busy: &BTreeSet<i64>,
    free: usize,
    now: i64,
    memory: &mut Memory,
) -> Cycle {
    if database_wanted_elsewhere(database) {
        return Cycle::Exit {
            why: "another session needs the database to itself",
            idle: false,
        };
    }
    // SAFETY: a catalog lookup inside the transaction; missing_ok returns InvalidOid.
    let installed = unsafe { pg_sys::get_extension_oid(c"pg_trickle".as_ptr(), true) };
    if installed == pg_sys::Oid::INVALID {
        return Cycle::Exit {
            why: "the extension is not installed",
            idle: true,
        };
    }
    let picture = state::read(&memory.checked).or_raise();
    if picture.tables.is_empty() {
        return Cycle::Exit {
            why: "no stream tables",
            idle: true,
        };
    }
    let settings = PolicySettings {
        fallback_interval_seconds: crate::config::calculated_interval_seconds(),
        sla_scheduling: crate::config::sla_scheduling(),
    };
    let states: Vec<_> = picture.tables.values().map(|t| t.state.clone()).collect();
    let mut quiet = QuietSources::default();
    let candidates = candidates(&picture, &states, settings, now, memory, &mut quiet);
    let mut units = Vec::new();
    let mut started: BTreeSet<i64> = busy.clone();
    for id in candidates {
        if units.len() >= free {
            break;
        }
        let unit = unit_of(id, &picture, now);
        if unit.is_empty() || unit.iter().any(|id| started.contains(id)) {
            continue;
        }
        if unit
            .iter()
            .any(|m| busy_outside(picture.dag.upstreams(*m), &started, &unit))
        {
            memory.deferred.extend(unit.iter().copied());
            continue;
        }
        if unit
            .iter()
            .any(|m| busy_outside(picture.dag.downstreams(*m), &started, &unit))
        {
            continue;
        }
        for id in &unit {
            memory.deferred.remove(id);
        }
        if nothing_to_do(&unit, &picture, &mut quiet) {
            for id in &unit {
                memory.checked.insert(*id, now);
            }
            continue;
        }
        started.extend(unit.iter().copied());
        units.push(unit);
    }
    // what is running or starting now wakes the scheduler when it ends
    let waiting: Vec<_> = states
        .into_iter()
        .filter(|s| !started.contains(&s.id))
        .map(|mut s| {
            if memory.checked.get(&s.id) == Some(&now) {
                s.last_refresh = Some(now);
            }
            s
        })
        .collect();
    Cycle::Go(units, next_due(now, &waiting, &picture.dag, settings))
}

/// Whether one of `ids`, outside `unit`, is being refreshed or starts in this cycle.
fn busy_outside(mut ids: impl Iterator<Item = i64>, started: &BTreeSet<i64>, unit: &[i64]) -> bool {
    ids.any(|id| started.contains(&id) && !unit.contains(&id))
}

/// The stream tables to consider, in order: those that waited for an upstream last time, then
/// the policy's due ones (upstreams first), then `calculated` ones with unapplied changes.
fn candidates(
    picture: &Picture,
    states: &[pg_trickle_core::schedule::policy::TableState],
    settings: PolicySettings,
    now: i64,
    memory: &Memory,
    quiet: &mut QuietSources,
) -> Vec<i64> {
    let due: Vec<i64> = next_actions(now, states, &picture.dag, settings)
        .into_iter()
        .map(|a| a.id)
        .collect();
    let mut order: Vec<i64> = due
        .iter()
        .copied()
        .filter(|id| memory.deferred.contains(id))
        .collect();
    order.extend(
        due.iter()
            .copied()
            .filter(|id| !memory.deferred.contains(id)),
    );
    let recently_checked = |id: i64| memory.checked.get(&id).is_some_and(|at| now - at < 1000);
    let topological = picture.dag.topological_order().unwrap_or_default();
    for id in topological {
        let Some(table) = picture.tables.get(&id) else {
            continue;
        };
        let follows = table.state.schedule == Schedule::Calculated
            && table.differential
            && table.state.last_refresh.is_some()
            && is_schedulable(&table.state, now)
            && !order.contains(&id)
            && !recently_checked(id)
            && !table.captured.iter().all(|s| quiet.is_quiet(*s));
        if follows {
            order.push(id);
        }
    }
    order
}

/// The schedulable members of `id`'s atomic group, or `id` alone.
fn unit_of(id: i64, picture: &Picture, now: i64) -> Vec<i64> {
    let group = picture
        .groups
        .iter()
        .find(|g| g.contains(&id))
        .cloned()
        .unwrap_or_else(|| vec![id]);
    group
        .into_iter()
        .filter(|m| {
            picture
                .tables
                .get(m)
                .is_some_and(|t| is_schedulable(&t.state, now))
        })
        .collect()
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
            // an error (a buffer dropped by hand, say) counts as "not quiet"
            in_subtransaction(false, || {
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
        // never refreshed, failed last time, or handed back after a suspension: the next
        // refresh recomputes in full
        if !table.differential
            || table.needs_full
            || table.state.last_refresh.is_none()
            || table.state.retry_at.is_some()
        {
            return false;
        }
        if table.captured.iter().all(|source| quiet.is_quiet(*source)) {
            return true;
        }
        let relid = pg_sys::Oid::from(table.relid);
        // an error counts as "something to do": the refresh worker then records it. A lock
        // wait gives up before the deadlock detector runs (deadlock_timeout, 1 s by default):
        // DDL such as DROP EXTENSION takes the catalog and the buffers in another order, and
        // the detector may otherwise fail the DDL rather than this check
        in_subtransaction(false, || {
            crate::pg::with_settings(&[("lock_timeout", "100ms")], || {
                match crate::catalog::store::find_by_relid(relid) {
                    Ok(Some(st)) => !crate::refresh::has_pending_changes(&st).unwrap_or(true),
                    _ => false,
                }
            })
        })
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
