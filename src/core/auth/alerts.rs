//! Login alerts, as PocketBase's `authAlert`: each auth record remembers
//! the origins (a fingerprint of client address + user agent) it logged in
//! from, at most [`MAX_ORIGINS`], and a login from an origin it does not
//! know mails the owner, unless it is the record's first login (nothing
//! known yet). A new password forgets the origins, as PocketBase deletes a
//! record's `_authOrigins` when its password changes.
//!
//! PocketBase keeps origins in the `_authOrigins` system collection, which
//! clients may list and delete; the JS SDK has no call of its own for it,
//! so Basalt keeps them like OTPs, in `meta` (`authorigins/<collection
//! id>/<record id>`), out of every client's reach.
//!
//! A login never waits for any of this: [`after_login`] hands the work to
//! a background task (at most [`MAX_IN_FLIGHT`] at once; past that, a login
//! is not tracked rather than queued), and nothing it does can fail the
//! login.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::login::LoginContext;
use super::{background, options, record_id, send};
use crate::error::ApiError;
use crate::mail::throttle::MailKind;
use crate::schema::mail_templates::{auth_alert, TemplateKind};
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::WriteOp;

/// Origins remembered per record (PocketBase keeps 5).
pub const MAX_ORIGINS: usize = 5;
/// Origin checks running at once; more logins than that at the same moment
/// go untracked (a flood of logins must not become a flood of tasks).
const MAX_IN_FLIGHT: usize = 64;
/// User-agent bytes that count (PocketBase cuts it at 200 characters).
const MAX_USER_AGENT: usize = 200;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// The `meta` key of a record's origins.
fn key(collection_id: &str, record_id: &str) -> String {
    crate::store::meta::auth_origins(collection_id, record_id)
}

/// What is stored per record.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Origins {
    /// A digest of the password hash the origins were recorded under.
    password: String,
    /// Origin fingerprints, oldest first.
    fingerprints: Vec<String>,
}

fn hex_digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn user_agent(ctx_ua: Option<&str>) -> &str {
    let ua = ctx_ua.unwrap_or_default();
    let mut end = ua.len().min(MAX_USER_AGENT);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    &ua[..end]
}

/// `{ALERT_INFO}`: when, from which address, with which user agent.
pub(super) fn alert_info(ip: &str, user_agent: &str) -> String {
    format!("{} - {ip} {user_agent}", crate::clock::now_string())
}

/// Decrements [`IN_FLIGHT`] when a tracking task ends, however it ends.
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs after a login succeeded (never delays or fails it): remembers the
/// client's origin and, if it is new to a record that has logged in
/// before, mails the alert, when the collection has `authAlert.enabled`.
pub(super) fn after_login(state: &AppState, collection: &Arc<CompiledCollection>, record: &Value, ctx: &LoginContext) {
    if !auth_alert(&options(collection)).enabled {
        return;
    }
    if IN_FLIGHT.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!("login origin not checked: too many checks running");
        return;
    }
    let slot = Slot;
    let (state, collection, record) = (state.clone(), collection.clone(), record.clone());
    let ip = ctx.ip.map(|ip| ip.to_string()).unwrap_or_default();
    let ua = user_agent(ctx.user_agent.as_deref()).to_owned();
    background("auth-alert", async move {
        let _slot = slot;
        track(&state, &collection, &record, &ip, &ua).await
    });
}

/// Records the origin `(ip, ua)` for `record`; mails the alert when it is
/// new and the record knew others.
async fn track(
    state: &AppState,
    collection: &CompiledCollection,
    record: &Value,
    ip: &str,
    ua: &str,
) -> Result<(), ApiError> {
    let id = record_id(record);
    let key = key(&collection.def.id, &id);
    // One check at a time per record: two new origins at once both count.
    let _turn = state.record_lock("authorigins", &id).lock().await;
    let password = record.get("password").and_then(Value::as_str).unwrap_or_default();
    let password = hex_digest(&[password.as_bytes()]);
    let mut origins: Origins = match state.store.meta_get(&key)? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        None => Origins::default(),
    };
    if origins.password != password {
        origins = Origins {
            password,
            fingerprints: Vec::new(),
        };
    }
    let fingerprint = hex_digest(&[ip.as_bytes(), ua.as_bytes()]);
    if origins.fingerprints.contains(&fingerprint) {
        return Ok(());
    }
    let first_login = origins.fingerprints.is_empty();
    origins.fingerprints.push(fingerprint);
    let excess = origins.fingerprints.len().saturating_sub(MAX_ORIGINS);
    origins.fingerprints.drain(..excess);
    let value = serde_json::to_vec(&origins).map_err(|e| ApiError::internal(e.to_string()))?;
    state
        .store
        .write(vec![WriteOp::PutMeta {
            key,
            value: Some(value),
        }])
        .await?;
    let to = record.get("email").and_then(Value::as_str).unwrap_or_default();
    if first_login || to.is_empty() || !state.mailer.admit(MailKind::AuthAlert, to) {
        return Ok(());
    }
    let info = alert_info(ip, ua);
    let mail = super::mails::compose(
        state,
        collection,
        record,
        TemplateKind::AuthAlert,
        to,
        &[("{ALERT_INFO}", &info)],
    );
    send(state, mail).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_user_agent_is_cut_on_a_char_boundary() {
        let long = "é".repeat(150);
        let cut = user_agent(Some(&long));
        assert!(cut.len() <= MAX_USER_AGENT && cut.len() >= MAX_USER_AGENT - 1);
        assert_eq!(user_agent(None), "");
        assert_ne!(hex_digest(&[b"ab", b"c"]), hex_digest(&[b"a", b"bc"]));
    }
}
