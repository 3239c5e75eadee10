//! Work that may read many records (lists that scan, filters through
//! relations, expand, realtime delivery with filters) runs on the blocking
//! pool, never on the HTTP workers, and at most one job per core at a time:
//! however many such requests arrive, the async workers stay free to
//! answer everything else, and the scheduler keeps a share of the machine
//! for them. Every job is bounded by its request's budget (`rules::Budget`).

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The permits for heavy work; cheap to clone.
#[derive(Clone)]
pub struct WorkSlots(Arc<Semaphore>);

impl Default for WorkSlots {
    fn default() -> Self {
        WorkSlots(Arc::new(Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )))
    }
}

impl WorkSlots {
    /// Runs `job` on the blocking pool once a slot is free.
    pub async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let _slot = self
            .0
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the server is stopping"))?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|_| ApiError::internal("a background job failed"))
    }
}
