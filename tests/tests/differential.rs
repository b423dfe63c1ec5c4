//! DIFFERENTIAL refresh against the oracle: the 38 query shapes of `shapes` through fifty
//! rounds of random DML with NULLs, duplicates and key-changing updates, a refresh after each
//! round and a check that the differential path ran rather than a full recompute; and the
//! frontier's cases (open transactions, refreshes inside the writing transaction, siblings
//! refreshed at different times), TRUNCATE, append-only and partitioned sources, unsupported
//! constructs, CURRENT_DATE, and rows rewritten only when their result changes.

use pg_trickle_tests::shapes::{assert_differential, create_every_shape, QUERIES, SCHEMA};
use pg_trickle_tests::{assert_oracle, expect_error, last_refresh, Script, TestDb};
use postgres::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One round of random DML over the schema, as SQL.
fn random_round_sql(rng: &mut StdRng) -> String {
    let mut sql = Vec::new();
    let opt = |rng: &mut StdRng, v: String| {
        if rng.gen_bool(0.15) {
            "NULL".to_string()
        } else {
            v
        }
    };
    for _ in 0..rng.gen_range(1..6) {
        let id = rng.gen_range(1..80);
        let cid = rng.gen_range(1..16).to_string();
        let cid = opt(rng, cid);
        let amount = format!("{}.{:02}", rng.gen_range(0..90), rng.gen_range(0..100));
        let amount = opt(rng, amount);
        let note = format!("'{}'", ["a", "b", "c", "d"][rng.gen_range(0..4)]);
        let note = opt(rng, note);
        sql.push(format!(
            "INSERT INTO orders VALUES ({id}, {cid}, {}, {}, {amount}, {note}, '{{\"k\": {}}}') \
             ON CONFLICT (id) DO UPDATE SET cid = EXCLUDED.cid, amount = EXCLUDED.amount, qty = EXCLUDED.qty",
            rng.gen_range(1..8),
            rng.gen_range(1..6),
            rng.gen_range(0..4)
        ));
    }
    sql.push(format!(
        "UPDATE orders SET cid = {} WHERE id % 9 = {}",
        rng.gen_range(1..16),
        rng.gen_range(0..9)
    ));
    sql.push(format!(
        "UPDATE orders SET amount = amount + 1, note = NULL WHERE id % 11 = {}",
        rng.gen_range(0..11)
    ));
    sql.push(format!(
        "UPDATE orders SET id = (SELECT max(id) + 1 FROM orders) WHERE id = {}",
        rng.gen_range(1..80)
    ));
    sql.push(format!(
        "DELETE FROM orders WHERE id % 13 = {}",
        rng.gen_range(0..13)
    ));
    if rng.gen_bool(0.5) {
        let id = rng.gen_range(1..16);
        let region = format!(
            "'{}'",
            ["north", "south", "east", "west"][rng.gen_range(0..4)]
        );
        let region = opt(rng, region);
        sql.push(format!(
            "INSERT INTO customers VALUES ({id}, 'c{id}', {region}, 'std') \
             ON CONFLICT (id) DO UPDATE SET region = EXCLUDED.region, name = EXCLUDED.name || 'x'"
        ));
    }
    if rng.gen_bool(0.2) {
        sql.push(format!(
            "DELETE FROM customers WHERE id = {}",
            rng.gen_range(1..16)
        ));
    }
    if rng.gen_bool(0.3) {
        sql.push(format!(
            "UPDATE products SET price = price + 1, cat = {} WHERE id = {}",
            ["'a'", "'b'", "NULL"][rng.gen_range(0..3)],
            rng.gen_range(1..8)
        ));
    }
    if rng.gen_bool(0.2) {
        sql.push(format!(
            "UPDATE regions SET zone = 'z{}' WHERE name = 'north'",
            rng.gen_range(1..4)
        ));
    }
    sql.join(";\n")
}

fn random_round(rng: &mut StdRng, client: &mut Client) {
    let sql = random_round_sql(rng);
    client.batch_execute(&sql).unwrap_or_else(|e| {
        panic!(
            "DML failed: {:?}\n{sql}",
            e.as_db_error().map(|d| d.message())
        )
    });
}

