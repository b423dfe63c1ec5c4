//! Test harness for pg_trickle's integration tests: a private PostgreSQL cluster started once
//! per test binary (as the `postgres` OS user when the tests run as root), one fresh database
//! per test, and the oracle that compares a stream table with a fresh run of its query.
//!
//! The server is chosen with `PGT_PG_CONFIG` (default `/usr/bin/pg_config`); the extension
//! must already be installed into it (`make install`).

pub mod cluster;
pub mod db;
pub mod oracle;
pub mod script;
pub mod shapes;
pub mod spec;
pub mod wait;

pub use cluster::{cluster, cluster_with, scheduling_cluster};
pub use db::{expect_error, last_refresh, workers, Messages, TestDb};
pub use oracle::{assert_oracle, is_fresh, oracle_mismatch};
pub use script::{seed, Script};
pub use wait::wait_for;
