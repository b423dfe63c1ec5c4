//! DIFFERENTIAL refresh: find which sources changed since the frontier, build the delta of the
//! strategy's input with the core's rules (dropping the terms of unchanged sources), and apply
//! it with the strategy's statement, all under the pinned snapshot. With no change, a NOOP is
//! recorded and the frontier stays.

use super::snapshot::{first_i64, Param, PinnedSnapshot, Rows};
use super::{frontier, full, Outcome};
use crate::analyze::Lowered;
use crate::catalog::store::Frontier;
use crate::catalog::StreamTable;
use crate::cdc::buffer_name;
use crate::error::PgtResult;
use crate::guard::RefreshWritePermit;
use pg_trickle_core::dvm::{delta, prune};
use pg_trickle_core::maintain::shape::choose;
use pg_trickle_core::maintain::{Apply, StreamPlan};
use pg_trickle_core::options::RefreshMode;
use pg_trickle_core::sql::render::SourceSql;
use pg_trickle_core::sql::{Ident, QualifiedName};
use std::time::Instant;

/// The maintenance plan for a lowered query, or why none fits.
pub fn build_plan(
    schema: &str,
    name: &str,
    visible: &[String],
    canonical: &str,
    lowered: &Lowered,
) -> Result<StreamPlan, String> {
    let (body, strategy) = choose(&lowered.shape)?;
    let sources = lowered
        .sources
        .iter()
        .map(|s| SourceSql {
            relation: QualifiedName::new(&s.schema, &s.name),
            columns: s.columns.iter().map(Ident::new).collect(),
            buffer: buffer_name(s.relid),
            window: "false".into(),
            limit: None,
        })
        .collect();
    Ok(StreamPlan {
        table: QualifiedName::new(schema, name),
        visible: visible.iter().map(Ident::new).collect(),
        sources,
        body,
        strategy,
        canonical_sql: canonical.to_string(),
        reads_current_date: lowered.reads_current_date,
        lean_sums: false,
    })
}

/// (deleted, updated, inserted) from an apply statement's single row.
fn counts(rows: &Rows) -> (i64, i64, i64) {
    (first_i64(rows, 0), first_i64(rows, 1), first_i64(rows, 2))
}

/// The parameters of a two-phase apply: per key column the text[] of its values, then per key
/// column whether a NULL is among them.
fn key_params(keys: &Rows, key_count: usize) -> Vec<Param> {
    let values = (0..key_count).map(|i| {
        Param::new(
            keys.iter()
                .map(|row| row.get(i).cloned().flatten())
                .collect::<Vec<_>>(),
        )
    });
    let has_null = (0..key_count).map(|i| {
        Param::new(
            keys.iter()
                .any(|row| row.get(i).is_none_or(Option::is_none)),
        )
    });
    values.chain(has_null).collect()
}

/// A change of at least this many rows (counted over all sources of a stream table) is
/// applied with statements planned for it at each refresh: the kept plans were made for small
/// changes (index lookups per change row), where a large one is better served by hash joins.
const LARGE_CHANGE: i64 = 1000;

/// A large change to a stream table of at least this many rows per change row (as counted
/// up to `LARGE_CHANGE`) is taken to spread over its groups, one or two change rows each, and
/// its sums start from their first value (`StreamPlan::lean_sums`).
const GROUPS_PER_LARGE_CHANGE: f64 = 10.0;

/// The planner's estimate of `st`'s rows (0 before it was first analyzed).
fn stored_rows(st: &StreamTable) -> PgtResult<f64> {
    Ok(crate::pg::query_one::<f64>(
        "SELECT GREATEST(reltuples::float8, 0) FROM pg_catalog.pg_class WHERE oid = $1",
        &[st.relid.into()],
    )?
    .unwrap_or(0.0))
}

/// What one captured source has after the frontier.
#[derive(Debug, Clone, Copy)]
struct SourcePending {
    /// Its change rows, counted up to the limit `pending` was given.
    rows: i64,
    /// Whether it has a reset marker (a truncation) after the frontier.
    reset: bool,
    /// Whether the refresh may make some of its change rows deletable (asked with
    /// `cleanup`, else true): see `frontier::cleanup_checks`.
    cleanable: bool,
}

