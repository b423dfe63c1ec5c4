//! Reading and writing the catalog tables. Writes run as the extension's owner (see
//! `pg::as_extension_owner`), because users who own a stream table own no catalog rows.

use crate::error::{spi_error, PgtResult};
use crate::pg::{as_extension_owner, query_one, run, with_cached_plan};
use pg_trickle_core::options::{DiamondConsistency, RefreshMode, Tier};
use pg_trickle_core::schedule::Schedule;
use pg_trickle_core::CoreError;
use pgrx::prelude::*;

/// The options a user sets on a stream table.
#[derive(Debug, Clone)]
pub struct StreamTableSettings {
    pub refresh_mode: RefreshMode,
    pub schedule: Schedule,
    pub tier: Tier,
    pub append_only: bool,
    pub diamond_consistency: DiamondConsistency,
    pub pooler_compatibility_mode: bool,
}

/// A stream table as the catalog knows it.
#[derive(Debug, Clone)]
pub struct StreamTable {
    pub pgt_id: i64,
    pub relid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
    pub defining_query: String,
    pub column_names: Vec<String>,
    pub column_types: Vec<String>,
    pub settings: StreamTableSettings,
    pub has_volatile_functions: bool,
    /// The maintenance strategy whose hidden columns the table carries, if any.
    pub maintenance: Option<String>,
    pub owner: pg_sys::Oid,
    /// Whether the current user is (a member of) the owner.
    pub current_user_owns: bool,
    /// Where the last refresh left off; `None` before the first refresh.
    pub frontier: Option<Frontier>,
    /// Sources whose changes are captured for this stream table.
    pub captured_sources: Vec<pg_sys::Oid>,
    /// Scheduled refreshes that failed in a row since the last success.
    pub consecutive_failures: i32,
    /// Why the query is not maintained differentially, when it is not.
    pub differential_blocker: Option<String>,
}

impl StreamTable {
    /// `schema.name`, quoted, as it must appear in SQL.
    pub fn qualified_name(&self) -> String {
        pg_trickle_core::sql::QualifiedName::new(&self.schema, &self.name).to_string()
    }
}

/// A relation a stream table reads.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub relid: pg_sys::Oid,
    pub kind: String,
    pub is_direct: bool,
    /// Columns whose changes are captured for this stream table (differential only).
    pub columns: Option<Vec<String>>,
}

/// Where the last refresh left off: its snapshot, and the part of its own transaction's
/// changes it had already applied (`own_xid`, up to sequence `own_seq`).
#[derive(Debug, Clone)]
pub struct Frontier {
    pub snapshot: String,
    pub own_xid: Option<String>,
    pub own_seq: Option<i64>,
    /// CURRENT_DATE when it was recorded (text).
    pub date: Option<String>,
}

/// Everything one refresh needs, in one read: the catalog row, the table's owner and whether
/// the current user acts for it, the frontier, and the captured sources.
const SELECT_COLUMNS: &str =
    "s.pgt_id, s.pgt_relid, s.pgt_schema::text, s.pgt_name::text, s.defining_query, \
     s.column_names::text[], s.column_types, s.status, s.refresh_mode, s.schedule, s.tier, s.append_only, \
     s.diamond_consistency, s.pooler_compatibility_mode, s.has_volatile_functions, s.maintenance, \
     c.relowner, pg_catalog.pg_has_role($CALLER::oid, c.relowner, 'USAGE'), \
     s.frontier::text, s.frontier_own_xid::text, s.frontier_own_seq, \
     ARRAY(SELECT d.source_relid FROM pgtrickle.pgt_dependencies d \
           WHERE d.pgt_id = s.pgt_id AND d.columns IS NOT NULL ORDER BY d.source_relid), \
     s.consecutive_failures, s.differential_blocker, s.frontier_date::text";

fn corrupt(what: &str) -> CoreError {
    CoreError::internal(format!("pg_trickle catalog row has an invalid {what}"))
}

fn load(where_clause: &str, args: Vec<pgrx::datum::DatumWithOid>) -> PgtResult<Vec<StreamTable>> {
    load_rows(where_clause, args, false)
}

/// The stream table `relid`, with its catalog row locked until the end of the transaction:
/// refreshes of one stream table take this lock, so they never overlap, and a refresh that
/// waited reads the frontier the other one left. Ownership is judged for the calling user.
pub fn lock_for_refresh(relid: pg_sys::Oid) -> PgtResult<Option<StreamTable>> {
    let rows = as_extension_owner(|| load_rows("s.pgt_relid = $1", vec![relid.into()], true))?;
    Ok(rows.into_iter().next())
}

