//! Bad input to the API: each case fails with a clear error (SQLSTATE and hint) and leaves
//! nothing behind: no table, trigger, dependency or catalog row.

use pg_trickle_tests::{expect_error, TestDb};
use postgres::Client;

/// Counts of everything a failed call could leave behind.
fn footprint(client: &mut Client) -> Vec<i64> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_class),
                    (SELECT count(*) FROM pg_trigger),
                    (SELECT count(*) FROM pg_depend),
                    (SELECT count(*) FROM pgtrickle.pgt_stream_tables),
                    (SELECT count(*) FROM pgtrickle.pgt_dependencies)",
            &[],
        )
        .expect("footprint");
    (0..5).map(|i| row.get(i)).collect()
}

fn setup() -> (TestDb, Client) {
    let db = TestDb::new(&format!(
        "bad_input_{}",
        std::thread::current()
            .name()
            .unwrap_or("x")
            .replace("::", "_")
    ));
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE src (id int PRIMARY KEY, grp text, v numeric);
             INSERT INTO src SELECT i, 'g' || (i % 3), i FROM generate_series(1, 10) i;
             SELECT pgtrickle.create_stream_table('existing', 'SELECT grp, sum(v) AS s FROM src GROUP BY grp');",
        )
        .expect("setup");
    (db, client)
}

/// `(call, SQLSTATE)`: every call must fail with that code, a hint where pg_trickle raises it,
/// and no trace.
const CASES: &[(&str, &str)] = &[
    // not valid SQL
    ("SELECT pgtrickle.create_stream_table('st', 'SELEC 1')", "42601"),
    // not a single SELECT
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS a; SELECT 2 AS b')", "42601"),
    ("SELECT pgtrickle.create_stream_table('st', '')", "42601"),
    ("SELECT pgtrickle.create_stream_table('st', 'INSERT INTO src VALUES (100, ''x'', 1)')", "0A000"),
    ("SELECT pgtrickle.create_stream_table('st', 'DELETE FROM src')", "0A000"),
    ("SELECT pgtrickle.create_stream_table('st', 'CREATE TABLE x (a int)')", "0A000"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT * INTO newtab FROM src')", "0A000"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT * FROM src FOR UPDATE')", "0A000"),
    ("SELECT pgtrickle.create_stream_table('st', 'WITH d AS (DELETE FROM src RETURNING *) SELECT * FROM d')", "0A000"),
    // unknown table or column
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT * FROM no_such_table')", "42P01"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT no_such_column FROM src')", "42703"),
    // name already taken, by a stream table or a plain table
    ("SELECT pgtrickle.create_stream_table('existing', 'SELECT 1 AS a')", "42P07"),
    ("SELECT pgtrickle.create_stream_table('src', 'SELECT 1 AS a')", "42P07"),
    ("SELECT pgtrickle.create_stream_table('public.existing', 'SELECT 1 AS a')", "42P07"),
    // invalid schedules
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS a', schedule => '5x')", "22023"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS a', schedule => '-1s')", "22023"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS a', schedule => '0s')", "22023"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS a', schedule => '61 * * * *')", "22023"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS a', schedule_seconds => 0)", "22023"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS a', schedule => '1m', schedule_seconds => 5)", "22023"),
    // unknown refresh mode, diamond consistency
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS a', refresh_mode => 'FAST')", "22023"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS a', diamond_consistency => 'sometimes')", "22023"),
    // volatile functions where the query must be maintained incrementally
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT id, random() AS r FROM src', refresh_mode => 'DIFFERENTIAL')", "0A000"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT id, clock_timestamp() AS t FROM src', refresh_mode => 'IMMEDIATE')", "0A000"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT id, random() AS r FROM src', schedule => 'IMMEDIATE')", "0A000"),
    // a name longer than PostgreSQL allows, or malformed
    ("SELECT pgtrickle.create_stream_table(repeat('x', 64), 'SELECT 1 AS a')", "42622"),
    ("SELECT pgtrickle.create_stream_table('a.b.c', 'SELECT 1 AS a')", "42602"),
    ("SELECT pgtrickle.create_stream_table('\"unclosed', 'SELECT 1 AS a')", "42602"),
    ("SELECT pgtrickle.create_stream_table('no_such_schema.st', 'SELECT 1 AS a')", "3F000"),
    // NULL arguments
    ("SELECT pgtrickle.create_stream_table(NULL, 'SELECT 1 AS a')", "22004"),
    ("SELECT pgtrickle.create_stream_table('st', NULL)", "22004"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS a', refresh_mode => NULL)", "22004"),
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS a', append_only => NULL)", "22004"),
    ("SELECT pgtrickle.refresh_stream_table(NULL)", "22004"),
    ("SELECT pgtrickle.drop_stream_table(NULL)", "22004"),
    ("SELECT pgtrickle.alter_stream_table(NULL, tier => 'hot')", "22004"),
    // reserved column names
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT 1 AS __pgt_count')", "22023"),
    // duplicate output column names
    ("SELECT pgtrickle.create_stream_table('st', 'SELECT id, id FROM src')", "42701"),
    // other verbs: unknown names, wrong objects, invalid values
    ("SELECT pgtrickle.refresh_stream_table('no_such_st')", "42P01"),
    ("SELECT pgtrickle.refresh_stream_table('src')", "42809"),
    ("SELECT pgtrickle.drop_stream_table('src')", "42809"),
    ("SELECT pgtrickle.alter_stream_table('existing', tier => 'lukewarm')", "22023"),
    ("SELECT pgtrickle.alter_stream_table('existing', refresh_mode => 'SOMETIMES')", "22023"),
    ("SELECT pgtrickle.alter_stream_table('existing', schedule => '5x')", "22023"),
    ("SELECT pgtrickle.alter_stream_table('existing', query => 'SELECT grp FROM src')", "0A000"),
    ("SELECT pgtrickle.alter_stream_table('existing', query => 'SELECT grp, sum(v) AS s, random() AS r FROM src GROUP BY grp', refresh_mode => 'DIFFERENTIAL')", "0A000"),
    ("SELECT pgtrickle.alter_stream_table('existing', query => 'SELECT grp, s FROM existing')", "42P17"),
];