fn refresh_and_check(client: &mut Client, name: &str, query: &str) {
    client
        .execute("SELECT pgtrickle.refresh_stream_table($1)", &[&name])
        .unwrap_or_else(|e| panic!("refresh {name}: {e}"));
    assert_oracle(client, name, query);
    assert_differential(client, name);
}

#[test]
fn random_changes_keep_every_shape_equal_to_its_query() {
    let db = TestDb::new("differential_shapes");
    let mut client = db.connect();
    let mut script = Script::new();
    create_every_shape(&mut client, &mut script);
    let seed = pg_trickle_tests::seed(3);
    let mut rng = StdRng::seed_from_u64(seed);
    for _round in 0..50 {
        let dml = random_round_sql(&mut rng);
        script.run(&mut client, &dml);
        for (name, query) in QUERIES {
            script.run(
                &mut client,
                &format!("SELECT pgtrickle.refresh_stream_table('{name}')"),
            );
            script.check(&mut client, name, query);
            assert_differential(&mut client, name);
        }
    }
}

/// `rows` new orders from id `first` on, in customer `cid` (several customers and products
/// when there are many of them).
fn new_orders(first: i32, rows: i32, cid: i32) -> String {
    format!(
        "INSERT INTO orders SELECT i, {cid} + i % 3, 1 + i % 6, 1 + i % 5, i % 90, 'new', NULL
         FROM generate_series({first}, {first} + {rows} - 1) i"
    )
}

/// A transaction that writes `rows` rows and stays open while another commits and a refresh
/// runs: its rows reach the next refresh, once. With 1,500 rows the refreshes take the path of
/// large changes (statements planned for their size).
fn open_transaction_case(name: &str, rows: i32) {
    let db = TestDb::new(name);
    let mut client = db.connect();
    client.batch_execute(SCHEMA).expect("schema");
    let query = "SELECT cid, count(*) AS n, sum(amount) AS s FROM orders GROUP BY cid";
    client
        .execute(
            "SELECT pgtrickle.create_stream_table('totals', $1, refresh_mode => 'DIFFERENTIAL')",
            &[&query],
        )
        .expect("create");
    let mut writer = db.connect();
    let mut tx = writer.transaction().expect("begin");
    tx.batch_execute(&new_orders(500, rows, 1)).expect("write");
    // a later transaction commits while the first stays open
    client
        .batch_execute(&new_orders(100_000, rows, 2))
        .expect("other write");
    refresh_and_check(&mut client, "totals", query);
    tx.commit().expect("commit the long transaction");
    refresh_and_check(&mut client, "totals", query);
    refresh_and_check(&mut client, "totals", query);
}

#[test]
fn a_transaction_open_during_a_refresh_is_picked_up_by_the_next_one() {
    open_transaction_case("differential_open_tx", 1);
    open_transaction_case("differential_open_tx_large", 1500);
}

/// Writes and refreshes in one transaction: each refresh applies the transaction's rows up to
/// then, the next one only those after.
fn same_transaction_case(name: &str, rows: i32) {
    let db = TestDb::new(name);
    let mut client = db.connect();
    client.batch_execute(SCHEMA).expect("schema");
    let query = "SELECT pid, count(*) AS n, sum(qty) AS q FROM orders GROUP BY pid";
    client
        .execute("SELECT pgtrickle.create_stream_table('per_product', $1, refresh_mode => 'DIFFERENTIAL')", &[&query])
        .expect("create");
    let mut tx = client.transaction().expect("begin");
    tx.batch_execute(&format!(
        "{};
         SELECT pgtrickle.refresh_stream_table('per_product');",
        new_orders(600, rows, 1)
    ))
    .expect("write and refresh in one transaction");
    assert_oracle(&mut tx, "per_product", query);
    tx.batch_execute(&format!(
        "{};
         DELETE FROM orders WHERE id = 1 OR id BETWEEN 600 AND 600 + {rows} / 2;
         SELECT pgtrickle.refresh_stream_table('per_product');",
        new_orders(200_000, rows, 1)
    ))
    .expect("more writes and a second refresh");
    assert_oracle(&mut tx, "per_product", query);
    tx.batch_execute(&new_orders(300_000, rows, 1))
        .expect("third write");
    tx.commit().expect("commit");
    refresh_and_check(&mut client, "per_product", query);
}

