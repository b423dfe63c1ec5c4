//! The oracle: a stream table must equal a fresh run of its defining query as a multiset
//! (`EXCEPT ALL` in both directions over the visible columns), compared on the text form of each
//! row, so that values which are equal but differ (`1.0` and `1.00`) count as different. On a
//! mismatch the panic message
//! is a self-contained reproduction: the query, and the rows on each side that the other lacks.

use postgres::GenericClient;

/// Assert that `stream_table` holds exactly the rows of `query`.
pub fn assert_oracle(client: &mut impl GenericClient, stream_table: &str, query: &str) {
    if let Some(report) = oracle_mismatch(client, stream_table, query) {
        panic!("{report}");
    }
}

/// Whether stream table `name` (unqualified, on the search path) equals a fresh run of the
/// query it was created with.
pub fn is_fresh(client: &mut impl GenericClient, name: &str) -> bool {
    let query: String = client
        .query_one(
            "SELECT original_query FROM pgtrickle.pgt_stream_tables WHERE pgt_name = $1",
            &[&name],
        )
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("query of {name}: {e}"));
    oracle_mismatch(client, name, &query).is_none()
}

/// `None` when `stream_table` holds exactly the rows of `query`; otherwise a report with the
/// query and samples of the rows each side lacks.
pub fn oracle_mismatch(
    client: &mut impl GenericClient,
    stream_table: &str,
    query: &str,
) -> Option<String> {
    let columns = visible_columns(client, stream_table);
    // whole-row references under names no column has
    let stored = format!(
        "SELECT oracle_stored_row::text AS row FROM (SELECT {columns} FROM {stream_table}) AS oracle_stored_row"
    );
    let fresh = format!("SELECT oracle_fresh_row::text AS row FROM ({query}) AS oracle_fresh_row");
    let extra_sql = format!("{stored} EXCEPT ALL {fresh}");
    let missing_sql = format!("{fresh} EXCEPT ALL {stored}");
    let extra = count(client, &extra_sql);
    let missing = count(client, &missing_sql);
    if extra == 0 && missing == 0 {
        return None;
    }
    Some(format!(
        "ORACLE MISMATCH for {stream_table}: {extra} rows too many, {missing} rows missing\n\
         -- compare:\n{query};\nSELECT {columns} FROM {stream_table};\n\
         -- rows in the stream table but not in the query:\n  {}\n\
         -- rows in the query but not in the stream table:\n  {}",
        sample(client, &extra_sql),
        sample(client, &missing_sql)
    ))
}

fn count(client: &mut impl GenericClient, sql: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM ({sql}) AS d"), &[])
        .unwrap_or_else(|e| panic!("oracle query failed: {e}\n{sql}"))
        .get(0)
}

fn sample(client: &mut impl GenericClient, sql: &str) -> String {
    client
        .query(&format!("SELECT d.* FROM ({sql}) AS d LIMIT 10"), &[])
        .map(|rows| {
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n  ")
        })
        .unwrap_or_else(|e| format!("(could not list them: {e})"))
}

/// The visible columns of a stream table (its hidden `__pgt_*` columns are not part of the
/// result), or `*` for a plain table.
fn visible_columns(client: &mut impl GenericClient, table: &str) -> String {
    client
        .query_one(
            "SELECT string_agg(quote_ident(c.name), ', ' ORDER BY c.n)
             FROM pgtrickle.pgt_stream_tables s, unnest(s.column_names) WITH ORDINALITY AS c(name, n)
             WHERE s.pgt_relid = to_regclass($1)",
            &[&table],
        )
        .unwrap_or_else(|e| panic!("columns of {table}: {e}"))
        .get::<_, Option<String>>(0)
        .unwrap_or_else(|| "*".to_string())
}
