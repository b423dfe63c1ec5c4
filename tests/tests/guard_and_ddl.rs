//! The write guard and the reactions to DDL: stream tables refuse outside writes however they
//! are attempted; sources cannot be dropped or changed under a stream table; stream tables
//! can be renamed, indexed and granted; catalog rows follow drops and renames.

use pg_trickle_tests::{assert_oracle, expect_error, TestDb};
use postgres::Client;

const QUERY: &str = "SELECT grp, count(*) AS n, sum(v) AS total FROM src GROUP BY grp";

fn setup(name: &str) -> (TestDb, Client) {
    let db = TestDb::new(name);
    let mut client = db.connect();
    client
        .batch_execute(&format!(
            "CREATE TABLE src (id int PRIMARY KEY, grp text, v numeric);
             INSERT INTO src SELECT i, 'g' || (i % 3), i FROM generate_series(1, 30) i;
             SELECT pgtrickle.create_stream_table('st', '{QUERY}');"
        ))
        .expect("setup");
    (db, client)
}

/// Catalog rows of stream tables: their own rows and their refresh history.
fn catalog_count(client: &mut Client) -> i64 {
    client
        .query_one(
            "SELECT (SELECT count(*) FROM pgtrickle.pgt_stream_tables)
                  + (SELECT count(*) FROM pgtrickle.pgt_refresh_history)",
            &[],
        )
        .expect("count")
        .get(0)
}

#[test]
fn outside_writes_are_refused() {
    let (_db, mut client) = setup("guard_writes");
    for sql in [
        "INSERT INTO st VALUES ('x', 1, 1)",
        "UPDATE st SET n = 0",
        "DELETE FROM st",
        "TRUNCATE st",
        "COPY st FROM PROGRAM 'echo x,1,1' WITH (FORMAT csv)",
    ] {
        let err = expect_error(&mut client, sql, "42809");
        assert!(err.message.contains("stream table public.st"), "{err:?}");
        assert!(err.hint.is_some());
    }
    // session_replication_role disables ordinary triggers, not this one
    let err = expect_error(
        &mut client,
        "SET session_replication_role = replica; DELETE FROM st;",
        "42809",
    );
    assert!(err.message.contains("cannot DELETE"), "{err:?}");
    client
        .batch_execute("RESET session_replication_role")
        .expect("reset");
    assert_oracle(&mut client, "st", QUERY);
}

#[test]
fn the_guard_cannot_be_disabled_or_dropped_and_the_shape_is_fixed() {
    let (_db, mut client) = setup("guard_ddl");
    for sql in [
        "ALTER TABLE st DISABLE TRIGGER ALL",
        "ALTER TABLE st DISABLE TRIGGER __pgt_guard",
        "ALTER TABLE st ENABLE TRIGGER __pgt_guard",
        "DROP TRIGGER __pgt_guard ON st",
        "ALTER TRIGGER __pgt_guard ON st RENAME TO other",
        "ALTER TABLE st ADD COLUMN extra int",
        "ALTER TABLE st DROP COLUMN total",
        "ALTER TABLE st ALTER COLUMN n TYPE numeric",
        "ALTER TABLE st RENAME COLUMN n TO cnt",
        // the hidden state of differential maintenance
        "ALTER TABLE st DROP COLUMN __pgt_row_id",
        "ALTER TABLE st ADD COLUMN __pgt_extra int",
        "ALTER TABLE st ALTER COLUMN __pgt_a1_n TYPE numeric",
    ] {
        let err = expect_error(&mut client, sql, "0A000");
        assert!(err.hint.is_some(), "{sql}: {err:?}");
    }
    // what users may do with their tables
    client
        .batch_execute(
            "CREATE INDEX st_grp ON st (grp);
             CREATE ROLE reader;
             GRANT SELECT ON st TO reader;
             COMMENT ON TABLE st IS 'totals';
             ALTER TABLE st SET (fillfactor = 90);
             SELECT pgtrickle.refresh_stream_table('st');",
        )
        .expect("index, grant, comment, storage option");
    assert_oracle(&mut client, "st", QUERY);
}

