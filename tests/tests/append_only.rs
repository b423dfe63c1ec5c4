//! `append_only => true`: the capture of a source whose every dependant declares it
//! append-only needs no transition tables for UPDATE and DELETE (they only mark the source for
//! a recompute), and a refresh whose change holds only insertions inserts them as they come.
//! When an UPDATE or DELETE does arrive, results stay exact: a FULL refresh where the capture
//! only marked it, the ordinary differential path where a sibling stream table had the rows
//! captured. Which apply statement ran is read from the refresh's debug messages.

use pg_trickle_tests::{last_refresh, Messages, Script, TestDb};
use postgres::Client;
use rand::{Rng, SeedableRng};

/// Refresh `name` and return the statements it ran that write to the stream table.
fn refresh_statements(
    client: &mut Client,
    seen: &Messages,
    script: &mut Script,
    name: &str,
) -> Vec<String> {
    seen.clear();
    script.run(
        client,
        &format!("SELECT pgtrickle.refresh_stream_table('{name}');"),
    );
    let target = format!("INSERT INTO public.{name} ");
    seen.all()
        .into_iter()
        .filter(|m| m.starts_with("pg_trickle refresh statement") && m.contains(&target))
        .collect()
}

/// Whether `statements` hold the insert-only apply (no match against stored copies).
fn inserted_as_they_came(statements: &[String]) -> bool {
    !statements.is_empty()
        && statements
            .iter()
            .all(|s| s.contains("generate_series") && !s.contains("doomed"))
}

/// Whether the UPDATE and DELETE capture triggers of `table` have transition tables.
fn update_triggers_keep_rows(client: &mut Client, table: &str) -> bool {
    client
        .query_one(
            "SELECT bool_and(tgoldtable IS NOT NULL) FROM pg_trigger
             WHERE tgrelid = $1::text::regclass
               AND tgname IN ('__pgt_capture_upd', '__pgt_capture_del')",
            &[&table],
        )
        .expect("triggers")
        .get::<_, Option<bool>>(0)
        .expect("capture triggers exist")
}

const SCHEMA: &str = "
CREATE TABLE kinds (kind text PRIMARY KEY, label text);
INSERT INTO kinds VALUES ('a', 'alpha'), ('b', 'beta'), ('c', NULL);
CREATE TABLE events (id int, kind text, payload jsonb);
INSERT INTO events SELECT i, (ARRAY['a', 'b', 'c', NULL])[1 + i % 4], jsonb_build_object('x', i % 3)
  FROM generate_series(1, 20) i;
";

/// A database with `SCHEMA`, a collecting connection and the script recording it.
fn start(name: &str) -> (TestDb, Client, Messages, Script) {
    let db = TestDb::new(name);
    let (mut client, seen) = db.connect_collecting();
    let mut script = Script::new();
    script.run(&mut client, SCHEMA);
    (db, client, seen, script)
}

const PROJECTION: &str =
    "SELECT id, kind, (payload->>'x')::int AS x FROM events WHERE kind IS DISTINCT FROM 'c'";
const LABELLED: &str = "SELECT e.id, k.label FROM events e JOIN kinds k ON k.kind = e.kind";
const COUNTS: &str = "SELECT kind, count(*) AS n, max(id) AS last FROM events GROUP BY kind";

