-- The demo database: the specification's Pattern 1 (bronze -> silver -> gold) and Pattern 4
-- (one source, four stream tables). Loaded by `make demo`; safe to run again.
\pset footer off
SET client_min_messages = warning;
-- the extension first, so that an older installation's event triggers do not run
DROP EXTENSION IF EXISTS pg_trickle CASCADE;
DROP TABLE IF EXISTS raw_events, orders CASCADE;
CREATE EXTENSION pg_trickle;
-- the API functions return void; keep their empty results off the screen
\o /dev/null

-- Pattern 1: Bronze / Silver / Gold
CREATE TABLE raw_events (
    event_id BIGSERIAL PRIMARY KEY,
    user_id INT NOT NULL,
    event_type TEXT NOT NULL,
    payload JSONB,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO raw_events (user_id, event_type, payload)
SELECT 1 + i % 5,
       (ARRAY['purchase', 'refund', 'subscription', 'page_view'])[1 + i % 4],
       jsonb_build_object('amount', (i * 7) % 100 + 0.99)
FROM generate_series(1, 200) AS i;

SELECT pgtrickle.create_stream_table(
    'events_cleaned',
    $$SELECT DISTINCT ON (event_id)
             event_id, user_id, event_type,
             (payload->>'amount')::numeric AS amount, received_at
      FROM raw_events
      WHERE event_type IN ('purchase', 'refund', 'subscription')$$,
    schedule => '5s',
    refresh_mode => 'DIFFERENTIAL'
);
SELECT pgtrickle.create_stream_table(
    'user_purchase_summary',
    $$SELECT user_id, COUNT(*) AS total_purchases, SUM(amount) AS total_spent,
             AVG(amount) AS avg_order
      FROM events_cleaned
      WHERE event_type = 'purchase'
      GROUP BY user_id$$,
    schedule => 'calculated',
    refresh_mode => 'DIFFERENTIAL'
);

-- Pattern 4: High fan-out
CREATE TABLE orders (
    id SERIAL PRIMARY KEY,
    customer_id INT NOT NULL,
    region TEXT NOT NULL,
    product_id INT NOT NULL,
    amount NUMERIC(10,2) NOT NULL,
    order_date DATE NOT NULL DEFAULT CURRENT_DATE
);
INSERT INTO orders (customer_id, region, product_id, amount, order_date)
SELECT 1 + i % 20, (ARRAY['north', 'south', 'east', 'west'])[1 + i % 4], 1 + i % 7,
       (i * 13) % 500 + 0.5, CURRENT_DATE - (i % 5)
FROM generate_series(1, 1000) AS i;

SELECT pgtrickle.create_stream_table('daily_totals',
    'SELECT order_date, SUM(amount) AS daily_total, COUNT(*) AS order_count
     FROM orders GROUP BY order_date',
    schedule => '5s', refresh_mode => 'DIFFERENTIAL');
SELECT pgtrickle.create_stream_table('by_region',
    'SELECT region, SUM(amount) AS total, COUNT(*) AS cnt FROM orders GROUP BY region',
    schedule => '5s', refresh_mode => 'DIFFERENTIAL');
SELECT pgtrickle.create_stream_table('by_product',
    'SELECT product_id, SUM(amount) AS total, COUNT(*) AS cnt FROM orders GROUP BY product_id',
    schedule => '5s', refresh_mode => 'DIFFERENTIAL');
SELECT pgtrickle.create_stream_table('top_customers',
    'SELECT customer_id, SUM(amount) AS lifetime_value, COUNT(*) AS order_count
     FROM orders GROUP BY customer_id',
    schedule => '10s', refresh_mode => 'DIFFERENTIAL');

\o
\echo
\echo '== Stream tables =='
SELECT pgt_name, status, refresh_mode, schedule, last_refresh_mode FROM pgtrickle.stream_tables_info ORDER BY pgt_id;
\echo '== Gold: user_purchase_summary =='
SELECT user_id, total_purchases, total_spent, avg_order FROM user_purchase_summary ORDER BY user_id;
\echo '== by_region =='
SELECT region, total, cnt FROM by_region ORDER BY region;

\echo '== A new purchase for user 1 and an order in the north; 6 seconds later, with no refresh call =='
INSERT INTO raw_events (user_id, event_type, payload) VALUES (1, 'purchase', '{"amount": 1000}');
INSERT INTO orders (customer_id, region, product_id, amount) VALUES (1, 'north', 1, 1000);
\o /dev/null
SELECT pg_sleep(6);
\o
SELECT user_id, total_purchases, total_spent, avg_order FROM user_purchase_summary WHERE user_id = 1;
SELECT region, total, cnt FROM by_region WHERE region = 'north';
\echo '== How each refresh ran =='
SELECT pgt_name, last_refresh_mode, maintenance FROM pgtrickle.stream_tables_info ORDER BY pgt_id;
