//! Reactions to DDL, through event triggers created with the extension:
//! - after any DROP: catalog rows of dropped stream tables are removed (plain `DROP TABLE`,
//!   `DROP SCHEMA ... CASCADE`, or a source dropped with CASCADE), and dropping a stream
//!   table's write guard is refused;
//! - after ALTER on a stream table: changing its columns or disabling its guard is refused,
//!   and renames are mirrored in the catalog;
//! - after ALTER on a source (or a schema, function or type), or DROP of a function, type or
//!   operator: every stream table that may use it must still analyze to the same columns,
//!   otherwise the command is refused with the reason; a sum over a source column that lost
//!   its NOT NULL gets the count column it now needs.
//!
//! `DROP TABLE source` itself is refused by PostgreSQL, because each stream table is recorded
//! in `pg_depend` as depending on the relations its query names.

use crate::analyze::analyze_defining_query;
use crate::api::type_names_of;
use crate::catalog::store;
use crate::catalog::StreamTable;
use crate::error::{spi_error, OrRaise, PgtResult};
use crate::guard;
use crate::pg::{query_one, with_search_path, SAFE_SEARCH_PATH};
use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::prelude::*;

static OWN_DDL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// While alive, this backend is running pg_trickle's own DDL (change capture, hidden columns),
/// and the checks that judge users' DDL on capture triggers and hidden columns stand aside:
/// they would see a half-built state.
pub struct OwnDdl(());

impl OwnDdl {
    pub fn begin() -> Self {
        OWN_DDL.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        OwnDdl(())
    }

    fn active() -> bool {
        OWN_DDL.load(std::sync::atomic::Ordering::SeqCst) > 0
    }
}

impl Drop for OwnDdl {
    fn drop(&mut self) {
        OWN_DDL.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Called by the `sql_drop` event trigger.
#[pg_extern]
fn _pgt_after_drop() {
    (|| -> PgtResult<()> {
        // the capture of what a dropped stream table read follows the remaining dependants
        // (fewer columns, or append-only now), or goes
        for relid in store::forget_dropped()? {
            crate::cdc::sync_source(relid)?;
        }
        crate::cdc::prune_unused()?;
        check_capture_intact()?;
        let remaining = store::all()?;
        for st in &remaining {
            if !guard::is_intact(st.relid)? {
                return Err(guard_removed(st));
            }
        }
        // Functions, types and operators a query uses are not in pg_depend; check every query.
        let routine_dropped = query_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_dropped_objects()
                            WHERE classid IN ('pg_catalog.pg_proc'::pg_catalog.regclass,
                                              'pg_catalog.pg_type'::pg_catalog.regclass,
                                              'pg_catalog.pg_operator'::pg_catalog.regclass))",
            &[],
        )?
        .unwrap_or(false);
        if routine_dropped {
            for st in &remaining {
                check_still_valid(st)?;
            }
        }
        Ok(())
    })()
    .or_raise()
}

/// Called by the `ddl_command_end` event trigger.
#[pg_extern]
fn _pgt_after_ddl() {
    (|| -> PgtResult<()> {
        store::sync_names()?;
        let (relids, everything_affected) = affected_objects()?;
        check_capture_intact()?;
        for st in store::all()? {
            if relids.contains(&st.relid) {
                check_stream_table_intact(&st)?;
            }
        }
        let readers = if everything_affected {
            store::all()?
        } else {
            store::dependants_of(&relids)?
        };
        for st in readers {
            check_still_valid(&st)?;
            crate::api::definition::add_missing_counts(&st)?;
        }
        // a source's column types may have changed, or a partition was created or attached
        // below it: keep its change buffer and capture triggers in step
        for relid in store::captured_among(&with_ancestors(&relids)?)? {
            crate::cdc::sync_source(relid)?;
            if relids.contains(&relid) {
                crate::cdc::reset_if_partitioned(relid)?;
            }
        }
        Ok(())
    })()
    .or_raise()
}

/// `relids` and the partitioned tables above them.
fn with_ancestors(relids: &[pg_sys::Oid]) -> PgtResult<Vec<pg_sys::Oid>> {
    store::oids(
        "SELECT array_agg(DISTINCT a.relid) FROM pg_catalog.unnest($1::pg_catalog.oid[]) r(oid),
                LATERAL (SELECT r.oid AS relid
                         UNION ALL SELECT p.relid FROM pg_catalog.pg_partition_ancestors(r.oid) p) a",
        &[relids.to_vec().into()],
    )
}