/// Per captured source of `st`, in order: its change rows after `previous` (counted up to
/// `count_limit`, so that 1 asks only whether there are any), whether it was reset, and with
/// `cleanup` whether a refresh may make change rows deletable.
fn pending(
    snapshot: &PinnedSnapshot,
    st: &StreamTable,
    previous: &Frontier,
    count_limit: i64,
    cleanup: bool,
) -> PgtResult<Vec<SourcePending>> {
    let window = frontier::window_parameterized();
    let cleanable = if cleanup {
        frontier::cleanup_checks(st)
    } else {
        vec!["true".to_string(); st.captured_sources.len()]
    };
    let checks: Vec<String> = st
        .captured_sources
        .iter()
        .zip(cleanable)
        .flat_map(|(relid, cleanable)| {
            let buffer = buffer_name(*relid);
            [
                format!(
                    "(SELECT count(*) FROM (SELECT 1 FROM {buffer} b WHERE {window} LIMIT {count_limit}) c)"
                ),
                format!(
                    "EXISTS (SELECT 1 FROM pgtrickle_changes.resets b WHERE b.source_relid = {} AND {window})",
                    relid.to_u32()
                ),
                cleanable,
            ]
        })
        .collect();
    if checks.is_empty() {
        return Ok(Vec::new());
    }
    let row = snapshot
        .query(
            &format!("SELECT {}", checks.join(", ")),
            &frontier::window_params(previous)?,
        )?
        .into_iter()
        .next()
        .unwrap_or_default();
    let is_true = |v: Option<&Option<String>>| v.is_some_and(|v| v.as_deref() == Some("t"));
    Ok(row
        .chunks(3)
        .map(|checks| SourcePending {
            rows: checks
                .first()
                .cloned()
                .flatten()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            reset: is_true(checks.get(1)),
            cleanable: is_true(checks.get(2)),
        })
        .collect())
}

/// Whether `st`'s query reads CURRENT_DATE (its refreshes record the date) and the date is not
/// the one of its last refresh: then its result may differ although no source changed, and
/// its delta rules do not hold.
fn date_changed(previous: &Frontier) -> PgtResult<bool> {
    let Some(date) = &previous.date else {
        return Ok(false);
    };
    Ok(crate::pg::query_one::<bool>(
        "SELECT $1::pg_catalog.date <> CURRENT_DATE",
        &[date.as_str().into()],
    )?
    .unwrap_or(true))
}

/// Whether the window of any of `buffers` holds a deleted row (of an UPDATE or DELETE that a
/// source's capture recorded for a dependant that is not append-only).
fn deletes_pending(
    snapshot: &PinnedSnapshot,
    buffers: &[QualifiedName],
    window: &str,
    params: &[Param],
) -> PgtResult<bool> {
    let checks: Vec<String> = buffers
        .iter()
        .map(|buffer| {
            format!("EXISTS (SELECT 1 FROM {buffer} b WHERE b.__pgt_weight < 0 AND {window})")
        })
        .collect();
    if checks.is_empty() {
        return Ok(false);
    }
    let rows = snapshot.query(&format!("SELECT {}", checks.join(" OR ")), params)?;
    Ok(rows
        .first()
        .and_then(|row| row.first().cloned().flatten())
        .as_deref()
        == Some("t"))
}

/// Whether a differential refresh of `st` would find anything to apply (always true before
/// its first refresh). Read-only; the scheduler asks before starting a worker.
pub fn has_pending_changes(st: &StreamTable) -> PgtResult<bool> {
    let Some(previous) = &st.frontier else {
        return Ok(true);
    };
    if date_changed(previous)? {
        return Ok(true);
    }
    let snapshot = PinnedSnapshot::take();
    Ok(pending(&snapshot, st, previous, 1, false)?
        .iter()
        .any(|source| source.rows > 0 || source.reset))
}

