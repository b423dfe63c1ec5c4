//! The query shapes the differential tests run: a schema of orders, customers, products and
//! regions, one DIFFERENTIAL stream table per shape (filters, projections, joins of two to
//! four tables, outer, non-equi, self and cross joins, every kind of aggregate, HAVING,
//! DISTINCT, DISTINCT ON, keyless duplicates, a stream table over a stream table), and the
//! check that a refresh ran differentially.

use crate::{last_refresh, Script};
use postgres::Client;

pub const SCHEMA: &str = "
CREATE TABLE regions (name text PRIMARY KEY, zone text);
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, region text, tier text);
CREATE TABLE products (id int PRIMARY KEY, cat text, price numeric(8,2));
CREATE TABLE orders (id int PRIMARY KEY, cid int, pid int, qty int NOT NULL, amount numeric(10,2),
                     note text, payload jsonb);
INSERT INTO regions VALUES ('north', 'z1'), ('south', 'z1'), ('east', 'z2');
INSERT INTO customers SELECT i, 'c' || i, (ARRAY['north', 'south', 'east', NULL])[1 + i % 4], (ARRAY['gold', 'std'])[1 + i % 2]
  FROM generate_series(1, 12) i;
INSERT INTO products SELECT i, (ARRAY['a', 'b', NULL])[1 + i % 3], (i * 3.5)::numeric(8,2) FROM generate_series(1, 6) i;
INSERT INTO orders SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE 1 + i % 14 END, 1 + i % 6, 1 + i % 5,
  CASE WHEN i % 5 = 0 THEN NULL ELSE (i * 1.25)::numeric(10,2) END, (ARRAY['a', 'b', NULL, 'c'])[1 + i % 4],
  jsonb_build_object('k', i % 4)
  FROM generate_series(1, 40) i;
";

