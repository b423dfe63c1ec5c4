//! Every `create_stream_table` and `alter_stream_table` call of the user-facing specification
//! (`pg_trickle-patterns.md`), run verbatim on the specification's tables; then fifty rounds of
//! random DML on the sources, each followed by a refresh of every stream table, which must equal
//! its query as a multiset (the oracle) and must have been refreshed the way its refresh mode
//! promises (differentially for DIFFERENTIAL and IMMEDIATE). Every statement that changes the
//! database is recorded, so that an oracle mismatch panics with a replayable SQL script.

use pg_trickle_tests::{last_refresh, Script, TestDb};
use postgres::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use pg_trickle_tests::spec::{
    CUSTOMERS, CUSTOMER_HISTORY, EVENTS, ORDERS, PATTERN_6_CALLS, PATTERN_6_TABLES, RAW_EVENTS,
    SPEC_CALLS,
};

/// Rounds of random DML, each followed by a refresh and the oracle check of every stream table.
const ROUNDS: usize = 50;

/// The specification's monitoring query, verbatim.
const ERROR_STATES: &str = "SELECT pgt_name, status, last_error_message
FROM pgtrickle.stream_tables_info
WHERE status IN ('ERROR', 'SUSPENDED');";

/// A stream table of the database, as the catalog describes it.
struct StreamTable {
    /// schema-qualified, quoted as needed
    qualified: String,
    /// `pgt_name`, for `last_refresh`
    name: String,
    /// the query as the user gave it
    query: String,
    /// `refresh_mode` of the catalog: AUTO, FULL, DIFFERENTIAL or IMMEDIATE
    refresh_mode: String,
    /// the query reads CURRENT_DATE: a refresh on a new date may recompute it in full
    reads_current_date: bool,
    /// its visible columns (not the hidden `__pgt_*` ones), as a select list
    columns: String,
}

/// Every stream table of the database, upstream first.
fn stream_tables(client: &mut Client) -> Vec<StreamTable> {
    client
        .query(
            "SELECT format('%I.%I', pgt_schema, pgt_name), pgt_name::text, original_query,
                    refresh_mode, original_query ~* '\\mcurrent_date\\M',
                    (SELECT string_agg(quote_ident(c.name), ', ' ORDER BY c.n)
                     FROM unnest(column_names) WITH ORDINALITY AS c(name, n))
             FROM pgtrickle.pgt_stream_tables ORDER BY pgt_id",
            &[],
        )
        .expect("list stream tables")
        .iter()
        .map(|r| StreamTable {
            qualified: r.get(0),
            name: r.get(1),
            query: r.get(2),
            refresh_mode: r.get(3),
            reads_current_date: r.get(4),
            columns: r.get(5),
        })
        .collect()
}

fn current_date(client: &mut Client) -> String {
    client
        .query_one("SELECT CURRENT_DATE::text", &[])
        .expect("current date")
        .get(0)
}

