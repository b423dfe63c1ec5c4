//! Every `create_stream_table` and `alter_stream_table` call of the user-facing specification
//! (`pg_trickle-patterns.md`), run verbatim on the specification's tables; after each round of
//! random DML on the sources every stream table is refreshed and must equal its query.

use pg_trickle_tests::{assert_oracle, TestDb};
use postgres::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---- Tables, verbatim from the specification ----

const RAW_EVENTS: &str = "CREATE TABLE raw_events (
event_id BIGSERIAL PRIMARY KEY,
user_id INT NOT NULL,
event_type TEXT NOT NULL,
payload JSONB,
received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

const EVENTS: &str = "CREATE TABLE events (
event_id BIGSERIAL PRIMARY KEY,
aggregate_id UUID NOT NULL,
event_type TEXT NOT NULL,
payload JSONB NOT NULL,
created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

const CUSTOMERS: &str = "CREATE TABLE customers (
customer_id INT PRIMARY KEY,
name TEXT NOT NULL,
email TEXT,
tier TEXT DEFAULT 'standard',
updated_at TIMESTAMPTZ DEFAULT now()
);";

const CUSTOMER_HISTORY: &str = "CREATE TABLE customer_history (
customer_id INT NOT NULL,
name TEXT NOT NULL,
tier TEXT NOT NULL,
valid_from TIMESTAMPTZ NOT NULL,
valid_to TIMESTAMPTZ, -- NULL = current
PRIMARY KEY (customer_id, valid_from)
);";

const ORDERS: &str = "CREATE TABLE orders (
id SERIAL PRIMARY KEY,
customer_id INT NOT NULL,
region TEXT NOT NULL,
product_id INT NOT NULL,
amount NUMERIC(10,2) NOT NULL,
order_date DATE NOT NULL DEFAULT CURRENT_DATE
);";

// ---- Stream tables, verbatim from the specification ----

const SPEC_CALLS: &[&str] = &[
    // Pattern 1
    "SELECT pgtrickle.create_stream_table(
'events_cleaned',
$$SELECT DISTINCT ON (event_id)
event_id,
user_id,
event_type,
(payload->>'amount')::numeric AS amount,
received_at
FROM raw_events
WHERE event_type IN ('purchase', 'refund', 'subscription')$$,
schedule => '5s',
refresh_mode => 'DIFFERENTIAL'
);",
    "SELECT pgtrickle.create_stream_table(
'user_purchase_summary',
$$SELECT user_id,
COUNT(*) AS total_purchases,
SUM(amount) AS total_spent,
AVG(amount) AS avg_order
FROM events_cleaned
WHERE event_type = 'purchase'
GROUP BY user_id$$,
schedule => 'calculated',
refresh_mode => 'DIFFERENTIAL'
);",
    // Pattern 2
    "SELECT pgtrickle.create_stream_table(
'aggregate_state',
$$SELECT DISTINCT ON (aggregate_id)
aggregate_id,
event_type AS last_event,
payload AS current_state,
created_at AS last_updated
FROM events
ORDER BY aggregate_id, created_at DESC$$,
schedule => '2s',
refresh_mode => 'DIFFERENTIAL'
);",
    "SELECT pgtrickle.create_stream_table(
'hourly_event_counts',
$$SELECT date_trunc('hour', created_at) AS hour,
event_type,
COUNT(*) AS event_count
FROM events
GROUP BY 1, 2$$,
schedule => '10s',
refresh_mode => 'DIFFERENTIAL'
);",
    // Pattern 3
    "SELECT pgtrickle.create_stream_table(
'customer_360',
$$SELECT c.customer_id,
c.name,
c.email,
c.tier,
COUNT(o.id) AS total_orders,
COALESCE(SUM(o.amount), 0) AS lifetime_value
FROM customers c
LEFT JOIN orders o ON o.customer_id = c.customer_id
GROUP BY c.customer_id, c.name, c.email, c.tier$$,
schedule => '30s',
refresh_mode => 'DIFFERENTIAL'
);",
    "SELECT pgtrickle.create_stream_table(
'customers_current',
$$SELECT customer_id, name, tier, valid_from
FROM customer_history
WHERE valid_to IS NULL$$,
schedule => '10s',
refresh_mode => 'DIFFERENTIAL'
);",
    // Pattern 4
    "SELECT pgtrickle.create_stream_table('daily_totals',
'SELECT order_date, SUM(amount) AS daily_total, COUNT(*) AS order_count
FROM orders GROUP BY order_date',
schedule => '5s', refresh_mode => 'DIFFERENTIAL');",
    "SELECT pgtrickle.create_stream_table('by_region',
'SELECT region, SUM(amount) AS total, COUNT(*) AS cnt
FROM orders GROUP BY region',
schedule => '5s', refresh_mode => 'DIFFERENTIAL');",
    "SELECT pgtrickle.create_stream_table('by_product',
'SELECT product_id, SUM(amount) AS total, COUNT(*) AS cnt
FROM orders GROUP BY product_id',
schedule => '5s', refresh_mode => 'DIFFERENTIAL');",
    "SELECT pgtrickle.create_stream_table('top_customers',
'SELECT customer_id, SUM(amount) AS lifetime_value, COUNT(*) AS order_count
FROM orders GROUP BY customer_id',
schedule => '10s', refresh_mode => 'DIFFERENTIAL');",
    // Pattern 5
    "SELECT pgtrickle.create_stream_table(
'order_monitor',
$$SELECT
date_trunc('minute', order_date) AS minute,
region,
COUNT(*) AS orders,
SUM(amount) AS revenue
FROM orders
WHERE order_date >= CURRENT_DATE
GROUP BY 1, 2$$,
schedule => '1s',
refresh_mode => 'DIFFERENTIAL'
);",
    "SELECT pgtrickle.create_stream_table(
'live_counter',
$$SELECT region, COUNT(*) AS cnt, SUM(amount) AS total
FROM orders GROUP BY region$$,
schedule => 'IMMEDIATE',
refresh_mode => 'DIFFERENTIAL'
);",
    // Pattern 7
    "SELECT pgtrickle.create_stream_table(
'public.orders_agg',
'SELECT customer_id, SUM(amount) AS total, COUNT(*) AS cnt FROM orders GROUP BY customer_id',
schedule_seconds => 5
);",
];

/// Pattern 6 elides the queries (`...`); these stand in for them so that its
/// `alter_stream_table` calls can run verbatim.
const PATTERN_6_TABLES: &[&str] = &[
    "SELECT pgtrickle.create_stream_table('live_metrics',
        'SELECT region, COUNT(*) AS n FROM orders GROUP BY region')",
    "SELECT pgtrickle.create_stream_table('hourly_report',
        'SELECT product_id, SUM(amount) AS total FROM orders GROUP BY product_id', schedule => '1m')",
    "SELECT pgtrickle.create_stream_table('daily_analytics',
        'SELECT order_date, COUNT(*) AS n FROM orders GROUP BY order_date', schedule => '5m')",
    "SELECT pgtrickle.create_stream_table('audit_log_summary',
        'SELECT event_type, COUNT(*) AS n FROM events GROUP BY event_type')",
];

const PATTERN_6_CALLS: &[&str] = &[
    "SELECT pgtrickle.alter_stream_table('live_metrics', tier => 'hot');",
    "SELECT pgtrickle.alter_stream_table('hourly_report', tier => 'warm');",
    "SELECT pgtrickle.alter_stream_table('daily_analytics', tier => 'cold');",
    "SELECT pgtrickle.alter_stream_table('audit_log_summary', tier => 'frozen');",
];

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