#[test]
fn a_refresh_inside_the_writing_transaction_applies_each_change_once() {
    same_transaction_case("differential_same_tx", 1);
    same_transaction_case("differential_same_tx_large", 1500);
}

#[test]
fn stream_tables_sharing_a_source_refresh_independently() {
    let db = TestDb::new("differential_shared_source");
    let mut client = db.connect();
    client.batch_execute(SCHEMA).expect("schema");
    let often = "SELECT cid, sum(qty) AS q FROM orders GROUP BY cid";
    let rarely = "SELECT pid, count(*) AS n FROM orders GROUP BY pid";
    for (name, query) in [("often", often), ("rarely", rarely)] {
        client
            .execute(
                "SELECT pgtrickle.create_stream_table($1, $2, refresh_mode => 'DIFFERENTIAL')",
                &[&name, &query],
            )
            .expect("create");
    }
    let buffers: i64 = client
        .query_one(r"SELECT count(*) FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace AND relkind = 'r' AND relname LIKE 'changes\_%'", &[])
        .expect("buffers")
        .get(0);
    assert_eq!(buffers, 1, "one change buffer per source, shared");
    let mut rng = StdRng::seed_from_u64(11);
    for round in 0..30 {
        random_round(&mut rng, &mut client);
        refresh_and_check(&mut client, "often", often);
        if round % 4 == 3 {
            refresh_and_check(&mut client, "rarely", rarely);
        }
    }
    refresh_and_check(&mut client, "rarely", rarely);
    // a stream table created later does not see older changes as changes
    client
        .execute(
            "SELECT pgtrickle.create_stream_table('late', $1, refresh_mode => 'DIFFERENTIAL')",
            &[&often],
        )
        .expect("late");
    random_round(&mut rng, &mut client);
    refresh_and_check(&mut client, "late", often);
}

#[test]
fn truncate_append_only_and_partitioned_sources_stay_correct() {
    let db = TestDb::new("differential_special_sources");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE events (id int, kind text, v int);
             INSERT INTO events SELECT i, 'k' || (i % 3), i FROM generate_series(1, 30) i;
             CREATE TABLE measures (day date, v int) PARTITION BY RANGE (day);
             CREATE TABLE measures_a PARTITION OF measures FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
             CREATE TABLE measures_b PARTITION OF measures FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
             INSERT INTO measures SELECT DATE '2026-01-01' + i, i FROM generate_series(0, 50) i;",
        )
        .expect("setup");
    let by_kind = "SELECT kind, count(*) AS n, sum(v) AS s FROM events GROUP BY kind";
    let per_month =
        "SELECT date_trunc('month', day) AS m, sum(v) AS s, count(*) AS n FROM measures GROUP BY 1";
    client
        .execute("SELECT pgtrickle.create_stream_table('by_kind', $1, refresh_mode => 'DIFFERENTIAL', append_only => true)", &[&by_kind])
        .expect("append-only");
    client
        .execute(
            "SELECT pgtrickle.create_stream_table('per_month', $1, refresh_mode => 'DIFFERENTIAL')",
            &[&per_month],
        )
        .expect("partitioned");
    client.batch_execute("INSERT INTO events VALUES (100, 'k1', 5); INSERT INTO measures VALUES ('2026-02-20', 9);").expect("inserts");
    refresh_and_check(&mut client, "by_kind", by_kind);
    refresh_and_check(&mut client, "per_month", per_month);
    // an UPDATE reaches an append-only source: the next refresh recomputes, and stays right
    client
        .batch_execute("UPDATE events SET v = v + 1 WHERE id < 5; DELETE FROM events WHERE id = 6")
        .expect("update");
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('by_kind')")
        .expect("refresh");
    assert_oracle(&mut client, "by_kind", by_kind);
    client
        .batch_execute("TRUNCATE measures; INSERT INTO measures VALUES ('2026-01-05', 1)")
        .expect("truncate");
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('per_month')")
        .expect("refresh");
    assert_oracle(&mut client, "per_month", per_month);
    let (mode, reason) = last_refresh(&mut client, "per_month");
    assert_eq!(mode.as_deref(), Some("FULL"));
    assert!(reason.unwrap_or_default().contains("truncated"));
    client
        .batch_execute("UPDATE measures SET v = 2")
        .expect("update");
    refresh_and_check(&mut client, "per_month", per_month);
}

