//! What creating and redefining a stream table share: checking that the requested refresh mode
//! can maintain the query, recording in `pg_depend` that the stream table reads its sources
//! (so `DROP TABLE source` is refused, or cascades, like for a view), and refusing cycles.

use crate::analyze::OutputColumn;
use crate::catalog::store::{self, Dependency};
use crate::catalog::StreamTableSettings;
use crate::error::PgtResult;
use crate::pg::{query_one, with_search_path, SAFE_SEARCH_PATH};
use pg_trickle_core::dag::Dag;
use pg_trickle_core::maintain::Strategy;
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

/// How a new definition will be maintained: a plan, or why there is none.
pub struct Maintenance {
    pub plan: Option<pg_trickle_core::maintain::StreamPlan>,
    /// Captured columns per source relation OID (for the dependency rows).
    pub captured: std::collections::BTreeMap<u32, Vec<String>>,
    pub blocker: Option<String>,
}

/// Plan differential maintenance of `analyzed` as stream table `schema.name`. An explicit
/// DIFFERENTIAL or IMMEDIATE request for a query the engine cannot maintain is an error that
/// names the construct; AUTO records the reason and refreshes in full. Queries that read the
/// clock are accepted in every mode and recomputed in full on each refresh.
pub fn plan_maintenance(
    settings: &StreamTableSettings,
    analyzed: &crate::analyze::AnalyzedQuery,
    schema: &str,
    name: &str,
) -> PgtResult<Maintenance> {
    let none = |blocker: Option<String>| Maintenance {
        plan: None,
        captured: Default::default(),
        blocker,
    };
    if settings.refresh_mode == RefreshMode::Full {
        return Ok(none(None));
    }
    if analyzed.has_volatile_functions {
        return Ok(none(Some("volatile functions".into())));
    }
    let explicit = matches!(
        settings.refresh_mode,
        RefreshMode::Differential | RefreshMode::Immediate
    );
    let refuse = |construct: &str| {
        CoreError::new(
            ErrorKind::FeatureNotSupported,
            format!(
                "refresh mode {} cannot maintain this query: it uses {construct}",
                settings.refresh_mode.as_str()
            ),
        )
        .with_hint("Use refresh_mode => 'AUTO' (recomputes in full when needed) or 'FULL'.")
    };
    let lowered = match crate::analyze::lower_query(&analyzed.canonical_sql)? {
        Ok(lowered) => lowered,
        Err(blocker) if blocker.time_dependent || !explicit => {
            return Ok(none(Some(blocker.construct)))
        }
        Err(blocker) => return Err(refuse(&blocker.construct)),
    };
    let relids: Vec<pg_sys::Oid> = lowered.sources.iter().map(|s| s.relid).collect();
    let rls: bool = query_one(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                        WHERE c.oid = ANY($1) AND c.relrowsecurity
                          AND NOT pg_catalog.pg_has_role(c.relowner, 'USAGE')
                          AND NOT (SELECT r.rolbypassrls OR r.rolsuper FROM pg_catalog.pg_roles r
                                   WHERE r.rolname = current_user))",
        &[relids.into()],
    )?
    .unwrap_or(false);
    if rls {
        let construct = "a source with row-level security (changes are captured without policies)";
        return if explicit {
            Err(refuse(construct))
        } else {
            Ok(none(Some(construct.into())))
        };
    }
    let visible: Vec<String> = analyzed.columns.iter().map(|c| c.name.clone()).collect();
    match crate::refresh::build_plan(schema, name, &visible, &analyzed.canonical_sql, &lowered) {
        Ok(plan) => {
            let mut captured: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
            for source in &lowered.sources {
                let cols = captured.entry(source.relid.to_u32()).or_default();
                for c in &source.columns {
                    if !cols.contains(c) {
                        cols.push(c.clone());
                    }
                }
            }
            Ok(Maintenance {
                plan: Some(plan),
                captured,
                blocker: None,
            })
        }
        Err(reason) if explicit => Err(refuse(&reason)),
        Err(reason) => Ok(none(Some(reason))),
    }
}

