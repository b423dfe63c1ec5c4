//! The background scheduler, against a cluster where it runs: stream tables stay fresh without
//! refresh calls (spec Patterns 1 and 4), tiers and cron, failures with retry and suspension,
//! atomic diamond groups, no overlap with manual refreshes, the concurrency limit, and the
//! scheduler leaving a database whose extension is dropped.

use pg_trickle_tests::spec::{ORDERS, RAW_EVENTS, SPEC_CALLS};
use pg_trickle_tests::{assert_oracle, is_fresh, wait_for, workers, TestDb};
use postgres::Client;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

fn count(client: &mut Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn status(client: &mut Client, name: &str) -> (String, Option<String>, i32) {
    client
        .query_one(
            "SELECT status, last_error_message, consecutive_failures
             FROM pgtrickle.pgt_stream_tables WHERE pgt_name = $1",
            &[&name],
        )
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap_or_else(|e| panic!("status of {name}: {e}"))
}

fn refreshes(client: &mut Client, name: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history h
             JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
             WHERE s.pgt_name = $1 AND h.status = 'SUCCEEDED'",
            &[&name],
        )
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("history of {name}: {e}"))
}

#[test]
fn spec_pattern_1_gold_follows_bronze_without_refresh_calls() {
    let db = TestDb::scheduled("sched_pattern_1");
    let mut client = db.connect();
    client.batch_execute(RAW_EVENTS).expect("raw_events");
    for call in &SPEC_CALLS[..2] {
        client.batch_execute(call).expect("spec call");
    }
    client
        .batch_execute(
            "INSERT INTO raw_events (user_id, event_type, payload)
             SELECT i % 7, 'purchase', jsonb_build_object('amount', i) FROM generate_series(1, 50) i",
        )
        .expect("insert");
    wait_for("the gold layer to show the new purchases", LONG, || {
        count(&mut client, "SELECT count(*) FROM user_purchase_summary") == 7
            && is_fresh(&mut client, "user_purchase_summary")
    });
    assert!(is_fresh(&mut client, "events_cleaned"));
    // more changes, including an update and a delete, still without refresh calls
    client
        .batch_execute(
            "UPDATE raw_events SET payload = '{\"amount\": 1000}' WHERE user_id = 3;
             DELETE FROM raw_events WHERE user_id = 4;",
        )
        .expect("change");
    wait_for(
        "the gold layer to follow an update and a delete",
        LONG,
        || {
            count(&mut client, "SELECT count(*) FROM user_purchase_summary") == 6
                && is_fresh(&mut client, "user_purchase_summary")
        },
    );
    // the gold layer refreshed only after its upstream applied changes
    let (mode, _) = pg_trickle_tests::last_refresh(&mut client, "user_purchase_summary");
    assert_eq!(mode.as_deref(), Some("DIFFERENTIAL"));
}

#[test]
fn spec_pattern_4_fan_out_stays_fresh() {
    let db = TestDb::scheduled("sched_pattern_4");
    let mut client = db.connect();
    client.batch_execute(ORDERS).expect("orders");
    for call in &SPEC_CALLS[6..10] {
        client.batch_execute(call).expect("spec call");
    }
    for round in 0..3 {
        client
            .batch_execute(&format!(
                "INSERT INTO orders (customer_id, region, product_id, amount)
                 SELECT i % 13, 'r' || (i % 4), i % 9, i + {round} FROM generate_series(1, 200) i;
                 UPDATE orders SET amount = amount + 1 WHERE id % 10 = {round};
                 DELETE FROM orders WHERE id % 17 = {round};"
            ))
            .expect("change");
        for name in ["daily_totals", "by_region", "by_product", "top_customers"] {
            wait_for(&format!("{name} to catch up (round {round})"), LONG, || {
                is_fresh(&mut client, name)
            });
        }
    }
}

