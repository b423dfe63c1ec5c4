//! DIFFERENTIAL refresh: find which sources changed since the frontier, build the delta of the
//! strategy's input with the core's rules (dropping the terms of unchanged sources), and apply
//! it with the strategy's statement, all under the pinned snapshot. With no change, only the
//! frontier moves.

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

/// Per captured source of `st`, in order: whether it has change rows after `previous`, and
/// whether it has a reset marker (truncation) after it.
fn pending_flags(
    snapshot: &PinnedSnapshot,
    st: &StreamTable,
    previous: &Frontier,
) -> PgtResult<Vec<bool>> {
    let window = frontier::window_parameterized();
    let checks: Vec<String> = st
        .captured_sources
        .iter()
        .flat_map(|relid| {
            let buffer = buffer_name(*relid);
            [
                format!("EXISTS (SELECT 1 FROM {buffer} b WHERE {window})"),
                format!(
                    "EXISTS (SELECT 1 FROM pgtrickle_changes.resets b WHERE b.source_relid = {} AND {window})",
                    relid.to_u32()
                ),
            ]
        })
        .collect();
    if checks.is_empty() {
        return Ok(Vec::new());
    }
    Ok(snapshot
        .query(
            &format!("SELECT {}", checks.join(", ")),
            &frontier::window_params(previous),
        )?
        .into_iter()
        .next()
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.as_deref() == Some("t"))
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
    Ok(pending_flags(&snapshot, st, previous)?
        .into_iter()
        .any(|f| f))
}

/// Refresh `st` differentially. The query is planned only when there is something to apply.
pub fn refresh(st: &StreamTable, started: Instant) -> PgtResult<Outcome> {
    let Some(previous) = st.frontier.clone() else {
        return full::refresh(
            st,
            Some(&super::planned(st)?),
            Some("first refresh".into()),
            started,
        );
    };
    if date_changed(&previous)? {
        return full::refresh(
            st,
            Some(&super::planned(st)?),
            Some(
                "the query reads CURRENT_DATE, and the date changed since the last refresh".into(),
            ),
            started,
        );
    }
    let relids = &st.captured_sources;
    let snapshot = PinnedSnapshot::take();
    let window = frontier::window_parameterized();
    let params = || frontier::window_params(&previous);
    let flags = pending_flags(&snapshot, st, &previous)?;
    if !flags.iter().any(|flag| *flag) {
        // nothing to apply: the frontier stays where it is, which remains exact
        frontier::record_noop(&snapshot, st, started)?;
        return Ok(Outcome::noop());
    }
    if flags.iter().skip(1).step_by(2).any(|reset| *reset) {
        drop(snapshot);
        return full::refresh(
            st,
            Some(&super::planned(st)?),
            Some("a source was truncated, or updated although declared append-only".into()),
            started,
        );
    }
    let changed_sources: Vec<pgrx::pg_sys::Oid> = relids
        .iter()
        .zip(flags.iter().step_by(2))
        .filter(|(_, changed)| **changed)
        .map(|(relid, _)| *relid)
        .collect();
    if st.settings.refresh_mode == RefreshMode::Auto {
        if let Some(reason) =
            super::auto::full_refresh_reason(&snapshot, &changed_sources, &window, &params)?
        {
            drop(snapshot);
            return full::refresh(st, Some(&super::planned(st)?), Some(reason), started);
        }
    }
    let changed_buffers: Vec<QualifiedName> = changed_sources
        .iter()
        .map(|relid| buffer_name(*relid))
        .collect();
    let plan = super::planned(st)?;
    let changed = |source: usize| {
        plan.sources
            .get(source)
            .is_some_and(|s| changed_buffers.contains(&s.buffer))
    };
    let Some(delta_body) = prune(&delta(&plan.body), &changed) else {
        let outcome = Outcome::noop();
        frontier::record(&snapshot, st, &outcome, started, plan.reads_current_date)?;
        return Ok(outcome);
    };
    let mut windowed = plan.clone();
    for source in &mut windowed.sources {
        source.window = window.clone();
    }
    // append-only sources: insertions alone need no look at stored rows, unless the buffers
    // hold deleted rows after all (captured for a dependant that is not append-only)
    let insertions = (st.settings.append_only && delta_body.only_adds())
        .then(|| windowed.apply_insertions(&delta_body))
        .flatten();
    let apply = match insertions {
        Some(apply) if !deletes_pending(&snapshot, &changed_buffers, &window, &params())? => apply,
        _ => windowed.apply(&delta_body),
    };
    let (deleted, updated, inserted) = match apply {
        Apply::Statement(sql) => {
            let _permit = RefreshWritePermit::acquire();
            counts(&snapshot.query(&sql, &params())?)
        }
        Apply::Upsert {
            upsert_sql,
            delete_sql,
            extremes_sql,
            key_count,
        } => {
            let _permit = RefreshWritePermit::acquire();
            let summary = snapshot.query(&upsert_sql, &params())?;
            let column = |i: usize| {
                summary
                    .first()
                    .and_then(|row| row.get(i).cloned().flatten())
            };
            let deleted = match (delete_sql, column(2)) {
                (Some(sql), Some(ids)) => snapshot.query(&sql, &[Param::new(ids)])?.len() as i64,
                _ => 0,
            };
            if let (Some(sql), true) = (extremes_sql, first_i64(&summary, 3) > 0) {
                // the groups whose MIN or MAX may have been deleted: recomputed
                let values = (0..key_count).map(|i| Param::new(column(4 + 2 * i)));
                let has_null =
                    (0..key_count).map(|i| Param::new(column(5 + 2 * i).as_deref() == Some("t")));
                snapshot.query(&sql, &values.chain(has_null).collect::<Vec<_>>())?;
            }
            (deleted, first_i64(&summary, 0), first_i64(&summary, 1))
        }
        Apply::TwoPhase {
            keys_sql,
            apply_sql,
            key_count,
        } => {
            let keys = snapshot.query(&keys_sql, &params())?;
            if keys.is_empty() {
                (0, 0, 0)
            } else {
                let _permit = RefreshWritePermit::acquire();
                counts(&snapshot.query(&apply_sql, &key_params(&keys, key_count))?)
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
    frontier::record(&snapshot, st, &outcome, started, plan.reads_current_date)?;
    Ok(outcome)
}
