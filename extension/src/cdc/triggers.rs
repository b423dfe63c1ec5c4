//! The capture triggers of one source: statement-level triggers for INSERT, UPDATE, DELETE
//! and TRUNCATE on the source and each of its partitions, all calling
//! `pgtrickle._pgt_capture` (`capture`) with the source's OID and the columns its dependants
//! read as arguments.

use super::buffer::Tracked;
use crate::error::PgtResult;
use crate::pg::{query_one, run};
use pg_trickle_core::sql::quote_literal;
use pgrx::prelude::*;

pub const CAPTURE_TRIGGER_PREFIX: &str = "__pgt_capture_";

/// The trigger function (see `capture`).
const CAPTURE_FUNCTION: &str = "pgtrickle._pgt_capture";

/// The trigger arguments: the source's OID, then the tracked column names.
fn trigger_arguments(relid: pg_sys::Oid, columns: &[Tracked]) -> Vec<String> {
    std::iter::once(relid.to_u32().to_string())
        .chain(columns.iter().map(|c| c.name.clone()))
        .collect()
}

/// The arguments as `pg_trigger.tgargs` stores them: each one followed by a zero byte.
fn stored_arguments(arguments: &[String]) -> Vec<u8> {
    arguments
        .iter()
        .flat_map(|a| a.bytes().chain(std::iter::once(0)))
        .collect()
}

/// The source and, for a partitioned source, every partition below it: statement triggers fire
/// only on the table a statement names, so each one needs the capture triggers.
fn tree_members(relid: pg_sys::Oid, source: &str) -> PgtResult<Vec<String>> {
    let partitions: Vec<String> = query_one(
        "SELECT array_agg(t.relid::pg_catalog.regclass::text ORDER BY t.level, t.relid)
         FROM pg_catalog.pg_partition_tree($1) t WHERE t.relid <> $1",
        &[relid.into()],
    )?
    .unwrap_or_default();
    Ok(std::iter::once(source.to_string())
        .chain(partitions)
        .collect())
}

/// Create the triggers that are missing or out of date (other arguments, other transition
/// tables), on the source and its partitions.
pub fn install(
    relid: pg_sys::Oid,
    source: &str,
    columns: &[Tracked],
    append_only: bool,
) -> PgtResult<()> {
    let arguments = trigger_arguments(relid, columns);
    let stored = stored_arguments(&arguments);
    let call = format!(
        "{CAPTURE_FUNCTION}({})",
        arguments
            .iter()
            .map(|a| quote_literal(a))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // an append-only capture writes only a reset marker on UPDATE and DELETE: those triggers
    // need no transition tables, which PostgreSQL would otherwise fill with every changed row
    let (old_rows, old_and_new_rows) = if append_only {
        ("", "")
    } else {
        (
            "REFERENCING OLD TABLE AS __pgt_old",
            "REFERENCING OLD TABLE AS __pgt_old NEW TABLE AS __pgt_new",
        )
    };
    let triggers = [
        ("ins", "INSERT", "REFERENCING NEW TABLE AS __pgt_new"),
        ("upd", "UPDATE", old_and_new_rows),
        ("del", "DELETE", old_rows),
        ("trunc", "TRUNCATE", ""),
    ];
    for table in tree_members(relid, source)? {
        let mut enable = Vec::new();
        for (suffix, event, referencing) in triggers {
            let name = format!("{CAPTURE_TRIGGER_PREFIX}{suffix}");
            // whether it exists as wanted: function, arguments and transition tables
            let found = query_one::<bool>(
                "SELECT (tgoldtable IS NOT NULL OR tgnewtable IS NOT NULL) = ($3 <> '')
                        AND tgfoid = pg_catalog.to_regprocedure($4) AND tgargs = $5
                 FROM pg_catalog.pg_trigger
                 WHERE tgrelid = $1::pg_catalog.regclass AND tgname = $2",
                &[
                    table.as_str().into(),
                    name.as_str().into(),
                    referencing.into(),
                    format!("{CAPTURE_FUNCTION}()").into(),
                    stored.clone().into(),
                ],
            )?;
            if found == Some(false) {
                run(&format!("DROP TRIGGER {name} ON {table}"), &[])?;
            }
            if found != Some(true) {
                run(
                    &format!(
                        "CREATE TRIGGER {name} AFTER {event} ON {table} {referencing} \
                         FOR EACH STATEMENT EXECUTE FUNCTION {call}"
                    ),
                    &[],
                )?;
                enable.push(format!("ENABLE ALWAYS TRIGGER {name}"));
            }
        }
        if !enable.is_empty() {
            // one statement, so the DDL checks never see a partial set; ALWAYS so that what
            // logical replication applies is captured too
            run(&format!("ALTER TABLE {table} {}", enable.join(", ")), &[])?;
        }
    }
    Ok(())
}

/// Drop the capture triggers of the source and its partitions.
pub fn remove(relid: pg_sys::Oid) -> PgtResult<()> {
    let source: String =
        query_one("SELECT $1::pg_catalog.regclass::text", &[relid.into()])?.unwrap_or_default();
    for table in tree_members(relid, &source)? {
        for suffix in ["ins", "upd", "del", "trunc"] {
            run(
                &format!("DROP TRIGGER IF EXISTS {CAPTURE_TRIGGER_PREFIX}{suffix} ON {table}"),
                &[],
            )?;
        }
    }
    Ok(())
}
