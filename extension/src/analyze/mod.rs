//! Defining queries seen through PostgreSQL's own parser and analyzer: whether a text is one
//! SELECT, which relations it reads, whether it calls volatile functions, and its
//! schema-qualified form. All parse-tree `unsafe` lives in this module.

mod compat;
mod lower;
mod query;
mod sources;

pub use lower::{lower_query, Lowered};
pub use query::{analyze_defining_query, AnalyzedQuery, OutputColumn};
pub use sources::resolve_sources;
