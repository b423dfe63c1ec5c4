//! Manual refresh: it is atomic (readers see the old contents until it commits and are not
//! blocked), two refreshes of one stream table never overlap, `initialize => false` leaves an
//! empty INITIALIZING stream table, and the catalog records each refresh.

use pg_trickle_tests::{assert_oracle, expect_error, TestDb};
use postgres::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const QUERY: &str = "SELECT k, count(*) AS n, sum(v) AS s, min(v) AS lo FROM items GROUP BY k";

fn setup(name: &str) -> (TestDb, Client) {
    let db = TestDb::new(name);
    let mut client = db.connect();
    client
        .batch_execute(&format!(
            "CREATE TABLE items (id int PRIMARY KEY, k int, v int);
             INSERT INTO items SELECT i, i % 10, i FROM generate_series(1, 200) i;
             SELECT pgtrickle.create_stream_table('totals', '{QUERY}', refresh_mode => 'FULL');"
        ))
        .expect("setup");
    (db, client)
}

#[test]
fn readers_see_the_old_contents_until_the_refresh_commits() {
    let (db, mut writer) = setup("refresh_atomic");
    let mut reader = db.connect();
    let before: i64 = reader
        .query_one("SELECT sum(n)::bigint FROM totals", &[])
        .expect("sum")
        .get(0);
    let mut tx = writer.transaction().expect("begin");
    tx.batch_execute(
        "DELETE FROM items WHERE id <= 50;
         SELECT pgtrickle.refresh_stream_table('totals');",
    )
    .expect("refresh inside a transaction");
    // the reader is neither blocked nor shown a half-refreshed table
    let during: i64 = reader
        .query_one("SELECT sum(n)::bigint FROM totals", &[])
        .expect("sum")
        .get(0);
    assert_eq!(during, before);
    tx.commit().expect("commit");
    let after: i64 = reader
        .query_one("SELECT sum(n)::bigint FROM totals", &[])
        .expect("sum")
        .get(0);
    assert_eq!(after, before - 50);
    assert_oracle(&mut reader, "totals", QUERY);
}

#[test]
fn concurrent_refreshes_of_one_stream_table_wait_for_each_other() {
    let (db, mut first) = setup("refresh_serial");
    concurrent_refreshes(&db, &mut first, "totals", QUERY);
}

#[test]
fn concurrent_differential_refreshes_apply_each_change_once() {
    // COUNT and SUM are updated from the delta alone, so applying a change twice would show
    let (db, mut first) = setup("refresh_serial_differential");
    let sums = "SELECT k, count(*) AS n, sum(v) AS s FROM items GROUP BY k";
    first
        .execute(
            "SELECT pgtrickle.create_stream_table('sums', $1, refresh_mode => 'DIFFERENTIAL')",
            &[&sums],
        )
        .expect("differential stream table");
    for _ in 0..3 {
        concurrent_refreshes(&db, &mut first, "sums", sums);
    }
}

