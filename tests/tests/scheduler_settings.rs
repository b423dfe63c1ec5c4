//! Cluster-wide settings, each test in a cluster of its own (own test binary, since changing
//! them affects every database): `pg_trickle.enabled = off` pauses the scheduler in every
//! database without a restart, manual refreshes still work, and turning it on again resumes
//! scheduling; with fewer background worker slots than refreshes want, the scheduler waits
//! for free slots and every stream table still catches up; without preloading there are no
//! workers and refreshes are manual.

use pg_trickle_tests::{assert_oracle, cluster_with, oracle_mismatch, wait_for, workers, TestDb};
use postgres::{Client, NoTls};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);
const QUERY: &str = "SELECT id, v FROM t";

/// A stream table with a one-second schedule over a table with one row.
const SETUP: &str = "CREATE TABLE t (id int PRIMARY KEY, v int);
     SELECT pgtrickle.create_stream_table('st', 'SELECT id, v FROM t', schedule => '1s');
     INSERT INTO t VALUES (1, 1);";

#[test]
fn turning_the_scheduler_off_pauses_it_and_on_resumes_it() {
    let db = TestDb::scheduled("pause");
    let mut client = db.connect();
    let mut admin =
        Client::connect(&db.cluster.conninfo("postgres"), NoTls).expect("connect to postgres");
    client.batch_execute(SETUP).expect("setup");
    wait_for("a scheduled refresh", LONG, || {
        oracle_mismatch(&mut client, "st", QUERY).is_none()
    });

    admin
        .batch_execute("ALTER SYSTEM SET pg_trickle.enabled = off")
        .expect("turn off");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .expect("reload");
    wait_for("the scheduler to stop", LONG, || {
        workers(&mut admin, "scheduler", Some(&db.name)) == 0
    });
    client
        .batch_execute("INSERT INTO t VALUES (2, 2)")
        .expect("insert");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        oracle_mismatch(&mut client, "st", QUERY).is_some(),
        "refreshed while the scheduler was off"
    );
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('st')")
        .expect("manual refresh while paused");
    assert_oracle(&mut client, "st", QUERY);

    client
        .batch_execute("INSERT INTO t VALUES (3, 3)")
        .expect("insert");
    admin
        .batch_execute("ALTER SYSTEM RESET pg_trickle.enabled")
        .expect("turn on");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .expect("reload");
    wait_for("scheduled refreshes to resume", LONG, || {
        oracle_mismatch(&mut client, "st", QUERY).is_none()
    });
    assert_eq!(workers(&mut admin, "scheduler", Some(&db.name)), 1);
}

#[test]
fn with_few_worker_slots_refreshes_wait_for_a_free_one() {
    // the launcher, the logical replication launcher and one scheduler leave one slot
    let crowded = cluster_with(
        "pg_trickle.enabled = on\nmax_worker_processes = 4\n\
         pg_trickle.max_concurrent_refreshes = 8\npg_trickle.scheduler_interval_ms = 100\n",
    );
    let db = TestDb::create(crowded, "crowded");
    let mut client = db.connect();
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        .expect("table");
    for i in 0..6 {
        client
            .batch_execute(&format!(
                "SELECT pgtrickle.create_stream_table('st_{i}', 'SELECT id, v + {i} AS v FROM t',
                                                      schedule => '1s')"
            ))
            .expect("create");
    }
    for round in 0..3 {
        client
            .batch_execute(&format!("INSERT INTO t VALUES ({round}, {round})"))
            .expect("insert");
        for i in 0..6 {
            let query = format!("SELECT id, v + {i} AS v FROM t");
            wait_for(&format!("st_{i} in round {round}"), LONG, || {
                oracle_mismatch(&mut client, &format!("st_{i}"), &query).is_none()
            });
        }
    }
}

#[test]
fn without_preloading_refreshes_are_manual_and_everything_else_works() {
    // a later line overrides the harness's shared_preload_libraries
    let plain = cluster_with("shared_preload_libraries = ''\n");
    let db = TestDb::create(plain, "not_preloaded");
    let mut client = db.connect();
    client.batch_execute(SETUP).expect("setup");
    assert_eq!(workers(&mut client, "%", None), 0);
    std::thread::sleep(Duration::from_secs(2));
    assert!(oracle_mismatch(&mut client, "st", QUERY).is_some());
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('st')")
        .expect("manual refresh");
    assert_oracle(&mut client, "st", QUERY);
}
