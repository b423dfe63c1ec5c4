//! Every `create_stream_table` and `alter_stream_table` call of the user-facing specification
//! (`pg_trickle-patterns.md`), run verbatim on the specification's tables; after each round of
//! random DML on the sources every stream table is refreshed and must equal its query.

use pg_trickle_tests::{assert_oracle, TestDb};
use postgres::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use pg_trickle_tests::spec::{
    CUSTOMERS, CUSTOMER_HISTORY, EVENTS, ORDERS, PATTERN_6_CALLS, PATTERN_6_TABLES, RAW_EVENTS,
    SPEC_CALLS,
};

/// The specification's monitoring query, verbatim.
const ERROR_STATES: &str = "SELECT pgt_name, status, last_error_message
FROM pgtrickle.stream_tables_info
WHERE status IN ('ERROR', 'SUSPENDED');";

/// Every stream table of the database with its query as the user gave it, upstream first.
fn stream_tables(client: &mut Client) -> Vec<(String, String)> {
    client
        .query(
            "SELECT format('%I.%I', pgt_schema, pgt_name), original_query
             FROM pgtrickle.pgt_stream_tables ORDER BY pgt_id",
            &[],
        )
        .expect("list stream tables")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn refresh_all_and_check(client: &mut Client) {
    for (name, query) in stream_tables(client) {
        client
            .execute("SELECT pgtrickle.refresh_stream_table($1)", &[&name])
            .unwrap_or_else(|e| panic!("refresh {name}: {e}"));
        assert_oracle(client, &name, &query);
    }
}

struct Dml {
    rng: StdRng,
    clock: i64,
}

impl Dml {
    fn ts(&mut self) -> String {
        // strictly increasing, so DISTINCT ON ... ORDER BY created_at DESC has no ties
        self.clock += self.rng.gen_range(1..4000);
        format!(
            "timestamptz '2026-01-01 00:00:00+00' + interval '{} seconds'",
            self.clock
        )
    }

    fn amount(&mut self) -> String {
        match self.rng.gen_range(0..10) {
            0 => "NULL".into(),
            1 => "'{\"amount\": null}'".into(),
            _ => format!(
                "'{{\"amount\": {}.{:02}}}'",
                self.rng.gen_range(0..500),
                self.rng.gen_range(0..100)
            ),
        }
    }

    fn round(&mut self, client: &mut Client) {
        let mut sql = Vec::new();
        let types = ["purchase", "refund", "subscription", "view"];
        let regions = ["north", "south", "east", "west"];
        for _ in 0..self.rng.gen_range(1..8) {
            let (user, ty, payload, ts) = (
                self.rng.gen_range(0..6),
                types[self.rng.gen_range(0..4)],
                self.amount(),
                self.ts(),
            );
            sql.push(format!(
                "INSERT INTO raw_events (user_id, event_type, payload, received_at) VALUES ({user}, '{ty}', {payload}, {ts})"
            ));
        }
        let ty = types[self.rng.gen_range(0..4)];
        sql.push(format!(
            "UPDATE raw_events SET event_type = '{ty}' WHERE event_id % 7 = {}",
            self.rng.gen_range(0..7)
        ));
        sql.push(format!(
            "DELETE FROM raw_events WHERE event_id % 11 = {}",
            self.rng.gen_range(0..11)
        ));
        for _ in 0..self.rng.gen_range(1..6) {
            let agg = self.rng.gen_range(0..5);
            let (ty, ts) = (types[self.rng.gen_range(0..4)], self.ts());
            sql.push(format!(
                "INSERT INTO events (aggregate_id, event_type, payload, created_at) VALUES \
                 ('00000000-0000-0000-0000-{agg:012}', '{ty}', '{{\"v\": {}}}', {ts})",
                self.rng.gen_range(0..100)
            ));
        }
        sql.push(format!(
            "DELETE FROM events WHERE event_id % 9 = {}",
            self.rng.gen_range(0..9)
        ));
        for _ in 0..self.rng.gen_range(0..3) {
            let id = self.rng.gen_range(0..12);
            let tier = ["standard", "gold"][self.rng.gen_range(0..2)];
            let email = if self.rng.gen_bool(0.3) {
                "NULL".to_string()
            } else {
                format!("'c{id}@example.com'")
            };
            sql.push(format!(
                "INSERT INTO customers (customer_id, name, email, tier) VALUES ({id}, 'customer {id}', {email}, '{tier}') \
                 ON CONFLICT (customer_id) DO UPDATE SET tier = EXCLUDED.tier, email = EXCLUDED.email"
            ));
        }
        if self.rng.gen_bool(0.3) {
            sql.push(format!(
                "DELETE FROM customers WHERE customer_id = {}",
                self.rng.gen_range(0..12)
            ));
        }
        for _ in 0..self.rng.gen_range(1..10) {
            let (cust, region, product) = (
                self.rng.gen_range(0..15),
                regions[self.rng.gen_range(0..4)],
                self.rng.gen_range(0..5),
            );
            let date = if self.rng.gen_bool(0.5) {
                "CURRENT_DATE".to_string()
            } else {
                format!("DATE '2026-01-01' + {}", self.rng.gen_range(0..20))
            };
            sql.push(format!(
                "INSERT INTO orders (customer_id, region, product_id, amount, order_date) VALUES \
                 ({cust}, '{region}', {product}, {}.{:02}, {date})",
                self.rng.gen_range(0..1000),
                self.rng.gen_range(0..100)
            ));
        }
        sql.push(format!(
            "UPDATE orders SET customer_id = customer_id + 1, amount = amount * 2 WHERE id % 5 = {}",
            self.rng.gen_range(0..5)
        ));
        sql.push(format!(
            "DELETE FROM orders WHERE id % 13 = {}",
            self.rng.gen_range(0..13)
        ));
        let cust = self.rng.gen_range(0..8);
        let ts = self.ts();
        sql.push(format!("UPDATE customer_history SET valid_to = {ts} WHERE customer_id = {cust} AND valid_to IS NULL"));
        sql.push(format!(
            "INSERT INTO customer_history VALUES ({cust}, 'customer {cust}', '{}', {ts}, NULL)",
            ["standard", "gold", "platinum"][self.rng.gen_range(0..3)]
        ));
        client
            .batch_execute(&sql.join(";\n"))
            .unwrap_or_else(|e| panic!("DML failed: {e}\n{}", sql.join(";\n")));
    }
}

#[test]
fn spec_calls_run_verbatim_and_stay_equal_to_their_queries() {
    let db = TestDb::new("spec_patterns");
    let mut client = db.connect();
    for ddl in [RAW_EVENTS, EVENTS, CUSTOMERS, CUSTOMER_HISTORY, ORDERS] {
        client.batch_execute(ddl).expect("spec table");
    }
    let seed: u64 = std::env::var("PGT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261125);
    println!("seed {seed} (set PGT_SEED to reproduce)");
    let mut dml = Dml {
        rng: StdRng::seed_from_u64(seed),
        clock: 0,
    };
    dml.round(&mut client);

    for call in SPEC_CALLS
        .iter()
        .chain(PATTERN_6_TABLES)
        .chain(PATTERN_6_CALLS)
    {
        client
            .batch_execute(call)
            .unwrap_or_else(|e| panic!("spec call failed: {e}\n{call}"));
    }
    let count: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE status = 'ACTIVE'",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(count, (SPEC_CALLS.len() + PATTERN_6_TABLES.len()) as i64);
    for (name, query) in stream_tables(&mut client) {
        assert_oracle(&mut client, &name, &query);
    }
    assert!(client
        .query(ERROR_STATES, &[])
        .expect("monitoring query")
        .is_empty());

    let tiers: Vec<(String, String)> = client
        .query(
            "SELECT pgt_name::text, tier FROM pgtrickle.pgt_stream_tables
             WHERE pgt_name IN ('live_metrics', 'hourly_report', 'daily_analytics', 'audit_log_summary')
             ORDER BY pgt_id",
            &[],
        )
        .expect("tiers")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        tiers,
        [
            ("live_metrics", "hot"),
            ("hourly_report", "warm"),
            ("daily_analytics", "cold"),
            ("audit_log_summary", "frozen")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let stored: (String, Option<i64>) = client
        .query_one(
            "SELECT schedule, schedule_interval_seconds FROM pgtrickle.pgt_stream_tables WHERE pgt_name = 'orders_agg'",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .expect("orders_agg");
    assert_eq!(stored, ("5s".to_string(), Some(5)));

    for _ in 0..25 {
        dml.round(&mut client);
        refresh_all_and_check(&mut client);
    }
}