/// The stream table with id `pgt_id`, its catalog row locked as by `lock_for_refresh`.
pub fn lock_id_for_refresh(pgt_id: i64) -> PgtResult<Option<StreamTable>> {
    let rows = as_extension_owner(|| load_rows("s.pgt_id = $1", vec![pgt_id.into()], true))?;
    Ok(rows.into_iter().next())
}

fn load_rows(
    where_clause: &str,
    mut args: Vec<pgrx::datum::DatumWithOid>,
    lock: bool,
) -> PgtResult<Vec<StreamTable>> {
    // SAFETY: GetOuterUserId returns the user of the calling session, unaffected by the
    // temporary user switches pg_trickle makes for catalog access.
    let caller = unsafe { pg_sys::GetOuterUserId() };
    args.push(caller.into());
    let select = SELECT_COLUMNS.replace("$CALLER", &format!("${}", args.len()));
    let lock_clause = if lock { " FOR UPDATE OF s" } else { "" };
    let sql = format!(
        "SELECT {select} FROM pgtrickle.pgt_stream_tables s \
         JOIN pg_catalog.pg_class c ON c.oid = s.pgt_relid WHERE {where_clause} ORDER BY s.pgt_id{lock_clause}"
    );
    let rows: Vec<StreamTable> =
        // a row lock needs a read-write statement
        with_cached_plan(&sql, args, lock, |table| -> Result<Vec<StreamTable>, CoreError> {
            let mut out = Vec::new();
            for row in table {
                let text = |i: usize| -> PgtResult<String> {
                    row.get::<String>(i)
                        .map_err(spi_error)?
                        .ok_or_else(|| corrupt("NULL"))
                };
                let settings = StreamTableSettings {
                    refresh_mode: RefreshMode::parse(&text(9)?)
                        .map_err(|_| corrupt("refresh_mode"))?,
                    schedule: Schedule::parse(&text(10)?).map_err(|_| corrupt("schedule"))?,
                    tier: Tier::parse(&text(11)?).map_err(|_| corrupt("tier"))?,
                    append_only: row.get::<bool>(12).map_err(spi_error)?.unwrap_or(false),
                    diamond_consistency: DiamondConsistency::parse(&text(13)?)
                        .map_err(|_| corrupt("diamond_consistency"))?,
                    pooler_compatibility_mode: row
                        .get::<bool>(14)
                        .map_err(spi_error)?
                        .unwrap_or(false),
                };
                let strings = |i: usize| -> PgtResult<Vec<String>> {
                    Ok(row
                        .get::<Vec<Option<String>>>(i)
                        .map_err(spi_error)?
                        .unwrap_or_default()
                        .into_iter()
                        .map(Option::unwrap_or_default)
                        .collect())
                };
                out.push(StreamTable {
                    pgt_id: row
                        .get::<i64>(1)
                        .map_err(spi_error)?
                        .ok_or_else(|| corrupt("pgt_id"))?,
                    relid: row
                        .get::<pg_sys::Oid>(2)
                        .map_err(spi_error)?
                        .ok_or_else(|| corrupt("pgt_relid"))?,
                    schema: text(3)?,
                    name: text(4)?,
                    defining_query: text(5)?,
                    column_names: strings(6)?,
                    column_types: strings(7)?,
                    settings,
                    has_volatile_functions: row
                        .get::<bool>(15)
                        .map_err(spi_error)?
                        .unwrap_or(false),
                    maintenance: row.get::<String>(16).map_err(spi_error)?,
                    owner: row
                        .get::<pg_sys::Oid>(17)
                        .map_err(spi_error)?
                        .ok_or_else(|| corrupt("owner"))?,
                    current_user_owns: row.get::<bool>(18).map_err(spi_error)?.unwrap_or(false),
                    frontier: row
                        .get::<String>(19)
                        .map_err(spi_error)?
                        .map(|snapshot| Frontier {
                            snapshot,
                            own_xid: row.get::<String>(20).ok().flatten(),
                            own_seq: row.get::<i64>(21).ok().flatten(),
                            date: row.get::<String>(25).ok().flatten(),
                        }),
                    captured_sources: row
                        .get::<Vec<pg_sys::Oid>>(22)
                        .map_err(spi_error)?
                        .unwrap_or_default(),
                    consecutive_failures: row.get::<i32>(23).map_err(spi_error)?.unwrap_or(0),
                    differential_blocker: row.get::<String>(24).map_err(spi_error)?,
                });
            }
            Ok(out)
        })?;
    Ok(rows)
}

