//! The only producer of SQL text in pg_trickle. Identifiers and literals are quoted here with
//! PostgreSQL's rules; the rest of the code builds statements from these typed pieces instead of
//! formatting names into strings itself.

mod ident;
mod literal;
pub mod render;

pub use ident::{quote_ident, Ident, QualifiedName};
pub use literal::quote_literal;