/// A digest of the visible rows of a stream table, to tell whether a refresh changed it.
fn digest(client: &mut Client, st: &StreamTable) -> String {
    client
        .query_one(
            &format!(
                "SELECT md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), ''))
                 FROM (SELECT {} FROM {}) AS r",
                st.columns, st.qualified
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("digest of {}: {e}", st.qualified))
        .get(0)
}

/// The last refresh of `st` must be one its refresh mode allows. `date_changed`: CURRENT_DATE
/// may differ from the one of the previous refresh of `st`. Returns the mode.
fn assert_refresh_mode(
    client: &mut Client,
    st: &StreamTable,
    date_changed: bool,
    round: usize,
) -> String {
    let (mode, reason) = last_refresh(client, &st.name);
    let reason_text = reason.clone().unwrap_or_default();
    let ok = match (st.refresh_mode.as_str(), mode.as_deref()) {
        ("DIFFERENTIAL" | "IMMEDIATE", Some("DIFFERENTIAL" | "NOOP")) => true,
        // a query that reads CURRENT_DATE is recomputed once the date has changed
        ("DIFFERENTIAL" | "IMMEDIATE", Some("FULL")) => {
            st.reads_current_date && date_changed && reason_text.to_lowercase().contains("date")
        }
        ("AUTO", Some("DIFFERENTIAL" | "NOOP")) => true,
        ("AUTO", Some("FULL")) => !reason_text.trim().is_empty(),
        ("FULL", Some("FULL")) => true,
        _ => false,
    };
    assert!(
        ok,
        "round {round}: {} (refresh_mode {}{}) was refreshed with {mode:?}, reason {reason:?}{}",
        st.qualified,
        st.refresh_mode,
        if st.reads_current_date {
            ", reads CURRENT_DATE"
        } else {
            ""
        },
        if st.reads_current_date && !date_changed {
            " although CURRENT_DATE is the date of its previous refresh"
        } else {
            ""
        }
    );
    mode.unwrap_or_default()
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

    /// An order date relative to CURRENT_DATE (so that `order_monitor`, which reads orders
    /// of today and later, sees changes whatever the day): today half of the time, otherwise
    /// a day of the past two weeks or of the next week.
    fn order_date(&mut self) -> String {
        if self.rng.gen_bool(0.5) {
            "CURRENT_DATE".to_string()
        } else {
            match self.rng.gen_range(-14..=7) {
                0 => "CURRENT_DATE".to_string(),
                d => format!("CURRENT_DATE + {d}"),
            }
        }
    }

    /// One round of random DML over the specification's tables, as SQL.
    fn round_sql(&mut self) -> String {
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
            let date = self.order_date();
            sql.push(format!(
                "INSERT INTO orders (customer_id, region, product_id, amount, order_date) VALUES \
                 ({cust}, '{region}', {product}, {}.{:02}, {date})",
                self.rng.gen_range(0..1000),
                self.rng.gen_range(0..100)
            ));
        }
        // customer ids stay those of the customers (0..14); amounts stay within NUMERIC(10,2)
        sql.push(format!(
            "UPDATE orders SET customer_id = (customer_id + 1) % 15, amount = mod(amount * 2, 5000) WHERE id % 5 = {}",
            self.rng.gen_range(0..5)
        ));
        // orders move into and out of today and the days after it
        let date = self.order_date();
        sql.push(format!(
            "UPDATE orders SET order_date = {date} WHERE id % 7 = {}",
            self.rng.gen_range(0..7)
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
        sql.join(";\n")
    }
}

#[test]
fn spec_calls_run_verbatim_and_stay_equal_to_their_queries() {
    let db = TestDb::new("spec_patterns");
    let mut client = db.connect();
    let mut script = Script::new();
    for ddl in [RAW_EVENTS, EVENTS, CUSTOMERS, CUSTOMER_HISTORY, ORDERS] {
        script.run(&mut client, ddl);
    }
    let seed = pg_trickle_tests::seed(20261125);
    let mut dml = Dml {
        rng: StdRng::seed_from_u64(seed),
        clock: 0,
    };
    let sql = dml.round_sql();
    script.run(&mut client, &sql);

    // the CURRENT_DATE of the first refresh of each stream table, run by its creation
    let date = current_date(&mut client);
    for call in SPEC_CALLS
        .iter()
        .chain(PATTERN_6_TABLES)
        .chain(PATTERN_6_CALLS)
    {
        script.run(&mut client, call);
    }
    let count: i64 = client
        .query_one(
            "SELECT count(*) FROM pgtrickle.pgt_stream_tables WHERE status = 'ACTIVE'",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(count, (SPEC_CALLS.len() + PATTERN_6_TABLES.len()) as i64);
    let tables = stream_tables(&mut client);
    for st in &tables {
        script.check(&mut client, &st.qualified, &st.query);
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

    // per stream table: the CURRENT_DATE at the start of its previous refresh, its digest, in
    // how many rounds its rows changed, and how often each refresh mode ran
    let mut previous_date = vec![date; tables.len()];
    let mut digests: Vec<String> = tables.iter().map(|st| digest(&mut client, st)).collect();
    let mut changed = vec![0usize; tables.len()];
    let mut modes = vec![std::collections::BTreeMap::<String, usize>::new(); tables.len()];
    for round in 1..=ROUNDS {
        if round == ROUNDS / 2 + 1 {
            // CURRENT_DATE moves to another day, as at midnight: a time zone where it is
            // already tomorrow, or else one where it is still yesterday
            let zone: String = client
                .query_one(
                    "SELECT CASE WHEN (now() AT TIME ZONE 'Etc/GMT-14')::date <> CURRENT_DATE
                            THEN 'Etc/GMT-14' ELSE 'Etc/GMT+12' END",
                    &[],
                )
                .expect("time zone")
                .get(0);
            script.run(&mut client, &format!("SET TimeZone = '{zone}'"));
        }
        let sql = dml.round_sql();
        script.run(&mut client, &sql);
        for (i, st) in tables.iter().enumerate() {
            let before = current_date(&mut client);
            script.run(
                &mut client,
                &format!(
                    "SELECT pgtrickle.refresh_stream_table('{}')",
                    st.qualified.replace('\'', "''")
                ),
            );
            let after = current_date(&mut client);
            script.check(&mut client, &st.qualified, &st.query);
            let mode = assert_refresh_mode(&mut client, st, after != previous_date[i], round);
            *modes[i].entry(mode).or_default() += 1;
            previous_date[i] = before;
            let d = digest(&mut client, st);
            if d != digests[i] {
                changed[i] += 1;
                digests[i] = d;
            }
        }
    }
    let summary: Vec<String> = tables
        .iter()
        .zip(&changed)
        .zip(&modes)
        .map(|((st, n), m)| {
            format!(
                "{} ({}): changed {n}/{ROUNDS}, {m:?}",
                st.name, st.refresh_mode
            )
        })
        .collect();
    println!(
        "rounds in which each stream table changed, and its refresh modes:\n  {}",
        summary.join("\n  ")
    );
    // the random DML reaches every stream table in most rounds
    for (st, n) in tables.iter().zip(&changed) {
        assert!(
            *n * 2 > ROUNDS,
            "{} changed in only {n} of {ROUNDS} rounds; the random DML hardly reaches it:\n  {}",
            st.qualified,
            summary.join("\n  ")
        );
    }
}