pub fn find_by_relid(relid: pg_sys::Oid) -> PgtResult<Option<StreamTable>> {
    Ok(load("s.pgt_relid = $1", vec![relid.into()])?
        .into_iter()
        .next())
}

pub fn all() -> PgtResult<Vec<StreamTable>> {
    load("true", vec![])
}

/// Stream tables that read any of `relids` (directly or through a view).
pub fn dependants_of(relids: &[pg_sys::Oid]) -> PgtResult<Vec<StreamTable>> {
    load(
        "s.pgt_id IN (SELECT pgt_id FROM pgtrickle.pgt_dependencies WHERE source_relid = ANY($1))",
        vec![relids.to_vec().into()],
    )
}

/// The stream tables `pgt_id` reads (directly or through views).
pub fn stream_table_sources(pgt_id: i64) -> PgtResult<Vec<pg_sys::Oid>> {
    oids(
        "SELECT array_agg(source_relid ORDER BY source_relid) FROM pgtrickle.pgt_dependencies
         WHERE pgt_id = $1 AND source_kind = 'STREAM_TABLE'",
        &[pgt_id.into()],
    )
}

/// Which of `relids` are captured sources.
pub fn captured_among(relids: &[pg_sys::Oid]) -> PgtResult<Vec<pg_sys::Oid>> {
    oids(
        "SELECT array_agg(DISTINCT source_relid) FROM pgtrickle.pgt_dependencies
         WHERE source_relid = ANY($1) AND columns IS NOT NULL",
        &[relids.to_vec().into()],
    )
}

/// The OIDs an `array_agg` query returns (none for NULL).
pub fn oids(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> PgtResult<Vec<pg_sys::Oid>> {
    Ok(query_one::<Vec<pg_sys::Oid>>(sql, args)?.unwrap_or_default())
}

/// Whether `relid` is a stream table.
pub fn is_stream_table(relid: pg_sys::Oid) -> PgtResult<bool> {
    Ok(query_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables WHERE pgt_relid = $1)",
        &[relid.into()],
    )?
    .unwrap_or(false))
}

/// The new catalog row of a stream table.
pub struct NewStreamTable<'a> {
    pub relid: pg_sys::Oid,
    pub original_query: &'a str,
    pub defining_query: &'a str,
    pub settings: &'a StreamTableSettings,
    pub has_volatile_functions: bool,
    pub maintenance: Option<&'a str>,
    pub differential_blocker: Option<&'a str>,
}

pub fn insert(new: &NewStreamTable) -> PgtResult<i64> {
    let s = new.settings;
    as_extension_owner(|| {
        query_one::<i64>(
            "INSERT INTO pgtrickle.pgt_stream_tables
                 (pgt_relid, pgt_schema, pgt_name, original_query, defining_query,
                  column_names, column_types, refresh_mode, schedule, schedule_interval_seconds,
                  tier, append_only, diamond_consistency, pooler_compatibility_mode,
                  has_volatile_functions, maintenance, differential_blocker, status)
             SELECT c.oid, n.nspname, c.relname, $2, $3, cols.names, cols.types, $4, $5, $6,
                    $7, $8, $9, $10, $11, $12, $13, 'INITIALIZING'
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                  LATERAL (SELECT array_agg(a.attname ORDER BY a.attnum) AS names,
                                  array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) AS types
                           FROM pg_attribute a
                           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                             AND a.attname NOT LIKE '\\_\\_pgt\\_%') cols
             WHERE c.oid = $1
             RETURNING pgt_id",
            &[
                new.relid.into(),
                new.original_query.into(),
                new.defining_query.into(),
                s.refresh_mode.as_str().into(),
                s.schedule.canonical().into(),
                s.schedule.interval_seconds().map(|v| v as i64).into(),
                s.tier.as_str().into(),
                s.append_only.into(),
                s.diamond_consistency.as_str().into(),
                s.pooler_compatibility_mode.into(),
                new.has_volatile_functions.into(),
                new.maintenance.into(),
                new.differential_blocker.into(),
            ],
        )?
        .ok_or_else(|| CoreError::internal("catalog insert returned no row"))
    })
}