#[test]
fn unsupported_constructs_are_named_and_auto_falls_back_to_full() {
    let db = TestDb::new("differential_unsupported");
    let mut client = db.connect();
    client.batch_execute(SCHEMA).expect("schema");
    client
        .batch_execute("CREATE VIEW big_orders AS SELECT * FROM orders WHERE qty > 2")
        .expect("view");
    let cases = [
        (
            "SELECT id, row_number() OVER (ORDER BY id) AS rn FROM orders",
            "window functions",
        ),
        ("SELECT id FROM orders ORDER BY id LIMIT 5", "LIMIT"),
        (
            "SELECT id FROM orders UNION SELECT id FROM customers",
            "UNION",
        ),
        (
            "SELECT id FROM orders WHERE cid IN (SELECT id FROM customers)",
            "subqueries",
        ),
        (
            "SELECT o.id, c.id AS c FROM orders o FULL JOIN customers c ON c.id = o.cid",
            "FULL OUTER JOIN",
        ),
        ("WITH x AS (SELECT id FROM orders) SELECT id FROM x", "WITH"),
        (
            "SELECT cid, count(*) AS n FROM orders GROUP BY ROLLUP (cid)",
            "GROUPING SETS",
        ),
        (
            "SELECT generate_series(1, qty) AS g FROM orders",
            "set-returning",
        ),
        ("SELECT id, qty FROM big_orders", "a view"),
        (
            "SELECT max(note) AS m FROM orders GROUP BY cid",
            "GROUP BY key that is not an output column",
        ),
    ];
    for (i, (query, construct)) in cases.iter().enumerate() {
        let err = pg_trickle_tests::expect_error(
            &mut client,
            &format!("SELECT pgtrickle.create_stream_table('x{i}', $q${query}$q$, refresh_mode => 'DIFFERENTIAL')"),
            "0A000",
        );
        assert!(err.message.contains(construct), "{query}: {err:?}");
        assert!(err.hint.unwrap_or_default().contains("AUTO"));
        client
            .batch_execute(&format!(
                "SELECT pgtrickle.create_stream_table('x{i}', $q${query}$q$)"
            ))
            .unwrap_or_else(|e| panic!("AUTO create of {query}: {e}"));
        let blocker: Option<String> = client
            .query_one(
                "SELECT differential_blocker FROM pgtrickle.pgt_stream_tables WHERE pgt_name = $1",
                &[&format!("x{i}")],
            )
            .expect("blocker")
            .get(0);
        assert!(blocker.unwrap_or_default().contains(construct), "{query}");
    }
    random_round(&mut StdRng::seed_from_u64(5), &mut client);
    for (i, (query, _)) in cases.iter().enumerate() {
        let name = format!("x{i}");
        client
            .execute("SELECT pgtrickle.refresh_stream_table($1)", &[&name])
            .expect("refresh");
        assert_oracle(&mut client, &name, query);
        let (mode, reason) = last_refresh(&mut client, &name);
        assert_eq!(mode.as_deref(), Some("FULL"), "{query}");
        assert!(reason.is_some());
    }
    // reading the clock: accepted in DIFFERENTIAL mode, recomputed in full every time
    let timed = "SELECT id FROM orders WHERE now() > '2000-01-01' AND order_day() IS NOT NULL";
    client
        .batch_execute(
            "CREATE FUNCTION order_day() RETURNS date LANGUAGE sql STABLE AS 'SELECT CURRENT_DATE'",
        )
        .expect("function");
    client
        .execute(
            "SELECT pgtrickle.create_stream_table('timed', $1, refresh_mode => 'DIFFERENTIAL')",
            &[&timed],
        )
        .expect("time-dependent query accepted");
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('timed')")
        .expect("refresh");
    let (_, reason) = last_refresh(&mut client, "timed");
    assert!(reason.unwrap_or_default().contains("time-dependent"));
    assert_oracle(&mut client, "timed", timed);
}

