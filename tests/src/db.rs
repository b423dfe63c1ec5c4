//! One database per test, with pg_trickle installed, and helpers for expected errors.

use crate::cluster::{cluster, scheduling_cluster, Cluster};
use postgres::{Client, NoTls};

/// A fresh database named after the test.
#[derive(Clone)]
pub struct TestDb {
    pub name: String,
    pub cluster: &'static Cluster,
}

impl TestDb {
    /// Create database `t_<name>` with the extension installed, in the cluster where refreshes
    /// are manual.
    pub fn new(name: &str) -> TestDb {
        TestDb::create(cluster(), name)
    }

    /// Create database `t_<name>` with the extension installed, in the cluster where the
    /// background scheduler runs.
    pub fn scheduled(name: &str) -> TestDb {
        TestDb::create(scheduling_cluster(), name)
    }

    /// Create database `t_<name>` with the extension installed, in cluster `c`.
    pub fn create(c: &'static Cluster, name: &str) -> TestDb {
        let db_name = format!("t_{name}");
        let mut admin = Client::connect(&c.conninfo("postgres"), NoTls).unwrap_or_else(|e| {
            panic!(
                "cannot connect to the test cluster: {e}; see {}",
                c.log_path().display()
            )
        });
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db_name}"))
            .expect("drop database");
        admin
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .expect("create database");
        let db = TestDb {
            name: db_name,
            cluster: c,
        };
        db.connect()
            .batch_execute("CREATE EXTENSION pg_trickle")
            .expect("create extension");
        db
    }

    /// A new connection to this database as the superuser.
    pub fn connect(&self) -> Client {
        Client::connect(&self.cluster.conninfo(&self.name), NoTls)
            .expect("connect to test database")
    }

    /// A new connection as the superuser that collects the server's messages at DEBUG2 and
    /// above (a refresh reports there the statements it runs and how it planned them).
    pub fn connect_collecting(&self) -> (Client, Messages) {
        let seen = Messages::default();
        let sink = seen.clone();
        let mut config: postgres::Config =
            self.cluster.conninfo(&self.name).parse().expect("conninfo");
        config.notice_callback(move |notice| sink.push(notice.message().to_string()));
        let mut client = config.connect(NoTls).expect("connect");
        client
            .batch_execute("SET client_min_messages = debug2")
            .expect("debug messages");
        (client, seen)
    }

    /// A new connection as `role`.
    pub fn connect_as(&self, role: &str) -> Client {
        let conninfo = self
            .cluster
            .conninfo(&self.name)
            .replace("user=postgres", &format!("user={role}"));
        Client::connect(&conninfo, NoTls).expect("connect as role")
    }
}

/// Server messages collected by a connection from `TestDb::connect_collecting`.
#[derive(Clone, Default)]
pub struct Messages(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Messages {
    fn push(&self, message: String) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(message);
    }

    /// Forget the messages so far.
    pub fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// The messages collected since the last `clear`.
    pub fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// How many pg_trickle background processes of `kind` (`launcher`, `scheduler`, `refresh`,
/// or `%` for any) are connected to `database` (any database, or none, with `None`).
pub fn workers(
    client: &mut impl postgres::GenericClient,
    kind: &str,
    database: Option<&str>,
) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE backend_type LIKE 'pg_trickle ' || $1 AND ($2::text IS NULL OR datname = $2)",
            &[&kind, &database],
        )
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("pg_trickle {kind} processes: {e}"))
}

/// What an expected error looked like.
#[derive(Debug)]
pub struct ExpectedError {
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// How the last refresh of stream table `name` ran (`FULL`, `DIFFERENTIAL`, `NOOP`; NULL
/// before the first) and why, from the catalog.
pub fn last_refresh(
    client: &mut impl postgres::GenericClient,
    name: &str,
) -> (Option<String>, Option<String>) {
    client
        .query_one(
            "SELECT last_refresh_mode, last_refresh_reason
             FROM pgtrickle.pgt_stream_tables WHERE pgt_name = $1",
            &[&name],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap_or_else(|e| panic!("last refresh of {name}: {e}"))
}

/// Run `sql`, which must fail with SQLSTATE `code`; returns the error for further checks.
pub fn expect_error(client: &mut Client, sql: &str, code: &str) -> ExpectedError {
    match client.batch_execute(sql) {
        Ok(()) => panic!("expected SQLSTATE {code}, but this succeeded:\n{sql}"),
        Err(e) => {
            let db = e
                .as_db_error()
                .unwrap_or_else(|| panic!("not a server error: {e}\n{sql}"));
            let err = ExpectedError {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
                hint: db.hint().map(str::to_string),
            };
            assert_eq!(err.code, code, "wrong SQLSTATE for:\n{sql}\ngot: {err:?}");
            err
        }
    }
}