#[test]
fn insertions_into_append_only_sources_are_inserted_as_they_come() {
    let (_db, mut client, seen, mut script) = start("append_only_inserts");
    for (name, query) in [
        ("projection", PROJECTION),
        ("labelled", LABELLED),
        ("counts", COUNTS),
    ] {
        script.run(
            &mut client,
            &format!(
                "SELECT pgtrickle.create_stream_table('{name}', $q${query}$q$, \
                 refresh_mode => 'DIFFERENTIAL', append_only => true);"
            ),
        );
    }
    assert!(!update_triggers_keep_rows(&mut client, "events"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut next_id = 100;
    for round in 0..30 {
        // new events, some of them copies of one another; now and then a new kind as well
        let n = rng.gen_range(1..6);
        let kind = ["'a'", "'b'", "'c'", "NULL", "'d'"][rng.gen_range(0..5)];
        script.run(
            &mut client,
            &format!(
                "INSERT INTO events SELECT {next_id} + i % 2, {kind}, jsonb_build_object('x', i) \
                 FROM generate_series(1, {n}) i;"
            ),
        );
        next_id += 2;
        let new_kind = round % 7 == 3;
        if new_kind {
            script.run(
                &mut client,
                &format!("INSERT INTO kinds VALUES ('k{round}', NULL), ('d{round}', 'late');"),
            );
        }
        let statements = refresh_statements(&mut client, &seen, &mut script, "projection");
        assert!(
            inserted_as_they_came(&statements),
            "round {round}: {statements:?}"
        );
        script.check(&mut client, "projection", PROJECTION);
        // a join whose two sides both changed has a term that subtracts: matched as usual
        let statements = refresh_statements(&mut client, &seen, &mut script, "labelled");
        assert_eq!(
            inserted_as_they_came(&statements),
            !new_kind,
            "round {round}: {statements:?}"
        );
        script.check(&mut client, "labelled", LABELLED);
        refresh_statements(&mut client, &seen, &mut script, "counts");
        script.check(&mut client, "counts", COUNTS);
        for name in ["projection", "labelled", "counts"] {
            let (mode, _) = last_refresh(&mut client, name);
            assert_eq!(
                mode.as_deref(),
                Some("DIFFERENTIAL"),
                "round {round}: {name}"
            );
        }
    }
    // an UPDATE and a DELETE arrive after all: only a mark was written, the next refresh
    // recomputes
    script.run(
        &mut client,
        "UPDATE events SET kind = 'b' WHERE id < 5; DELETE FROM events WHERE id = 7;",
    );
    let oid: u32 = client
        .query_one("SELECT 'events'::regclass::oid", &[])
        .expect("oid")
        .get(0);
    let deleted_rows: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM pgtrickle_changes.changes_{oid} WHERE __pgt_weight < 0"),
            &[],
        )
        .expect("buffer")
        .get(0);
    assert_eq!(
        deleted_rows, 0,
        "an append-only capture writes no deleted rows"
    );
    for (name, query) in [
        ("projection", PROJECTION),
        ("labelled", LABELLED),
        ("counts", COUNTS),
    ] {
        refresh_statements(&mut client, &seen, &mut script, name);
        script.check(&mut client, name, query);
        let (mode, reason) = last_refresh(&mut client, name);
        assert_eq!(mode.as_deref(), Some("FULL"), "{name}");
        assert!(
            reason.unwrap_or_default().contains("append-only"),
            "{name}: the reason names the declaration"
        );
    }
}

#[test]
fn a_sibling_that_is_not_append_only_keeps_deletions_captured() {
    let (_db, mut client, seen, mut script) = start("append_only_sibling");
    script.run(
        &mut client,
        &format!(
            "SELECT pgtrickle.create_stream_table('projection', $q${PROJECTION}$q$, \
             refresh_mode => 'DIFFERENTIAL', append_only => true);
             SELECT pgtrickle.create_stream_table('sibling', 'SELECT id FROM events', \
             refresh_mode => 'DIFFERENTIAL');"
        ),
    );
    assert!(update_triggers_keep_rows(&mut client, "events"));
    // the declaration is not kept by the source: the deleted and updated rows are in the
    // buffer, and the append-only stream table applies them like any other
    script.run(
        &mut client,
        "DELETE FROM events WHERE id < 4; UPDATE events SET kind = 'c' WHERE id = 5;
         INSERT INTO events VALUES (50, 'a', '{\"x\": 1}');",
    );
    let statements = refresh_statements(&mut client, &seen, &mut script, "projection");
    assert!(!inserted_as_they_came(&statements), "{statements:?}");
    script.check(&mut client, "projection", PROJECTION);
    assert_eq!(
        last_refresh(&mut client, "projection").0.as_deref(),
        Some("DIFFERENTIAL")
    );
    // without the sibling the source's capture becomes append-only again
    script.run(
        &mut client,
        "SELECT pgtrickle.drop_stream_table('sibling');",
    );
    assert!(!update_triggers_keep_rows(&mut client, "events"));
    script.run(
        &mut client,
        "INSERT INTO events VALUES (51, 'b', '{\"x\": 2}'), (51, 'b', '{\"x\": 2}');",
    );
    let statements = refresh_statements(&mut client, &seen, &mut script, "projection");
    assert!(inserted_as_they_came(&statements), "{statements:?}");
    script.check(&mut client, "projection", PROJECTION);
    script.run(&mut client, "DELETE FROM events WHERE id = 51;");
    refresh_statements(&mut client, &seen, &mut script, "projection");
    script.check(&mut client, "projection", PROJECTION);
    assert_eq!(
        last_refresh(&mut client, "projection").0.as_deref(),
        Some("FULL")
    );
}