#[test]
fn idle_stream_tables_are_not_refreshed() {
    let db = TestDb::scheduled("sched_idle");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE visits (id int PRIMARY KEY, day date NOT NULL, n int);
             INSERT INTO visits SELECT i, CURRENT_DATE + i % 3 - 1, i FROM generate_series(1, 30) i;",
        )
        .expect("setup");
    let tables = [
        ("by_day", "SELECT day, sum(n) AS n FROM visits GROUP BY day"),
        (
            "coming",
            "SELECT day, count(*) AS c FROM visits WHERE day >= CURRENT_DATE GROUP BY day",
        ),
    ];
    for (name, query) in tables {
        client
            .execute(
                "SELECT pgtrickle.create_stream_table($1, $2, schedule => '1s', refresh_mode => 'DIFFERENTIAL')",
                &[&name, &query],
            )
            .expect("create");
    }
    client
        .batch_execute("INSERT INTO visits VALUES (100, CURRENT_DATE, 5)")
        .expect("change");
    for (name, _) in tables {
        wait_for(&format!("{name} to apply the change"), LONG, || {
            refreshes(&mut client, name) >= 2 && is_fresh(&mut client, name)
        });
    }
    // nothing changes: several schedule intervals pass without a refresh
    let before: Vec<i64> = tables
        .iter()
        .map(|(name, _)| refreshes(&mut client, name))
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    for ((name, _), before) in tables.iter().zip(before) {
        assert_eq!(
            refreshes(&mut client, name),
            before,
            "{name} was refreshed with nothing to do"
        );
    }
}

#[test]
fn tiers_stretch_the_schedule_and_frozen_is_left_alone() {
    let db = TestDb::scheduled("sched_tiers");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int);
             SELECT pgtrickle.create_stream_table('hot_st', 'SELECT id, v FROM t', schedule => '1s');
             SELECT pgtrickle.create_stream_table('cold_st', 'SELECT id, v FROM t', schedule => '1s');
             SELECT pgtrickle.create_stream_table('frozen_st', 'SELECT id, v FROM t', schedule => '1s');
             SELECT pgtrickle.alter_stream_table('cold_st', tier => 'cold');
             SELECT pgtrickle.alter_stream_table('frozen_st', tier => 'frozen');",
        )
        .expect("setup");
    let cold_refreshed_at = |c: &mut Client| -> f64 {
        c.query_one(
            "SELECT extract(epoch FROM last_refreshed_at)::float8
             FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'cold_st'",
            &[],
        )
        .map(|r| r.get(0))
        .expect("cold refresh time")
    };
    let created = cold_refreshed_at(&mut client);
    client
        .batch_execute("INSERT INTO t VALUES (1, 1)")
        .expect("insert");
    let inserted = Instant::now();
    wait_for("the hot stream table", LONG, || {
        is_fresh(&mut client, "hot_st")
    });
    // cold: 1s x 10; the insert is not applied before ten seconds after its last refresh
    wait_for("the cold stream table", LONG, || {
        is_fresh(&mut client, "cold_st")
    });
    let cold_applied = cold_refreshed_at(&mut client);
    assert!(
        cold_applied - created >= 9.0,
        "the cold tier refreshed {:.1}s after its previous refresh; expected about 10s",
        cold_applied - created
    );
    assert!(inserted.elapsed() < LONG);
    // frozen: never refreshed by the scheduler, still by hand
    assert!(!is_fresh(&mut client, "frozen_st"));
    assert_eq!(count(&mut client, "SELECT count(*) FROM frozen_st"), 0);
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('frozen_st')")
        .expect("manual refresh of a frozen stream table");
    assert_oracle(&mut client, "frozen_st", "SELECT id, v FROM t");
}

#[test]
fn cron_schedules_refresh_when_their_minute_comes() {
    let db = TestDb::scheduled("sched_cron");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY);
             SELECT pgtrickle.create_stream_table('every_minute', 'SELECT id FROM t',
                                                  schedule => '* * * * *');
             SELECT pgtrickle.create_stream_table('new_year', 'SELECT id FROM t',
                                                  schedule => '0 0 1 1 *');
             INSERT INTO t VALUES (1);",
        )
        .expect("setup");
    wait_for(
        "the every-minute cron stream table",
        Duration::from_secs(90),
        || is_fresh(&mut client, "every_minute"),
    );
    let fired_at_minute: f64 = client
        .query_one(
            "SELECT extract(second FROM last_refreshed_at)::float8
             FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'every_minute'",
            &[],
        )
        .map(|r| r.get(0))
        .expect("refresh time");
    assert!(
        fired_at_minute < 5.0,
        "a cron refresh ran {fired_at_minute:.1}s into the minute"
    );
    assert!(!is_fresh(&mut client, "new_year"));
}