/// What the start of a differential refresh found.
pub enum Start {
    /// Finished: a NOOP was recorded, or a FULL refresh ran (first refresh, changed date,
    /// truncated source).
    Done(Outcome),
    /// Change rows to apply, with `apply`.
    Changes(Pending),
}

/// Change rows found after the frontier, under the snapshot the refresh runs under.
pub struct Pending {
    snapshot: PinnedSnapshot,
    previous: Frontier,
    /// Per captured source, in order.
    sources: Vec<SourcePending>,
}

/// Start a differential refresh of `st`: take its snapshot and look for change rows after the
/// frontier. What it may do besides (record a NOOP, or run a FULL refresh, which a data
/// exception would fail again) needs no fallback, so it runs outside the subtransaction that
/// guards `apply`.
pub fn start(st: &StreamTable, started: Instant) -> PgtResult<Start> {
    let Some(previous) = st.frontier.clone() else {
        return full::refresh(
            st,
            Some(&super::planned(st)?),
            Some("first refresh".into()),
            started,
        )
        .map(Start::Done);
    };
    if date_changed(&previous)? {
        return full::refresh(
            st,
            Some(&super::planned(st)?),
            Some(
                "the query reads CURRENT_DATE, and the date changed since the last refresh".into(),
            ),
            started,
        )
        .map(Start::Done);
    }
    let snapshot = PinnedSnapshot::take();
    let sources = pending(&snapshot, st, &previous, LARGE_CHANGE, true)?;
    if !sources.iter().any(|source| source.rows > 0 || source.reset) {
        // nothing to apply: the frontier stays where it is, which remains exact
        frontier::record_noop(&snapshot, st, started)?;
        return Ok(Start::Done(Outcome::noop()));
    }
    if sources.iter().any(|source| source.reset) {
        drop(snapshot);
        return full::refresh(
            st,
            Some(&super::planned(st)?),
            Some("a source was truncated, or updated although declared append-only".into()),
            started,
        )
        .map(Start::Done);
    }
    Ok(Start::Changes(Pending {
        snapshot,
        previous,
        sources,
    }))
}

