//! What a scheduler reads from the catalog each cycle, turned into the core policy's input:
//! every stream table's schedule, tier, status and times, the graph of stream tables reading
//! stream tables, and the atomic diamond groups.

use crate::error::{spi_error, PgtResult};
use pg_trickle_core::dag::Dag;
use pg_trickle_core::options::Tier;
use pg_trickle_core::schedule::groups::{atomic_groups, AtomicMember};
use pg_trickle_core::schedule::policy::{retry_delay_seconds, TableState};
use pg_trickle_core::schedule::Schedule;
use pgrx::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// One stream table as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub state: TableState,
    pub relid: u32,
    /// Whether a refresh would be differential, so that a cheap look at the change buffers
    /// tells whether there is anything to do.
    pub differential: bool,
    /// The sources whose changes are captured for it.
    pub captured: Vec<pg_sys::Oid>,
    /// Whether its next refresh recomputes in full whatever the change buffers hold (no
    /// frontier: never refreshed, or handed back after a suspension).
    pub needs_full: bool,
}

/// The scheduler's picture of the database at one moment.
pub struct Picture {
    pub tables: BTreeMap<i64, Scheduled>,
    pub dag: Dag<i64>,
    /// Atomic groups, each in dependency order.
    pub groups: Vec<Vec<i64>>,
}

const SELECT_STATES: &str = "
WITH deps AS (
    SELECT d.pgt_id,
           array_agg(d.source_relid ORDER BY d.source_relid) AS reads,
           array_agg(u.pgt_id ORDER BY u.pgt_id) FILTER (WHERE u.pgt_id IS NOT NULL) AS upstreams,
           bool_or(d.source_kind <> 'STREAM_TABLE') AS reads_tables,
           array_agg(d.source_relid ORDER BY d.source_relid)
               FILTER (WHERE d.columns IS NOT NULL) AS captured
    FROM pgtrickle.pgt_dependencies d
    LEFT JOIN pgtrickle.pgt_stream_tables u ON u.pgt_relid = d.source_relid
    GROUP BY d.pgt_id)
SELECT s.pgt_id, s.pgt_relid::oid, s.schedule, s.tier, s.status,
       (extract(epoch FROM s.last_refreshed_at) * 1000)::int8,
       (extract(epoch FROM s.last_changed_at) * 1000)::int8,
       (extract(epoch FROM s.last_error_at) * 1000)::int8,
       s.consecutive_failures,
       s.diamond_consistency = 'atomic',
       s.maintenance IS NOT NULL AND s.refresh_mode <> 'FULL',
       coalesce(deps.reads, '{}'), coalesce(deps.upstreams, '{}'),
       coalesce(deps.reads_tables, false), coalesce(deps.captured, '{}'),
       s.frontier IS NULL OR coalesce(s.frontier_date <> CURRENT_DATE, false)
FROM pgtrickle.pgt_stream_tables s LEFT JOIN deps USING (pgt_id)";

/// Read every stream table (times in unix milliseconds). `checked` holds, per stream table,
/// the last time this scheduler found it had nothing to refresh; that counts as a refresh for
/// the schedule.
pub fn read(checked: &HashMap<i64, i64>) -> PgtResult<Picture> {
    crate::pg::with_cached_plan(SELECT_STATES, Vec::new(), false, |rows| {
        let mut tables = BTreeMap::new();
        let mut dag = Dag::new();
        let mut members = Vec::new();
        for row in rows {
            let id: i64 = row.get(1).map_err(spi_error)?.unwrap_or_default();
            let relid: pg_sys::Oid = row
                .get(2)
                .map_err(spi_error)?
                .unwrap_or(pg_sys::Oid::INVALID);
            let schedule: String = row.get(3).map_err(spi_error)?.unwrap_or_default();
            let tier: String = row.get(4).map_err(spi_error)?.unwrap_or_default();
            let status: String = row.get(5).map_err(spi_error)?.unwrap_or_default();
            let millis =
                |i: usize| -> PgtResult<Option<i64>> { row.get::<i64>(i).map_err(spi_error) };
            let (refreshed, changed, failed_at) = (millis(6)?, millis(7)?, millis(8)?);
            let failures: i32 = row.get(9).map_err(spi_error)?.unwrap_or_default();
            let atomic: bool = row.get(10).map_err(spi_error)?.unwrap_or_default();
            let differential: bool = row.get(11).map_err(spi_error)?.unwrap_or_default();
            let reads: Vec<pg_sys::Oid> = row.get(12).map_err(spi_error)?.unwrap_or_default();
            let upstreams: Vec<i64> = row.get(13).map_err(spi_error)?.unwrap_or_default();
            let reads_tables: bool = row.get(14).map_err(spi_error)?.unwrap_or_default();
            let captured: Vec<pg_sys::Oid> = row.get(15).map_err(spi_error)?.unwrap_or_default();
            let needs_full: bool = row.get(16).map_err(spi_error)?.unwrap_or(true);
            // a row the scheduler cannot read is skipped, not fatal: create/alter validate
            let (Ok(schedule), Ok(tier)) = (Schedule::parse(&schedule), Tier::parse(&tier)) else {
                continue;
            };
            // Until changes are applied inside the writing transaction, an IMMEDIATE stream
            // table maintained differentially is refreshed in every scheduler cycle that finds
            // a change for it (one recomputed in full is left to manual refreshes).
            let schedule = match schedule {
                Schedule::Immediate if differential => Schedule::Every(0),
                other => other,
            };
            dag.add_node(id);
            for up in upstreams {
                dag.add_edge(up, id);
            }
            let last_refresh = match (refreshed, checked.get(&id)) {
                (Some(r), Some(c)) => Some(r.max(*c)),
                (r, c) => r.or(c.copied()),
            };
            let retry_at = (status == "ERROR" && failures > 0)
                .then(|| {
                    failed_at.map(|at| at + 1000 * retry_delay_seconds(failures.unsigned_abs()))
                })
                .flatten();
            if atomic {
                members.push(AtomicMember {
                    id,
                    relation: relid.to_u32(),
                    reads: reads.iter().map(|r| r.to_u32()).collect(),
                });
            }
            tables.insert(
                id,
                Scheduled {
                    state: TableState {
                        id,
                        schedule,
                        tier,
                        last_refresh,
                        last_change: changed,
                        reads_tables,
                        suspended: status == "SUSPENDED",
                        retry_at,
                    },
                    relid: relid.to_u32(),
                    differential,
                    captured,
                    needs_full,
                },
            );
        }
        let groups = atomic_groups(&members, &dag);
        Ok(Picture {
            tables,
            dag,
            groups,
        })
    })
}
