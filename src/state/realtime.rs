//! The realtime handle every long-lived stream watches: the change feed
//! itself is the store's broadcast (`Store::subscribe`); what is kept here
//! is the signal that ends every stream when the server stops.

use std::sync::Arc;

use tokio::sync::watch;

/// Cheap to clone; shared by every realtime connection.
#[derive(Clone)]
pub struct Realtime {
    /// Flipped to `true` when the server stops: long-lived streams end at
    /// once instead of holding the graceful shutdown for its full timeout.
    closing: Arc<watch::Sender<bool>>,
}

impl Default for Realtime {
    fn default() -> Self {
        Realtime {
            closing: Arc::new(watch::channel(false).0),
        }
    }
}

impl Realtime {
    /// A receiver that changes when the server starts shutting down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every realtime connection (called on SIGTERM/SIGINT).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}
