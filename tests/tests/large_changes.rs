//! Large changes (more than a thousand change rows) alternating with small ones over every
//! shape of `shapes`, in one backend: a refresh plans its statements for a large change and
//! keeps its generic plans for small ones, and every refresh equals the query (the oracle).

use pg_trickle_tests::shapes::{assert_differential, create_every_shape, QUERIES};
use pg_trickle_tests::{Script, TestDb};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A change of this many rows or more is applied with statements planned for its size
/// (`LARGE_CHANGE` in the refresh).
const LARGE: i64 = 1000;

#[test]
fn large_changes_are_planned_for_their_size_and_stay_exact() {
    let db = TestDb::new("differential_large");
    let (mut client, messages) = db.connect_collecting();
    let mut script = Script::new();
    create_every_shape(&mut client, &mut script);
    let seed = pg_trickle_tests::seed(5);
    let mut rng = StdRng::seed_from_u64(seed);
    // every large round changes more than LARGE rows of orders, every small one a few
    let (from, to) = (1_000, 1_000 + 12 * LARGE / 5 - 1);
    let large_rounds = [
        format!(
            "INSERT INTO orders SELECT i, CASE WHEN i % 9 = 0 THEN NULL ELSE 1 + i % 15 END, 1 + i % 6,
               1 + i % 5, CASE WHEN i % 7 = 0 THEN NULL ELSE (i % 90)::numeric(10,2) END,
               (ARRAY['a', 'b', NULL, 'c'])[1 + i % 4], jsonb_build_object('k', i % 3)
             FROM generate_series({from}, {to}) i"
        ),
        format!(
            "UPDATE orders SET cid = 1 + (id * 7) % 15, amount = amount + 1, qty = 1 + id % 4
             WHERE id BETWEEN {from} AND {to} AND id % 5 <> 0"
        ),
        format!("DELETE FROM orders WHERE id BETWEEN {from} AND {to} AND id % 2 = 0"),
        format!("DELETE FROM orders WHERE id BETWEEN {from} AND {to}"),
    ];
    for (round, large) in large_rounds.iter().enumerate() {
        let small = format!(
            "INSERT INTO orders VALUES ({}, {}, 2, 3, 9.50, 'b', NULL);
             UPDATE orders SET amount = amount + 1, cid = {} WHERE id = {};
             DELETE FROM orders WHERE id = {};
             UPDATE customers SET region = 'west' WHERE id = {}",
            900 + round,
            rng.gen_range(1..16),
            rng.gen_range(1..16),
            rng.gen_range(1..41),
            rng.gen_range(1..41),
            rng.gen_range(1..13)
        );
        // large and small changes alternate, so that both kinds of plan serve one backend
        for (dml, is_large) in [(large, true), (&small, false)] {
            script.run(&mut client, dml);
            for (name, query) in QUERIES {
                messages.clear();
                script.run(
                    &mut client,
                    &format!("SELECT pgtrickle.refresh_stream_table('{name}')"),
                );
                script.check(&mut client, name, query);
                assert_differential(&mut client, name);
                let planned_for_size = messages
                    .all()
                    .iter()
                    .any(|m| m.contains("statements planned for their number"));
                // the stream tables that read orders see all of a large change
                assert_eq!(
                    planned_for_size,
                    is_large && query.contains("orders"),
                    "{name} after:\n{dml}"
                );
            }
        }
    }
}
