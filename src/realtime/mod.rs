//! Realtime change feeds: WebSocket with resume (`ws`), PocketBase's SSE
//! protocol (`sse`), shared subscription matching (`subscription`) and
//! change-log retention (`retention`).
//!
//! Every committed write reaches here from the store's commit path (the
//! flusher publishes each change on a `tokio::sync::broadcast` after it is
//! durable, in seq order), whatever made it: REST, batch, dashboard, CLI.

pub mod retention;
pub mod sse;
pub mod subscription;
pub mod ws;

use std::sync::Arc;

use tokio::sync::watch;

/// Realtime state shared by the handlers.
#[derive(Clone)]
pub struct Realtime {
    pub sse: sse::SseClients,
    /// Flipped to `true` when the server stops: long-lived streams end at
    /// once instead of holding the graceful shutdown for its full timeout.
    closing: Arc<watch::Sender<bool>>,
}

impl Default for Realtime {
    fn default() -> Self {
        Realtime {
            sse: sse::SseClients::default(),
            closing: Arc::new(watch::channel(false).0),
        }
    }
}

impl Realtime {
    /// A receiver that changes when the server starts shutting down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Renders `change` for `specs` of one connection: inline when no
    /// record has to be read, otherwise as heavy work on the blocking pool
    /// (`state.work`; see `subscription::needs_reads`), so realtime
    /// delivery never occupies the HTTP workers.
    pub async fn render(
        &self,
        state: &crate::state::AppState,
        specs: Vec<Arc<subscription::SubSpec>>,
        req: &crate::rules::RequestInfo,
        request: &serde_json::Value,
        change: Arc<crate::store::Change>,
    ) -> Vec<subscription::Delivery> {
        if !subscription::needs_reads(state, &specs, &req.caller, &change) {
            return subscription::render_all(state, &specs, req, request, &change);
        }
        let n = specs.len();
        let (state2, req, request) = (state.clone(), req.clone(), request.clone());
        state
            .work
            .run(move || subscription::render_all(&state2, &specs, &req, &request, &change))
            .await
            .unwrap_or_else(|_| vec![subscription::Delivery::Resync; n])
    }

    /// Ends every realtime connection (called on SIGTERM/SIGINT).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}
