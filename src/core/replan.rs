//! The read-plan-write loop every optimistic write shares: read what the
//! write depends on, plan the job against it with revision checks, write;
//! when another writer changed what was read in between (the store refuses
//! the job with a conflict), read and plan again, a bounded number of times.

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Committed, WriteError, WriteOp};

/// How often a write is planned again when what it read changed underneath it.
const ATTEMPTS: usize = 8;

/// Which refusals mean "plan again".
#[derive(Clone, Copy, PartialEq)]
pub enum Replan {
    /// A revision conflict: a record the plan read has changed.
    OnConflict,
    /// That, or a record the plan read is gone (bulk deletes: the next plan
    /// counts it as missing).
    OnConflictOrGone,
}

/// Plans with `plan` and writes its job until the write commits or is
/// refused for another reason; after [`ATTEMPTS`] conflicts, a 409. `plan`
/// returns the job and a value handed back with the results; an empty job
/// is not written.
pub async fn write<T>(
    state: &AppState,
    when: Replan,
    mut plan: impl AsyncFnMut() -> Result<(Vec<WriteOp>, T), ApiError>,
) -> Result<(Vec<Committed>, T), ApiError> {
    for _ in 0..ATTEMPTS {
        let (ops, value) = plan().await?;
        if ops.is_empty() {
            return Ok((Vec::new(), value));
        }
        match state.store.write(ops).await {
            Ok(results) => return Ok((results, value)),
            Err(WriteError::Conflict) => continue,
            Err(WriteError::NotFound) if when == Replan::OnConflictOrGone => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(WriteError::Conflict.into())
}
