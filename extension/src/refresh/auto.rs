//! AUTO mode inside a differential refresh: compare each changed source's pending change rows
//! with the source's size (the planner's row estimate) and say when a full refresh should run
//! instead. The rows the refresh already counted decide when they can; otherwise counting
//! stops at the limit, so the check costs at most that many rows.

use super::snapshot::{first_i64, Param, PinnedSnapshot};
use crate::cdc::buffer_name;
use crate::error::PgtResult;
use pg_trickle_core::auto_mode::{count_limit, counted_already, full_reason};
use pgrx::pg_sys;

/// Why the pending change is too large for a differential refresh, if it is. `changed`: each
/// changed source with its change rows as the refresh counted them, up to `known_cap`.
pub fn full_refresh_reason(
    snapshot: &PinnedSnapshot,
    changed: &[(pg_sys::Oid, i64)],
    known_cap: i64,
    window: &str,
    params: &dyn Fn() -> Vec<Param>,
) -> PgtResult<Option<String>> {
    let max_ratio = crate::config::differential_max_change_ratio();
    for (relid, known) in changed {
        // leaf partitions carry the estimates of a partitioned table; -1 means never analyzed
        let size = snapshot.query(
            "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname),
                        CASE WHEN c.relkind = 'p' THEN
                            (SELECT sum(l.reltuples) FILTER (WHERE l.reltuples >= 0)
                             FROM pg_catalog.pg_partition_tree(c.oid) t
                             JOIN pg_catalog.pg_class l ON l.oid = t.relid
                             WHERE t.isleaf)
                        WHEN c.reltuples >= 0 THEN c.reltuples END::float8
                 FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.oid = $1",
            &[Param::new(*relid)],
        )?;
        let row = size.into_iter().next().unwrap_or_default();
        let name = row.first().cloned().flatten().unwrap_or_default();
        let rows: Option<f64> = row.get(1).cloned().flatten().and_then(|v| v.parse().ok());
        let (Some(limit), Some(rows)) = (count_limit(rows, max_ratio), rows) else {
            continue;
        };
        let counted = match counted_already(*known, known_cap, limit) {
            Some(counted) => counted,
            None => first_i64(
                &snapshot.query(
                    &format!(
                        "SELECT count(*) FROM (SELECT 1 FROM {} b WHERE {window} LIMIT {limit}) x",
                        buffer_name(*relid)
                    ),
                    &params(),
                )?,
                0,
            ),
        };
        if let Some(reason) = full_reason(&name, counted, limit, rows, max_ratio) {
            return Ok(Some(reason));
        }
    }
    Ok(None)
}
