//! Bringing a stream table up to date. Every refresh runs as the stream table's owner, inside
//! the caller's transaction, and records its outcome in the catalog.

mod full;

use crate::catalog::StreamTable;
use crate::error::PgtResult;
use crate::pg::{as_role, relation_owner};
use pg_trickle_core::options::RefreshMode;

/// Refresh `st` and return the mode that ran. Until the differential engine exists every
/// stream table is recomputed in full, whatever mode was asked for; the requested mode stays
/// stored.
pub fn refresh(st: &StreamTable) -> PgtResult<RefreshMode> {
    let owner = relation_owner(st.relid)?;
    as_role(owner, true, || full::refresh_full(st))?;
    crate::catalog::store::record_refresh_success(st.pgt_id, RefreshMode::Full)?;
    Ok(RefreshMode::Full)
}
