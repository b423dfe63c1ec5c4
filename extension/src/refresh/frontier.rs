//! Frontiers: which change rows a refresh consumes, and where the next one starts.
//!
//! A change row belongs to the window of a refresh when it is visible to the refresh's pinned
//! snapshot (MVCC does that part) and was not visible to the previous refresh: not visible in
//! the stored frontier snapshot (the frontier's own transaction excepted: a snapshot does not
//! list itself as in progress), and not one of the stored transaction's own rows already
//! applied (a refresh inside a transaction that also wrote to a source applies that
//! transaction's earlier rows; its later rows have a higher sequence number). A transaction
//! still open at the previous refresh is in the frontier's in-progress list, so its rows are
//! picked up once it commits: nothing is lost and nothing is applied twice.

use super::snapshot::{Param, PinnedSnapshot};
use crate::catalog::store::Frontier;
use crate::catalog::StreamTable;
use crate::cdc::buffer_name;
use crate::error::PgtResult;
use crate::pg::as_extension_owner;
use crate::refresh::Outcome;
use pgrx::pg_sys;
use std::time::Instant;

/// The window predicate with the frontier as parameters `$1` (snapshot, `pg_snapshot`), `$2`
/// (own transaction, `xid8`) and `$3` (own sequence number), see `window_params`. A
/// snapshot does not list its own transaction as in progress, so that transaction's rows are
/// judged by sequence number, not visibility. A row older than the snapshot's xmin is visible
/// in it, so it needs no separate bound; without one the planner estimates about half of the
/// buffer's rows to be in the window (two ninths with it). Written as AND and OR of an
/// operator with a fixed selectivity (`pg_visible_in_snapshot` as `pgtrickle.<@`, estimated
/// to keep nearly every row), the estimate was right, but every refresh took 0.03 to 0.05 ms
/// longer (alternated builds, no-change refreshes); with statistics on the buffer
/// (`cdc::give_statistics`) the plans of large changes hash the change rows either way.
pub fn window_parameterized() -> String {
    "NOT (CASE WHEN $2 IS NULL THEN pg_catalog.pg_visible_in_snapshot(b.__pgt_xid, $1) \
               WHEN b.__pgt_xid = $2 THEN b.__pgt_seq <= $3 \
               ELSE pg_catalog.pg_visible_in_snapshot(b.__pgt_xid, $1) END)"
        .to_string()
}

/// The values of `window_parameterized`'s parameters, typed: the statements use them without
/// conversion (as text, each cast was a sub-select, an InitPlan to start with every statement).
pub fn window_params(frontier: &Frontier) -> PgtResult<Vec<Param>> {
    Ok(vec![
        Param::from_text(pg_sys::PG_SNAPSHOTOID, Some(&frontier.snapshot))?,
        Param::from_text(pg_sys::XID8OID, frontier.own_xid.as_deref())?,
        Param::new(frontier.own_seq.unwrap_or(0)),
    ])
}

/// A change buffer of at least this size is emptied by `cdc::empty_consumed` (TRUNCATE where
/// it can) rather than by the DELETE of the record statement, whose dead rows every read of
/// the buffer would pass over until vacuum. Smaller buffers keep the DELETE: a TRUNCATE makes
/// every kept plan that reads the buffer be planned again.
const TRUNCATE_FROM_BYTES: i64 = 512 * 1024;

/// The history row of a refresh and the pruning of its stream table's old history, as CTEs
/// of a statement whose parameters are `$1` pgt_id, `$2` mode, `$3` reason, `$4` duration
/// (ms), `$5` retention (hours), `$6` inserted, `$7` updated, `$8` deleted. The pruning bound
/// is stable within the statement (not `clock_timestamp()`), so it is an index condition: the
/// cost does not grow with the history kept.
const HISTORY_CTES: &str = "
    pruned AS (DELETE FROM pgtrickle.pgt_refresh_history
               WHERE pgt_id = $1 AND $5 > 0
                 AND finished_at < pg_catalog.statement_timestamp() - $5 * interval '1 hour'),
    history AS (INSERT INTO pgtrickle.pgt_refresh_history
                    (pgt_id, started_at, finished_at, duration_ms, refresh_mode, reason,
                     rows_inserted, rows_updated, rows_deleted)
                VALUES ($1, pg_catalog.clock_timestamp() - $4 * interval '1 millisecond',
                        pg_catalog.clock_timestamp(), $4, $2, $3, $6, $7, $8))";