#[test]
fn a_query_reading_current_date_is_maintained_until_the_date_changes() {
    let db = TestDb::new("differential_current_date");
    let mut client = db.connect();
    // two time zones 26 hours apart always see different dates
    client
        .batch_execute(
            "SET TimeZone = 'Etc/GMT+12';
             CREATE TABLE visits (id int PRIMARY KEY, day date NOT NULL, region text);
             INSERT INTO visits SELECT i, CURRENT_DATE + (i % 5) - 2, 'r' || (i % 3)
             FROM generate_series(1, 40) i;",
        )
        .expect("setup");
    let upcoming = "SELECT region, count(*) AS n, min(day) AS first FROM visits \
                    WHERE day >= CURRENT_DATE GROUP BY region";
    client
        .execute(
            "SELECT pgtrickle.create_stream_table('upcoming', $1, refresh_mode => 'DIFFERENTIAL')",
            &[&upcoming],
        )
        .expect("create");
    let mut next = 100;
    let mut change = |client: &mut Client| {
        client
            .batch_execute(&format!(
                "INSERT INTO visits VALUES ({next}, CURRENT_DATE, 'r1'), ({}, CURRENT_DATE + 1, 'r9');
                 DELETE FROM visits WHERE id = {};",
                next + 1,
                next - 97
            ))
            .expect("change");
        next += 2;
    };
    for zone in ["Etc/GMT+12", "Etc/GMT-14", "Etc/GMT-14", "Etc/GMT+12"] {
        client
            .batch_execute(&format!("SET TimeZone = '{zone}'"))
            .expect("time zone");
        let date_moved = last_refresh(&mut client, "upcoming").0.is_some() && {
            let moved: bool = client
                .query_one(
                    "SELECT frontier_date <> CURRENT_DATE FROM pgtrickle.pgt_stream_tables \
                     WHERE pgt_name = 'upcoming'",
                    &[],
                )
                .expect("frontier date")
                .get(0);
            moved
        };
        change(&mut client);
        client
            .batch_execute("SELECT pgtrickle.refresh_stream_table('upcoming')")
            .expect("refresh");
        assert_oracle(&mut client, "upcoming", upcoming);
        let (mode, reason) = last_refresh(&mut client, "upcoming");
        if date_moved {
            assert_eq!(mode.as_deref(), Some("FULL"), "{zone}");
            assert!(reason.unwrap_or_default().contains("date changed"));
        } else {
            assert_eq!(mode.as_deref(), Some("DIFFERENTIAL"), "{zone}");
        }
        // no change, same date: nothing to do
        client
            .batch_execute("SELECT pgtrickle.refresh_stream_table('upcoming')")
            .expect("refresh");
        assert_eq!(
            last_refresh(&mut client, "upcoming").0.as_deref(),
            Some("NOOP")
        );
    }
}

