//! The statements a differential refresh generates reach rows through indexes, so that a small
//! change to a large table costs little. Checked without timing: within the refreshing
//! transaction, `pg_stat_xact_user_tables` counts sequential and index scans per table. Those
//! counters can still hold counts of earlier transactions of the same backend that were not yet
//! flushed to the shared statistics (at most once a second), so each check compares the
//! counters before and after the refresh.

use pg_trickle_tests::{assert_oracle, TestDb};
use postgres::Client;

fn scans(client: &mut postgres::Transaction, table: &str) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relid = $1::text::regclass",
            &[&table],
        )
        .expect("scan counters");
    (row.get(0), row.get(1))
}

/// Scans of each of `tables` counted while `work` ran, as (sequential, index).
fn scans_during(tx: &mut postgres::Transaction, tables: &[&str], work: &str) -> Vec<(i64, i64)> {
    let before: Vec<_> = tables.iter().map(|t| scans(tx, t)).collect();
    tx.batch_execute(work).expect("refresh");
    tables
        .iter()
        .zip(before)
        .map(|(t, (seq, idx))| {
            let (seq_after, idx_after) = scans(tx, t);
            (seq_after - seq, idx_after - idx)
        })
        .collect()
}

/// `counted`, an expression over `table`'s row of `pg_stat_xact_user_tables`.
fn counter(tx: &mut postgres::Transaction, table: &str, counted: &str) -> i64 {
    tx.query_one(
        &format!("SELECT {counted} FROM pg_stat_xact_user_tables WHERE relid = $1::text::regclass"),
        &[&table],
    )
    .expect("counters")
    .get(0)
}

/// How much `counted` (see `counter`, such as `idx_tup_fetch`) grew while `work` ran.
fn rows_read_during(tx: &mut postgres::Transaction, table: &str, counted: &str, work: &str) -> i64 {
    let before = counter(tx, table, counted);
    tx.batch_execute(work).expect("refresh");
    counter(tx, table, counted) - before
}

fn setup(client: &mut Client) {
    client
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, amount numeric NOT NULL);
             INSERT INTO orders SELECT i, i % 100000, i % 1000 FROM generate_series(1, 300000) i;
             CREATE INDEX ON orders (customer_id);
             ANALYZE orders;",
        )
        .expect("setup");
}

fn create_differential(client: &mut Client, name: &str, query: &str) {
    client
        .execute(
            "SELECT pgtrickle.create_stream_table($1, $2, refresh_mode => 'DIFFERENTIAL')",
            &[&name, &query],
        )
        .expect("create");
}

/// Stream table `totals`, one group per customer (100,000); returns its query.
fn create_totals(client: &mut Client) -> &'static str {
    let query =
        "SELECT customer_id, sum(amount) AS total, count(*) AS n FROM orders GROUP BY customer_id";
    create_differential(client, "totals", query);
    query
}

/// Eight rounds (so that kept plans settle), each one transaction: `change` with `$1` the
/// round's row id, then a refresh of `st`; `check` gets the round and the scans of `tables`
/// the refresh counted.
fn refresh_rounds(
    client: &mut Client,
    change: &str,
    row: impl Fn(i32) -> i32,
    st: &str,
    tables: &[&str],
    check: impl Fn(i32, &[(i64, i64)]),
) {
    for round in 0..8 {
        let mut tx = client.transaction().expect("begin");
        tx.execute(change, &[&row(round)]).expect("change");
        let counted = scans_during(
            &mut tx,
            tables,
            &format!("SELECT pgtrickle.refresh_stream_table('{st}')"),
        );
        check(round, &counted);
        tx.commit().expect("commit");
    }
}

#[test]
fn a_one_row_change_reaches_a_large_stream_table_by_index() {
    let db = TestDb::new("plans_algebraic");
    let mut client = db.connect();
    setup(&mut client);
    let query = create_totals(&mut client);
    refresh_rounds(
        &mut client,
        "UPDATE orders SET amount = amount + 1 WHERE id = $1",
        |round| round * 7 + 1,
        "totals",
        &["totals", "orders"],
        |round, counted| {
            let (seq, idx) = counted[0];
            assert_eq!(
                seq, 0,
                "round {round}: the refresh scanned the whole stream table"
            );
            assert!(
                idx > 0,
                "round {round}: the refresh did not use the row-id index"
            );
            let (seq, _) = counted[1];
            assert_eq!(
                seq, 0,
                "round {round}: the refresh scanned the whole source"
            );
        },
    );
    assert_oracle(&mut client, "totals", query);
}