#[test]
fn bad_input_is_refused_cleanly() {
    let (_db, mut client) = setup();
    let before = footprint(&mut client);
    let definition_before: String = client
        .query_one("SELECT defining_query || tier || refresh_mode || schedule FROM pgtrickle.pgt_stream_tables", &[])
        .expect("definition")
        .get(0);
    for (sql, code) in CASES {
        let err = expect_error(&mut client, sql, code);
        assert!(!err.message.is_empty());
        // Errors raised by PostgreSQL's parser carry no hint; pg_trickle's own always do.
        let raised_by_postgres = ["42601", "42P01", "42703", "42701"].contains(code)
            && !sql.contains("SELECT 1 AS a; SELECT");
        assert!(
            raised_by_postgres || err.hint.is_some(),
            "no hint for {sql}: {err:?}"
        );
        assert!(
            !err.detail.unwrap_or_default().contains("pgrx"),
            "a Rust backtrace leaked into the error detail of {sql}"
        );
        assert_eq!(
            footprint(&mut client),
            before,
            "something was left behind by:\n{sql}"
        );
    }
    let definition_after: String = client
        .query_one("SELECT defining_query || tier || refresh_mode || schedule FROM pgtrickle.pgt_stream_tables", &[])
        .expect("definition")
        .get(0);
    assert_eq!(
        definition_before, definition_after,
        "a failed alter changed the stream table"
    );
}

#[test]
fn temporary_tables_cannot_be_sources() {
    let (_db, mut client) = setup();
    client
        .batch_execute("CREATE TEMP TABLE tmp_src (a int)")
        .expect("temp table");
    let before = footprint(&mut client);
    let err = expect_error(
        &mut client,
        "SELECT pgtrickle.create_stream_table('st', 'SELECT a FROM tmp_src')",
        "0A000",
    );
    assert!(err.message.contains("temporary"), "{err:?}");
    assert_eq!(footprint(&mut client), before);
}

#[test]
fn a_failed_create_inside_a_transaction_leaves_nothing_after_rollback() {
    let (_db, mut client) = setup();
    let before = footprint(&mut client);
    let mut tx = client.transaction().expect("begin");
    tx.batch_execute("SELECT pgtrickle.create_stream_table('st_a', 'SELECT id FROM src')")
        .expect("create");
    tx.rollback().expect("rollback");
    assert_eq!(footprint(&mut client), before);
    let exists: bool = client
        .query_one("SELECT to_regclass('st_a') IS NOT NULL", &[])
        .expect("lookup")
        .get(0);
    assert!(!exists);
}