#[test]
fn renames_are_followed_by_the_catalog() {
    let (_db, mut client) = setup("renames");
    client
        .batch_execute(
            "ALTER TABLE st RENAME TO totals;
             CREATE SCHEMA reporting;
             ALTER TABLE totals SET SCHEMA reporting;
             INSERT INTO src VALUES (100, 'g9', 5);
             SELECT pgtrickle.refresh_stream_table('reporting.totals');",
        )
        .expect("rename, move, refresh");
    let (schema, name): (String, String) = client
        .query_one(
            "SELECT pgt_schema::text, pgt_name::text FROM pgtrickle.pgt_stream_tables",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .expect("catalog");
    assert_eq!((schema.as_str(), name.as_str()), ("reporting", "totals"));
    assert_oracle(&mut client, "reporting.totals", QUERY);
    client
        .batch_execute("ALTER SCHEMA reporting RENAME TO analytics")
        .expect("rename schema");
    let schema: String = client
        .query_one(
            "SELECT pgt_schema::text FROM pgtrickle.pgt_stream_tables",
            &[],
        )
        .expect("catalog")
        .get(0);
    assert_eq!(schema, "analytics");
}

#[test]
fn sources_cannot_be_dropped_or_broken_under_a_stream_table() {
    let (_db, mut client) = setup("source_ddl");
    let err = expect_error(&mut client, "DROP TABLE src", "2BP01");
    assert!(err
        .detail
        .unwrap_or_default()
        .contains("table st depends on table src"));
    for sql in [
        "ALTER TABLE src DROP COLUMN v",
        "ALTER TABLE src ALTER COLUMN v TYPE text",
        "ALTER TABLE src RENAME COLUMN grp TO grp2",
        "ALTER TABLE src RENAME TO src2",
    ] {
        let err = expect_error(&mut client, sql, "2BP01");
        assert!(
            err.message.contains("stream table public.st reads"),
            "{sql}: {err:?}"
        );
        assert!(err.detail.is_some() && err.hint.is_some(), "{sql}: {err:?}");
    }
    // changes the query does not notice are fine
    client
        .batch_execute(
            "ALTER TABLE src ADD COLUMN note text;
             ALTER TABLE src ALTER COLUMN v SET NOT NULL;
             CREATE INDEX ON src (grp);
             INSERT INTO src VALUES (200, 'g1', 7, 'new');
             SELECT pgtrickle.refresh_stream_table('st');",
        )
        .expect("harmless source DDL");
    assert_oracle(&mut client, "st", QUERY);
    // CASCADE drops the stream table, and the catalog follows
    client
        .batch_execute("DROP TABLE src CASCADE")
        .expect("drop cascade");
    assert_eq!(catalog_count(&mut client), 0);
    let deps: i64 = client
        .query_one("SELECT count(*) FROM pgtrickle.pgt_dependencies", &[])
        .expect("deps")
        .get(0);
    assert_eq!(deps, 0);
}

#[test]
fn dropping_a_stream_table_by_any_route_cleans_the_catalog() {
    let (_db, mut client) = setup("drops");
    client.batch_execute("DROP TABLE st").expect("plain drop");
    assert_eq!(catalog_count(&mut client), 0);
    client
        .batch_execute(&format!(
            "SELECT pgtrickle.create_stream_table('st', '{QUERY}');
             SELECT pgtrickle.drop_stream_table('public.st');"
        ))
        .expect("drop_stream_table");
    assert_eq!(catalog_count(&mut client), 0);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA s;
             SELECT pgtrickle.create_stream_table('s.st', '{QUERY}');
             DROP SCHEMA s CASCADE;"
        ))
        .expect("drop schema cascade");
    assert_eq!(catalog_count(&mut client), 0);
    // the extension cannot be dropped from under existing stream tables
    client
        .batch_execute(&format!(
            "SELECT pgtrickle.create_stream_table('st', '{QUERY}')"
        ))
        .expect("create");
    expect_error(&mut client, "DROP EXTENSION pg_trickle", "2BP01");
}