#[test]
fn a_one_row_change_reaches_a_small_stream_table_by_index_too() {
    let db = TestDb::new("plans_small");
    let mut client = db.connect();
    setup(&mut client);
    // 1,000 groups: the kept plan, made for a change of unknown size, hashed the whole
    // stream table when a lookup per changed group was allowed to be a hash join
    let query = "SELECT customer_id % 1000 AS bucket, sum(amount) AS total FROM orders GROUP BY 1";
    create_differential(&mut client, "buckets", query);
    refresh_rounds(
        &mut client,
        "UPDATE orders SET amount = amount + 1 WHERE id = $1",
        |round| round * 7 + 1,
        "buckets",
        &["buckets"],
        |round, counted| {
            assert_eq!(
                counted[0],
                (0, 1),
                "round {round}: (sequential, index) scans of the stream table"
            );
        },
    );
    assert_oracle(&mut client, "buckets", query);
}

/// Rows of `table` stored (in physical order) after a row with a greater row id.
fn stored_out_of_row_id_order(client: &mut Client, table: &str) -> i64 {
    client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE __pgt_row_id < before) FROM
                   (SELECT __pgt_row_id, lag(__pgt_row_id) OVER (ORDER BY ctid) AS before
                    FROM {table}) s"
            ),
            &[],
        )
        .expect("physical order")
        .get(0)
}

#[test]
fn a_large_change_finds_its_groups_by_index_too() {
    let db = TestDb::new("plans_large");
    let mut client = db.connect();
    setup(&mut client);
    let query = create_totals(&mut client);
    // written in row-id order, the order in which a change's groups are visited
    assert_eq!(stored_out_of_row_id_order(&mut client, "totals"), 0);
    // 15,000 of the 100,000 groups, 30,000 change rows: planned for its size, where the
    // planner would rather hash the whole stream table than look 15,000 groups up
    for round in 0..3 {
        let mut tx = client.transaction().expect("begin");
        tx.execute(
            "UPDATE orders SET amount = amount + 1 WHERE id > $1 AND id <= $1 + 15000",
            &[&(round * 50_000)],
        )
        .expect("change");
        let counted = scans_during(
            &mut tx,
            &["totals"],
            "SELECT pgtrickle.refresh_stream_table('totals')",
        );
        let (seq, idx) = counted[0];
        assert_eq!(
            seq, 0,
            "round {round}: the refresh scanned the whole stream table"
        );
        assert!(
            idx > 0,
            "round {round}: the refresh did not use the row-id index"
        );
        assert_oracle(&mut tx, "totals", query);
        // the first large change gave the buffer statistics (without them the planner takes
        // a column to hold 200 distinct values: 200 changed groups)
        let analyzed: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_stats WHERE schemaname = 'pgtrickle_changes'
                   AND tablename = 'changes_' || 'orders'::regclass::oid",
                &[],
            )
            .expect("statistics")
            .get(0);
        assert!(analyzed > 0, "round {round}: the buffer has no statistics");
        tx.commit().expect("commit");
    }
    // updated in place, the groups stay near that order (a row moves to another page when its
    // page is full, sooner while other transactions keep the old versions from being pruned);
    // in no order at all, about half of them would follow a greater row id
    let moved = stored_out_of_row_id_order(&mut client, "totals");
    assert!(
        moved < 10_000,
        "{moved} of 100,000 groups out of row-id order"
    );
}

#[test]
fn recomputing_a_group_uses_the_index_on_its_key() {
    let db = TestDb::new("plans_recompute");
    let mut client = db.connect();
    setup(&mut client);
    // an aggregate without delta state: each affected group is recomputed
    let query = "SELECT customer_id, bool_or(amount > 500) AS big FROM orders GROUP BY customer_id";
    create_differential(&mut client, "tops", query);
    refresh_rounds(
        &mut client,
        "DELETE FROM orders WHERE id = $1",
        |round| round * 11 + 3,
        "tops",
        &["orders", "tops"],
        |round, counted| {
            let (seq, _) = counted[0];
            assert_eq!(
                seq, 0,
                "round {round}: recomputing one group scanned the whole source"
            );
            let (seq, _) = counted[1];
            assert_eq!(
                seq, 0,
                "round {round}: the refresh scanned the whole stream table"
            );
        },
    );
    assert_oracle(&mut client, "tops", query);
}