#[test]
fn a_failing_stream_table_is_retried_then_suspended_while_others_stay_fresh() {
    let db = TestDb::scheduled("sched_failures");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE raw (id int PRIMARY KEY, v text);
             CREATE TABLE other (id int PRIMARY KEY);
             INSERT INTO raw VALUES (1, '10');
             SELECT pgtrickle.create_stream_table('parsed', 'SELECT id, v::int AS n FROM raw',
                                                  schedule => '1s', refresh_mode => 'DIFFERENTIAL');
             SELECT pgtrickle.create_stream_table('parsed_too', 'SELECT id, v::int + 1 AS n FROM raw',
                                                  schedule => '1s', refresh_mode => 'DIFFERENTIAL');
             SELECT pgtrickle.create_stream_table('healthy', 'SELECT id FROM other',
                                                  schedule => '1s');
             INSERT INTO raw VALUES (2, 'not a number');",
        )
        .expect("setup");
    wait_for("the failure to be recorded", LONG, || {
        status(&mut client, "parsed").0 == "ERROR"
    });
    let (_, message, _) = status(&mut client, "parsed");
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("invalid input syntax")),
        "last_error_message: {message:?}"
    );
    // the contents stay at the last good state
    assert_eq!(count(&mut client, "SELECT count(*) FROM parsed"), 1);
    // retried with backoff: 3 failures in a row (the cluster's setting) suspend it
    let mut healthy_rounds = 0;
    wait_for("the stream table to be suspended", LONG, || {
        // meanwhile the healthy stream table keeps up
        client
            .batch_execute(&format!(
                "INSERT INTO other VALUES ({})",
                healthy_rounds + 1
            ))
            .expect("insert");
        healthy_rounds += 1;
        status(&mut client, "parsed").0 == "SUSPENDED"
    });
    let (_, _, failures) = status(&mut client, "parsed");
    assert_eq!(failures, 3);
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history h
             JOIN pgtrickle.pgt_stream_tables s USING (pgt_id)
             WHERE s.pgt_name = 'parsed' AND h.status = 'FAILED'
               AND h.error_message LIKE '%invalid input syntax%'"
        ),
        3
    );
    wait_for("the healthy stream table to catch up", LONG, || {
        is_fresh(&mut client, "healthy")
    });
    // fixing the data does not resume a suspended stream table by itself
    client
        .batch_execute("UPDATE raw SET v = '20' WHERE id = 2")
        .expect("fix");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status(&mut client, "parsed").0, "SUSPENDED");
    assert_eq!(count(&mut client, "SELECT count(*) FROM parsed"), 1);
    // a manual refresh does
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('parsed')")
        .expect("manual refresh");
    assert_eq!(
        status(&mut client, "parsed"),
        ("ACTIVE".to_string(), None, 0)
    );
    // and so does an alter: the scheduler then recomputes it in full
    wait_for("the second stream table to be suspended", LONG, || {
        status(&mut client, "parsed_too").0 == "SUSPENDED"
    });
    client
        .batch_execute("SELECT pgtrickle.alter_stream_table('parsed_too', schedule => '2s')")
        .expect("alter");
    wait_for("the altered stream table to be refreshed", LONG, || {
        status(&mut client, "parsed_too").0 == "ACTIVE" && is_fresh(&mut client, "parsed_too")
    });
    client
        .batch_execute("INSERT INTO raw VALUES (3, '30')")
        .expect("insert");
    wait_for(
        "the resumed stream table to be refreshed again",
        LONG,
        || is_fresh(&mut client, "parsed"),
    );
}

