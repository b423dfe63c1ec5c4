//! What creating and redefining a stream table share: checking that the requested refresh mode
//! can maintain the query, recording in `pg_depend` that the stream table reads its sources
//! (so `DROP TABLE source` is refused, or cascades, like for a view), and refusing cycles.

use crate::analyze::OutputColumn;
use crate::catalog::store::{self, Dependency};
use crate::catalog::StreamTableSettings;
use crate::error::PgtResult;
use crate::pg::{query_one, with_search_path, SAFE_SEARCH_PATH};
use pg_trickle_core::dag::Dag;
use pg_trickle_core::options::RefreshMode;
use pg_trickle_core::schedule::Schedule;
use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::prelude::*;

/// Volatile functions give a different answer on every evaluation, so no differential
/// maintenance can keep such a query equal to a fresh run. FULL (and AUTO, which then
/// recomputes) accepts them: every refresh evaluates them anew.
pub fn check_mode_supports(
    settings: &StreamTableSettings,
    has_volatile_functions: bool,
) -> PgtResult<()> {
    let incremental = matches!(
        settings.refresh_mode,
        RefreshMode::Differential | RefreshMode::Immediate
    ) || settings.schedule == Schedule::Immediate;
    if incremental && has_volatile_functions {
        return Err(CoreError::new(
            ErrorKind::FeatureNotSupported,
            format!(
                "refresh mode {} cannot maintain a query that calls volatile functions",
                if settings.schedule == Schedule::Immediate {
                    "IMMEDIATE"
                } else {
                    settings.refresh_mode.as_str()
                }
            ),
        )
        .with_detail(
            "Functions such as random() or clock_timestamp() return a new value on every call.",
        )
        .with_hint("Use refresh_mode => 'FULL', or remove the volatile function call."));
    }
    Ok(())
}

fn relation_address(relid: pg_sys::Oid) -> pg_sys::ObjectAddress {
    pg_sys::ObjectAddress {
        classId: pg_sys::RelationRelationId,
        objectId: relid,
        objectSubId: 0,
    }
}

/// Make `pg_depend` say that stream table `st_relid` reads exactly `sources` (the relations its
/// query names), replacing what it said before.
pub fn record_source_dependencies(st_relid: pg_sys::Oid, sources: &[pg_sys::Oid]) {
    let depender = relation_address(st_relid);
    // SAFETY: ObjectAddress values are plain data; the catalog functions copy them. A stream
    // table has no other normal dependencies on relations (no inheritance), so deleting them
    // removes only what an earlier call recorded.
    unsafe {
        pg_sys::deleteDependencyRecordsForClass(
            pg_sys::RelationRelationId,
            st_relid,
            pg_sys::RelationRelationId,
            pg_sys::DependencyType::DEPENDENCY_NORMAL as std::ffi::c_char,
        );
        for source in sources.iter().filter(|s| **s != st_relid) {
            let referenced = relation_address(*source);
            pg_sys::recordDependencyOn(
                &depender,
                &referenced,
                pg_sys::DependencyType::DEPENDENCY_NORMAL,
            );
        }
        pg_sys::CommandCounterIncrement();
    }
}

/// Refuse a definition under which stream table `st_relid` would read itself, directly or
/// through other stream tables.
pub fn check_no_cycle(
    st_relid: pg_sys::Oid,
    st_name: &str,
    sources: &[Dependency],
) -> PgtResult<()> {
    let upstream_streams: Vec<u32> = sources
        .iter()
        .filter(|d| d.kind == "STREAM_TABLE")
        .map(|d| d.relid.to_u32())
        .collect();
    if upstream_streams.is_empty() {
        return Ok(());
    }
    let mut dag: Dag<u32> = Dag::new();
    for st in store::all()? {
        for up in store::stream_table_sources(st.pgt_id)? {
            dag.add_edge(up.to_u32(), st.relid.to_u32());
        }
    }
    if let Some(cycle) = dag.cycle_if_reads(st_relid.to_u32(), &upstream_streams) {
        let mut names = Vec::new();
        for relid in cycle {
            let name: Option<String> = query_one(
                "SELECT $1::pg_catalog.regclass::text",
                &[pg_sys::Oid::from(relid).into()],
            )?;
            names.push(name.unwrap_or_else(|| relid.to_string()));
        }
        return Err(CoreError::new(
            ErrorKind::DependencyCycle,
            format!("stream table {st_name} would depend on itself"),
        )
        .with_detail(format!("Dependency cycle: {}.", names.join(" -> ")))
        .with_hint(
            "A stream table cannot read, directly or through others, a stream table that reads it.",
        ));
    }
    Ok(())
}

/// The columns' types spelled with every name qualified, as the catalog stores them.
pub fn type_names(columns: &[OutputColumn]) -> PgtResult<Vec<String>> {
    with_search_path(SAFE_SEARCH_PATH, || {
        columns
            .iter()
            .map(|c| {
                query_one::<String>(
                    "SELECT pg_catalog.format_type($1, $2)",
                    &[c.type_oid.into(), c.typmod.into()],
                )
                .map(Option::unwrap_or_default)
            })
            .collect()
    })
}