/// (name, query): each is created with refresh_mode => 'DIFFERENTIAL'.
pub const QUERIES: &[(&str, &str)] = &[
    ("d_filter", "SELECT id, qty * 2 AS q2, note FROM orders WHERE qty > 2"),
    ("d_join2", "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.cid"),
    ("d_join3", "SELECT o.id, c.name, p.cat FROM orders o JOIN customers c ON c.id = o.cid JOIN products p ON p.id = o.pid"),
    ("d_join4", "SELECT o.id, c.name, p.cat, r.zone FROM orders o JOIN customers c ON c.id = o.cid JOIN products p ON p.id = o.pid JOIN regions r ON r.name = c.region"),
    ("d_nonequi", "SELECT a.id AS aid, b.id AS bid FROM products a JOIN products b ON a.price < b.price AND a.cat = b.cat"),
    ("d_left", "SELECT c.id, c.name, o.id AS oid, o.amount FROM customers c LEFT JOIN orders o ON o.cid = c.id"),
    ("d_left_grouped", "SELECT c.id, count(o.id) AS n, coalesce(sum(o.amount), 0) AS total FROM customers c LEFT JOIN orders o ON o.cid = c.id GROUP BY c.id"),
    ("d_right", "SELECT c.name, o.id FROM orders o RIGHT JOIN customers c ON c.id = o.cid"),
    ("d_group", "SELECT cid, count(*) AS n, sum(qty) AS q, avg(amount) AS a, count(amount) AS na FROM orders GROUP BY cid"),
    ("d_group_expr", "SELECT qty % 3 AS b, upper(note) AS u, count(*) AS n FROM orders GROUP BY 1, 2"),
    ("d_having", "SELECT cid, sum(qty) AS q FROM orders GROUP BY cid HAVING count(*) > 1"),
    ("d_minmax", "SELECT pid, min(amount) AS lo, max(amount) AS hi FROM orders GROUP BY pid"),
    ("d_minmax_filter", "SELECT cid, min(qty) FILTER (WHERE note = 'a') AS lo, max(amount) AS hi, min(id) AS first FROM orders GROUP BY cid"),
    ("d_minmax_hidden_key", "SELECT max(qty) AS m, min(amount) AS lo, count(*) AS n FROM orders GROUP BY cid"),
    ("d_whole_minmax", "SELECT min(amount) AS lo, max(qty) AS hi, max(payload->>'k') AS k FROM orders"),
    ("d_join_minmax", "SELECT c.region, max(o.amount) AS hi, min(p.price) AS lo, count(*) AS n FROM orders o JOIN customers c ON c.id = o.cid JOIN products p ON p.id = o.pid GROUP BY c.region"),
    ("d_other_aggs", "SELECT cid, string_agg(note, ',' ORDER BY id) AS notes, bool_and(qty > 1) AS allbig, array_agg(id ORDER BY id) AS ids FROM orders GROUP BY cid"),
    ("d_filter_agg", "SELECT pid, count(*) FILTER (WHERE qty > 2) AS big, sum(amount) FILTER (WHERE note IS NOT NULL) AS noted FROM orders GROUP BY pid"),
    ("d_whole", "SELECT count(*) AS n, sum(amount) AS s, avg(qty) AS a FROM orders"),
    ("d_whole_other", "SELECT max(amount) AS m, count(DISTINCT cid) AS d FROM orders"),
    ("d_distinct", "SELECT DISTINCT cid, pid FROM orders"),
    ("d_distinct_on", "SELECT DISTINCT ON (cid) cid, id, amount FROM orders ORDER BY cid, id DESC"),
    ("d_keyless", "SELECT pid, qty FROM orders"),
    ("d_join_grouped", "SELECT c.region, sum(o.amount) AS total, count(*) AS n FROM orders o JOIN customers c ON c.id = o.cid GROUP BY c.region"),
    ("d_self", "SELECT a.id, b.id AS other FROM orders a JOIN orders b ON a.cid = b.cid AND a.id < b.id"),
    ("d_logic", "SELECT id FROM orders WHERE (note IN ('a', 'b') OR note IS NULL) AND NOT qty = 3"),
    ("d_case", "SELECT id, CASE WHEN qty > 3 THEN 'big' ELSE 'small' END AS size, COALESCE(amount, 0)::int AS a FROM orders"),
    ("d_json", "SELECT id, (payload->>'k')::int AS k FROM orders WHERE payload ? 'k'"),
    ("d_revenue", "SELECT p.cat, sum(o.qty * p.price) AS rev, count(*) AS n FROM orders o JOIN products p ON p.id = o.pid GROUP BY p.cat"),
    ("d_over_stream", "SELECT cid, count(*) AS n, sum(q2) AS s FROM d_filter JOIN orders USING (id) GROUP BY cid"),
    ("d_left_chain", "SELECT c.id, o.id AS oid, p.cat FROM customers c LEFT JOIN orders o ON o.cid = c.id LEFT JOIN products p ON p.id = o.pid"),
    ("d_left_of_join", "SELECT c.name, o.id, p.cat FROM customers c LEFT JOIN (orders o JOIN products p ON p.id = o.pid) ON o.cid = c.id"),
    ("d_hidden_key", "SELECT sum(qty) AS q, count(*) AS n FROM orders GROUP BY cid"),
    ("d_whole_filter", "SELECT count(*) FILTER (WHERE amount > 20) AS big, sum(qty) FILTER (WHERE note = 'a') AS qa FROM orders"),
    ("d_distinct_join", "SELECT DISTINCT c.region, p.cat FROM orders o JOIN customers c ON c.id = o.cid JOIN products p ON p.id = o.pid"),
    ("d_group_left", "SELECT r.zone, count(c.id) AS n FROM regions r LEFT JOIN customers c ON c.region = r.name GROUP BY r.zone"),
    ("d_having_avg", "SELECT pid, avg(amount) AS a FROM orders GROUP BY pid HAVING avg(amount) > 10"),
    ("d_cross", "SELECT r.name, p.cat FROM regions r, products p WHERE p.price > 10"),
];

/// The last refresh of `name` must have been differential (or found nothing to do).
pub fn assert_differential(client: &mut Client, name: &str) {
    let (mode, _) = last_refresh(client, name);
    assert!(
        matches!(mode.as_deref(), Some("DIFFERENTIAL") | Some("NOOP")),
        "{name} was refreshed with {mode:?}, not differentially"
    );
}

/// The schema and a DIFFERENTIAL stream table for each shape, each checked by the oracle.
pub fn create_every_shape(client: &mut Client, script: &mut Script) {
    script.run(client, SCHEMA);
    for (name, query) in QUERIES {
        script.run(
            client,
            &format!("SELECT pgtrickle.create_stream_table('{name}', $q${query}$q$, refresh_mode => 'DIFFERENTIAL')"),
        );
        script.check(client, name, query);
    }
}
