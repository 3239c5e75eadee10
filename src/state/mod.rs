//! The shared state every request path works with: handles of the lower
//! layers (store, registry, settings, mail, rate limits) and the small
//! bookkeeping types defined here (index builds, work slots, the realtime
//! shutdown signal), so that `core`, `realtime`, `api` and `admin` all
//! depend on `state` and `state` on none of them.

pub mod index_builds;
pub mod realtime;
pub mod work;

use std::sync::Arc;

use crate::auth::Tokens;
use crate::config::Config;
use crate::schema::Registry;
use crate::store::Store;

pub use index_builds::{BuildStatus, IndexBuilds};
pub use realtime::Realtime;
pub use work::WorkSlots;

/// Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub registry: Registry,
    pub tokens: Tokens,
    pub config: Arc<Config>,
    /// Serialises collection changes (create/update/delete): they are rare,
    /// and doing them one at a time keeps the name check and the cache update
    /// consistent. A tokio mutex because it is held across the store write.
    pub collection_lock: Arc<tokio::sync::Mutex<()>>,
    /// Striped locks serialising updates of the same record on this server,
    /// so concurrent PATCHes (`views+`) queue instead of failing their
    /// optimistic revision check; see [`AppState::record_lock`].
    pub record_locks: Arc<Vec<tokio::sync::Mutex<()>>>,
    /// Superuser-editable settings (mail, rate limits, batch, realtime).
    pub settings: crate::settings::SettingsStore,
    /// Ends realtime streams on shutdown.
    pub realtime: Realtime,
    /// Outgoing mail.
    pub mailer: crate::mail::Mailer,
    /// Index builds in progress (the planner skips those indexes).
    pub index_builds: IndexBuilds,
    /// Request and login rate limits (rules from `settings`).
    pub rate_limiter: crate::ratelimit::RateLimiter,
    /// Uploaded files (local disk or S3).
    pub storage: crate::files::Storage,
    /// Thumbnails being made, and the slots for making them.
    pub thumbs: crate::files::thumbs::Thumbnails,
    /// Slots for work that may read many records (see [`work`]).
    pub work: WorkSlots,
    /// Open connections per client address (caps from `settings.limits`).
    pub caps: crate::caps::Caps,
    /// The one-time dashboard setup token, while no superuser exists (see
    /// `admin::login`): printed at start as a link, consumed on use.
    pub setup_token: Arc<std::sync::Mutex<Option<String>>>,
}

/// Stripes of [`AppState::record_locks`]: enough that unrelated records
/// rarely share one.
pub const RECORD_LOCK_STRIPES: usize = 4096;

impl AppState {
    /// The lock stripe of one record.
    pub fn record_lock(&self, collection_id: &str, id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (collection_id, id).hash(&mut h);
        &self.record_locks[(h.finish() as usize) % self.record_locks.len()]
    }
}
