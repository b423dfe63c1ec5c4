//! The change buffer of one source: creating it with the tracked columns, keeping its columns
//! in step with what dependants read, giving it statistics for the planner, and emptying a
//! large buffer of consumed rows (small ones are cleaned by the statement that records a
//! refresh, see `refresh::frontier`).

use super::triggers;
use crate::error::{spi_error, PgtResult};
use crate::pg::{as_extension_owner, query_one, run};
use pg_trickle_core::sql::{quote_ident, QualifiedName};
use pgrx::prelude::*;

/// The buffer of source `relid`.
pub fn buffer_name(relid: pg_sys::Oid) -> QualifiedName {
    QualifiedName::new("pgtrickle_changes", format!("changes_{}", relid.to_u32()))
}

/// A column the buffer tracks: name and type (schema-qualified spelling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub name: String,
    pub type_name: String,
}

/// Columns of relation `relation_sql` (an SQL expression for its OID) that satisfy
/// `condition` (over `a`, the pg_attribute row), in column order.
fn columns(
    relation_sql: &str,
    condition: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> PgtResult<Vec<Tracked>> {
    let sql = format!(
        "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod)
         FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = {relation_sql} AND a.attnum > 0 AND NOT a.attisdropped AND {condition}
         ORDER BY a.attnum"
    );
    Spi::connect(|client| {
        client
            .select(&sql, None, args)?
            .map(|row| {
                Ok(Tracked {
                    name: row.get::<String>(1)?.unwrap_or_default(),
                    type_name: row.get::<String>(2)?.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .map_err(spi_error)
}

/// The source columns some dependant reads.
fn tracked_columns(relid: pg_sys::Oid) -> PgtResult<Vec<Tracked>> {
    columns(
        "$1",
        "a.attname IN (SELECT unnest(d.columns) FROM pgtrickle.pgt_dependencies d
                       WHERE d.source_relid = $1 AND d.columns IS NOT NULL)",
        &[relid.into()],
    )
}

/// Columns the buffer has now (besides its own `__pgt_*` columns).
fn buffer_columns(relid: pg_sys::Oid) -> PgtResult<Vec<Tracked>> {
    columns(
        &format!(
            "pg_catalog.to_regclass({})",
            pg_trickle_core::sql::quote_literal(&buffer_name(relid).to_string())
        ),
        "a.attname NOT LIKE '\\_\\_pgt\\_%'",
        &[],
    )
}

/// Whether source `relid` has a differentially maintained dependant, and whether all of them
/// declared it append-only.
fn dependants(relid: pg_sys::Oid) -> PgtResult<Option<bool>> {
    query_one::<bool>(
        "SELECT bool_and(s.append_only) FROM pgtrickle.pgt_dependencies d
         JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
         WHERE d.source_relid = $1 AND d.columns IS NOT NULL",
        &[relid.into()],
    )
}

/// Bring the capture of `relid` in line with its dependants: create or widen the buffer and
/// (re)write the capture function, or remove everything when no dependant needs it. Writers
/// of the source are waited for first, so that no transaction keeps writing with an older
/// capture function once this one commits.
pub fn sync_source(relid: pg_sys::Oid) -> PgtResult<()> {
    let _own = crate::ddl::OwnDdl::begin();
    as_extension_owner(|| {
        let exists = query_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid = $1)",
            &[relid.into()],
        )?
        .unwrap_or(false);
        let append_only = dependants(relid)?;
        let buffer = buffer_name(relid);
        let (Some(append_only), true) = (append_only, exists) else {
            return remove(relid, exists);
        };
        let source: String =
            query_one("SELECT $1::pg_catalog.regclass::text", &[relid.into()])?.unwrap_or_default();
        run(
            &format!("LOCK TABLE {source} IN SHARE ROW EXCLUSIVE MODE"),
            &[],
        )?;
        // quietly: a second stream table on the same source finds the buffer there
        crate::pg::with_settings(&[("client_min_messages", "warning")], || {
            run(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {buffer} (
                         __pgt_xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
                         __pgt_seq bigint NOT NULL DEFAULT pg_catalog.nextval('pgtrickle_changes.change_seq'),
                         __pgt_weight smallint NOT NULL)"
                ),
                &[],
            )
        })?;
        // No index: buffers hold only unconsumed rows and are read whole by each refresh; an
        // index on __pgt_xid roughly doubled the cost of a bulk INSERT into the source.
        let wanted = tracked_columns(relid)?;
        let present = buffer_columns(relid)?;
        for column in &wanted {
            let name = quote_ident(&column.name);
            match present.iter().find(|p| p.name == column.name) {
                None => run(
                    &format!(
                        "ALTER TABLE {buffer} ADD COLUMN {name} {}",
                        column.type_name
                    ),
                    &[],
                )?,
                Some(p) if p.type_name != column.type_name => run(
                    &format!(
                        "ALTER TABLE {buffer} ALTER COLUMN {name} TYPE {t} USING {name}::{t}",
                        t = column.type_name
                    ),
                    &[],
                )?,
                Some(_) => {}
            }
        }
        triggers::install(relid, &source, &wanted, append_only)?;
        // dependants' owners read the buffer during their refreshes
        run(
            &format!(
                "DO $grant$ DECLARE r record; BEGIN
                   FOR r IN SELECT DISTINCT c.relowner::pg_catalog.regrole::text AS owner
                            FROM pgtrickle.pgt_dependencies d
                            JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
                            JOIN pg_catalog.pg_class c ON c.oid = s.pgt_relid
                            WHERE d.source_relid = {oid} AND d.columns IS NOT NULL LOOP
                     EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA pgtrickle_changes TO %s', r.owner);
                     EXECUTE pg_catalog.format('GRANT SELECT ON {buffer} TO %s', r.owner);
                   END LOOP; END $grant$",
                oid = relid.to_u32()
            ),
            &[],
        )
    })
}

/// After an ALTER TABLE of a partitioned source (ATTACH or DETACH PARTITION change its rows
/// without DML): its dependants recompute in full at their next refresh.
pub fn reset_if_partitioned(relid: pg_sys::Oid) -> PgtResult<()> {
    as_extension_owner(|| {
        run(
            "INSERT INTO pgtrickle_changes.resets (source_relid)
             SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid = $1 AND c.relkind = 'p'",
            &[relid.into()],
        )
    })
}

fn remove(relid: pg_sys::Oid, source_exists: bool) -> PgtResult<()> {
    if source_exists {
        triggers::remove(relid)?;
    }
    run(&format!("DROP TABLE IF EXISTS {}", buffer_name(relid)), &[])
}

/// Remove the capture of every source that no longer has a differential dependant.
pub fn prune_unused() -> PgtResult<()> {
    let orphans = as_extension_owner(|| {
        crate::catalog::store::oids(
            "SELECT array_agg(substr(c.relname, 9)::oid) FROM pg_catalog.pg_class c
             WHERE c.relnamespace = 'pgtrickle_changes'::regnamespace AND c.relkind = 'r'
               AND c.relname ~ '^changes_[0-9]+$'
               AND NOT EXISTS (SELECT 1 FROM pgtrickle.pgt_dependencies d
                               WHERE d.source_relid = substr(c.relname, 9)::oid
                                 AND d.columns IS NOT NULL)
",
            &[],
        )
    })?;
    for relid in orphans {
        sync_source(relid)?;
    }
    Ok(())
}

/// Delete the change rows of source `relid` below `bound` (an xid8, text), which every
/// dependant has consumed. When nothing else is left in the buffer, TRUNCATE it instead: no
/// dead rows stay behind for later reads to pass over. That needs the buffer to itself
/// (taken only if free at once: a writer of the source or a reader of the buffer in progress
/// means DELETE), a fresh snapshot to see every committed row (READ COMMITTED), and a
/// `standalone` transaction (no transaction block), so that writers of the source wait at most
/// for this refresh's commit.
pub fn empty_consumed(relid: pg_sys::Oid, bound: &str, standalone: bool) -> PgtResult<()> {
    let buffer = buffer_name(relid);
    // SAFETY: reads backend-local transaction state.
    let read_committed = unsafe { pg_sys::XactIsoLevel < pg_sys::XACT_REPEATABLE_READ as i32 };
    let buffer_oid = if standalone && read_committed {
        query_one::<pg_sys::Oid>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            &[buffer.to_string().into()],
        )?
    } else {
        None
    };
    let lock = pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE;
    // SAFETY: a conditional lock on an existing relation; released below unless kept to commit.
    if let Some(oid) =
        buffer_oid.filter(|oid| unsafe { pg_sys::ConditionalLockRelationOid(*oid, lock) })
    {
        // no writer of the source is in progress now, and this statement's snapshot is taken
        // after the lock: it sees every change row there is
        let remaining = query_one::<bool>(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {buffer} b WHERE b.__pgt_xid >= $1::pg_catalog.xid8)"
            ),
            &[bound.into()],
        )?;
        if remaining == Some(false) {
            pgrx::debug2!("pg_trickle: {buffer} emptied by TRUNCATE");
            return run(&format!("TRUNCATE {buffer}"), &[]);
        }
        // SAFETY: taken above; nothing was written under it.
        unsafe { pg_sys::UnlockRelationOid(oid, lock) };
    }
    run(
        &format!("DELETE FROM {buffer} b WHERE b.__pgt_xid < $1::pg_catalog.xid8"),
        &[bound.into()],
    )
}

