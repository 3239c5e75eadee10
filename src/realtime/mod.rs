//! Realtime change feeds, whatever carries them: subscription matching and
//! rendering (`subscription`), the SSE clients and their subscription sets
//! (`sse`, PocketBase's protocol without the HTTP), and change-log
//! retention (`retention`). The HTTP and WebSocket endpoints are
//! `api::realtime`'s.
//!
//! Every committed write reaches here from the store's commit path (the
//! flusher publishes each change on a `tokio::sync::broadcast` after it is
//! durable, in seq order), whatever made it: REST, batch, dashboard, CLI.

pub mod retention;
pub mod sse;
pub mod subscription;

use std::sync::Arc;

use crate::rules::RequestInfo;
use crate::state::AppState;
use crate::store::Change;
use subscription::{Delivery, SubSpec};

/// Renders `change` for `specs` of one connection: inline when no record
/// has to be read, otherwise as heavy work on the blocking pool
/// (`state.work`; see `subscription::needs_reads`), so realtime delivery
/// never occupies the HTTP workers.
pub async fn render(
    state: &AppState,
    specs: Vec<Arc<SubSpec>>,
    req: &RequestInfo,
    request: &serde_json::Value,
    change: Arc<Change>,
) -> Vec<Delivery> {
    if !subscription::needs_reads(state, &specs, &req.caller, &change) {
        return subscription::render_all(state, &specs, req, request, &change);
    }
    let n = specs.len();
    let (state2, req, request) = (state.clone(), req.clone(), request.clone());
    state
        .work
        .run(move || subscription::render_all(&state2, &specs, &req, &request, &change))
        .await
        .unwrap_or_else(|_| vec![Delivery::Resync; n])
}
