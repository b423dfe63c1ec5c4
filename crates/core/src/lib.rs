//! The pure core of pg_trickle: everything that can be decided without a PostgreSQL server.
//!
//! The extension crate asks this crate *what* to do (which SQL text to run, whether an option
//! is valid, in which order stream tables depend on each other) and does the *how* inside the
//! server. Nothing here links against PostgreSQL, so it is tested with plain `cargo test`.

pub mod auto_mode;
pub mod dag;
pub mod dvm;
pub mod error;
pub mod ir;
pub mod maintain;
pub mod names;
pub mod options;
pub mod schedule;
pub mod sql;
pub mod zset;

pub use error::{CoreError, ErrorKind};
