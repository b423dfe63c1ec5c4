//! Edges of DIFFERENTIAL maintenance that the random shapes of `differential.rs` reach only by
//! chance: floating-point and statistical aggregates, the NULL semantics of SUM/COUNT/AVG
//! (a SUM of only NULLs is NULL, an emptied group disappears, an emptied table still has its
//! one aggregate row), what reaches the shared change buffer and when it is emptied, a stream
//! table created while a sibling lags, and foreign tables as sources (refused in DIFFERENTIAL,
//! refreshed in full in AUTO). Every refresh is checked against the oracle and by its mode.

use pg_trickle_tests::{assert_oracle, expect_error, last_refresh, wait_for, Script, TestDb};
use postgres::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Create `name` over `query` in DIFFERENTIAL mode.
fn create(client: &mut Client, name: &str, query: &str) {
    client
        .execute(
            "SELECT pgtrickle.create_stream_table($1, $2, refresh_mode => 'DIFFERENTIAL')",
            &[&name, &query],
        )
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

/// Refresh `name`, check it against `query`, and return the mode the catalog recorded.
fn refresh(client: &mut Client, name: &str, query: &str) -> String {
    client
        .execute("SELECT pgtrickle.refresh_stream_table($1)", &[&name])
        .unwrap_or_else(|e| panic!("refresh {name}: {e}"));
    assert_oracle(client, name, query);
    last_refresh(client, name).0.unwrap_or_default()
}

/// The modes of every recorded refresh of `name`, oldest first.
fn history(client: &mut Client, name: &str) -> Vec<String> {
    one(
        client,
        &format!(
            "SELECT array_agg(h.refresh_mode ORDER BY h.refresh_id) FROM pgtrickle.pgt_refresh_history h
             JOIN pgtrickle.pgt_stream_tables s USING (pgt_id) WHERE s.pgt_name = '{name}'"
        ),
    )
}

/// The change buffer of source `table`.
fn buffer(client: &mut Client, table: &str) -> String {
    let oid: u32 = one(client, &format!("SELECT '{table}'::regclass::oid"));
    format!("pgtrickle_changes.changes_{oid}")
}

/// Run `sql`, which must succeed.
fn run(client: &mut Client, sql: &str) {
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The rows of `sql`, each as the text of a record.
fn texts(client: &mut Client, sql: &str) -> Vec<String> {
    client
        .query(&format!("SELECT r::text FROM ({sql}) r"), &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The first column of the one row of `sql`.
fn one<T: for<'a> postgres::types::FromSql<'a>>(client: &mut Client, sql: &str) -> T {
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Wait until no transaction older than the newest row of `buffer` is running anywhere in the
/// cluster (other tests run in parallel): the buffer's cleanup bound is the oldest frontier's
/// `xmin`, which such a transaction would hold back.
fn wait_for_older_transactions(client: &mut Client, buffer: &str) {
    let sql = format!(
        "SELECT pg_snapshot_xmin(pg_current_snapshot()) > (SELECT max(__pgt_xid) FROM {buffer})"
    );
    wait_for("older transactions to end", Duration::from_secs(60), || {
        client.query_one(&sql, &[]).expect("xmin").get(0)
    });
}

const FLOAT_GROUPED: &str = "SELECT g, stddev(x) AS sd, variance(x) AS var, stddev_pop(f) AS sdp, \
     sum(f) AS s, avg(f) AS a, count(f) AS c, count(*) AS n FROM fl GROUP BY g";
const FLOAT_WHOLE: &str =
    "SELECT sum(f) AS s, avg(x) AS a, var_pop(x) AS vp, variance(f) AS vf, count(*) AS n FROM fl";

#[test]
fn float_and_statistical_aggregates_follow_random_changes() {
    let db = TestDb::new("edges_floats");
    let mut client = db.connect();
    let mut script = Script::new();
    script.run(
        &mut client,
        "CREATE TABLE fl (id int PRIMARY KEY, g int, x double precision, f double precision);
         INSERT INTO fl SELECT i, i % 4, CASE WHEN i % 7 = 0 THEN NULL ELSE i * 1.37 END,
                               CASE WHEN i % 5 = 0 THEN NULL ELSE i / 3.0 END
           FROM generate_series(1, 40) i",
    );
    for (name, query) in [("fl_grouped", FLOAT_GROUPED), ("fl_whole", FLOAT_WHOLE)] {
        script.run(
            &mut client,
            &format!("SELECT pgtrickle.create_stream_table('{name}', $q${query}$q$, refresh_mode => 'DIFFERENTIAL')"),
        );
        script.check(&mut client, name, query);
    }
    let seed = pg_trickle_tests::seed(7);
    let mut rng = StdRng::seed_from_u64(seed);
    let value = |rng: &mut StdRng| match rng.gen_bool(0.2) {
        true => "NULL".to_string(),
        false => format!("{:.3}", rng.gen_range(-100.0..100.0)),
    };
    for round in 0..30 {
        // fresh rows every round, so that every refresh has a change to apply
        let mut dml: Vec<String> = (0..rng.gen_range(1..4))
            .map(|i| {
                let g = match rng.gen_bool(0.1) {
                    true => "NULL".to_string(),
                    false => rng.gen_range(0..6).to_string(),
                };
                let (x, f) = (value(&mut rng), value(&mut rng));
                format!(
                    "INSERT INTO fl VALUES ({}, {g}, {x}, {f})",
                    1000 + 10 * round + i
                )
            })
            .collect();
        // Each UPDATE changes every row it touches: one that changes no value moves its row in
        // the heap and writes no change row, and float aggregates depend on the order rows are
        // read in, so PostgreSQL's own result for that group could change in the last digit.
        let (x, f, g) = (value(&mut rng), value(&mut rng), rng.gen_range(0..6));
        let [r7, r11, r13, r9] = [7, 11, 13, 9].map(|m| rng.gen_range(0..m));
        dml.push(format!(
            "UPDATE fl SET x = {x}, f = {f} WHERE id % 7 = {r7} AND (x, f) IS DISTINCT FROM ({x}::float8, {f}::float8);
             UPDATE fl SET g = {g} WHERE id % 11 = {r11} AND g IS DISTINCT FROM {g};
             UPDATE fl SET f = NULL WHERE id % 13 = {r13} AND f IS NOT NULL;
             DELETE FROM fl WHERE id % 9 = {r9}"
        ));
        script.run(&mut client, &dml.join(";\n"));
        for (name, query) in [("fl_grouped", FLOAT_GROUPED), ("fl_whole", FLOAT_WHOLE)] {
            script.run(
                &mut client,
                &format!("SELECT pgtrickle.refresh_stream_table('{name}')"),
            );
            script.check(&mut client, name, query);
            let (mode, _) = last_refresh(&mut client, name);
            assert_eq!(mode.as_deref(), Some("DIFFERENTIAL"), "{name}");
        }
    }
}

#[test]
fn null_sums_empty_groups_and_an_emptied_table() {
    let db = TestDb::new("edges_nulls");
    let mut client = db.connect();
    let grouped = "SELECT g, SUM(v) AS s, COUNT(v) AS c, COUNT(*) AS n FROM nv GROUP BY g";
    let whole = "SELECT SUM(v), COUNT(*), AVG(v) FROM nv";
    run(
        &mut client,
        "CREATE TABLE nv (id int PRIMARY KEY, g text, v int);
         INSERT INTO nv VALUES (1, 'a', 1), (2, 'a', 2), (3, 'c', NULL);",
    );
    create(&mut client, "nv_groups", grouped);
    create(&mut client, "nv_whole", whole);
    // (s IS NULL, s, c, n) of the groups where `cond` holds
    let group = |client: &mut Client, cond: &str| {
        texts(
            client,
            &format!("SELECT s IS NULL, s, c, n FROM nv_groups WHERE {cond} ORDER BY g"),
        )
    };
    assert_eq!(group(&mut client, "g = 'c'"), ["(t,,0,1)"]);
    let step = |client: &mut Client, sql: &str| {
        run(client, sql);
        for (name, query) in [("nv_groups", grouped), ("nv_whole", whole)] {
            assert_eq!(
                refresh(client, name, query),
                "DIFFERENTIAL",
                "{name}: {sql}"
            );
        }
    };
    // a new group, and the NULL group, with only NULL values
    step(
        &mut client,
        "INSERT INTO nv VALUES (4, 'b', NULL), (5, 'b', NULL), (6, NULL, NULL)",
    );
    assert_eq!(group(&mut client, "g = 'b'"), ["(t,,0,2)"]);
    assert_eq!(group(&mut client, "g IS NULL"), ["(t,,0,1)"]);
    // every value of a group becomes NULL: its sum goes back to NULL, not 0
    step(&mut client, "UPDATE nv SET v = NULL WHERE g = 'a'");
    assert_eq!(group(&mut client, "g = 'a'"), ["(t,,0,2)"]);
    step(&mut client, "UPDATE nv SET v = 5 WHERE id = 4");
    assert_eq!(group(&mut client, "g = 'b'"), ["(f,5,1,2)"]);
    step(&mut client, "UPDATE nv SET v = NULL WHERE id = 4");
    assert_eq!(group(&mut client, "g = 'b'"), ["(t,,0,2)"]);
    // groups whose last row is deleted disappear, the NULL group included
    step(&mut client, "DELETE FROM nv WHERE g = 'a' OR g IS NULL");
    assert_eq!(group(&mut client, "true"), ["(t,,0,2)", "(t,,0,1)"]);
    assert!(group(&mut client, "g = 'a' OR g IS NULL").is_empty());
    // an emptied table: no groups, and the one whole-table row PostgreSQL gives
    step(&mut client, "DELETE FROM nv");
    assert!(group(&mut client, "true").is_empty());
    let whole_row = "SELECT sum IS NULL, count, avg IS NULL, avg FROM nv_whole";
    assert_eq!(texts(&mut client, whole_row), ["(t,0,t,)"]);
    step(&mut client, "INSERT INTO nv VALUES (7, 'a', 3)");
    assert_eq!(group(&mut client, "true"), ["(f,3,1,1)"]);
    assert_eq!(
        texts(&mut client, whole_row),
        ["(f,1,f,3.0000000000000000)"]
    );
}

#[test]
fn an_update_of_unread_columns_captures_nothing_and_refreshes_as_noop() {
    let db = TestDb::new("edges_unread_column");
    let mut client = db.connect();
    let sums = "SELECT k, sum(v) AS s FROM wide GROUP BY k";
    let ids = "SELECT id, k FROM wide WHERE v > 5";
    run(
        &mut client,
        "CREATE TABLE wide (id int PRIMARY KEY, k int, v int, note text);
         INSERT INTO wide SELECT i, i % 3, i, 'n' || i FROM generate_series(1, 20) i;",
    );
    create(&mut client, "wide_sums", sums);
    create(&mut client, "wide_ids", ids);
    let buffer = buffer(&mut client, "wide");
    let note = format!("SELECT count(*) FROM pg_attribute WHERE attrelid = '{buffer}'::regclass AND attname = 'note'");
    assert_eq!(one::<i64>(&mut client, &note), 0, "note is captured");
    let rows = |client: &mut Client| one::<i64>(client, &format!("SELECT count(*) FROM {buffer}"));
    let before = rows(&mut client);
    run(&mut client, "UPDATE wide SET note = note || '!'");
    assert_eq!(rows(&mut client), before, "note was captured");
    run(&mut client, "UPDATE wide SET v = v, k = k WHERE id < 10");
    assert_eq!(rows(&mut client), before, "equal values were captured");
    for (name, query) in [("wide_sums", sums), ("wide_ids", ids)] {
        assert_eq!(refresh(&mut client, name, query), "NOOP", "{name}");
        assert_eq!(history(&mut client, name), ["FULL", "NOOP"], "{name}");
    }
    // the control: a change of a column that is read is captured and applied
    run(
        &mut client,
        "UPDATE wide SET v = v + 10, note = 'x' WHERE id = 1",
    );
    assert_eq!(rows(&mut client), before + 2);
    for (name, query) in [("wide_sums", sums), ("wide_ids", ids)] {
        assert_eq!(refresh(&mut client, name, query), "DIFFERENTIAL", "{name}");
    }
}

#[test]
fn capture_survives_ddl_on_buffer_columns_no_dependant_reads() {
    let db = TestDb::new("edges_capture_ddl");
    let mut client = db.connect();
    let sums = "SELECT k, sum(v) AS s, count(*) AS n FROM src GROUP BY k";
    let retyped = "SELECT id, w FROM src";
    run(
        &mut client,
        "CREATE TABLE src (id int PRIMARY KEY, k int, v int, w numeric, note text);
         INSERT INTO src SELECT i, i % 3, i, i / 2.0, 'n' || i FROM generate_series(1, 20) i;",
    );
    create(&mut client, "sums", sums);
    create(&mut client, "notes", "SELECT id, w, note FROM src");
    run(&mut client, "SELECT pgtrickle.drop_stream_table('notes')");
    let buffer = buffer(&mut client, "src");
    let kept = format!(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = '{buffer}'::regclass
         AND attname IN ('w', 'note') AND NOT attisdropped"
    );
    assert_eq!(
        one::<i64>(&mut client, &kept),
        2,
        "the buffer keeps w and note"
    );
    // the columns only the dropped stream table read change under the buffer
    run(
        &mut client,
        "ALTER TABLE src DROP COLUMN note, ALTER COLUMN w TYPE text, ADD COLUMN extra int;
         INSERT INTO src (id, k, v, w, extra) VALUES (100, 1, 5, 'x', 1), (101, 7, 1, NULL, 2);
         DELETE FROM src WHERE id = 3;
         UPDATE src SET v = v + 1 WHERE id = 4;",
    );
    assert_eq!(refresh(&mut client, "sums", sums), "DIFFERENTIAL");
    // a stream table reading the retyped column again
    create(&mut client, "retyped", retyped);
    run(
        &mut client,
        "INSERT INTO src (id, k, v, w) VALUES (102, 2, 2, 'y');
         DELETE FROM src WHERE id IN (5, 100);
         UPDATE src SET w = w || '!' WHERE id = 6;",
    );
    for (name, query) in [("sums", sums), ("retyped", retyped)] {
        assert_eq!(refresh(&mut client, name, query), "DIFFERENTIAL", "{name}");
    }
    // an index on a buffer would not be maintained by the capture: writes are refused
    run(
        &mut client,
        &format!("CREATE INDEX buffer_index ON {buffer} (__pgt_xid)"),
    );
    let err = expect_error(
        &mut client,
        "INSERT INTO src (id, k, v) VALUES (103, 1, 1)",
        "55000",
    );
    assert!(
        err.message.contains("has an index") && err.hint.is_some(),
        "{err:?}"
    );
    run(
        &mut client,
        "DROP INDEX pgtrickle_changes.buffer_index;
         INSERT INTO src (id, k, v) VALUES (103, 1, 1);",
    );
    for (name, query) in [("sums", sums), ("retyped", retyped)] {
        assert_eq!(refresh(&mut client, name, query), "DIFFERENTIAL", "{name}");
    }
}

#[test]
fn upserts_swaps_and_repeated_updates_are_captured_exactly() {
    let db = TestDb::new("edges_update_capture");
    let mut client = db.connect();
    let sums = "SELECT k, sum(v) AS s, avg(v) AS a, count(*) AS n FROM kv GROUP BY k";
    let rows = "SELECT id, k, v FROM kv";
    run(
        &mut client,
        "CREATE TABLE kv (id int PRIMARY KEY, k int, v numeric, note text);
         INSERT INTO kv SELECT i, i % 4, i, 'n' FROM generate_series(1, 40) i;",
    );
    create(&mut client, "kv_sums", sums);
    create(&mut client, "kv_rows", rows);
    let steps = [
        // inserted and updated rows in one statement
        "INSERT INTO kv VALUES (1, 9, 100, 'u'), (2, 1, 2, 'same'), (41, 1, 41, 'new')
         ON CONFLICT (id) DO UPDATE SET k = EXCLUDED.k, v = EXCLUDED.v, note = EXCLUDED.note",
        // values swapped between rows: the multiset of (k, v) does not change
        "UPDATE kv SET k = CASE id WHEN 3 THEN 4 ELSE 3 END, v = CASE id WHEN 3 THEN 4 ELSE 3 END
         WHERE id IN (3, 4)",
        // the same rows updated twice in one transaction, back to their values
        "BEGIN; UPDATE kv SET v = v + 7 WHERE k = 1; UPDATE kv SET v = v - 7 WHERE k = 1;
         UPDATE kv SET k = k WHERE id = 5; COMMIT;",
        // values of other scales (v is numeric without a declared scale): a sum prints with
        // the largest scale among its values, which grows and shrinks again
        "BEGIN; UPDATE kv SET v = v * 2 WHERE k = 1; UPDATE kv SET v = v / 2 WHERE k = 1; COMMIT;",
        "INSERT INTO kv VALUES (100, 2, 1.5, 'x'), (101, 3, 2.25, 'x')",
        "DELETE FROM kv WHERE id = 100; UPDATE kv SET v = 7 WHERE id = 101",
        "UPDATE kv SET v = round(v) WHERE k = 1",
        // only a column nobody reads, then NULLs in and out
        "UPDATE kv SET note = 'x'",
        "UPDATE kv SET v = NULL WHERE id % 5 = 0",
        "UPDATE kv SET v = id, k = NULL WHERE id % 10 = 0",
    ];
    for step in steps {
        run(&mut client, step);
        for (name, query) in [("kv_sums", sums), ("kv_rows", rows)] {
            assert_ne!(
                refresh(&mut client, name, query),
                "FULL",
                "{name} after {step}"
            );
        }
    }
}

#[test]
fn change_rows_are_deleted_once_every_dependant_consumed_them() {
    let db = TestDb::new("edges_buffer_cleanup");
    let mut client = db.connect();
    let first = ("first_st", "SELECT k, sum(v) AS s FROM shared GROUP BY k");
    let second = (
        "second_st",
        "SELECT k, count(*) AS n FROM shared GROUP BY k",
    );
    run(
        &mut client,
        "CREATE TABLE shared (id int PRIMARY KEY, k int, v int);
         INSERT INTO shared SELECT i, i % 4, i FROM generate_series(1, 20) i;",
    );
    create(&mut client, first.0, first.1);
    create(&mut client, second.0, second.1);
    let buffer = buffer(&mut client, "shared");
    let rows = |client: &mut Client| one::<i64>(client, &format!("SELECT count(*) FROM {buffer}"));
    assert_eq!(rows(&mut client), 0);
    // each change is consumed first by one stream table, then by the other
    for (change, [(one, one_query), (other, other_query)]) in [
        ("INSERT INTO shared VALUES (21, 1, 5), (22, 9, 1); UPDATE shared SET v = v + 1 WHERE id < 4;
          DELETE FROM shared WHERE id = 10", [first, second]),
        ("UPDATE shared SET k = 7 WHERE id % 5 = 0; INSERT INTO shared VALUES (30, 2, 2)", [second, first]),
    ] {
        run(&mut client, change);
        let pending = rows(&mut client);
        assert!(pending > 0, "{change} captured nothing");
        wait_for_older_transactions(&mut client, &buffer);
        assert_eq!(refresh(&mut client, one, one_query), "DIFFERENTIAL");
        assert_eq!(rows(&mut client), pending, "the refresh of {one} deleted rows {other} has not consumed");
        assert_eq!(refresh(&mut client, other, other_query), "DIFFERENTIAL");
        assert_eq!(rows(&mut client), 0, "rows every dependant consumed are still in the buffer");
    }
    for (name, query) in [first, second] {
        assert_eq!(refresh(&mut client, name, query), "NOOP");
    }
}

#[test]
fn a_large_consumed_buffer_is_truncated_when_nothing_else_needs_it() {
    let db = TestDb::new("edges_buffer_truncate");
    let mut client = db.connect();
    let a = ("big_a", "SELECT k, sum(v) AS s FROM big GROUP BY k");
    let b = ("big_b", "SELECT k, count(*) AS n FROM big GROUP BY k");
    run(
        &mut client,
        "CREATE TABLE big (id int PRIMARY KEY, k int, v int)",
    );
    create(&mut client, a.0, a.1);
    create(&mut client, b.0, b.1);
    let buffer = buffer(&mut client, "big");
    // autovacuum working on the buffer would hold a lock that makes the refresh DELETE
    run(
        &mut client,
        &format!("ALTER TABLE {buffer} SET (autovacuum_enabled = off)"),
    );
    let size = |client: &mut Client| {
        one::<i64>(
            client,
            &format!("SELECT pg_catalog.pg_relation_size('{buffer}')"),
        )
    };
    let rows = |client: &mut Client| one::<i64>(client, &format!("SELECT count(*) FROM {buffer}"));
    // about a megabyte of change rows, consumed first by a, then by b
    let large_change = |client: &mut Client, from: i32| {
        run(
            client,
            &format!(
                "INSERT INTO big SELECT i, i % 7, i FROM generate_series({from}, {from} + 19999) i"
            ),
        );
        wait_for_older_transactions(client, &buffer);
        assert_eq!(refresh(client, a.0, a.1), "DIFFERENTIAL");
        assert_eq!(rows(client), 20_000, "rows b has not consumed are gone");
    };

    // a refresh of its own: the buffer is truncated, not left full of dead rows
    large_change(&mut client, 1);
    assert_eq!(refresh(&mut client, b.0, b.1), "DIFFERENTIAL");
    assert_eq!((rows(&mut client), size(&mut client)), (0, 0));

    // inside a transaction block (writers of the source would wait for its end): DELETE
    large_change(&mut client, 20_001);
    run(
        &mut client,
        "BEGIN; SELECT pgtrickle.refresh_stream_table('big_b'); COMMIT",
    );
    assert_oracle(&mut client, b.0, b.1);
    assert_eq!(rows(&mut client), 0);
    assert!(
        size(&mut client) > 0,
        "truncated inside a transaction block"
    );

    // a writer of the source in progress: DELETE, and its row reaches both later
    large_change(&mut client, 40_001);
    let mut writer = db.connect();
    let mut tx = writer.transaction().expect("begin");
    tx.batch_execute("INSERT INTO big VALUES (100000, 3, 5)")
        .expect("write");
    assert_eq!(refresh(&mut client, b.0, b.1), "DIFFERENTIAL");
    assert!(size(&mut client) > 0, "truncated under an open writer");
    tx.commit().expect("commit");
    wait_for_older_transactions(&mut client, &buffer);
    for (name, query) in [a, b] {
        assert_eq!(refresh(&mut client, name, query), "DIFFERENTIAL");
    }
    assert_eq!(rows(&mut client), 0);
}

#[test]
fn a_stream_table_created_while_a_sibling_lags_does_not_replay_old_changes() {
    let db = TestDb::new("edges_late_sibling");
    let mut client = db.connect();
    let a = "SELECT k, sum(v) AS s, count(*) AS n FROM lag_src GROUP BY k";
    // B also reads w, which nothing captured before B was created
    let b = "SELECT k, count(*) AS n, sum(v) AS sv, sum(w) AS sw FROM lag_src GROUP BY k";
    run(
        &mut client,
        "CREATE TABLE lag_src (id int PRIMARY KEY, k int, v int, w int);
         INSERT INTO lag_src SELECT i, i % 3, i, 10 * i FROM generate_series(1, 12) i;",
    );
    create(&mut client, "lag_a", a);
    // changes lag_a does not consume yet
    run(
        &mut client,
        "INSERT INTO lag_src VALUES (13, 0, 5, 1), (14, 5, 6, 2);
         UPDATE lag_src SET v = v * 2, w = w + 1 WHERE id % 4 = 0;
         DELETE FROM lag_src WHERE id = 2;",
    );
    let buffer = buffer(&mut client, "lag_src");
    assert!(one::<i64>(&mut client, &format!("SELECT count(*) FROM {buffer}")) > 0);
    create(&mut client, "lag_b", b);
    assert_oracle(&mut client, "lag_b", b);
    assert_eq!(history(&mut client, "lag_b"), ["FULL"]);
    // nothing changed since lag_b's first refresh: the older buffer rows are not its changes
    assert_eq!(refresh(&mut client, "lag_b", b), "NOOP");
    assert_eq!(history(&mut client, "lag_b"), ["FULL", "NOOP"]);
    // and the lagging sibling still gets every one of them
    assert_eq!(refresh(&mut client, "lag_a", a), "DIFFERENTIAL");
    assert_eq!(refresh(&mut client, "lag_b", b), "NOOP");
    // later changes reach both, once
    run(
        &mut client,
        "UPDATE lag_src SET w = w - 3, v = v + 1 WHERE k = 1; INSERT INTO lag_src VALUES (15, 1, 1, 1)",
    );
    assert_eq!(refresh(&mut client, "lag_b", b), "DIFFERENTIAL");
    assert_eq!(refresh(&mut client, "lag_a", a), "DIFFERENTIAL");
    assert_eq!(refresh(&mut client, "lag_b", b), "NOOP");
}

#[test]
fn a_foreign_table_source_is_refused_in_differential_and_refreshed_in_full_in_auto() {
    let db = TestDb::new("edges_foreign");
    let mut client = db.connect();
    let available: Vec<String> = one(
        &mut client,
        "SELECT coalesce(array_agg(name::text), '{}') FROM pg_available_extensions
         WHERE name IN ('file_fdw', 'postgres_fdw')",
    );
    let has = |e: &str| available.iter().any(|a| a == e);
    run(
        &mut client,
        "CREATE TABLE backing (id int, k text, v int);
         INSERT INTO backing SELECT i, 'k' || (i % 3), i FROM generate_series(1, 9) i;",
    );
    // foreign table ft shows backing's rows, after `export` has run following each change
    let export = if has("file_fdw") {
        // written and read by the server, in its data directory
        let file: String = one(
            &mut client,
            "SELECT current_setting('data_directory') || '/' || current_database() || '.csv'",
        );
        let export = format!("COPY backing TO '{file}' (FORMAT csv)");
        run(
            &mut client,
            &format!(
                "CREATE EXTENSION file_fdw; CREATE SERVER files FOREIGN DATA WRAPPER file_fdw; {export};
                 CREATE FOREIGN TABLE ft (id int, k text, v int) SERVER files OPTIONS (filename '{file}', format 'csv');"
            ),
        );
        export
    } else if has("postgres_fdw") {
        run(
            &mut client,
            &format!(
                "CREATE EXTENSION postgres_fdw;
                 CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw
                     OPTIONS (host '127.0.0.1', port '{}', dbname '{}');
                 CREATE USER MAPPING FOR CURRENT_USER SERVER loopback OPTIONS (user 'postgres');
                 CREATE FOREIGN TABLE ft (id int, k text, v int) SERVER loopback OPTIONS (table_name 'backing');",
                db.cluster.port, db.name
            ),
        );
        "SELECT 1".to_string()
    } else {
        println!("skipped: neither file_fdw nor postgres_fdw is available in this server");
        return;
    };
    let query = "SELECT k, sum(v) AS s, count(*) AS n FROM ft GROUP BY k";
    let footprint = "SELECT (SELECT count(*) FROM pg_class), (SELECT count(*) FROM pg_trigger),
        (SELECT count(*) FROM pg_depend), (SELECT count(*) FROM pgtrickle.pgt_stream_tables),
        (SELECT count(*) FROM pgtrickle.pgt_dependencies), to_regclass('ft_diff')";
    let before = texts(&mut client, footprint);
    let err = expect_error(
        &mut client,
        &format!("SELECT pgtrickle.create_stream_table('ft_diff', $q${query}$q$, refresh_mode => 'DIFFERENTIAL')"),
        "0A000",
    );
    assert!(err.message.contains("a foreign table"), "{err:?}");
    assert!(err.hint.unwrap_or_default().contains("AUTO"));
    assert_eq!(
        texts(&mut client, footprint),
        before,
        "the refused create left something"
    );

    client
        .execute(
            "SELECT pgtrickle.create_stream_table('ft_auto', $1)",
            &[&query],
        )
        .expect("AUTO create");
    assert_oracle(&mut client, "ft_auto", query);
    let catalog = "SELECT s.differential_blocker, d.source_kind
        FROM pgtrickle.pgt_stream_tables s JOIN pgtrickle.pgt_dependencies d USING (pgt_id)
        WHERE s.pgt_name = 'ft_auto'";
    let catalog = texts(&mut client, catalog);
    assert!(
        catalog.len() == 1
            && catalog[0].contains("a foreign table")
            && catalog[0].ends_with(",FOREIGN_TABLE)"),
        "{catalog:?}"
    );
    let no_buffer = format!(
        "SELECT to_regclass('{}') IS NULL",
        buffer(&mut client, "ft")
    );
    assert!(
        one::<bool>(&mut client, &no_buffer),
        "a foreign table got a change buffer"
    );
    run(
        &mut client,
        &format!(
            "INSERT INTO backing VALUES (100, 'new', 7); UPDATE backing SET v = v * 10 WHERE k = 'k1';
             DELETE FROM backing WHERE id = 3; {export};"
        ),
    );
    assert_eq!(refresh(&mut client, "ft_auto", query), "FULL");
    let (_, reason) = last_refresh(&mut client, "ft_auto");
    assert!(reason.unwrap_or_default().contains("a foreign table"));
    let new = texts(&mut client, "SELECT k, s, n FROM ft_auto WHERE k = 'new'");
    assert_eq!(new, ["(new,7,1)"], "the refresh missed the change");
}