#[test]
fn views_are_expanded_to_their_base_tables() {
    let (_db, mut client) = setup("views");
    client
        .batch_execute(
            "CREATE TABLE dim (grp text PRIMARY KEY, label text);
             INSERT INTO dim VALUES ('g0', 'zero'), ('g1', 'one');
             CREATE VIEW labelled AS SELECT s.id, s.v, d.label FROM src s JOIN dim d USING (grp);
             CREATE VIEW big AS SELECT * FROM labelled WHERE v > 10;
             SELECT pgtrickle.create_stream_table('by_label', 'SELECT label, sum(v) AS total FROM big GROUP BY label');",
        )
        .expect("views");
    let deps: Vec<(String, String, bool)> = client
        .query(
            "SELECT d.source_relid::regclass::text, d.source_kind, d.is_direct
             FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
             WHERE s.pgt_name = 'by_label' ORDER BY 1",
            &[],
        )
        .expect("deps")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected = [
        ("big", "VIEW", true),
        ("dim", "TABLE", false),
        ("labelled", "VIEW", false),
        ("src", "TABLE", false),
    ];
    assert_eq!(
        deps,
        expected.map(|(a, b, c)| (a.to_string(), b.to_string(), c))
    );
    expect_error(&mut client, "DROP VIEW big", "2BP01");
    client
        .batch_execute("UPDATE dim SET label = 'ONE' WHERE grp = 'g1'; SELECT pgtrickle.refresh_stream_table('by_label');")
        .expect("refresh");
    assert_oracle(
        &mut client,
        "by_label",
        "SELECT label, sum(v) AS total FROM big GROUP BY label",
    );
}

#[test]
fn stream_tables_can_read_stream_tables() {
    let (_db, mut client) = setup("chains");
    client
        .batch_execute(
            "SELECT pgtrickle.create_stream_table('st2', 'SELECT sum(total) AS grand FROM st', schedule => 'calculated');",
        )
        .expect("chained");
    let kind: String = client
        .query_one(
            "SELECT source_kind FROM pgtrickle.pgt_dependencies d JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
             WHERE s.pgt_name = 'st2'",
            &[],
        )
        .expect("kind")
        .get(0);
    assert_eq!(kind, "STREAM_TABLE");
    let err = expect_error(
        &mut client,
        "SELECT pgtrickle.drop_stream_table('st')",
        "2BP01",
    );
    assert!(err.detail.unwrap_or_default().contains("public.st2"));
    // a cycle through an alter is refused
    client
        .batch_execute("SELECT pgtrickle.create_stream_table('st3', 'SELECT grand FROM st2')")
        .expect("st3");
    let err = expect_error(
        &mut client,
        "SELECT pgtrickle.alter_stream_table('st', query => 'SELECT ''g''::text AS grp, 1::bigint AS n, grand AS total FROM st3')",
        "42P17",
    );
    assert!(err.detail.unwrap_or_default().contains("->"));
    client
        .batch_execute(
            "INSERT INTO src VALUES (500, 'g0', 1000);
             SELECT pgtrickle.refresh_stream_table('st');
             SELECT pgtrickle.refresh_stream_table('st2');",
        )
        .expect("refresh in order");
    assert_oracle(&mut client, "st2", "SELECT sum(total) AS grand FROM st");
    assert_oracle(
        &mut client,
        "st2",
        &format!("SELECT sum(total) AS grand FROM ({QUERY}) q"),
    );
    client
        .batch_execute("SELECT pgtrickle.drop_stream_table('st', cascade => true)")
        .expect("cascade");
    assert_eq!(catalog_count(&mut client), 0);
}

#[test]
fn functions_used_by_a_query_cannot_be_dropped_or_renamed() {
    let (_db, mut client) = setup("functions");
    client
        .batch_execute(
            "CREATE FUNCTION double_it(numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2';
             CREATE FUNCTION unused(int) RETURNS int LANGUAGE sql AS 'SELECT $1';
             SELECT pgtrickle.create_stream_table('doubled', 'SELECT id, double_it(v) AS d FROM src');",
        )
        .expect("setup");
    for sql in [
        "DROP FUNCTION double_it(numeric)",
        "ALTER FUNCTION double_it(numeric) RENAME TO triple_it",
    ] {
        let err = expect_error(&mut client, sql, "2BP01");
        assert!(
            err.detail.unwrap_or_default().contains("double_it"),
            "{sql}"
        );
    }
    client
        .batch_execute("DROP FUNCTION unused(int)")
        .expect("an unused function can go");
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('doubled')")
        .expect("refresh");
    assert_oracle(
        &mut client,
        "doubled",
        "SELECT id, double_it(v) AS d FROM src",
    );
}