/// ANALYZE the buffer of source `relid` if it has no column statistics yet (and nothing else
/// holds the lock ANALYZE takes: an autovacuum at work on it will give it statistics anyway).
/// Called by a refresh that found a large change, before its statements are planned. Without
/// statistics the planner takes a buffer column to hold 200 distinct values, and a join of a
/// large change with a table hashed the table rather than the change (100,000 rows against
/// 13,000: 60 ms against 37 for the refresh's apply statement). Statistics outlive the
/// TRUNCATE that empties a buffer, and autovacuum keeps them current from then on.
pub fn give_statistics(relid: pg_sys::Oid) -> PgtResult<()> {
    let buffer = buffer_name(relid);
    as_extension_owner(|| {
        let oid = query_one::<pg_sys::Oid>(
            "SELECT c.oid FROM pg_catalog.pg_class c
             WHERE c.oid = pg_catalog.to_regclass($1)
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_statistic s WHERE s.starelid = c.oid)",
            &[buffer.to_string().into()],
        )?;
        let lock = pg_sys::ShareUpdateExclusiveLock as pg_sys::LOCKMODE;
        // SAFETY: a conditional lock on an existing relation, kept to the end of the
        // transaction as ANALYZE keeps it.
        if oid.is_some_and(|oid| unsafe { pg_sys::ConditionalLockRelationOid(oid, lock) }) {
            pgrx::debug2!("pg_trickle: {buffer} has no statistics, analyzed");
            run(&format!("ANALYZE {buffer}"), &[])?;
        }
        Ok(())
    })
}