fn concurrent_refreshes(db: &TestDb, first: &mut Client, name: &str, query: &str) {
    let mut tx = first.transaction().expect("begin");
    tx.batch_execute(
        &format!("INSERT INTO items SELECT max(id) + 1, 1, 1 FROM items; SELECT pgtrickle.refresh_stream_table('{name}');"),
    )
    .expect("first refresh");
    let other = db.clone();
    let refresh = format!("SELECT pgtrickle.refresh_stream_table('{name}')");
    let second = std::thread::spawn(move || {
        let mut c = other.connect();
        c.batch_execute(&refresh).expect("second refresh");
    });
    // wait until the second refresh is queued behind the first one
    let mut monitor = db.connect();
    let mut waiting = false;
    for _ in 0..600 {
        let n: i64 = monitor
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'
                   AND query LIKE '%refresh_stream_table%'",
                &[],
            )
            .expect("locks")
            .get(0);
        if n > 0 {
            waiting = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(waiting, "the second refresh did not wait for the first");
    tx.commit().expect("commit first");
    second.join().expect("second refresh thread");
    assert_oracle(&mut monitor, name, query);
}

#[test]
fn initialize_false_creates_an_empty_stream_table_until_the_first_refresh() {
    let (_db, mut client) = setup("refresh_initialize");
    client
        .batch_execute(&format!(
            "SELECT pgtrickle.create_stream_table('later', '{QUERY}', initialize => false)"
        ))
        .expect("create without data");
    let (status, rows): (String, i64) = client
        .query_one(
            "SELECT (SELECT status FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'later'),
                    (SELECT count(*) FROM later)",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .expect("status");
    assert_eq!((status.as_str(), rows), ("INITIALIZING", 0));
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('later')")
        .expect("refresh");
    let row = client
        .query_one(
            "SELECT status, last_refresh_mode, frontier IS NOT NULL, frontier_lsn IS NOT NULL,
                    last_refreshed_at IS NOT NULL
             FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'later'",
            &[],
        )
        .expect("catalog");
    assert_eq!(row.get::<_, String>(0), "ACTIVE");
    assert_eq!(row.get::<_, String>(1), "FULL");
    assert!(row.get::<_, bool>(2) && row.get::<_, bool>(3) && row.get::<_, bool>(4));
    assert_oracle(&mut client, "later", QUERY);
}

#[test]
fn random_changes_then_refresh_equal_the_query() {
    let (_db, mut client) = setup("refresh_random");
    let queries = [
        ("q_filter", "SELECT id, k, v * 2 AS v2 FROM items WHERE v % 3 <> 0 OR k IS NULL"),
        ("q_distinct", "SELECT DISTINCT k, v % 5 AS bucket FROM items"),
        ("q_keyless", "SELECT k, v % 2 AS parity FROM items"),
        ("q_join", "SELECT a.k, count(*) AS pairs FROM items a JOIN items b ON a.k = b.k AND a.id < b.id GROUP BY a.k"),
        ("q_left", "SELECT a.id, b.id AS next_id FROM items a LEFT JOIN items b ON b.id = a.id + 1"),
        ("q_whole", "SELECT count(*) AS n, sum(v) AS s, avg(v) AS a, bool_and(v > 0) AS pos FROM items"),
        ("q_strings", "SELECT k, string_agg(v::text, ',' ORDER BY v) AS vs FROM items GROUP BY k HAVING count(*) > 1"),
        ("q_union", "SELECT k FROM items WHERE v < 50 UNION ALL SELECT k FROM items WHERE v > 150"),
        ("q_volatile", "SELECT id, v, (random() < 2) AS always FROM items"),
    ];
    for (name, query) in queries {
        client
            .execute(
                "SELECT pgtrickle.create_stream_table($1, $2)",
                &[&name, &query],
            )
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
    }
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..50 {
        let mut sql = Vec::new();
        for _ in 0..rng.gen_range(1..6) {
            let id = rng.gen_range(1..400);
            let k = if rng.gen_bool(0.1) {
                "NULL".to_string()
            } else {
                rng.gen_range(0..12).to_string()
            };
            sql.push(format!(
                "INSERT INTO items VALUES ({id}, {k}, {}) ON CONFLICT (id) DO UPDATE SET k = EXCLUDED.k, v = EXCLUDED.v",
                rng.gen_range(-5..300)
            ));
        }
        sql.push(format!(
            "UPDATE items SET id = id + 1000 WHERE id = {}",
            rng.gen_range(1..400)
        ));
        sql.push(format!(
            "DELETE FROM items WHERE id % 17 = {}",
            rng.gen_range(0..17)
        ));
        client
            .batch_execute(&sql.join(";"))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        for (name, query) in queries.iter().chain([("totals", QUERY)].iter()) {
            client
                .execute("SELECT pgtrickle.refresh_stream_table($1)", &[name])
                .unwrap_or_else(|e| panic!("refresh {name}: {e}"));
            assert_oracle(&mut client, name, query);
        }
    }
}

/// (refresh_mode, reason, inserted, updated, deleted) of each history row, oldest first.
type HistoryRow = (String, Option<String>, i64, i64, i64);

fn history(client: &mut Client, name: &str) -> Vec<HistoryRow> {
    client
        .query(
            "SELECT h.refresh_mode, h.reason, h.rows_inserted, h.rows_updated, h.rows_deleted
             FROM pgtrickle.pgt_refresh_history h
             JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
             WHERE s.pgt_name = $1 AND h.status = 'SUCCEEDED'
               AND h.finished_at >= h.started_at AND h.duration_ms >= 0
             ORDER BY h.refresh_id",
            &[&name],
        )
        .expect("history")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

#[test]
fn every_refresh_is_recorded_in_the_history_and_old_rows_expire() {
    let db = TestDb::new("refresh_history");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, k int, v int);
             INSERT INTO items SELECT i, i % 10, i FROM generate_series(1, 100) i;
             SELECT pgtrickle.create_stream_table('hist', 'SELECT id, k, v FROM items',
                                                  refresh_mode => 'DIFFERENTIAL');
             SELECT pgtrickle.refresh_stream_table('hist');
             INSERT INTO items VALUES (101, 1, 1), (102, 2, 2);
             DELETE FROM items WHERE id = 1;
             SELECT pgtrickle.refresh_stream_table('hist');
             TRUNCATE items;
             SELECT pgtrickle.refresh_stream_table('hist');",
        )
        .expect("refreshes");
    let rows = history(&mut client, "hist");
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].2, rows[0].4),
        ("FULL", 100, 0),
        "{rows:?}"
    );
    assert_eq!(rows[0].1.as_deref(), Some("first refresh"), "{rows:?}");
    assert_eq!(rows[1], ("NOOP".into(), None, 0, 0, 0), "{rows:?}");
    assert_eq!(
        (rows[2].0.as_str(), rows[2].2, rows[2].4),
        ("DIFFERENTIAL", 2, 1),
        "{rows:?}"
    );
    assert_eq!(rows[3].0, "FULL", "{rows:?}");
    assert!(
        rows[3].1.as_deref().unwrap_or("").contains("truncated"),
        "{rows:?}"
    );

    // a refresh rolled back with its transaction leaves no history
    let mut tx = client.transaction().expect("begin");
    tx.batch_execute("SELECT pgtrickle.refresh_stream_table('hist')")
        .expect("refresh");
    tx.rollback().expect("rollback");
    assert_eq!(history(&mut client, "hist").len(), 4);

    // rows older than the retention go when the stream table is refreshed again; 0 keeps all
    client
        .batch_execute(
            "UPDATE pgtrickle.pgt_refresh_history
             SET started_at = started_at - interval '3 hours', finished_at = finished_at - interval '3 hours'
             WHERE refresh_id IN (SELECT min(refresh_id) FROM pgtrickle.pgt_refresh_history);
             SET pg_trickle.history_retention_hours = 0;
             SELECT pgtrickle.refresh_stream_table('hist');",
        )
        .expect("keep all");
    assert_eq!(history(&mut client, "hist").len(), 5);
    client
        .batch_execute(
            "SET pg_trickle.history_retention_hours = 2;
             SELECT pgtrickle.refresh_stream_table('hist');",
        )
        .expect("retention");
    let rows = history(&mut client, "hist");
    assert_eq!(rows.len(), 5, "the three-hour-old row is gone: {rows:?}");
    assert_eq!(rows[0].0, "NOOP", "{rows:?}");
    expect_error(
        &mut client,
        "SET pg_trickle.history_retention_hours = -1",
        "22023",
    );

    // dropping the stream table drops its history
    client
        .batch_execute("SELECT pgtrickle.drop_stream_table('hist')")
        .expect("drop");
    let left: i64 = client
        .query_one("SELECT count(*) FROM pgtrickle.pgt_refresh_history", &[])
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
}