/// Apply the change rows `start` found. The query is planned only here, when there is
/// something to apply.
pub fn apply(st: &StreamTable, pending: &Pending, started: Instant) -> PgtResult<Outcome> {
    let Pending {
        snapshot,
        previous,
        sources,
    } = pending;
    let relids = &st.captured_sources;
    let window = frontier::window_parameterized();
    let window_values = frontier::window_params(previous)?;
    let params = || window_values.clone();
    let changed: Vec<(pgrx::pg_sys::Oid, i64)> = relids
        .iter()
        .zip(sources)
        .filter(|(_, source)| source.rows > 0)
        .map(|(relid, source)| (*relid, source.rows))
        .collect();
    // the kept (generic) plans fit small changes; a large one is planned for its size
    let large = sources.iter().map(|source| source.rows).sum::<i64>() >= LARGE_CHANGE;
    if large {
        pgrx::debug2!(
            "pg_trickle: {} change rows or more, statements planned for their number",
            LARGE_CHANGE
        );
    }
    // planned and run without merge joins: a change buffer's statistics describe an earlier
    // change, and from its histogram of key values the planner expected a merge join with an
    // index of the other table to stop early (a 100-row change read 99,311 of 100,000
    // customers: 21 ms for the statement, 1.4 ms when it looks the 100 up)
    let run = |sql: &str, params: &[Param]| {
        crate::pg::with_settings(&[("enable_mergejoin", "off")], || {
            if large {
                snapshot.query_replanned(sql, params)
            } else {
                snapshot.query(sql, params)
            }
        })
    };
    if st.settings.refresh_mode == RefreshMode::Auto {
        if let Some(reason) =
            super::auto::full_refresh_reason(snapshot, &changed, LARGE_CHANGE, &window, &params)?
        {
            return full::refresh(st, Some(&super::planned(st)?), Some(reason), started);
        }
    }
    if large {
        for (relid, _) in &changed {
            crate::cdc::give_statistics(*relid)?;
        }
    }
    let changed_buffers: Vec<QualifiedName> = changed
        .iter()
        .map(|(relid, _)| buffer_name(*relid))
        .collect();
    let plan = super::planned(st)?;
    let changed = |source: usize| {
        plan.sources
            .get(source)
            .is_some_and(|s| changed_buffers.contains(&s.buffer))
    };
    let clean: Vec<pgrx::pg_sys::Oid> = relids
        .iter()
        .zip(sources)
        .filter(|(_, source)| source.cleanable)
        .map(|(relid, _)| *relid)
        .collect();
    let record = |outcome: Outcome| {
        frontier::record(
            snapshot,
            st,
            &outcome,
            started,
            plan.reads_current_date,
            &clean,
        )
        .map(|()| outcome)
    };
    let Some(delta_body) = prune(&delta(&plan.body), &changed) else {
        return record(Outcome::noop());
    };
    // the change rows of each source; for the generic plans kept for small changes with a
    // LIMIT (`$4`) they never reach, for the plans' estimates (planned for a large change,
    // the LIMIT's value would be known and change nothing, and it hides the columns'
    // statistics from the estimates of groups)
    let mut windowed = plan.clone();
    for source in &mut windowed.sources {
        source.window = window.clone();
        source.limit = (!large).then(|| "$4".into());
    }
    windowed.lean_sums = large && stored_rows(st)? >= GROUPS_PER_LARGE_CHANGE * LARGE_CHANGE as f64;
    let apply_params = || {
        let mut params = params();
        params.push(Param::new(i64::MAX));
        params
    };
    // append-only sources: insertions alone need no look at stored rows, unless the buffers
    // hold deleted rows after all (captured for a dependant that is not append-only)
    let insertions = (st.settings.append_only && delta_body.only_adds())
        .then(|| windowed.apply_insertions(&delta_body))
        .flatten();
    let apply = match insertions {
        Some(apply) if !deletes_pending(snapshot, &changed_buffers, &window, &params())? => apply,
        _ => windowed.apply(&delta_body),
    };
    let (deleted, updated, inserted) = match apply {
        Apply::Statement(sql) => {
            let _permit = RefreshWritePermit::acquire();
            counts(&run(&sql, &apply_params())?)
        }
        Apply::Upsert {
            upsert_sql,
            delete_sql,
            extremes_sql,
            key_count,
        } => {
            let _permit = RefreshWritePermit::acquire();
            let summary = run(&upsert_sql, &apply_params())?;
            let column = |i: usize| {
                summary
                    .first()
                    .and_then(|row| row.get(i).cloned().flatten())
            };
            let deleted = match (delete_sql, column(2)) {
                (Some(sql), Some(ids)) => run(&sql, &[Param::new(ids)])?.len() as i64,
                _ => 0,
            };
            if let (Some(sql), true) = (extremes_sql, first_i64(&summary, 3) > 0) {
                // the groups whose MIN or MAX may have been deleted: recomputed
                let values = (0..key_count).map(|i| Param::new(column(4 + 2 * i)));
                let has_null =
                    (0..key_count).map(|i| Param::new(column(5 + 2 * i).as_deref() == Some("t")));
                run(&sql, &values.chain(has_null).collect::<Vec<_>>())?;
            }
            (deleted, first_i64(&summary, 0), first_i64(&summary, 1))
        }
        Apply::Merge { sql } => {
            let _permit = RefreshWritePermit::acquire();
            let (_, done) = super::merge_counts::counting(st.relid, || run(&sql, &apply_params()))?;
            (done.deleted, done.updated, done.inserted)
        }
        Apply::TwoPhase {
            keys_sql,
            apply_sql,
            key_count,
        } => {
            let keys = run(&keys_sql, &apply_params())?;
            if keys.is_empty() {
                (0, 0, 0)
            } else {
                let _permit = RefreshWritePermit::acquire();
                counts(&run(&apply_sql, &key_params(&keys, key_count))?)
            }
        }
    };
    let outcome = Outcome {
        mode: "DIFFERENTIAL",
        reason: None,
        deleted,
        updated,
        inserted,
    };
    record(outcome)
}