#[test]
fn a_refresh_touches_only_rows_whose_result_changes() {
    let db = TestDb::new("differential_touch");
    let mut client = db.connect();
    client.batch_execute(SCHEMA).expect("schema");
    let sums = "SELECT pid, sum(qty) AS q FROM orders GROUP BY pid";
    // an aggregate whose groups are recomputed (text has a collation)
    let maxes = "SELECT pid, max(note) AS m FROM orders GROUP BY pid";
    for (name, query) in [("sums", sums), ("maxes", maxes)] {
        client
            .execute(
                "SELECT pgtrickle.create_stream_table($1, $2, refresh_mode => 'DIFFERENTIAL')",
                &[&name, &query],
            )
            .expect("create");
    }
    let versions = |client: &mut Client, table: &str| -> Vec<(i32, String)> {
        client
            .query(
                &format!("SELECT pid, xmin::text FROM {table} ORDER BY pid"),
                &[],
            )
            .expect("versions")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let (sums_before, maxes_before) = (
        versions(&mut client, "sums"),
        versions(&mut client, "maxes"),
    );
    // product 1 gets one more unit (its sum changes) and a new order smaller than its largest
    // (its maximum does not)
    client
        .batch_execute("INSERT INTO orders VALUES (900, 1, 1, 1, 1, NULL, NULL)")
        .expect("change");
    refresh_and_check(&mut client, "sums", sums);
    refresh_and_check(&mut client, "maxes", maxes);
    let (sums_after, maxes_after) = (
        versions(&mut client, "sums"),
        versions(&mut client, "maxes"),
    );
    let changed: Vec<i32> = sums_before
        .iter()
        .zip(&sums_after)
        .filter(|(b, a)| b != a)
        .map(|(b, _)| b.0)
        .collect();
    assert_eq!(changed, vec![1], "only product 1's sum changed");
    assert_eq!(
        maxes_before, maxes_after,
        "no maximum changed, so no row was rewritten"
    );
}

#[test]
fn source_column_names_never_clash_with_the_capture_function() {
    let db = TestDb::new("differential_clash");
    let mut client = db.connect();
    let query = "SELECT pgt_xid, sum(pgt_seq) AS s, count(*) AS n FROM odd GROUP BY pgt_xid";
    client
        .batch_execute(
            "CREATE TABLE odd (id int PRIMARY KEY, pgt_xid int, pgt_seq int, \"TG_OP\" text);
             INSERT INTO odd SELECT i, i % 3, i, 'x' FROM generate_series(1, 20) i;",
        )
        .expect("setup");
    client
        .execute("SELECT pgtrickle.create_stream_table('odd_totals', $1, refresh_mode => 'DIFFERENTIAL')", &[&query])
        .expect("create");
    client
        .batch_execute(
            "INSERT INTO odd VALUES (100, 1, 5, 'y');
             UPDATE odd SET pgt_seq = pgt_seq + 10, pgt_xid = 2 WHERE id < 5;
             DELETE FROM odd WHERE id = 7;",
        )
        .expect("changes");
    refresh_and_check(&mut client, "odd_totals", query);
}

#[test]
fn writes_to_partitions_and_partition_ddl_reach_a_partitioned_source() {
    let db = TestDb::new("differential_partitions");
    let mut client = db.connect();
    let query = "SELECT k, sum(v) AS s, count(*) AS n FROM parted GROUP BY k";
    client
        .batch_execute(&format!(
            "CREATE TABLE parted (id int, k int, v int) PARTITION BY RANGE (id);
             CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM (0) TO (100)
                 PARTITION BY RANGE (id);
             CREATE TABLE parted_a1 PARTITION OF parted_a FOR VALUES FROM (0) TO (50);
             CREATE TABLE parted_a2 PARTITION OF parted_a FOR VALUES FROM (50) TO (100);
             INSERT INTO parted SELECT i, i % 3, i FROM generate_series(0, 99) i;
             SELECT pgtrickle.create_stream_table('parted_st', '{query}',
                                                  refresh_mode => 'DIFFERENTIAL');"
        ))
        .expect("setup");
    let steps = [
        // statements naming a leaf or an intermediate partition, not the source
        "INSERT INTO parted_a1 VALUES (1, 7, 1000)",
        "UPDATE parted_a2 SET v = v + 1 WHERE id < 60",
        "DELETE FROM parted_a WHERE id % 10 = 0",
        // a partition created later, then written to directly
        "CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM (100) TO (200);
         INSERT INTO parted_b VALUES (150, 1, 5)",
        // rows moved to another partition by an UPDATE of the source
        "UPDATE parted SET id = id + 100, v = v + 1 WHERE id BETWEEN 10 AND 14",
        // a table with rows attached, then a partition detached and written to afterwards
        // (its columns in another order: capture matches them by name)
        "CREATE TABLE parted_c (v int, id int, k int);
         INSERT INTO parted_c (id, k, v) VALUES (250, 2, 50), (251, 9, 9);
         ALTER TABLE parted ATTACH PARTITION parted_c FOR VALUES FROM (200) TO (300)",
        "ALTER TABLE parted DETACH PARTITION parted_b",
        "INSERT INTO parted_b VALUES (160, 1, 1); INSERT INTO parted_c VALUES (2, 260, 2)",
        "DELETE FROM parted_c WHERE id = 250",
        "TRUNCATE parted_a2",
    ];
    for step in steps {
        client
            .batch_execute(step)
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        client
            .batch_execute("SELECT pgtrickle.refresh_stream_table('parted_st')")
            .unwrap_or_else(|e| panic!("refresh after {step}: {e}"));
        assert_oracle(&mut client, "parted_st", query);
    }
}

#[test]
fn an_update_between_equal_values_that_differ_is_captured() {
    let db = TestDb::new("differential_equal_values");
    let mut client = db.connect();
    let query = "SELECT id, n, f, b, d, t FROM eq";
    // maintained by recomputing affected groups
    let grouped = "SELECT id, max(n) AS n, min(b) AS b FROM eq GROUP BY id";
    client
        .batch_execute(&format!(
            "CREATE DOMAIN money2 AS numeric;
             CREATE TABLE eq (id int PRIMARY KEY, n numeric, f float8, b bpchar, d money2, t text);
             INSERT INTO eq VALUES (1, 1.0, 0, 'a', 2.5, 'x'), (2, 2, 1, 'b', 3, 'y');
             SELECT pgtrickle.create_stream_table('eq_st', '{query}', refresh_mode => 'DIFFERENTIAL');
             SELECT pgtrickle.create_stream_table('eq_max', '{grouped}', refresh_mode => 'DIFFERENTIAL');"
        ))
        .expect("setup");
    // each UPDATE sets a value equal (by the type's `=`) to the old one but printed differently
    let steps = [
        "UPDATE eq SET n = 1.00 WHERE id = 1",
        "UPDATE eq SET f = '-0' WHERE id = 1",
        "UPDATE eq SET b = 'a  ' WHERE id = 1",
        "UPDATE eq SET d = 2.50 WHERE id = 1",
        "UPDATE eq SET n = 2.0, f = 1, t = 'y' WHERE id = 2",
    ];
    for step in steps {
        client
            .batch_execute(step)
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        refresh_and_check(&mut client, "eq_st", query);
        refresh_and_check(&mut client, "eq_max", grouped);
    }
    let changes: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history h
             JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
             WHERE s.pgt_name = 'eq_st' AND h.status = 'SUCCEEDED' AND h.refresh_mode = 'DIFFERENTIAL'
               AND h.rows_inserted > 0",
            &[],
        )
        .expect("history")
        .get(0);
    assert_eq!(changes, steps.len() as i64, "every step changed a row");
}

