//! From the relations a query names to the catalog's dependency list: views are followed to
//! the relations behind them (through the view's rewrite rule in `pg_depend`), and each
//! relation gets its kind, with stream tables told apart from plain tables.

use crate::catalog::store::Dependency;
use crate::error::{spi_error, PgtResult};
use pgrx::prelude::*;

/// The dependency rows for a query that names `direct` relations.
pub fn resolve_sources(direct: &[pg_sys::Oid]) -> PgtResult<Vec<Dependency>> {
    let sql = "
        WITH RECURSIVE reach(relid, is_direct) AS (
            SELECT r, true FROM unnest($1::oid[]) AS r
            UNION
            SELECT d.refobjid, false
            FROM reach
            JOIN pg_catalog.pg_class v ON v.oid = reach.relid AND v.relkind = 'v'
            JOIN pg_catalog.pg_rewrite rw ON rw.ev_class = v.oid
            JOIN pg_catalog.pg_depend d
              ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = rw.oid
             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid <> v.oid
        )
        SELECT c.oid,
               CASE WHEN EXISTS (SELECT 1 FROM pgtrickle.pgt_stream_tables s WHERE s.pgt_relid = c.oid)
                        THEN 'STREAM_TABLE'
                    WHEN c.relkind = 'r' THEN 'TABLE'
                    WHEN c.relkind = 'p' THEN 'PARTITIONED_TABLE'
                    WHEN c.relkind = 'v' THEN 'VIEW'
                    WHEN c.relkind = 'm' THEN 'MATERIALIZED_VIEW'
                    WHEN c.relkind = 'f' THEN 'FOREIGN_TABLE'
               END AS kind,
               bool_or(reach.is_direct) AS is_direct
        FROM reach JOIN pg_catalog.pg_class c ON c.oid = reach.relid
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
        GROUP BY c.oid, kind
        ORDER BY c.oid";
    Spi::connect(|client| {
        let rows = client
            .select(sql, None, &[direct.to_vec().into()])
            .map_err(spi_error)?;
        let mut out = Vec::new();
        for row in rows {
            let relid = row.get::<pg_sys::Oid>(1).map_err(spi_error)?;
            let kind = row.get::<String>(2).map_err(spi_error)?;
            let is_direct = row.get::<bool>(3).map_err(spi_error)?.unwrap_or(false);
            if let (Some(relid), Some(kind)) = (relid, kind) {
                out.push(Dependency {
                    relid,
                    kind,
                    is_direct,
                    columns: None,
                });
            }
        }
        Ok(out)
    })
}