/// The hidden columns (`__pgt_*`) table `relid` has.
pub fn hidden_column_names(relid: pg_sys::Oid) -> PgtResult<Vec<String>> {
    Ok(crate::pg::query_one::<Vec<String>>(
        "SELECT array_agg(attname::text) FROM pg_catalog.pg_attribute
         WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attname LIKE '\\_\\_pgt\\_%'",
        &[relid.into()],
    )?
    .unwrap_or_default())
}

/// After a source column that a sum of `st` reads lost its NOT NULL: the stream table gets
/// the count column (`__pgt_aN_n`) the sum needs from now on, holding each group's row count
/// (every value counted so far was not NULL). Run as the stream table's owner.
pub fn add_missing_counts(st: &crate::catalog::StreamTable) -> PgtResult<()> {
    if st.maintenance.is_none() {
        return Ok(());
    }
    // a query that no longer has a plan fails at its next refresh, as before
    let Ok(plan) = crate::refresh::plan_from_query(st) else {
        return Ok(());
    };
    let missing = plan.missing_counts(&hidden_column_names(st.relid)?);
    if missing.is_empty() {
        return Ok(());
    }
    let quote = pg_trickle_core::sql::quote_ident;
    let added: Vec<String> = missing
        .iter()
        .map(|(column, _)| format!("ADD COLUMN {} bigint", quote(column)))
        .collect();
    let filled: Vec<String> = missing
        .iter()
        .map(|(column, count)| format!("{} = {count}", quote(column)))
        .collect();
    let table = st.qualified_name();
    let _own = crate::ddl::OwnDdl::begin();
    crate::pg::as_role(st.owner, false, || {
        crate::pg::run(&format!("ALTER TABLE {table} {}", added.join(", ")), &[])?;
        let _permit = crate::guard::RefreshWritePermit::acquire();
        crate::pg::run(&format!("UPDATE {table} SET {}", filled.join(", ")), &[])
    })
}

/// Give `table` exactly the hidden columns of `plan` (none without a plan), with the row-id
/// index.
pub fn install_hidden_columns(
    table: &str,
    relid: pg_sys::Oid,
    plan: Option<&pg_trickle_core::maintain::StreamPlan>,
) -> PgtResult<()> {
    let _own = crate::ddl::OwnDdl::begin();
    let existing = hidden_column_names(relid)?;
    let mut actions: Vec<String> = existing
        .iter()
        .map(|c| format!("DROP COLUMN {}", pg_trickle_core::sql::quote_ident(c)))
        .collect();
    if let Some(plan) = plan {
        actions.extend(plan.hidden_columns().into_iter().map(|(name, ty)| {
            format!(
                "ADD COLUMN {} {ty}",
                pg_trickle_core::sql::quote_ident(&name)
            )
        }));
    }
    if actions.is_empty() {
        return Ok(());
    }
    crate::pg::run(&format!("ALTER TABLE {table} {}", actions.join(", ")), &[])?;
    if let Some(plan) = plan {
        let (unique, columns) = plan.row_index();
        let index = if unique {
            format!(
                "CREATE UNIQUE INDEX ON {table} ({}) NULLS NOT DISTINCT",
                columns.join(", ")
            )
        } else {
            format!("CREATE INDEX ON {table} ({})", columns.join(", "))
        };
        crate::pg::run(&index, &[])?;
        // rows updated in place (group and DISTINCT counts) leave room on their page, so the
        // updates are HOT and skip index maintenance
        if matches!(plan.strategy, Strategy::Algebraic(_) | Strategy::Distinct) {
            crate::pg::run(&format!("ALTER TABLE {table} SET (fillfactor = 80)"), &[])?;
        }
    }
    Ok(())
}

/// The dependency rows of a definition, with the captured columns of each source.
pub fn dependencies_with_columns(
    analyzed: &crate::analyze::AnalyzedQuery,
    maintenance: &Maintenance,
) -> PgtResult<Vec<Dependency>> {
    let mut deps = crate::analyze::resolve_sources(&analyzed.relation_oids)?;
    for dep in &mut deps {
        dep.columns = maintenance.captured.get(&dep.relid.to_u32()).cloned();
    }
    Ok(deps)
}