/// The parameters `HISTORY_CTES` and the catalog update share.
fn history_params(st: &StreamTable, outcome: &Outcome, started: Instant) -> Vec<Param> {
    vec![
        Param::new(st.pgt_id),
        Param::new(outcome.mode.to_string()),
        Param::new(outcome.reason.clone()),
        Param::new(started.elapsed().as_secs_f64() * 1000.0),
        Param::new(crate::config::history_retention_hours()),
        Param::new(outcome.inserted),
        Param::new(outcome.updated),
        Param::new(outcome.deleted),
    ]
}

/// The other dependants of source `relid` (than stream table `pgt_id`, SQL), as one row:
/// whether one was never refreshed (it keeps everything), and the oldest of their frontiers.
fn other_frontiers(relid: pg_sys::Oid, pgt_id: &str) -> String {
    format!(
        "SELECT bool_or(s.frontier IS NULL) AS unrefreshed,
                min(LEAST(pg_catalog.pg_snapshot_xmin(s.frontier), s.frontier_own_xid)) AS lowest
         FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
         WHERE d.source_relid = {} AND d.columns IS NOT NULL AND s.pgt_id <> {pgt_id}",
        relid.to_u32()
    )
}

/// Per captured source of `st`, SQL that is true when a refresh of `st` may make change rows
/// (or reset markers) of the source deletable: `st` is its only dependant, or its previous
/// frontier (`$1` snapshot, `$2` own transaction, as in `window_params`) was the oldest and
/// some rows are older than every other dependant's frontier. Otherwise `record` leaves the
/// source's cleanup out, which is most of its cost: where several stream tables read a source
/// and are refreshed one after the other, only the last of them finds rows every one has
/// consumed, and a refresh that does not move the oldest frontier reads no buffer for it.
pub fn cleanup_checks(st: &StreamTable) -> Vec<String> {
    st.captured_sources
        .iter()
        .map(|relid| {
            format!(
                "(SELECT o.unrefreshed IS NOT TRUE
                         AND (o.lowest IS NULL
                              OR LEAST(pg_catalog.pg_snapshot_xmin($1), $2) <= o.lowest
                                 AND (EXISTS (SELECT 1 FROM {buffer} b WHERE b.__pgt_xid < o.lowest)
                                      OR EXISTS (SELECT 1 FROM pgtrickle_changes.resets b
                                                 WHERE b.source_relid = {oid} AND b.__pgt_xid < o.lowest)))
                  FROM ({others}) o)",
                buffer = buffer_name(*relid),
                oid = relid.to_u32(),
                others = other_frontiers(*relid, &st.pgt_id.to_string())
            )
        })
        .collect()
}