/// Relations touched by the command that fired the trigger (a trigger counts as its table),
/// and whether the command changed something any query may use by name (a schema, function
/// or type), in which case every stream table is checked.
fn affected_objects() -> PgtResult<(Vec<pg_sys::Oid>, bool)> {
    Spi::connect(|client| {
        let rows = client
            .select(
                "SELECT CASE WHEN c.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
                             THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = c.objid)
                             ELSE c.objid END,
                        c.classid IN ('pg_catalog.pg_namespace'::pg_catalog.regclass,
                                      'pg_catalog.pg_proc'::pg_catalog.regclass,
                                      'pg_catalog.pg_type'::pg_catalog.regclass)
                 FROM pg_catalog.pg_event_trigger_ddl_commands() AS c",
                None,
                &[],
            )
            .map_err(spi_error)?;
        let mut relids = Vec::new();
        let mut everything_affected = false;
        for row in rows {
            if row.get::<bool>(2).map_err(spi_error)?.unwrap_or(false) {
                everything_affected = true;
            } else if let Some(oid) = row.get::<pg_sys::Oid>(1).map_err(spi_error)? {
                relids.push(oid);
            }
        }
        Ok((relids, everything_affected))
    })
}

/// The hidden columns of a differentially maintained stream table are exactly those its
/// maintenance plan stores.
fn check_hidden_columns(st: &StreamTable) -> PgtResult<()> {
    if st.maintenance.is_none() || OwnDdl::active() {
        return Ok(());
    }
    let mut wanted: Vec<String> = crate::refresh::planned(st)?
        .hidden_columns()
        .into_iter()
        .map(|(name, type_name)| format!("{name} {type_name}"))
        .collect();
    let mut present: Vec<String> = with_search_path(SAFE_SEARCH_PATH, || {
        query_one::<Vec<String>>(
            "SELECT array_agg(attname::text || ' ' || format_type(atttypid, atttypmod)) FROM pg_attribute
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attname LIKE '\\_\\_pgt\\_%'",
            &[st.relid.into()],
        )
    })?
    .unwrap_or_default();
    wanted.sort();
    present.sort();
    if wanted != present {
        return Err(CoreError::new(
            ErrorKind::FeatureNotSupported,
            format!(
                "cannot change the hidden columns of stream table {}",
                st.qualified_name()
            ),
        )
        .with_detail(
            "Columns named __pgt_* hold the state pg_trickle maintains the stream table with.",
        )
        .with_hint("Drop and create the stream table again to start over."));
    }
    Ok(())
}

/// The capture triggers of every captured source must stay present and enabled.
fn check_capture_intact() -> PgtResult<()> {
    if OwnDdl::active() {
        return Ok(());
    }
    let broken: Option<String> = query_one(
        "SELECT d.source_relid::pg_catalog.regclass::text FROM pgtrickle.pgt_dependencies d
         WHERE d.columns IS NOT NULL
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = d.source_relid)
           AND (SELECT count(*) FROM pg_catalog.pg_trigger t
                WHERE t.tgrelid = d.source_relid AND t.tgname LIKE '\\_\\_pgt\\_capture\\_%'
                  AND t.tgenabled = 'A') < 4
         LIMIT 1",
        &[],
    )?;
    match broken {
        Some(source) => Err(CoreError::new(
            ErrorKind::FeatureNotSupported,
            format!("cannot remove or disable the change capture triggers of {source}"),
        )
        .with_detail(
            "Stream tables maintained differentially read the changes these triggers record.",
        )
        .with_hint("Drop or alter those stream tables (refresh_mode => 'FULL') first.")),
        None => Ok(()),
    }
}

fn guard_removed(st: &StreamTable) -> CoreError {
    CoreError::new(
        ErrorKind::FeatureNotSupported,
        format!(
            "cannot remove or disable the write guard of stream table {}",
            st.qualified_name()
        ),
    )
    .with_detail(format!(
        "Trigger {} keeps the stream table equal to its defining query.",
        guard::GUARD_TRIGGER
    ))
    .with_hint("Drop the stream table with pgtrickle.drop_stream_table if it is no longer needed.")
}

