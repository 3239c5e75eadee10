//! Change-log retention: keeps the last `retentionHours` hours and at most
//! `retentionEvents` events (settings), trimming in the background through
//! the writer in bounded batches, so trimming never blocks client writes
//! for long. A `since` older than what is retained gets `resync`.
//!
//! The byte budget (`maxBytes`) is the writer's own: it keeps the log's
//! byte total and trims the oldest entries in every group that ends over
//! it (see `store::writer`), so the log never grows past it between two
//! runs of this task. Runs here only catch up after the budget was
//! lowered while nothing was written.
//!
//! Several nodes on one database: only the node holding the
//! [`Lease::Retention`] lease trims (it moves when that node dies).

use std::time::Duration;

use crate::clock::now_millis;
use crate::settings::SettingsStore;
use crate::store::{Committed, Lease, Store, WeakStore, WriteOp};

/// How often retention runs.
const EVERY: Duration = Duration::from_secs(30);

/// The highest seq that may be dropped now, if any.
pub fn trim_point(store: &Store, settings: &SettingsStore) -> Option<u64> {
    let settings = settings.get();
    let head = store.head_seq();
    let by_count = head.checked_sub(settings.realtime.retention_events);
    let cutoff = now_millis() - i64::from(settings.realtime.retention_hours) * 3_600_000;
    let by_age = store.last_change_before(cutoff);
    match (by_count, by_age) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
    .filter(|p| store.first_change_seq().is_some_and(|f| f <= *p))
}

/// Trims up to the retention point (and under the byte budget) once;
/// returns how many entries went.
pub async fn trim_once(store: &Store, settings: &SettingsStore) -> u64 {
    let up_to = trim_point(store, settings).unwrap_or(0);
    if up_to == 0 && store.change_log_bytes() <= store.change_budget() {
        return 0;
    }
    let mut total = 0;
    loop {
        match store.write(vec![WriteOp::TrimChanges { up_to }]).await {
            Ok(results) => {
                let removed = match results.first() {
                    Some(Committed::Trimmed { removed }) => *removed,
                    _ => 0,
                };
                total += removed;
                if removed == 0 {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "change-log trim failed; retried later");
                break;
            }
        }
    }
    total
}

/// Runs retention until the store closes (it holds only a weak handle, so
/// it never keeps the data dir open).
pub fn spawn(store: WeakStore, settings: SettingsStore) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let Some(store) = store.upgrade() else { break };
            // Several nodes: the one holding the lease trims.
            if !store.holds_lease(Lease::Retention) {
                continue;
            }
            let n = trim_once(&store, &settings).await;
            if n > 0 {
                tracing::info!(removed = n, "change log trimmed");
            }
        }
    });
}
