//! Refreshes cut short: a backend killed with SIGKILL in the middle of a manual refresh, a
//! refresh worker killed the same way, and a fast shutdown during a scheduled refresh. Each
//! time the server recovers, nothing is corrupted, no change is lost or applied twice, and the
//! next refresh makes the stream table equal to its query. Own test binary: killing a backend
//! restarts every process of the cluster.

use pg_trickle_tests::{assert_oracle, oracle_mismatch, wait_for, TestDb};
use postgres::{Client, NoTls};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

/// Sums per group through a function that takes 4 ms per call (a differential refresh calls it
/// a few times per changed row), so that a refresh of a few hundred changes lasts seconds.
const QUERY: &str = "SELECT id % 10 AS g, sum(slow(v)) AS s, count(*) AS n FROM src GROUP BY 1";

/// A connection once the server is back after a crash or a restart. A connection made in the
/// moment between a SIGKILL and the postmaster reacting to it would be cut by the restart, so
/// it must also survive a second of waiting.
fn connect(db: &TestDb) -> Client {
    let mut last = String::new();
    for _ in 0..600 {
        std::thread::sleep(Duration::from_millis(100));
        match Client::connect(&db.cluster.conninfo(&db.name), NoTls) {
            Ok(mut c) => {
                std::thread::sleep(Duration::from_secs(1));
                match c.batch_execute("SELECT 1") {
                    Ok(()) => return c,
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
    }
    panic!("the server did not come back: {last}");
}

/// The pid of a backend of `db` whose `backend_type` is `kind` and whose query matches `like`,
/// once it has been running for a moment.
fn busy_backend(client: &mut Client, db: &TestDb, kind: &str, like: &str) -> i32 {
    let mut pid = 0;
    wait_for(&format!("a busy {kind}"), LONG, || {
        let row = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = $1 AND backend_type = $2 AND query LIKE $3
                   AND state = 'active' AND now() - query_start > interval '500 ms'",
                &[&db.name, &kind, &like],
            )
            .expect("pg_stat_activity");
        if let Some(row) = row {
            pid = row.get(0);
        }
        pid != 0
    });
    pid
}

fn kill_9(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {pid} failed");
}

fn insert(client: &mut Client, from: i32, to: i32) {
    client
        .batch_execute(&format!(
            "INSERT INTO src SELECT i, i FROM generate_series({from}, {to}) i;
             UPDATE src SET v = v + 1 WHERE id % 7 = 0 AND id < {from};
             DELETE FROM src WHERE id % 11 = 0 AND id < {from};"
        ))
        .expect("change");
}

fn is_fresh(client: &mut Client) -> bool {
    oracle_mismatch(client, "sums", QUERY).is_none()
}

#[test]
fn refreshes_killed_or_shut_down_mid_way_lose_and_double_nothing() {
    let db = TestDb::scheduled("crash");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE src (id int PRIMARY KEY, v int NOT NULL);
             CREATE FUNCTION slow(int) RETURNS int IMMUTABLE LANGUAGE plpgsql
                 AS $$ BEGIN PERFORM pg_sleep(0.004); RETURN $1; END $$;
             INSERT INTO src SELECT i, i FROM generate_series(1, 20) i;",
        )
        .expect("setup");
    client
        .execute(
            "SELECT pgtrickle.create_stream_table('sums', $1, schedule => '1h',
                                                  refresh_mode => 'DIFFERENTIAL')",
            &[&QUERY],
        )
        .expect("create");

    // 1. a manual refresh killed with SIGKILL
    insert(&mut client, 100, 300);
    let refresher_db = db.clone();
    let refresher = std::thread::spawn(move || {
        let mut c = refresher_db.connect();
        c.batch_execute("SELECT pgtrickle.refresh_stream_table('sums')")
            .is_err()
    });
    let pid = busy_backend(&mut client, &db, "client backend", "%refresh_stream_table%");
    kill_9(pid);
    assert!(
        refresher.join().expect("refresher"),
        "the killed refresh reported success"
    );
    let mut client = connect(&db);
    insert(&mut client, 500, 520);
    client
        .batch_execute("SELECT pgtrickle.refresh_stream_table('sums')")
        .expect("refresh after the crash");
    assert_oracle(&mut client, "sums", QUERY);

    // 2. a scheduled refresh worker killed with SIGKILL
    client
        .batch_execute("SELECT pgtrickle.alter_stream_table('sums', schedule => '1s')")
        .expect("schedule");
    insert(&mut client, 600, 800);
    let pid = busy_backend(&mut client, &db, "pg_trickle refresh", "%");
    kill_9(pid);
    let mut client = connect(&db);
    insert(&mut client, 1000, 1010);
    wait_for("the scheduler to catch up after the crash", LONG, || {
        is_fresh(&mut client)
    });

    // 3. a fast shutdown while a refresh worker is busy does not wait for it
    insert(&mut client, 1100, 1400);
    busy_backend(&mut client, &db, "pg_trickle refresh", "%");
    drop(client);
    let (stopped, output) = db.cluster.pg_ctl(&["-m", "fast", "-w", "-t", "30", "stop"]);
    assert!(stopped, "fast shutdown waited for the refresh: {output}");
    let (started, output) = db.cluster.pg_ctl(&["-w", "-t", "60", "start"]);
    assert!(started, "restart failed: {output}");
    let mut client = connect(&db);
    wait_for("the scheduler to catch up after the restart", LONG, || {
        is_fresh(&mut client)
    });
    let (status,): (String,) = client
        .query_one(
            "SELECT status FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'sums'",
            &[],
        )
        .map(|r| (r.get(0),))
        .expect("status");
    assert_eq!(status, "ACTIVE");
}
