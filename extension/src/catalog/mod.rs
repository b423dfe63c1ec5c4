//! The extension's catalog: its tables and views (`schema`), and the one module that reads and
//! writes them (`store`).

mod schema;
pub mod store;

pub use store::{StreamTable, StreamTableSettings};