#[test]
fn min_and_max_recompute_only_groups_whose_extreme_was_deleted() {
    let db = TestDb::new("plans_extremes");
    let mut client = db.connect();
    setup(&mut client);
    let query = "SELECT customer_id, min(amount) AS lo, max(amount) AS hi, count(*) AS n \
                 FROM orders GROUP BY customer_id";
    create_differential(&mut client, "extremes", query);
    // customer c has orders c, c + 100000 and c + 200000 with amount c % 1000 each (c < 1000);
    // (change, whether an extreme of its group is deleted)
    let mut next_id = 1_000_000;
    for round in 0..6 {
        let c = 10 + round * 17;
        let inside = [
            // a value between the extremes, then one beyond each: no value read back
            format!("INSERT INTO orders VALUES ({next_id}, {c}, {c} % 1000 + 0.5)"),
            format!("INSERT INTO orders VALUES ({}, {c}, 5000)", next_id + 1),
            format!("INSERT INTO orders VALUES ({}, {c}, -1)", next_id + 2),
            // deleting a copy that is not an extreme any more
            format!("DELETE FROM orders WHERE id = {}", next_id),
        ];
        next_id += 3;
        let extreme_deleted = [
            format!("DELETE FROM orders WHERE id = {}", next_id - 2),
            format!("UPDATE orders SET amount = 0 WHERE id = {}", next_id - 1),
        ];
        for (change, deletes_extreme) in inside
            .iter()
            .map(|c| (c, false))
            .chain(extreme_deleted.iter().map(|c| (c, true)))
        {
            let mut tx = client.transaction().expect("begin");
            tx.batch_execute(change).expect("change");
            let counted = scans_during(
                &mut tx,
                &["orders", "extremes"],
                "SELECT pgtrickle.refresh_stream_table('extremes')",
            );
            let (seq, idx) = counted[0];
            assert_eq!(seq, 0, "{change}: the refresh scanned the whole source");
            if deletes_extreme {
                assert!(idx > 0, "{change}: the group was not recomputed");
            } else {
                assert_eq!(idx, 0, "{change}: the refresh read the source");
            }
            assert_eq!(counted[1].0, 0, "{change}: the stream table was scanned");
            assert_oracle(&mut tx, "extremes", query);
            tx.commit().expect("commit");
        }
    }
    let (mode, _) = pg_trickle_tests::last_refresh(&mut client, "extremes");
    assert_eq!(mode.as_deref(), Some("DIFFERENTIAL"));
}

#[test]
fn recording_a_refresh_does_not_read_the_history_kept() {
    let db = TestDb::new("plans_history");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE events (id int PRIMARY KEY, v int NOT NULL);
             INSERT INTO events SELECT i, i FROM generate_series(1, 100) i;
             SELECT pgtrickle.create_stream_table('event_total',
                 'SELECT sum(v) AS total FROM events', refresh_mode => 'DIFFERENTIAL');
             INSERT INTO pgtrickle.pgt_refresh_history
                 (pgt_id, started_at, finished_at, duration_ms, refresh_mode)
             SELECT pgt_id, now(), now(), 1, 'NOOP'
             FROM pgtrickle.pgt_stream_tables, generate_series(1, 1000);",
        )
        .expect("setup");
    for (round, change) in ["SELECT 1", "UPDATE events SET v = v + 1 WHERE id = 1"]
        .iter()
        .enumerate()
    {
        let mut tx = client.transaction().expect("begin");
        tx.batch_execute(change).expect("change");
        let read = rows_read_during(
            &mut tx,
            "pgtrickle.pgt_refresh_history",
            "coalesce(idx_tup_fetch, 0) + seq_tup_read",
            "SELECT pgtrickle.refresh_stream_table('event_total')",
        );
        assert!(
            read < 10,
            "round {round}: recording the refresh read {read} history rows"
        );
        tx.commit().expect("commit");
    }
}

#[test]
fn a_small_change_joined_with_a_large_table_looks_its_rows_up_after_statistics_came() {
    let db = TestDb::new("plans_join_stats");
    let mut client = db.connect();
    setup(&mut client);
    client
        .batch_execute(
            "CREATE TABLE customers (id int PRIMARY KEY, region int NOT NULL);
             INSERT INTO customers SELECT i, i % 10 FROM generate_series(0, 99999) i;
             ANALYZE customers;",
        )
        .expect("customers");
    let query = "SELECT c.region, sum(o.amount) AS total, count(*) AS n \
                 FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region";
    create_differential(&mut client, "by_region", query);
    // a large change of low customer ids: the refresh gives the buffer statistics, whose
    // histogram then says that change rows join only the first customers
    client
        .batch_execute(
            "UPDATE orders SET amount = amount + 1 WHERE customer_id < 2000;
             SELECT pgtrickle.refresh_stream_table('by_region');",
        )
        .expect("large change");
    refresh_rounds(
        &mut client,
        "UPDATE orders SET amount = amount + 1 WHERE id % 3000 = $1",
        |round| round,
        "by_region",
        &["customers"],
        |round, counted| {
            let (seq, _) = counted[0];
            assert_eq!(seq, 0, "round {round}: the refresh scanned all customers");
        },
    );
    // what an index scan returned: 100 lookups, not the whole index in key order
    let mut tx = client.transaction().expect("begin");
    tx.execute(
        "UPDATE orders SET amount = amount + 1 WHERE id % 3000 = 11",
        &[],
    )
    .expect("change");
    let read = rows_read_during(
        &mut tx,
        "customers",
        "coalesce(idx_tup_fetch, 0)",
        "SELECT pgtrickle.refresh_stream_table('by_region')",
    );
    assert!(read <= 1000, "{read} customers read for a 100-row change");
    assert_oracle(&mut tx, "by_region", query);
    tx.commit().expect("commit");
}
