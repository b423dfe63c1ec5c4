//! `pgtrickle.create_stream_table(name, query, ...)`: define a stream table, create its storage
//! and fill it, all inside the caller's transaction (a rollback leaves nothing behind).

use super::definition::{
    check_mode_supports, dependencies_with_columns, install_hidden_columns, plan_maintenance,
    record_source_dependencies,
};
use super::required;
use crate::analyze::analyze_defining_query;
use crate::catalog::store::{self, NewStreamTable};
use crate::catalog::StreamTableSettings;
use crate::error::{null_argument, OrRaise, PgtResult};
use crate::pg::{query_one, run, with_search_path, SAFE_SEARCH_PATH};
use pg_trickle_core::names::parse_relation_name;
use pg_trickle_core::options::{DiamondConsistency, RefreshMode, Tier};
use pg_trickle_core::schedule::Schedule;
use pg_trickle_core::sql::QualifiedName;
use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::prelude::*;

/// Prefix of the columns pg_trickle may add to a stream table; user columns may not use it.
const HIDDEN_COLUMN_PREFIX: &str = "__pgt_";

/// Create a stream table named `name` whose contents are the result of `query`.
#[allow(clippy::too_many_arguments)]
#[pg_extern]
fn create_stream_table(
    name: Option<&str>,
    query: Option<&str>,
    schedule: default!(Option<&str>, "NULL"),
    refresh_mode: default!(Option<&str>, "'AUTO'"),
    append_only: default!(Option<bool>, "false"),
    diamond_consistency: default!(Option<&str>, "'none'"),
    schedule_seconds: default!(Option<i64>, "NULL"),
    pooler_compatibility_mode: default!(Option<bool>, "false"),
    initialize: default!(Option<bool>, "true"),
) {
    (|| -> PgtResult<()> {
        let name = required(name, "name")?;
        let query = required(query, "query")?;
        let settings = StreamTableSettings {
            refresh_mode: RefreshMode::parse(required(refresh_mode, "refresh_mode")?)?,
            schedule: Schedule::from_arguments(schedule, schedule_seconds)?
                .unwrap_or(Schedule::Calculated),
            tier: Tier::Hot,
            append_only: append_only.ok_or_else(|| null_argument("append_only"))?,
            diamond_consistency: DiamondConsistency::parse(required(
                diamond_consistency,
                "diamond_consistency",
            )?)?,
            pooler_compatibility_mode: pooler_compatibility_mode
                .ok_or_else(|| null_argument("pooler_compatibility_mode"))?,
        };
        let initialize = initialize.ok_or_else(|| null_argument("initialize"))?;
        create(name, query, &settings, initialize)?;
        // a database's first stream table needs a scheduler
        crate::scheduler::wake_launcher_at_commit();
        Ok(())
    })()
    .or_raise()
}

fn create(
    name: &str,
    query: &str,
    settings: &StreamTableSettings,
    initialize: bool,
) -> PgtResult<()> {
    let target = target_name(name)?;
    let analyzed = analyze_defining_query(query)?;
    check_mode_supports(settings, analyzed.has_volatile_functions)?;
    check_column_names(
        &analyzed
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>(),
    )?;
    let maintenance = plan_maintenance(
        settings,
        &analyzed,
        target.schema.as_str(),
        target.name.as_str(),
    )?;

    let table = target.to_string();
    with_search_path(SAFE_SEARCH_PATH, || {
        run(
            &format!(
                "CREATE TABLE {table} AS {}\nWITH NO DATA",
                analyzed.canonical_sql
            ),
            &[],
        )
    })?;
    let relid: pg_sys::Oid = query_one(
        "SELECT pg_catalog.to_regclass($1)::oid",
        &[table.as_str().into()],
    )?
    .ok_or_else(|| CoreError::internal(format!("table {table} vanished after CREATE TABLE")))?;
    install_hidden_columns(&table, relid, maintenance.plan.as_ref())?;
    crate::guard::install(&table)?;
    record_source_dependencies(relid, &analyzed.relation_oids);

    let sources = dependencies_with_columns(&analyzed, &maintenance)?;
    let pgt_id = store::insert(&NewStreamTable {
        relid,
        original_query: query,
        defining_query: &analyzed.canonical_sql,
        settings,
        has_volatile_functions: analyzed.has_volatile_functions,
        maintenance: maintenance.plan.as_ref().map(|p| p.strategy.name()),
        differential_blocker: maintenance.blocker.as_deref(),
    })?;
    store::set_dependencies(pgt_id, &sources)?;
    for source in maintenance.captured.keys() {
        crate::cdc::sync_source(pg_sys::Oid::from(*source))?;
    }

    if initialize {
        crate::refresh::refresh(relid)?;
    }
    Ok(())
}

/// The schema-qualified name to create: the given schema, or the first existing schema of
/// `search_path` (where CREATE TABLE would put it). The name must be free.
fn target_name(name: &str) -> PgtResult<QualifiedName> {
    let rel = parse_relation_name(name)?;
    let schema = match rel.schema {
        Some(schema) => {
            let exists = query_one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
                &[schema.as_str().into()],
            )?
            .unwrap_or(false);
            if !exists {
                return Err(CoreError::new(
                    ErrorKind::InvalidSchemaName,
                    format!("schema {schema:?} does not exist"),
                )
                .with_hint("Create the schema first, or name an existing one."));
            }
            schema
        }
        None => query_one::<String>("SELECT pg_catalog.current_schema()::text", &[])?.ok_or_else(
            || {
                CoreError::new(
                    ErrorKind::InvalidSchemaName,
                    "no schema has been selected to create in",
                )
                .with_hint("Qualify the name with a schema, or set search_path.")
            },
        )?,
    };
    let target = QualifiedName::new(schema, rel.name);
    let existing: Option<pg_sys::Oid> = query_one(
        "SELECT pg_catalog.to_regclass($1)::oid",
        &[target.to_string().as_str().into()],
    )?;
    if let Some(relid) = existing {
        let hint = if store::is_stream_table(relid)? {
            "It is a stream table: change it with pgtrickle.alter_stream_table, or drop it with pgtrickle.drop_stream_table."
        } else {
            "Choose another name, or drop the existing relation first."
        };
        return Err(CoreError::new(
            ErrorKind::DuplicateTable,
            format!("relation {target} already exists"),
        )
        .with_hint(hint));
    }
    Ok(target)
}

fn check_column_names(names: &[String]) -> PgtResult<()> {
    if let Some(bad) = names.iter().find(|n| n.starts_with(HIDDEN_COLUMN_PREFIX)) {
        return Err(CoreError::new(
            ErrorKind::InvalidParameterValue,
            format!("column name {bad:?} is reserved: names starting with {HIDDEN_COLUMN_PREFIX} belong to pg_trickle"),
        )
        .with_hint("Rename the column with AS in the query."));
    }
    Ok(())
}