/// Replace the recorded sources of a stream table.
pub fn set_dependencies(pgt_id: i64, deps: &[Dependency]) -> PgtResult<()> {
    let relids: Vec<pg_sys::Oid> = deps.iter().map(|d| d.relid).collect();
    let kinds: Vec<String> = deps.iter().map(|d| d.kind.clone()).collect();
    let direct: Vec<bool> = deps.iter().map(|d| d.is_direct).collect();
    as_extension_owner(|| {
        run(
            "DELETE FROM pgtrickle.pgt_dependencies WHERE pgt_id = $1",
            &[pgt_id.into()],
        )?;
        run(
            "INSERT INTO pgtrickle.pgt_dependencies (pgt_id, source_relid, source_kind, is_direct)
             SELECT $1, r, k, d FROM unnest($2::oid[], $3::text[], $4::bool[]) AS u(r, k, d)",
            &[pgt_id.into(), relids.into(), kinds.into(), direct.into()],
        )?;
        for dep in deps {
            if let Some(columns) = &dep.columns {
                run(
                    "UPDATE pgtrickle.pgt_dependencies SET columns = $3::text[]::name[]
                     WHERE pgt_id = $1 AND source_relid = $2",
                    &[pgt_id.into(), dep.relid.into(), columns.clone().into()],
                )?;
            }
        }
        Ok(())
    })
}

/// Store changed settings (and, when the query changed, the new query texts).
pub fn update_settings(
    pgt_id: i64,
    settings: &StreamTableSettings,
    queries: Option<(&str, &str, bool)>,
) -> PgtResult<()> {
    as_extension_owner(|| {
        run(
            "UPDATE pgtrickle.pgt_stream_tables
             SET refresh_mode = $2, schedule = $3, schedule_interval_seconds = $4, tier = $5,
                 append_only = $6, diamond_consistency = $7, pooler_compatibility_mode = $8,
                 -- altering a suspended stream table hands it back to the scheduler; its
                 -- next refresh recomputes in full (the change buffers may still hold what
                 -- made it fail)
                 status = CASE WHEN status = 'SUSPENDED' THEN 'ERROR' ELSE status END,
                 consecutive_failures = CASE WHEN status = 'SUSPENDED' THEN 0
                                             ELSE consecutive_failures END,
                 frontier = CASE WHEN status = 'SUSPENDED' THEN NULL ELSE frontier END,
                 frontier_own_xid = CASE WHEN status = 'SUSPENDED' THEN NULL
                                         ELSE frontier_own_xid END,
                 frontier_own_seq = CASE WHEN status = 'SUSPENDED' THEN NULL
                                         ELSE frontier_own_seq END
             WHERE pgt_id = $1",
            &[
                pgt_id.into(),
                settings.refresh_mode.as_str().into(),
                settings.schedule.canonical().into(),
                settings
                    .schedule
                    .interval_seconds()
                    .map(|v| v as i64)
                    .into(),
                settings.tier.as_str().into(),
                settings.append_only.into(),
                settings.diamond_consistency.as_str().into(),
                settings.pooler_compatibility_mode.into(),
            ],
        )?;
        if let Some((original, defining, volatile)) = queries {
            run(
                "UPDATE pgtrickle.pgt_stream_tables
                 SET original_query = $2, defining_query = $3, has_volatile_functions = $4
                 WHERE pgt_id = $1",
                &[
                    pgt_id.into(),
                    original.into(),
                    defining.into(),
                    volatile.into(),
                ],
            )?;
        }
        Ok(())
    })
}

/// Forget the frontier, so that the next refresh recomputes in full.
pub fn clear_frontier(pgt_id: i64) -> PgtResult<()> {
    as_extension_owner(|| {
        run(
            "UPDATE pgtrickle.pgt_stream_tables
             SET frontier = NULL, frontier_own_xid = NULL, frontier_own_seq = NULL WHERE pgt_id = $1",
            &[pgt_id.into()],
        )
    })
}

/// Store the maintenance strategy (and why there is none) after the query changed.
pub fn set_maintenance(
    pgt_id: i64,
    maintenance: Option<&str>,
    blocker: Option<&str>,
) -> PgtResult<()> {
    as_extension_owner(|| {
        run(
            "UPDATE pgtrickle.pgt_stream_tables SET maintenance = $2, differential_blocker = $3 WHERE pgt_id = $1",
            &[pgt_id.into(), maintenance.into(), blocker.into()],
        )
    })
}

