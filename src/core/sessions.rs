//! Dashboard sessions as `meta` entries: the dashboard (`admin::session`)
//! owns the cookie and CSRF checks, this owns what is stored and its
//! writes, so that every write still goes through `core`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{meta, WriteOp};

/// What the server keeps per session.
#[derive(Serialize, Deserialize)]
pub struct Session {
    /// The superuser's id.
    pub su: String,
    /// The superuser's `tokenKey` at login (a password change rotates it,
    /// which ends the session).
    pub key: String,
    pub csrf: String,
    /// Unix seconds.
    pub exp: i64,
}

/// Stores `session` under the cookie value `id`, sweeping expired sessions
/// (as of `now`, Unix seconds) in the same write.
pub async fn save(state: &AppState, id: &str, session: &Session, now: i64) -> Result<(), ApiError> {
    let mut ops = vec![WriteOp::PutMeta {
        key: meta_key(id),
        value: Some(serde_json::to_vec(session).expect("session serializes")),
    }];
    for key in state.store.meta_keys(meta::ADMIN_SESSION_PREFIX).unwrap_or_default() {
        let expired = state
            .store
            .meta_get(&key)
            .ok()
            .flatten()
            .and_then(|raw| serde_json::from_slice::<Session>(&raw).ok())
            .is_none_or(|s| s.exp <= now);
        if expired {
            ops.push(WriteOp::PutMeta { key, value: None });
        }
    }
    state.store.write(ops).await?;
    Ok(())
}

/// The session stored under the cookie value `id`, expired or not.
pub fn load(state: &AppState, id: &str) -> Option<Session> {
    let raw = state.store.meta_get(&meta_key(id)).ok()??;
    serde_json::from_slice(&raw).ok()
}

/// Removes the session under the cookie value `id` (logout).
pub async fn end(state: &AppState, id: &str) {
    let _ = state
        .store
        .write(vec![WriteOp::PutMeta {
            key: meta_key(id),
            value: None,
        }])
        .await;
}

/// Only a hash of the cookie value is stored, so a copy of the data dir
/// holds no usable session.
fn meta_key(cookie_value: &str) -> String {
    let digest = Sha256::digest(cookie_value.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    meta::admin_session(&hex)
}
