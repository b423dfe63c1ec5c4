//! The capture triggers of one source. INSERT, DELETE and TRUNCATE (and every event of an
//! append-only source) are captured by `pgtrickle._pgt_capture` (`capture`), which copies the
//! transition rows into the buffer. An UPDATE's net change is computed by a PL/pgSQL function
//! generated per source (it names the buffer and the tracked columns): SECURITY DEFINER, since
//! the users writing to the source cannot write to the buffer, which is not readable by PUBLIC;
//! its search_path is pinned, and it contains no user-supplied text.

use super::buffer::Tracked;
use crate::error::PgtResult;
use crate::pg::{query_one, run};
use pg_trickle_core::sql::{quote_ident, QualifiedName};
use pgrx::prelude::*;

pub const CAPTURE_TRIGGER_PREFIX: &str = "__pgt_capture_";

/// The trigger function of INSERT, DELETE and TRUNCATE (see `capture`).
const GENERIC_CAPTURE: &str = "pgtrickle._pgt_capture";

pub fn function_name(relid: pg_sys::Oid) -> QualifiedName {
    QualifiedName::new("pgtrickle_changes", format!("capture_{}", relid.to_u32()))
}

/// The body of the UPDATE capture function.
fn function_body(relid: pg_sys::Oid, buffer: &QualifiedName, columns: &[Tracked]) -> String {
    let names: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
    let list = |prefix: &str| {
        names
            .iter()
            .map(|n| format!(", {prefix}{n}"))
            .collect::<String>()
    };
    let update = if names.is_empty() {
        String::new()
    } else {
        // the tracked columns, and after them the text of those whose equality is not identity
        // (so that `1.0` -> `1.00` is a change); the text columns are only compared
        let qualified = |alias: &str| {
            let originals = names.iter().map(|n| format!("{alias}.{n}"));
            let images = columns
                .iter()
                .zip(&names)
                .enumerate()
                .filter_map(|(i, (c, n))| {
                    c.output_function
                        .as_ref()
                        .map(|f| format!("pg_catalog.textin({f}({alias}.{n})) AS __pgt_image_{i}"))
                });
            originals.chain(images).collect::<Vec<_>>().join(", ")
        };
        let images: Vec<String> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.output_function.is_some())
            .map(|(i, _)| format!("__pgt_image_{i}"))
            .collect();
        let compared: Vec<String> = names
            .iter()
            .chain(&images)
            .map(|n| format!("u.{n}"))
            .collect();
        // old rows count -1, new ones +1, and what does not cancel out is the change: one
        // hash aggregation over both transition tables (two EXCEPT ALLs made two), so an
        // UPDATE of columns no stream table reads writes nothing and costs little
        format!(
            "INSERT INTO {buffer} (__pgt_xid, __pgt_seq, __pgt_weight{l})
               SELECT pgt_xid, pgt_seq, CASE WHEN c.__pgt_w > 0 THEN 1 ELSE -1 END::int2{lc}
               FROM (SELECT {grouped}, pg_catalog.sum(u.__pgt_w) AS __pgt_w
                     FROM (SELECT {o}, -1 AS __pgt_w FROM __pgt_old o
                           UNION ALL SELECT {n}, 1 FROM __pgt_new n) u
                     GROUP BY {positions} HAVING pg_catalog.sum(u.__pgt_w) <> 0) c
               CROSS JOIN LATERAL pg_catalog.generate_series(1::bigint, pg_catalog.abs(c.__pgt_w));",
            l = list(""),
            lc = list("c."),
            o = qualified("o"),
            n = qualified("n"),
            grouped = compared.join(", "),
            positions = (1..=compared.len())
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )
    };
    format!(
        "#variable_conflict use_variable
         DECLARE
           pgt_xid pg_catalog.xid8 := pg_catalog.pg_current_xact_id();
           pgt_seq bigint := pg_catalog.nextval('pgtrickle_changes.change_seq');
         BEGIN
           -- a table detached from the source's partition tree keeps the trigger: ignore it
           IF TG_RELID <> {root}::pg_catalog.oid AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_partition_ancestors(TG_RELID) a
                WHERE a.relid = {root}::pg_catalog.oid) THEN
             RETURN NULL;
           END IF;
           {update}
           RETURN NULL;
         END",
        root = relid.to_u32()
    )
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

/// (Re)write the capture function and create the triggers that are missing, on the source and
/// its partitions.
pub fn install(
    relid: pg_sys::Oid,
    source: &str,
    buffer: &QualifiedName,
    columns: &[Tracked],
    append_only: bool,
) -> PgtResult<()> {
    let function = function_name(relid);
    run(
        &format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql
             SECURITY DEFINER SET search_path = pg_catalog, pg_temp
             AS $pgt_capture$ {} $pgt_capture$",
            function_body(relid, buffer, columns)
        ),
        &[],
    )?;
    run(
        &format!("REVOKE ALL ON FUNCTION {function}() FROM PUBLIC"),
        &[],
    )?;
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
    // (function, its argument): the generic capture is told the source, so that partitions
    // write into their root's buffer
    let root = format!("'{}'", relid.to_u32());
    let generic = (GENERIC_CAPTURE.to_string(), root.as_str());
    let update = if append_only {
        generic.clone()
    } else {
        (function.to_string(), "")
    };
    let triggers = [
        (
            "ins",
            "INSERT",
            "REFERENCING NEW TABLE AS __pgt_new",
            &generic,
        ),
        ("upd", "UPDATE", old_and_new_rows, &update),
        ("del", "DELETE", old_rows, &generic),
        ("trunc", "TRUNCATE", "", &generic),
    ];
    for table in tree_members(relid, source)? {
        let mut enable = Vec::new();
        for (suffix, event, referencing, (trigger_function, argument)) in &triggers {
            let name = format!("{CAPTURE_TRIGGER_PREFIX}{suffix}");
            // whether it exists, calling the wanted function with the transition tables wanted
            let found = query_one::<bool>(
                "SELECT (tgoldtable IS NOT NULL OR tgnewtable IS NOT NULL) = ($3 <> '')
                        AND tgfoid = pg_catalog.to_regprocedure($4)
                 FROM pg_catalog.pg_trigger
                 WHERE tgrelid = $1::pg_catalog.regclass AND tgname = $2",
                &[
                    table.as_str().into(),
                    name.as_str().into(),
                    (*referencing).into(),
                    format!("{trigger_function}()").into(),
                ],
            )?;
            if found == Some(false) {
                run(&format!("DROP TRIGGER {name} ON {table}"), &[])?;
            }
            if found != Some(true) {
                run(
                    &format!(
                        "CREATE TRIGGER {name} AFTER {event} ON {table} {referencing} \
                         FOR EACH STATEMENT EXECUTE FUNCTION {trigger_function}({argument})"
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
