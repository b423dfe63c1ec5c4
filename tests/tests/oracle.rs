//! The oracle itself must be able to fail: it compares multisets, so a missing duplicate or an
//! extra row is a mismatch.

use pg_trickle_tests::{assert_oracle, TestDb};

#[test]
#[should_panic(expected = "ORACLE MISMATCH")]
fn a_missing_duplicate_is_a_mismatch() {
    let db = TestDb::new("oracle_duplicate");
    let mut client = db.connect();
    client
        .batch_execute("CREATE TABLE a (x int); INSERT INTO a VALUES (1), (1), (2);")
        .expect("setup");
    assert_oracle(&mut client, "a", "SELECT x FROM (VALUES (1), (2)) AS v(x)");
}

#[test]
#[should_panic(expected = "ORACLE MISMATCH")]
fn a_changed_value_is_a_mismatch() {
    let db = TestDb::new("oracle_value");
    let mut client = db.connect();
    client
        .batch_execute("CREATE TABLE a (x int, y text); INSERT INTO a VALUES (1, 'a');")
        .expect("setup");
    assert_oracle(&mut client, "a", "SELECT 1 AS x, 'b'::text AS y");
}

#[test]
fn equal_multisets_match() {
    let db = TestDb::new("oracle_equal");
    let mut client = db.connect();
    client
        .batch_execute("CREATE TABLE a (x int); INSERT INTO a VALUES (2), (1), (1), (NULL);")
        .expect("setup");
    assert_oracle(
        &mut client,
        "a",
        "SELECT x FROM (VALUES (1), (NULL::int), (2), (1)) AS v(x)",
    );
}