/// Remove catalog rows whose table no longer exists (after DROP TABLE, DROP SCHEMA CASCADE,
/// or a source dropped with CASCADE). Safe to call at any time.
pub fn forget_dropped() -> PgtResult<Vec<pg_sys::Oid>> {
    as_extension_owner(|| {
        // the sources the dropped stream tables captured (their rows are still visible here)
        let sources = oids(
            "WITH gone AS (DELETE FROM pgtrickle.pgt_stream_tables s
                           WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.pgt_relid)
                           RETURNING s.pgt_id),
                  history AS (DELETE FROM pgtrickle.pgt_refresh_history h
                              WHERE h.pgt_id IN (SELECT pgt_id FROM gone))
             SELECT array_agg(DISTINCT d.source_relid) FROM pgtrickle.pgt_dependencies d
             JOIN gone USING (pgt_id) WHERE d.columns IS NOT NULL",
            &[],
        )?;
        run(
            "DELETE FROM pgtrickle.pgt_dependencies d
             WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = d.source_relid)",
            &[],
        )?;
        Ok(sources)
    })
}

/// Keep pgt_schema and pgt_name equal to the table's current name after ALTER TABLE RENAME,
/// SET SCHEMA or ALTER SCHEMA RENAME.
pub fn sync_names() -> PgtResult<()> {
    as_extension_owner(|| {
        run(
            "UPDATE pgtrickle.pgt_stream_tables s
             SET pgt_schema = n.nspname, pgt_name = c.relname
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = s.pgt_relid
               AND (s.pgt_schema, s.pgt_name) IS DISTINCT FROM (n.nspname, c.relname)",
            &[],
        )
    })
}

/// Record a failed scheduled refresh of each of `pgt_ids` (one transaction, all or none of
/// them applied; `failing` is the one whose refresh raised `message`): status ERROR, or
/// SUSPENDED once `max_failures` consecutive refreshes failed; the message, its time, and a
/// FAILED history row (older history of those stream tables is pruned as after a success).
/// Returns the stream tables suspended by this failure.
pub fn record_failure(
    pgt_ids: &[i64],
    failing: i64,
    message: &str,
    duration_ms: f64,
    max_failures: i32,
) -> PgtResult<Vec<i64>> {
    as_extension_owner(|| {
        Spi::connect_mut(|client| {
            let rows = client
                .update(
                    "WITH before AS (
                         SELECT pgt_id, status FROM pgtrickle.pgt_stream_tables
                         WHERE pgt_id = ANY($1)),
                     pruned AS (
                         DELETE FROM pgtrickle.pgt_refresh_history
                         WHERE pgt_id = ANY($1) AND $6 > 0
                           AND finished_at < pg_catalog.statement_timestamp() - $6 * interval '1 hour'),
                     failed AS (
                         UPDATE pgtrickle.pgt_stream_tables
                         SET consecutive_failures = consecutive_failures + 1,
                             status = CASE WHEN $4 > 0 AND consecutive_failures + 1 >= $4
                                           THEN 'SUSPENDED' ELSE 'ERROR' END,
                             last_error_message = m.message,
                             last_error_at = pg_catalog.clock_timestamp()
                         FROM (SELECT CASE WHEN s.pgt_id = $5 THEN $2
                                           ELSE 'not applied: the refresh of '
                                                || coalesce(pg_catalog.quote_ident(f.pgt_schema) || '.'
                                                            || pg_catalog.quote_ident(f.pgt_name),
                                                            'another member')
                                                || ' in the same atomic group failed: ' || $2
                                      END AS message, s.pgt_id
                               FROM pgtrickle.pgt_stream_tables s
                               LEFT JOIN pgtrickle.pgt_stream_tables f ON f.pgt_id = $5
                               WHERE s.pgt_id = ANY($1)) m
                         WHERE pgtrickle.pgt_stream_tables.pgt_id = m.pgt_id
                         RETURNING pgtrickle.pgt_stream_tables.pgt_id, status, m.message),
                     history AS (
                         INSERT INTO pgtrickle.pgt_refresh_history
                             (pgt_id, started_at, finished_at, duration_ms, status, error_message)
                         SELECT pgt_id, pg_catalog.clock_timestamp() - $3 * interval '1 millisecond',
                                pg_catalog.clock_timestamp(), $3, 'FAILED', message
                         FROM failed)
                     SELECT f.pgt_id FROM failed f JOIN before b USING (pgt_id)
                     WHERE f.status = 'SUSPENDED' AND b.status <> 'SUSPENDED'",
                    None,
                    &[
                        pgt_ids.to_vec().into(),
                        message.into(),
                        duration_ms.into(),
                        max_failures.into(),
                        failing.into(),
                        crate::config::history_retention_hours().into(),
                    ],
                )
                .map_err(spi_error)?;
            let mut suspended = Vec::new();
            for row in rows {
                if let Some(id) = row.get::<i64>(1).map_err(spi_error)? {
                    suspended.push(id);
                }
            }
            Ok(suspended)
        })
    })
}
