//! Stream tables and roles: an ordinary user can create, refresh and drop stream tables of
//! their own; others need ownership to refresh; refreshes run with the owner's privileges,
//! row-level security included, whoever calls them.

use pg_trickle_tests::{assert_oracle, expect_error, TestDb};

#[test]
fn ordinary_users_own_their_stream_tables() {
    let db = TestDb::new("privileges_owner");
    let mut admin = db.connect();
    admin
        .batch_execute(&format!(
            "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
             GRANT CREATE ON SCHEMA public TO alice;
             GRANT CREATE ON DATABASE {} TO alice;",
            db.name
        ))
        .expect("roles");
    let mut alice = db.connect_as("alice");
    alice
        .batch_execute(
            "CREATE TABLE sales (id int PRIMARY KEY, region text, amount numeric);
             INSERT INTO sales SELECT i, 'r' || (i % 4), i FROM generate_series(1, 40) i;
             SELECT pgtrickle.create_stream_table('sales_by_region',
                 'SELECT region, sum(amount) AS total FROM sales GROUP BY region');
             CREATE INDEX ON sales_by_region (region);
             INSERT INTO sales VALUES (100, 'r9', 9);
             SELECT pgtrickle.refresh_stream_table('sales_by_region');",
        )
        .expect("alice creates and refreshes her stream table");
    assert_oracle(
        &mut alice,
        "sales_by_region",
        "SELECT region, sum(amount) AS total FROM sales GROUP BY region",
    );
    let owner: String = admin
        .query_one(
            "SELECT relowner::regrole::text FROM pg_class WHERE relname = 'sales_by_region'",
            &[],
        )
        .expect("owner")
        .get(0);
    assert_eq!(owner, "alice");

    let mut bob = db.connect_as("bob");
    expect_error(&mut bob, "SELECT * FROM sales_by_region", "42501");
    expect_error(
        &mut bob,
        "SELECT pgtrickle.refresh_stream_table('sales_by_region')",
        "42501",
    );
    expect_error(
        &mut bob,
        "SELECT pgtrickle.alter_stream_table('sales_by_region', tier => 'cold')",
        "42501",
    );
    expect_error(
        &mut bob,
        "SELECT pgtrickle.drop_stream_table('sales_by_region')",
        "42501",
    );
    // the catalog is readable by everyone and writable by no one directly
    bob.query("SELECT * FROM pgtrickle.stream_tables_info", &[])
        .expect("read catalog");
    expect_error(&mut bob, "DELETE FROM pgtrickle.pgt_stream_tables", "42501");
    expect_error(
        &mut alice,
        "UPDATE pgtrickle.pgt_stream_tables SET status = 'ERROR'",
        "42501",
    );

    alice
        .batch_execute("GRANT SELECT ON sales_by_region TO bob")
        .expect("grant");
    let rows = bob
        .query("SELECT * FROM sales_by_region", &[])
        .expect("bob reads after grant");
    assert_eq!(rows.len(), 5);
    alice
        .batch_execute("SELECT pgtrickle.drop_stream_table('sales_by_region')")
        .expect("alice drops");
    let left: i64 = admin
        .query_one("SELECT count(*) FROM pgtrickle.pgt_stream_tables", &[])
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
}

#[test]
fn refreshes_run_as_the_owner_with_row_level_security() {
    let db = TestDb::new("privileges_rls");
    let mut admin = db.connect();
    admin
        .batch_execute(
            "CREATE ROLE carol LOGIN;
             GRANT CREATE ON SCHEMA public TO carol;
             CREATE TABLE docs (id int PRIMARY KEY, team text, secret boolean);
             INSERT INTO docs SELECT i, 't' || (i % 3), i % 4 = 0 FROM generate_series(1, 40) i;
             ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
             CREATE POLICY public_docs ON docs FOR SELECT TO carol USING (NOT secret);
             GRANT SELECT ON docs TO carol;",
        )
        .expect("rls setup");
    let query = "SELECT team, count(*) AS n FROM docs GROUP BY team";
    let mut carol = db.connect_as("carol");
    carol
        .batch_execute(&format!(
            "SELECT pgtrickle.create_stream_table('team_docs', '{query}')"
        ))
        .expect("carol creates");
    assert_oracle(&mut carol, "team_docs", query);
    // a superuser's refresh must not widen what carol's stream table shows
    admin
        .batch_execute(
            "INSERT INTO docs VALUES (100, 't0', true), (101, 't0', false);
             SELECT pgtrickle.refresh_stream_table('team_docs');",
        )
        .expect("superuser refresh");
    assert_oracle(&mut carol, "team_docs", query);
    let visible: i64 = admin
        .query_one("SELECT sum(n)::bigint FROM team_docs", &[])
        .expect("sum")
        .get(0);
    let not_secret: i64 = admin
        .query_one("SELECT count(*) FROM docs WHERE NOT secret", &[])
        .expect("count")
        .get(0);
    assert_eq!(visible, not_secret);
}