#[test]
fn an_atomic_group_refreshes_in_one_transaction_and_readers_never_see_disagreement() {
    let db = TestDb::scheduled("sched_atomic");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE orders (id serial PRIMARY KEY, region text NOT NULL,
                                  order_date date NOT NULL, amount numeric NOT NULL);
             SELECT pgtrickle.create_stream_table('daily_totals',
                 'SELECT order_date, SUM(amount) AS total FROM orders GROUP BY order_date',
                 schedule => '1s', diamond_consistency => 'atomic');
             SELECT pgtrickle.create_stream_table('by_region',
                 'SELECT region, SUM(amount) AS total FROM orders GROUP BY region',
                 schedule => '2s', diamond_consistency => 'atomic');",
        )
        .expect("setup");
    let agree = "SELECT (SELECT coalesce(sum(total), 0) FROM daily_totals)
                      = (SELECT coalesce(sum(total), 0) FROM by_region)";
    let reader_db = db.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader_stop = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut c = reader_db.connect();
        let (mut checks, mut disagreements) = (0u64, 0u64);
        while !reader_stop.load(std::sync::atomic::Ordering::SeqCst) {
            let same: bool = c.query_one(agree, &[]).expect("read").get(0);
            checks += 1;
            if !same {
                disagreements += 1;
            }
        }
        (checks, disagreements)
    });
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(6) {
        i += 1;
        client
            .batch_execute(&format!(
                "INSERT INTO orders (region, order_date, amount)
                 VALUES ('r{}', current_date - {}, {i})",
                i % 5,
                i % 3
            ))
            .expect("insert");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for("both stream tables to catch up", LONG, || {
        is_fresh(&mut client, "daily_totals") && is_fresh(&mut client, "by_region")
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (checks, disagreements) = reader.join().expect("reader");
    assert!(checks > 100, "the reader ran only {checks} checks");
    assert_eq!(
        disagreements, 0,
        "{disagreements} of {checks} reads saw the two stream tables disagree"
    );
    // the last scheduled refresh recorded both frontiers in one transaction (each records the
    // top-level transaction that refreshed it; rows are written in subtransactions)
    assert!(refreshes(&mut client, "daily_totals") >= 3);
    assert_eq!(
        count(
            &mut client,
            "SELECT count(DISTINCT frontier_own_xid::text) FROM pgtrickle.pgt_stream_tables"
        ),
        1
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(frontier_own_xid) FROM pgtrickle.pgt_stream_tables"
        ),
        2
    );
}

#[test]
fn manual_and_scheduled_refreshes_of_one_stream_table_never_overlap() {
    let db = TestDb::scheduled("sched_overlap");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE t (id serial PRIMARY KEY, g int, v int);
             SELECT pgtrickle.create_stream_table('sums',
                 'SELECT g, sum(v) AS s, count(*) AS n FROM t GROUP BY g', schedule => '1s');",
        )
        .expect("setup");
    let manual_db = db.clone();
    let manual = std::thread::spawn(move || {
        let mut c = manual_db.connect();
        for i in 0..150 {
            c.batch_execute(&format!(
                "INSERT INTO t (g, v) SELECT j % 10, j FROM generate_series(1, {}) j;
                 SELECT pgtrickle.refresh_stream_table('sums');",
                i % 7 + 1
            ))
            .expect("manual refresh");
            std::thread::sleep(Duration::from_millis(30));
        }
    });
    let mut writer = db.connect();
    for i in 0..150 {
        writer
            .batch_execute(&format!("INSERT INTO t (g, v) VALUES ({}, {i})", i % 10))
            .expect("insert");
        std::thread::sleep(Duration::from_millis(30));
    }
    manual.join().expect("manual refreshes");
    wait_for("the stream table to catch up", LONG, || {
        is_fresh(&mut client, "sums")
    });
    let overlaps = count(
        &mut client,
        "SELECT count(*) FROM pgtrickle.pgt_refresh_history a
         JOIN pgtrickle.pgt_refresh_history b
           ON a.pgt_id = b.pgt_id AND a.refresh_id < b.refresh_id
          AND a.started_at < b.finished_at AND b.started_at < a.finished_at",
    );
    assert_eq!(overlaps, 0, "refreshes of one stream table overlapped");
}

#[test]
fn refreshes_run_in_parallel_up_to_the_limit() {
    let db = TestDb::scheduled("sched_parallel");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE big AS SELECT i AS id, i % 1000 AS g FROM generate_series(1, 1000000) i;",
        )
        .expect("setup");
    for i in 0..8 {
        client
            .batch_execute(&format!(
                "SELECT pgtrickle.create_stream_table('slow_{i}',
                     'SELECT g, count(*) AS n, sum(id) AS s FROM big GROUP BY g',
                     schedule => '1s', refresh_mode => 'FULL')"
            ))
            .expect("create");
    }
    let mut most = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let running = workers(&mut client, "refresh", Some(&db.name));
        most = most.max(running);
        std::thread::sleep(Duration::from_millis(10));
    }
    // stop the full recomputes before other tests of this cluster go on (each drop waits for
    // a refresh in progress on the catalog row, as refreshes do)
    for i in 0..8 {
        client
            .batch_execute(&format!("SELECT pgtrickle.drop_stream_table('slow_{i}')"))
            .expect("drop stream table");
    }
    assert!(most <= 4, "{most} refreshes ran at once; the limit is 4");
    assert!(most >= 2, "refreshes never ran in parallel");
}

