//! AUTO mode: a differentially maintainable stream table is refreshed differentially while the
//! pending change is small against its sources, in full when a source's change rows exceed
//! `pg_trickle.differential_max_change_ratio` of its rows, and differentially again after.

use pg_trickle_tests::{assert_oracle, expect_error, last_refresh, TestDb};
use postgres::Client;

const QUERY: &str = "SELECT k, sum(v) AS s, count(*) AS n FROM src GROUP BY k";

/// Update `rows` rows of `table` (two change rows each), refresh `name`, check it against its
/// query and return how the refresh ran.
fn change_and_refresh(
    client: &mut Client,
    table: &str,
    rows: i32,
    name: &str,
    query: &str,
) -> (String, String) {
    client
        .batch_execute(&format!(
            "UPDATE {table} SET v = v + 1 WHERE id <= {rows};
             SELECT pgtrickle.refresh_stream_table('{name}');"
        ))
        .expect("change and refresh");
    assert_oracle(client, name, query);
    let (mode, reason) = last_refresh(client, name);
    (mode.unwrap_or_default(), reason.unwrap_or_default())
}

#[test]
fn auto_switches_to_full_for_large_changes_and_back() {
    let db = TestDb::new("auto_mode_switch");
    let mut client = db.connect();
    client
        .batch_execute(&format!(
            "CREATE TABLE src (id int PRIMARY KEY, k int, v int);
             INSERT INTO src SELECT i, i % 7, i FROM generate_series(1, 1000) i;
             ANALYZE src;
             SELECT pgtrickle.create_stream_table('auto_st', $q${QUERY}$q$);
             SELECT pgtrickle.create_stream_table('diff_st', $q${QUERY}$q$,
                                                  refresh_mode => 'DIFFERENTIAL');"
        ))
        .expect("setup");

    // 20 change rows against 1000 source rows: 2%
    let (mode, _) = change_and_refresh(&mut client, "src", 10, "auto_st", QUERY);
    assert_eq!(mode, "DIFFERENTIAL");
    // 400 change rows: 40%
    let (mode, reason) = change_and_refresh(&mut client, "src", 200, "auto_st", QUERY);
    assert_eq!(mode, "FULL");
    assert!(
        reason.contains("more than 100 pending change rows on public.src")
            && reason.contains("pg_trickle.differential_max_change_ratio = 0.1"),
        "{reason}"
    );
    // and back
    let (mode, _) = change_and_refresh(&mut client, "src", 10, "auto_st", QUERY);
    assert_eq!(mode, "DIFFERENTIAL");

    // the threshold is a setting
    client
        .batch_execute("SET pg_trickle.differential_max_change_ratio = 0.5")
        .expect("set");
    let (mode, _) = change_and_refresh(&mut client, "src", 200, "auto_st", QUERY);
    assert_eq!(mode, "DIFFERENTIAL");
    client
        .batch_execute("SET pg_trickle.differential_max_change_ratio = 0.01")
        .expect("set");
    let (mode, _) = change_and_refresh(&mut client, "src", 10, "auto_st", QUERY);
    assert_eq!(mode, "FULL");
    expect_error(
        &mut client,
        "SET pg_trickle.differential_max_change_ratio = -1",
        "22023",
    );
    client
        .batch_execute("RESET pg_trickle.differential_max_change_ratio")
        .expect("reset");

    // refresh_mode => 'DIFFERENTIAL' never switches (diff_st has all the changes above pending)
    let (mode, _) = change_and_refresh(&mut client, "src", 200, "diff_st", QUERY);
    assert_eq!(mode, "DIFFERENTIAL");

    // the history says what ran and why
    let fulls: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history h
             JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
             WHERE s.pgt_name = 'auto_st' AND h.refresh_mode = 'FULL'
               AND h.reason LIKE '%differential_max_change_ratio%'",
            &[],
        )
        .expect("history")
        .get(0);
    assert_eq!(fulls, 2);
}

#[test]
fn auto_counts_past_the_refresh_own_count_on_large_sources() {
    // 20,000 rows and the ratio 0.1: up to 2,000 change rows stay differential, beyond the
    // 1,000 the refresh counts anyway to plan its statements
    let db = TestDb::new("auto_mode_large");
    let mut client = db.connect();
    client
        .batch_execute(&format!(
            "CREATE TABLE src (id int PRIMARY KEY, k int, v int);
             INSERT INTO src SELECT i, i % 7, i FROM generate_series(1, 20000) i;
             ANALYZE src;
             SELECT pgtrickle.create_stream_table('auto_st', $q${QUERY}$q$);"
        ))
        .expect("setup");
    // 1,600 change rows: 8%
    let (mode, _) = change_and_refresh(&mut client, "src", 800, "auto_st", QUERY);
    assert_eq!(mode, "DIFFERENTIAL");
    // 2,400 change rows: 12%
    let (mode, reason) = change_and_refresh(&mut client, "src", 1200, "auto_st", QUERY);
    assert_eq!(mode, "FULL");
    assert!(
        reason.contains("more than 2000 pending change rows on public.src"),
        "{reason}"
    );
}

#[test]
fn auto_stays_differential_when_the_source_size_is_unknown() {
    let db = TestDb::new("auto_mode_unknown");
    let mut client = db.connect();
    let query = "SELECT k, sum(v) AS s FROM fresh GROUP BY k";
    client
        .batch_execute(&format!(
            "CREATE TABLE fresh (id int PRIMARY KEY, k int, v int) WITH (autovacuum_enabled = false);
             INSERT INTO fresh SELECT i, i % 3, i FROM generate_series(1, 100) i;
             SELECT pgtrickle.create_stream_table('fresh_st', '{query}');"
        ))
        .expect("setup");
    let reltuples: f32 = client
        .query_one(
            "SELECT reltuples FROM pg_class WHERE oid = 'fresh'::regclass",
            &[],
        )
        .expect("reltuples")
        .get(0);
    assert!(reltuples < 0.0, "fresh was analyzed: {reltuples}");
    let (mode, _) = change_and_refresh(&mut client, "fresh", 100, "fresh_st", query);
    assert_eq!(mode, "DIFFERENTIAL");
}

#[test]
fn auto_measures_a_partitioned_source_by_its_partitions() {
    let db = TestDb::new("auto_mode_partitioned");
    let mut client = db.connect();
    let query = "SELECT k, sum(v) AS s FROM parted GROUP BY k";
    client
        .batch_execute(&format!(
            "CREATE TABLE parted (id int, k int, v int) PARTITION BY RANGE (id);
             CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (500);
             CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (500) TO (100000);
             INSERT INTO parted SELECT i, i % 5, i FROM generate_series(1, 1000) i;
             ANALYZE parted;
             SELECT pgtrickle.create_stream_table('parted_st', '{query}');"
        ))
        .expect("setup");
    let (mode, _) = change_and_refresh(&mut client, "parted", 20, "parted_st", query);
    assert_eq!(mode, "DIFFERENTIAL");
    let (mode, reason) = change_and_refresh(&mut client, "parted", 300, "parted_st", query);
    assert_eq!(mode, "FULL");
    assert!(reason.contains("public.parted"), "{reason}");
}