/// The hidden columns of stream table `name`, in column order.
fn hidden_columns(client: &mut Client, name: &str) -> Vec<String> {
    client
        .query(
            "SELECT attname::text FROM pg_attribute
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
               AND attname LIKE '\\_\\_pgt\\_%' ORDER BY attnum",
            &[&name],
        )
        .expect("hidden columns")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn sums_of_a_not_null_column_count_rows_until_the_column_may_be_null() {
    let db = TestDb::new("not_null_sums");
    let mut client = db.connect();
    let grouped = "SELECT g, sum(v) AS total, avg(v) AS mean, count(*) AS n FROM sales GROUP BY g";
    // the NULL side of a LEFT JOIN can be NULL whatever its table declares
    let outer =
        "SELECT r.g, sum(s.v) AS total FROM regions r LEFT JOIN sales s ON s.g = r.g GROUP BY r.g";
    client
        .batch_execute(&format!(
            "CREATE TABLE sales (id int PRIMARY KEY, g int, v int NOT NULL);
             CREATE TABLE regions (g int PRIMARY KEY);
             INSERT INTO sales SELECT i, i % 4, i FROM generate_series(1, 40) i;
             INSERT INTO regions SELECT generate_series(0, 5);
             SELECT pgtrickle.create_stream_table('grouped', '{grouped}', refresh_mode => 'DIFFERENTIAL');
             SELECT pgtrickle.create_stream_table('outer_sums', '{outer}', refresh_mode => 'DIFFERENTIAL');"
        ))
        .expect("setup");
    // the sums count with count(*): no count of their own
    assert_eq!(
        hidden_columns(&mut client, "grouped"),
        ["__pgt_row_id", "__pgt_a1_s"]
    );
    assert_eq!(
        hidden_columns(&mut client, "outer_sums"),
        ["__pgt_row_id", "__pgt_count", "__pgt_a0_n"]
    );
    let refresh_and_check = |client: &mut Client, changes: &str| {
        client
            .batch_execute(&format!(
                "{changes}
                 SELECT pgtrickle.refresh_stream_table('grouped');
                 SELECT pgtrickle.refresh_stream_table('outer_sums');"
            ))
            .expect("changes and refreshes");
        assert_oracle(client, "grouped", grouped);
        assert_oracle(client, "outer_sums", outer);
    };
    refresh_and_check(
        &mut client,
        "INSERT INTO sales VALUES (41, 4, 5), (42, 4, -5);
         UPDATE sales SET v = v * 2, g = 1 WHERE id BETWEEN 1 AND 6;
         DELETE FROM sales WHERE g = 3;",
    );
    // the column may hold NULLs from now on: the sums get their counts, from the row counts
    client
        .batch_execute("ALTER TABLE sales ALTER COLUMN v DROP NOT NULL")
        .expect("drop not null");
    assert_eq!(
        hidden_columns(&mut client, "grouped"),
        ["__pgt_row_id", "__pgt_a1_s", "__pgt_a0_n", "__pgt_a1_n"]
    );
    let uncounted: i64 = client
        .query_one(
            "SELECT count(*) FROM grouped WHERE __pgt_a0_n <> n OR __pgt_a1_n <> n",
            &[],
        )
        .expect("counts")
        .get(0);
    assert_eq!(uncounted, 0);
    assert_oracle(&mut client, "grouped", grouped);
    // groups of NULLs only, and a group that keeps only its NULL
    refresh_and_check(
        &mut client,
        "INSERT INTO sales VALUES (50, 5, NULL), (51, 5, NULL), (52, 2, NULL);
         DELETE FROM sales WHERE g = 2 AND v IS NOT NULL;
         UPDATE sales SET v = NULL WHERE id = 41;",
    );
    refresh_and_check(
        &mut client,
        "UPDATE sales SET v = 1 WHERE v IS NULL AND g = 5;",
    );
    // declared NOT NULL again: the counts stay and go on counting
    refresh_and_check(
        &mut client,
        "DELETE FROM sales WHERE v IS NULL;
         ALTER TABLE sales ALTER COLUMN v SET NOT NULL;
         INSERT INTO sales VALUES (60, 6, 3), (61, 0, 4);
         DELETE FROM sales WHERE id = 7;",
    );
    assert_eq!(
        hidden_columns(&mut client, "grouped"),
        ["__pgt_row_id", "__pgt_a1_s", "__pgt_a0_n", "__pgt_a1_n"]
    );
}