#[test]
fn the_scheduler_leaves_when_the_extension_is_dropped_and_databases_can_be_dropped() {
    let db = TestDb::scheduled("sched_drop");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY);
             SELECT pgtrickle.create_stream_table('st', 'SELECT id FROM t', schedule => '1s');",
        )
        .expect("setup");
    let mut admin = Client::connect(&db.cluster.conninfo("postgres"), postgres::NoTls)
        .expect("connect to postgres");
    wait_for("a scheduler in the database", LONG, || {
        workers(&mut admin, "scheduler", Some(&db.name)) == 1
    });
    client
        .batch_execute("DROP EXTENSION pg_trickle CASCADE")
        .expect("drop extension");
    wait_for("the scheduler to leave", LONG, || {
        workers(&mut admin, "scheduler", Some(&db.name)) == 0
    });
    // installed again later: a scheduler comes back with the first stream table
    client
        .batch_execute(
            "CREATE EXTENSION pg_trickle;
             SELECT pgtrickle.create_stream_table('st_again', 'SELECT id FROM t', schedule => '1s');
             INSERT INTO t VALUES (1);",
        )
        .expect("reinstall");
    wait_for("a scheduler to come back", LONG, || {
        workers(&mut admin, "scheduler", Some(&db.name)) == 1
    });
    wait_for("the stream table to be refreshed", LONG, || {
        is_fresh(&mut client, "st_again")
    });
    // a launcher that is restarted does not start a second scheduler
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE backend_type = 'pg_trickle launcher'",
        )
        .expect("terminate the launcher");
    wait_for("the launcher to be restarted", LONG, || {
        workers(&mut admin, "launcher", None) == 1
    });
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert!(
            workers(&mut admin, "scheduler", Some(&db.name)) <= 1,
            "two schedulers in one database"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // a database can be dropped without FORCE while its scheduler runs a long refresh
    client
        .batch_execute(
            "CREATE TABLE slow_source AS SELECT i AS id FROM generate_series(1, 300) i;
             SELECT pgtrickle.create_stream_table('slow', 'SELECT id FROM slow_source
                                                           WHERE pg_sleep(0.1) IS NOT NULL',
                                                  schedule => '1s', initialize => false);",
        )
        .expect("slow stream table");
    wait_for("a long refresh", LONG, || {
        workers(&mut admin, "refresh", Some(&db.name)) == 1
    });
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE {}", db.name))
        .expect("drop database while its scheduler runs");
}

#[test]
fn a_busy_upstream_does_not_starve_its_dependants() {
    let db = TestDb::scheduled("sched_starve");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE t (id serial PRIMARY KEY, g int NOT NULL);
             SELECT pgtrickle.create_stream_table('bronze', 'SELECT id, g FROM t',
                 schedule => 'IMMEDIATE', refresh_mode => 'DIFFERENTIAL');
             SELECT pgtrickle.create_stream_table('silver',
                 'SELECT g, count(*) AS n FROM bronze GROUP BY g', schedule => 'calculated',
                 refresh_mode => 'DIFFERENTIAL');",
        )
        .expect("setup");
    // measured once the database's scheduler runs: the cluster is shared, and another test
    // terminates the launcher, which the postmaster restarts only after 5 s
    let mut admin = Client::connect(&db.cluster.conninfo("postgres"), postgres::NoTls)
        .expect("connect to postgres");
    wait_for("a scheduler in the database", LONG, || {
        workers(&mut admin, "scheduler", Some(&db.name)) == 1
    });
    let before = refreshes(&mut client, "silver");
    // bronze has something to apply in every cycle while this runs: two writers without pause
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut c = db.connect();
                let started = Instant::now();
                let mut i = w;
                while started.elapsed() < Duration::from_secs(5) {
                    i += 2;
                    c.batch_execute(&format!("INSERT INTO t (g) VALUES ({})", i % 7))
                        .expect("insert");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let during = refreshes(&mut client, "silver") - before;
    assert!(
        during >= 2,
        "silver was refreshed {during} times in 5 s of writes to bronze's source"
    );
    wait_for("silver to catch up", LONG, || {
        is_fresh(&mut client, "silver")
    });
}
