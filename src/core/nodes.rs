//! Several nodes on one PostgreSQL database (SPEC §12): this node's caches
//! follow what any node commits, and once-only work runs where its lease
//! is. Nothing here runs on the embedded engine, where this process makes
//! every change itself.
//!
//! The store announces every committed collection, settings or
//! index-build change (`Store::shared_changes`, a poll of
//! `basalt.head.specs_version` every 250 ms); this node then reloads its
//! registry (rules, schemas, fields), the index builds in progress and its
//! settings (rate limits, mail, budgets, realtime, S3...). The writer
//! needs none of this: it compares the version itself in every group's
//! turn and reloads the index sets before planning (`store::writer`), so
//! no write is ever planned against a stale index set, even in the
//! moment before this reload.

use std::time::Duration;

use crate::state::AppState;
use crate::store::Lease;

/// How often the builds' lease is looked at when nothing changes (a node
/// that just took the lease over resumes the dead holder's builds).
const LEASE_CHECK: Duration = Duration::from_secs(1);

/// Follows the other nodes until the store shuts down (PostgreSQL only).
pub fn spawn(state: &AppState) {
    let Some(mut changes) = state.store.shared_changes() else {
        return;
    };
    let state = state.clone();
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(LEASE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = None;
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = tick.tick() => {}
            }
            let version = *changes.borrow_and_update();
            if seen != Some(version) {
                match reload(&state).await {
                    Ok(()) => seen = Some(version),
                    Err(e) => tracing::warn!(error = %e.message, "reloading collections and settings failed; retried"),
                }
            }
            if state.store.holds_lease(Lease::IndexBuilds) {
                if let Err(e) = super::indexing::run_pending(&state) {
                    tracing::warn!(error = %e, "resuming index builds failed; retried");
                }
            }
        }
    });
}

/// Reloads what another node may have changed.
async fn reload(state: &AppState) -> Result<(), crate::error::ApiError> {
    super::collections::reload(state).await?;
    super::settings::reload(state).await?;
    tracing::debug!("collections and settings reloaded");
    Ok(())
}