#[test]
fn a_grouped_refresh_records_the_groups_it_inserted_updated_and_deleted() {
    let db = TestDb::new("refresh_group_counts");
    let mut client = db.connect();
    let query = "SELECT g, sum(v) AS total, count(*) AS n FROM sales GROUP BY g";
    client
        .batch_execute(&format!(
            "CREATE TABLE sales (id int PRIMARY KEY, g int, v int);
             INSERT INTO sales VALUES (1, 1, 10), (2, 1, 20), (3, 2, 5), (4, 4, 1);
             SELECT pgtrickle.create_stream_table('per_group', '{query}',
                                                  refresh_mode => 'DIFFERENTIAL');
             INSERT INTO sales VALUES (5, 3, 7);
             UPDATE sales SET v = 11 WHERE id = 1;
             DELETE FROM sales WHERE id = 3;
             UPDATE sales SET v = v WHERE id = 4;
             SELECT pgtrickle.refresh_stream_table('per_group');"
        ))
        .expect("refreshes");
    // group 3 is new, group 1 changed, group 2 is gone; group 4's change cancels out
    let rows = history(&mut client, "per_group");
    assert_eq!(
        rows.last().map(|r| (r.0.as_str(), r.2, r.3, r.4)),
        Some(("DIFFERENTIAL", 1, 1, 1)),
        "{rows:?}"
    );
    assert_oracle(&mut client, "per_group", query);
    // the visible count(*) is the group's row count: no hidden copy of it
    let hidden: Vec<String> = client
        .query(
            "SELECT attname::text FROM pg_attribute
             WHERE attrelid = 'per_group'::regclass AND attnum > 0 AND NOT attisdropped
               AND attname LIKE '\\_\\_pgt\\_%' ORDER BY attnum",
            &[],
        )
        .expect("columns")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(hidden, ["__pgt_row_id", "__pgt_a0_n"]);
}