/// Record the refresh in the catalog (status, mode, reason, when it last changed rows, and as
/// new frontier the pinned snapshot with this transaction's own change rows so far), append
/// its history row, and delete the change rows every dependant has now consumed from the
/// sources in `clean` (see `cleanup_checks`): one statement under the pinned snapshot. The
/// deletion bound is the oldest of the other dependants' frontiers and the one being
/// recorded; a dependant not yet refreshed keeps everything; a refresh whose previous
/// frontier was not the oldest deletes nothing (the bound did not move). With
/// `reads_current_date` (the maintenance plan's), CURRENT_DATE is recorded too, else NULL.
pub fn record(
    snapshot: &PinnedSnapshot,
    st: &StreamTable,
    outcome: &Outcome,
    started: Instant,
    reads_current_date: bool,
    clean: &[pg_sys::Oid],
) -> PgtResult<()> {
    let own = "pg_catalog.pg_current_xact_id_if_assigned()";
    // Change rows (and reset markers) take their sequence numbers from one sequence, and one
    // backend's values only grow: a fresh value is above every row this transaction has
    // written so far and below every row it writes later, without reading any buffer.
    let seq = format!(
        "CASE WHEN {own} IS NULL THEN NULL ELSE pg_catalog.nextval('pgtrickle_changes.change_seq') END"
    );
    // Only a refresh that moves the oldest frontier of a source's dependants can make change
    // rows deletable: the others skip the deletion (its scan of the buffer). `moved` holds
    // when the previous frontier ($10 snapshot, $11 own transaction; NULL before the first
    // refresh) was not above any other dependant's.
    let previous_lower =
        "(SELECT LEAST(pg_catalog.pg_snapshot_xmin($10::pg_catalog.pg_snapshot), $11::pg_catalog.xid8))";
    let cleaned: Vec<pg_sys::Oid> = st
        .captured_sources
        .iter()
        .copied()
        .filter(|relid| clean.contains(relid))
        .collect();
    let cleanups: String = cleaned
        .iter()
        .enumerate()
        .map(|(i, relid)| {
            // the other dependants' frontiers, read once
            format!(
                ",\nothers{i} AS ({others}),
                 bound{i} AS (SELECT CASE WHEN o.unrefreshed THEN NULL
                     ELSE LEAST(o.lowest,
                                (SELECT LEAST(pg_catalog.pg_snapshot_xmin(r.frontier), r.frontier_own_xid) FROM rec r))
                     END AS xid,
                     o.moved,
                     -- the size only where it decides something (it is a system call)
                     CASE WHEN o.moved
                          THEN pg_catalog.pg_relation_size('{buffer}'::pg_catalog.regclass) >= {TRUNCATE_FROM_BYTES}
                          ELSE false END AS large
                   FROM (SELECT o.*, COALESCE({previous_lower} <= o.lowest, true) AS moved
                         FROM others{i} o) o),
                 clean{i} AS (DELETE FROM {buffer} b
                              WHERE (SELECT moved AND NOT large FROM bound{i})
                                AND b.__pgt_xid < (SELECT xid FROM bound{i})),
                 resets{i} AS (DELETE FROM pgtrickle_changes.resets b
                               WHERE (SELECT moved FROM bound{i}) AND b.source_relid = {oid}
                                 AND b.__pgt_xid < (SELECT xid FROM bound{i}))",
                buffer = buffer_name(*relid),
                oid = relid.to_u32(),
                others = other_frontiers(*relid, "$1")
            )
        })
        .collect();
    // per source, the deletion bound when the buffer is large and left to `empty_consumed`
    let large_bounds: String = (0..cleaned.len())
        .map(|i| format!(", (SELECT CASE WHEN moved AND large THEN xid::text END FROM bound{i})"))
        .collect();
    let sql = format!(
        "WITH rec AS (UPDATE pgtrickle.pgt_stream_tables
             SET status = 'ACTIVE', last_error_message = NULL, last_error_at = NULL,
                 consecutive_failures = 0,
                 last_refresh_mode = $2, last_refresh_reason = $3,
                 last_changed_at = CASE WHEN $6 + $7 + $8 > 0 THEN pg_catalog.clock_timestamp()
                                        ELSE last_changed_at END,
                 frontier = pg_catalog.pg_current_snapshot(), frontier_own_xid = {own},
                 frontier_own_seq = {seq},
                 frontier_lsn = CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
                                     ELSE pg_catalog.pg_current_wal_insert_lsn() END,
                 frontier_at = pg_catalog.statement_timestamp(),
                 frontier_date = CASE WHEN $9 THEN CURRENT_DATE END,
                 last_refreshed_at = pg_catalog.clock_timestamp()
             WHERE pgt_id = $1 RETURNING frontier, frontier_own_xid),{HISTORY_CTES}{cleanups}
         SELECT (SELECT count(*) FROM rec){large_bounds}"
    );
    let mut params = history_params(st, outcome, started);
    params.push(Param::new(reads_current_date));
    params.push(Param::new(st.frontier.as_ref().map(|f| f.snapshot.clone())));
    params.push(Param::new(
        st.frontier.as_ref().and_then(|f| f.own_xid.clone()),
    ));
    as_extension_owner(|| {
        let row = snapshot
            .query(&sql, &params)?
            .into_iter()
            .next()
            .unwrap_or_default();
        for (relid, bound) in cleaned.iter().zip(row.into_iter().skip(1)) {
            if let Some(bound) = bound {
                crate::cdc::empty_consumed(*relid, &bound, snapshot.standalone())?;
            }
        }
        Ok(())
    })
}

/// Record a refresh that found nothing to apply, with its history row. The frontier stays
/// where it is, which remains exact: every change after it is still ahead.
pub fn record_noop(snapshot: &PinnedSnapshot, st: &StreamTable, started: Instant) -> PgtResult<()> {
    let sql = format!(
        "WITH rec AS (UPDATE pgtrickle.pgt_stream_tables
             SET status = 'ACTIVE', last_error_message = NULL, last_error_at = NULL,
                 consecutive_failures = 0,
                 last_refresh_mode = $2, last_refresh_reason = $3,
                 last_refreshed_at = pg_catalog.clock_timestamp()
             WHERE pgt_id = $1 RETURNING 1),{HISTORY_CTES}
         SELECT count(*) FROM rec"
    );
    let params = history_params(st, &Outcome::noop(), started);
    as_extension_owner(|| snapshot.query(&sql, &params).map(|_| ()))
}
