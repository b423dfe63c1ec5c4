//! `pgtrickle.alter_stream_table(name, ...)`: change the settings of a stream table, or its
//! query when the new query has the same output columns. Arguments left NULL keep their value.

use super::definition::{
    check_mode_supports, check_no_cycle, dependencies_with_columns, install_hidden_columns,
    plan_maintenance, record_source_dependencies, type_names,
};
use super::{check_owner, lookup_stream_table, required};
use crate::analyze::{analyze_defining_query, resolve_sources, AnalyzedQuery};
use crate::catalog::store;
use crate::catalog::StreamTable;
use crate::error::{OrRaise, PgtResult};
use pg_trickle_core::options::{DiamondConsistency, RefreshMode, Tier};
use pg_trickle_core::schedule::Schedule;
use pg_trickle_core::{CoreError, ErrorKind};
use pgrx::prelude::*;

/// The requested changes; `None` keeps the current value.
struct Changes<'a> {
    query: Option<&'a str>,
    schedule: Option<&'a str>,
    schedule_seconds: Option<i64>,
    refresh_mode: Option<&'a str>,
    tier: Option<&'a str>,
    append_only: Option<bool>,
    diamond_consistency: Option<&'a str>,
    pooler_compatibility_mode: Option<bool>,
}

#[allow(clippy::too_many_arguments)]
#[pg_extern]
fn alter_stream_table(
    name: Option<&str>,
    query: default!(Option<&str>, "NULL"),
    schedule: default!(Option<&str>, "NULL"),
    refresh_mode: default!(Option<&str>, "NULL"),
    tier: default!(Option<&str>, "NULL"),
    append_only: default!(Option<bool>, "NULL"),
    diamond_consistency: default!(Option<&str>, "NULL"),
    schedule_seconds: default!(Option<i64>, "NULL"),
    pooler_compatibility_mode: default!(Option<bool>, "NULL"),
) {
    let changes = Changes {
        query,
        schedule,
        schedule_seconds,
        refresh_mode,
        tier,
        append_only,
        diamond_consistency,
        pooler_compatibility_mode,
    };
    (|| alter(required(name, "name")?, &changes))().or_raise()
}

fn alter(name: &str, changes: &Changes) -> PgtResult<()> {
    let st = lookup_stream_table(name)?;
    check_owner(&st, "alter")?;
    let mut settings = st.settings.clone();
    if let Some(mode) = changes.refresh_mode {
        settings.refresh_mode = RefreshMode::parse(mode)?;
    }
    if let Some(schedule) = Schedule::from_arguments(changes.schedule, changes.schedule_seconds)? {
        settings.schedule = schedule;
    }
    if let Some(tier) = changes.tier {
        settings.tier = Tier::parse(tier)?;
    }
    if let Some(value) = changes.append_only {
        settings.append_only = value;
    }
    if let Some(value) = changes.diamond_consistency {
        settings.diamond_consistency = DiamondConsistency::parse(value)?;
    }
    if let Some(value) = changes.pooler_compatibility_mode {
        settings.pooler_compatibility_mode = value;
    }

    let redefined = match changes.query {
        Some(query) => Some((query, redefine(&st, query)?)),
        None => None,
    };
    let has_volatile = redefined
        .as_ref()
        .map(|(_, a)| a.has_volatile_functions)
        .unwrap_or(st.has_volatile_functions);
    check_mode_supports(&settings, has_volatile)?;
    store::update_settings(
        st.pgt_id,
        &settings,
        redefined
            .as_ref()
            .map(|(q, a)| (*q, a.canonical_sql.as_str(), a.has_volatile_functions)),
    )?;
    let replan = redefined.is_some()
        || settings.refresh_mode != st.settings.refresh_mode
        || settings.append_only != st.settings.append_only;
    if replan {
        let analyzed = match redefined {
            Some((_, analyzed)) => analyzed,
            None => analyze_defining_query(&st.defining_query)?,
        };
        let maintenance = plan_maintenance(&settings, &analyzed, &st.schema, &st.name)?;
        install_hidden_columns(&st.qualified_name(), st.relid, maintenance.plan.as_ref())?;
        store::set_maintenance(
            st.pgt_id,
            maintenance.plan.as_ref().map(|p| p.strategy.name()),
            maintenance.blocker.as_deref(),
        )?;
        store::set_dependencies(
            st.pgt_id,
            &dependencies_with_columns(&analyzed, &maintenance)?,
        )?;
        // sources captured before or after the change: each one's triggers follow its readers
        let affected: std::collections::BTreeSet<u32> = st
            .captured_sources
            .iter()
            .map(|oid| oid.to_u32())
            .chain(maintenance.captured.keys().copied())
            .collect();
        for source in affected {
            crate::cdc::sync_source(pg_sys::Oid::from(source))?;
        }
        store::clear_frontier(st.pgt_id)?;
        crate::refresh::refresh(st.relid)?;
    }
    Ok(())
}

/// Analyze a new query for `st`; it must produce the same columns (names and types), and must
/// not make the stream table read itself.
fn redefine(st: &StreamTable, query: &str) -> PgtResult<AnalyzedQuery> {
    let analyzed = analyze_defining_query(query)?;
    let names: Vec<String> = analyzed.columns.iter().map(|c| c.name.clone()).collect();
    let types = type_names(&analyzed.columns)?;
    if names != st.column_names || types != st.column_types {
        let describe = |n: &[String], t: &[String]| {
            n.iter()
                .zip(t)
                .map(|(n, t)| format!("{n} {t}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(CoreError::new(
            ErrorKind::FeatureNotSupported,
            format!(
                "the new query of stream table {} has different output columns",
                st.qualified_name()
            ),
        )
        .with_detail(format!(
            "Current columns: ({}); new columns: ({}).",
            describe(&st.column_names, &st.column_types),
            describe(&names, &types)
        ))
        .with_hint("Drop the stream table and create it again with the new query."));
    }
    let sources = resolve_sources(&analyzed.relation_oids)?;
    check_no_cycle(st.relid, &st.qualified_name(), &sources)?;
    record_source_dependencies(st.relid, &analyzed.relation_oids);
    Ok(analyzed)
}
