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

use super::snapshot::{PinnedSnapshot, Rows};
use crate::catalog::store::Frontier;
use crate::cdc::buffer_name;
use crate::error::PgtResult;
use pg_trickle_core::sql::quote_literal;
use pg_trickle_core::CoreError;
use pgrx::prelude::*;

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

/// The frontier this refresh reaches: its snapshot, and this transaction's own change rows in
/// the buffers of `sources` so far.
pub fn current(snapshot: &PinnedSnapshot, sources: &[pg_sys::Oid]) -> PgtResult<Frontier> {
    let own_seq: Vec<String> = sources
        .iter()
        .map(|s| {
            format!(
                "(SELECT max(b.__pgt_seq) FROM {} b WHERE b.__pgt_xid = pg_catalog.pg_current_xact_id_if_assigned())",
                buffer_name(*s)
            )
        })
        .collect();
    let seq = if own_seq.is_empty() {
        "NULL::bigint".to_string()
    } else {
        format!("GREATEST({})", own_seq.join(", "))
    };
    let rows: Rows = snapshot.query(
        &format!(
            "SELECT pg_catalog.pg_current_snapshot()::text, pg_catalog.pg_current_xact_id_if_assigned()::text, {seq}"
        ),
        &[],
    )?;
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| CoreError::internal("no snapshot row"))?;
    let mut cols = row.into_iter();
    let snapshot_text = cols
        .next()
        .flatten()
        .ok_or_else(|| CoreError::internal("no snapshot"))?;
    let own_xid = cols.next().flatten();
    // with no own rows yet, none of the transaction's later rows counts as applied
    let own_seq = own_xid.as_ref().map(|_| {
        cols.next()
            .flatten()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    });
    Ok(Frontier {
        snapshot: snapshot_text,
        own_xid,
        own_seq,
    })
}