/// A stream table's columns belong to its query, and its guard must stay enabled.
fn check_stream_table_intact(st: &StreamTable) -> PgtResult<()> {
    if !guard::is_intact(st.relid)? {
        return Err(guard_removed(st));
    }
    check_hidden_columns(st)?;
    let (names, types) = current_columns(st.relid)?;
    if names != st.column_names || types != st.column_types {
        return Err(CoreError::new(
            ErrorKind::FeatureNotSupported,
            format!("cannot change the columns of stream table {}", st.qualified_name()),
        )
        .with_detail("A stream table has exactly the columns of its defining query.")
        .with_hint("Change the query with pgtrickle.alter_stream_table(name, query => ...), or drop and create the stream table again."));
    }
    Ok(())
}

fn current_columns(relid: pg_sys::Oid) -> PgtResult<(Vec<String>, Vec<String>)> {
    with_search_path(SAFE_SEARCH_PATH, || {
        Spi::connect(|client| {
            let rows = client
                .select(
                    "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
                     WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
                       AND attname NOT LIKE '\\_\\_pgt\\_%' ORDER BY attnum",
                    None,
                    &[relid.into()],
                )
                .map_err(spi_error)?;
            let mut names = Vec::new();
            let mut types = Vec::new();
            for row in rows {
                names.push(row.get::<String>(1).map_err(spi_error)?.unwrap_or_default());
                types.push(row.get::<String>(2).map_err(spi_error)?.unwrap_or_default());
            }
            Ok((names, types))
        })
    })
}

/// The stored query of `st` must still analyze, to the same columns.
fn check_still_valid(st: &StreamTable) -> PgtResult<()> {
    let refused = |why: String| {
        CoreError::new(
            ErrorKind::DependentObjectsStillExist,
            format!("cannot alter a relation that stream table {} reads", st.qualified_name()),
        )
        .with_detail(why)
        .with_hint("Drop the stream table first, or give it a query that does not need the change (pgtrickle.alter_stream_table(name, query => ...)).")
    };
    let outcome = PgTryBuilder::new(|| {
        Ok(with_search_path(SAFE_SEARCH_PATH, || {
            analyze_defining_query(&st.defining_query)
        }))
    })
    .catch_others(|caught| match caught {
        pgrx::pg_sys::panic::CaughtError::PostgresError(report) => {
            Err(report.message().to_string())
        }
        other => Err(format!("{other:?}")),
    })
    .execute();
    let analyzed = match outcome {
        Ok(result) => result?,
        Err(message) => {
            return Err(refused(format!(
                "After the change, its query fails: {message}"
            )))
        }
    };
    let names: Vec<String> = analyzed.columns.iter().map(|c| c.name.clone()).collect();
    let types = type_names_of(&analyzed.columns)?;
    if names != st.column_names || types != st.column_types {
        return Err(refused(
            "After the change, its query would produce different columns.".to_string(),
        ));
    }
    Ok(())
}

pgrx::extension_sql!(
    r#"
CREATE FUNCTION pgtrickle._pgt_on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql AS $$ BEGIN PERFORM pgtrickle._pgt_after_drop(); END $$;

CREATE FUNCTION pgtrickle._pgt_on_ddl_command_end() RETURNS event_trigger
LANGUAGE plpgsql AS $$ BEGIN PERFORM pgtrickle._pgt_after_ddl(); END $$;

CREATE EVENT TRIGGER pgt_sql_drop ON sql_drop
    EXECUTE FUNCTION pgtrickle._pgt_on_sql_drop();

CREATE EVENT TRIGGER pgt_ddl_command_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'ALTER VIEW', 'CREATE VIEW', 'ALTER FOREIGN TABLE',
                 'ALTER MATERIALIZED VIEW', 'ALTER SCHEMA', 'ALTER TRIGGER', 'ALTER FUNCTION',
                 'ALTER TYPE', 'ALTER DOMAIN')
    EXECUTE FUNCTION pgtrickle._pgt_on_ddl_command_end();
"#,
    name = "event_triggers",
    finalize
);
