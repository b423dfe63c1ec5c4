//! Change capture. Every table that a differentially maintained stream table reads gets one
//! change buffer, `pgtrickle_changes.changes_<oid>`, shared by all its dependants, and
//! statement-level triggers that write the statement's net change into it:
//!
//! - each row carries the writing transaction's id (`__pgt_xid`), a sequence number
//!   (`__pgt_seq`, ordering the rows one transaction writes) and a weight (+1 inserted,
//!   -1 deleted);
//! - one trigger function in Rust (`capture`) writes the rows, with no SQL per statement;
//! - only the columns some dependant reads are stored; an UPDATE stores, for each updated row
//!   whose tracked columns changed (by binary image), the old row as a deletion and the new
//!   one as an insertion, so an UPDATE that changes none of them writes nothing;
//! - TRUNCATE (and, when every dependant declared the source append-only, UPDATE and DELETE)
//!   writes a reset marker, after which dependants recompute in full.
//!
//! Refreshes choose the rows of their window by transaction visibility (see `refresh`);
//! rows every dependant has consumed are deleted by the refreshes (`refresh::frontier`).

mod buffer;
mod buffer_writer;
mod capture;
mod triggers;

pub use buffer::{
    buffer_name, empty_consumed, give_statistics, prune_unused, reset_if_partitioned, sync_source,
};
