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
use crate::pg::{as_extension_owner, query_one};
use pg_trickle_core::sql::quote_literal;

/// SQL predicate over buffer alias `b`: the rows after `frontier`.
pub fn window(frontier: &Frontier) -> String {
    let snap = format!(
        "{}::pg_catalog.pg_snapshot",
        quote_literal(&frontier.snapshot)
    );
    match &frontier.own_xid {
        // A snapshot does not list its own transaction as in progress, so visibility alone
        // would count all of that transaction's rows as seen, even those written after.
        Some(xid) => {
            let xid = format!("{}::pg_catalog.xid8", quote_literal(xid));
            let seq = frontier.own_seq.unwrap_or(0);
            format!(
                "b.__pgt_xid >= LEAST(pg_catalog.pg_snapshot_xmin({snap}), {xid}) \
                 AND NOT ((b.__pgt_xid <> {xid} AND pg_catalog.pg_visible_in_snapshot(b.__pgt_xid, {snap})) \
                          OR (b.__pgt_xid = {xid} AND b.__pgt_seq <= {seq}))"
            )
        }
        None => format!(
            "b.__pgt_xid >= pg_catalog.pg_snapshot_xmin({snap}) \
             AND NOT pg_catalog.pg_visible_in_snapshot(b.__pgt_xid, {snap})"
        ),
    }
}

/// Record the refresh in the catalog (status, mode, reason, and as new frontier the pinned
/// snapshot with this transaction's own change rows so far), and delete the buffer rows every
/// dependant has consumed; one statement, under the pinned snapshot.
pub fn record(
    snapshot: &PinnedSnapshot,
    st: &StreamTable,
    mode: &str,
    reason: Option<&str>,
) -> PgtResult<()> {
    let own = "pg_catalog.pg_current_xact_id_if_assigned()";
    let own_seq: Vec<String> = st
        .captured_sources
        .iter()
        .map(|s| {
            format!(
                "(SELECT max(b.__pgt_seq) FROM {} b WHERE b.__pgt_xid = {own})",
                buffer_name(*s)
            )
        })
        .collect();
    // with no own rows yet, none of the transaction's later rows counts as applied
    let seq = if own_seq.is_empty() {
        "NULL::bigint".to_string()
    } else {
        format!(
            "CASE WHEN {own} IS NULL THEN NULL ELSE COALESCE(GREATEST({}), 0) END",
            own_seq.join(", ")
        )
    };
    let cleanups: Vec<String> = st
        .captured_sources
        .iter()
        .enumerate()
        .map(|(i, relid)| {
            format!(
                ",\nclean{i} AS (DELETE FROM {} b WHERE b.__pgt_xid < (
                     SELECT min(LEAST(pg_catalog.pg_snapshot_xmin(s.frontier), s.frontier_own_xid))
                     FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
                     WHERE d.source_relid = {} AND d.columns IS NOT NULL HAVING bool_and(s.frontier IS NOT NULL)))",
                buffer_name(*relid),
                relid.to_u32()
            )
        })
        .collect();
    let sql = format!(
        "WITH rec AS (UPDATE pgtrickle.pgt_stream_tables
             SET status = 'ACTIVE', last_error_message = NULL, last_error_at = NULL,
                 last_refresh_mode = $2, last_refresh_reason = $3,
                 frontier = pg_catalog.pg_current_snapshot(), frontier_own_xid = {own},
                 frontier_own_seq = {seq},
                 frontier_lsn = CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
                                     ELSE pg_catalog.pg_current_wal_insert_lsn() END,
                 frontier_at = pg_catalog.statement_timestamp(),
                 last_refreshed_at = pg_catalog.clock_timestamp()
             WHERE pgt_id = $1 RETURNING 1){}
         SELECT count(*) FROM rec",
        cleanups.concat()
    );
    let params = [
        Param::new(st.pgt_id),
        Param::new(mode.to_string()),
        Param::new(reason.map(str::to_string)),
    ];
    as_extension_owner(|| snapshot.query(&sql, &params).map(|_| ()))
}

/// Record a refresh that found nothing to apply, if that is still so: one statement. The
/// frontier stays where it is, which remains exact: every change after it is still ahead.
pub fn record_if_nothing_changed(st: &StreamTable, frontier: &Frontier) -> PgtResult<bool> {
    let window = window(frontier);
    let none: Vec<String> = st
        .captured_sources
        .iter()
        .map(|relid| {
            format!(
                "NOT EXISTS (SELECT 1 FROM {} b WHERE {window})",
                buffer_name(*relid)
            )
        })
        .collect();
    let condition = if none.is_empty() {
        "true".to_string()
    } else {
        none.join(" AND ")
    };
    let done = as_extension_owner(|| {
        query_one::<bool>(
            &format!(
                "UPDATE pgtrickle.pgt_stream_tables
                 SET status = 'ACTIVE', last_error_message = NULL, last_error_at = NULL,
                     last_refresh_mode = 'NOOP', last_refresh_reason = 'no changes',
                     last_refreshed_at = pg_catalog.clock_timestamp()
                 WHERE pgt_id = $1 AND {condition} RETURNING true"
            ),
            &[st.pgt_id.into()],
        )
    })?;
    Ok(done.unwrap_or(false))
}