#[test]
fn a_search_path_at_creation_does_not_change_what_the_delta_computes() {
    let db = TestDb::new("differential_search_path");
    let mut client = db.connect();
    let query = "SELECT id, pg_catalog.abs(v) AS a FROM public.sp_source";
    client
        .batch_execute(&format!(
            "CREATE TABLE public.sp_source (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO public.sp_source VALUES (1, -1), (2, 2);
             CREATE SCHEMA shadow;
             CREATE FUNCTION shadow.abs(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1000';
             SET search_path = shadow, pg_catalog, public;
             SELECT pgtrickle.create_stream_table('public.sp_st', '{query}', refresh_mode => 'DIFFERENTIAL');
             INSERT INTO public.sp_source VALUES (3, -3);
             UPDATE public.sp_source SET v = -20 WHERE id = 2;"
        ))
        .expect("setup");
    refresh_and_check(&mut client, "sp_st", query);
    client.batch_execute("RESET search_path").expect("reset");
    assert_oracle(&mut client, "sp_st", query);
}

#[test]
fn a_value_fixed_after_a_failed_refresh_does_not_block_the_next_one() {
    let db = TestDb::new("differential_fixed_value");
    let mut client = db.connect();
    let query = "SELECT id, raw::int AS n FROM readings";
    client
        .batch_execute(&format!(
            "CREATE TABLE readings (id int PRIMARY KEY, raw text NOT NULL);
             INSERT INTO readings VALUES (1, '10'), (2, '20');
             SELECT pgtrickle.create_stream_table('reading_values', '{query}', refresh_mode => 'DIFFERENTIAL');
             INSERT INTO readings VALUES (3, 'oops');"
        ))
        .expect("setup");
    // the value is still in the source: the refresh fails with the cast's error
    let failed = expect_error(
        &mut client,
        "SELECT pgtrickle.refresh_stream_table('reading_values')",
        "22P02",
    );
    assert!(failed.message.contains("oops"), "{}", failed.message);
    // fixed: the change buffer still holds the bad value, but the refresh goes through
    client
        .batch_execute("UPDATE readings SET raw = '30' WHERE id = 3")
        .expect("fix");
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('reading_values')")
        .expect("refresh after the fix");
    assert_oracle(&mut client, "reading_values", query);
    let (mode, reason) = last_refresh(&mut client, "reading_values");
    assert_eq!(mode.as_deref(), Some("FULL"));
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.starts_with("the differential refresh failed")),
        "{reason:?}"
    );
    // and the next change is applied differentially again
    client
        .batch_execute("INSERT INTO readings VALUES (4, '40')")
        .expect("change");
    refresh_and_check(&mut client, "reading_values", query);
}
