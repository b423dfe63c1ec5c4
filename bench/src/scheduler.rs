//! The background scheduler, measured on the cluster where it runs (with its default cycle of
//! 200 ms): how long a committed change takes to be visible in a stream table with a `'1s'`
//! schedule, and how much CPU the scheduler uses for 500 stream tables that have nothing to do.

use pg_trickle_tests::TestDb;
use postgres::Client;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const CHANGES: usize = 100;
const IDLE_TABLES: usize = 500;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Use the scheduler's default settings, whatever the test cluster's configuration says.
fn default_settings(admin: &mut Client) {
    for sql in [
        "ALTER SYSTEM SET pg_trickle.scheduler_interval_ms = 200",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(sql).expect("settings");
    }
}

/// Commit-to-visible latency of single-row inserts, committed at random moments (one every
/// 50 to 250 ms), into the source of a `'1s'` stream table.
pub fn freshness() {
    let db = TestDb::scheduled("bench_freshness");
    let mut admin = db.connect();
    default_settings(&mut admin);
    let mut writer = db.connect();
    writer
        .batch_execute(
            "CREATE TABLE events (id int PRIMARY KEY, v int NOT NULL);
             SELECT pgtrickle.create_stream_table('recent', 'SELECT id, v FROM events',
                                                  schedule => '1s', refresh_mode => 'DIFFERENTIAL');",
        )
        .expect("setup");
    let mut reader = db.connect();
    let mut committed: HashMap<i32, Instant> = HashMap::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut next_insert = Instant::now();
    let mut inserted = 0;
    // a small deterministic sequence of gaps in place of a random generator
    let gap = |i: usize| Duration::from_millis(50 + (i as u64 * 7919) % 200);
    while latencies.len() < CHANGES {
        if inserted < CHANGES && Instant::now() >= next_insert {
            let id = inserted as i32 + 1;
            writer
                .execute("INSERT INTO events VALUES ($1, $1)", &[&id])
                .expect("insert");
            committed.insert(id, Instant::now());
            inserted += 1;
            next_insert = Instant::now() + gap(inserted);
        }
        let pending: Vec<i32> = committed.keys().copied().collect();
        if !pending.is_empty() {
            let seen = reader
                .query("SELECT id FROM recent WHERE id = ANY($1)", &[&pending])
                .expect("poll");
            for row in seen {
                let id: i32 = row.get(0);
                if let Some(at) = committed.remove(&id) {
                    latencies.push(at.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    latencies.sort();
    println!("\n## Freshness: commit to visible, schedule '1s'\n");
    println!("| changes | median ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {CHANGES} | {:.0} | {:.0} | {:.0} |",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1])
    );
}

/// CPU time (user + system, in seconds) of process `pid` so far, from `/proc`.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // the fields after the command name, which is in parentheses and may contain spaces
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU per second of wall time of the scheduler of a database with 500 stream tables
/// (schedule `'1s'`) whose sources do not change.
pub fn idle_overhead() {
    let db = TestDb::scheduled("bench_idle");
    let mut client = db.connect();
    default_settings(&mut client);
    client
        .batch_execute("CREATE TABLE quiet (id int PRIMARY KEY, g int, v int)")
        .expect("setup");
    println!("\ncreating {IDLE_TABLES} idle stream tables ...");
    for i in 0..IDLE_TABLES {
        let query = match i % 3 {
            0 => "SELECT id, v FROM quiet WHERE v > 0",
            1 => "SELECT g, sum(v) AS s, count(*) AS n FROM quiet GROUP BY g",
            _ => "SELECT DISTINCT g FROM quiet",
        };
        client
            .execute(
                &format!("SELECT pgtrickle.create_stream_table('idle_{i}', $1, schedule => '1s')"),
                &[&query],
            )
            .expect("create");
    }
    let pid: i32 = client
        .query_one(
            "SELECT pid FROM pg_stat_activity
             WHERE backend_type = 'pg_trickle scheduler' AND datname = $1",
            &[&db.name],
        )
        .map(|r| r.get(0))
        .expect("the scheduler's pid");
    // settle: every stream table has been looked at once
    std::thread::sleep(Duration::from_secs(3));
    let (cpu0, wall0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(20));
    let (cpu1, wall) = (cpu_seconds(pid), wall0.elapsed());
    let workers: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_refresh_history WHERE finished_at > now() - interval '20 s'",
            &[],
        )
        .map(|r| r.get(0))
        .expect("history");
    println!("\n## Scheduler overhead: {IDLE_TABLES} idle stream tables, schedule '1s'\n");
    println!("| wall s | scheduler CPU s | CPU per wall second | refreshes run |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {:.0} | {:.2} | {:.1}% | {workers} |",
        wall.as_secs_f64(),
        cpu1 - cpu0,
        100.0 * (cpu1 - cpu0) / wall.as_secs_f64()
    );
}
