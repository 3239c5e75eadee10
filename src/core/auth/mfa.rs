//! Multi-factor logins, as PocketBase 0.40 (`mfa: {enabled, duration,
//! rule}`): when MFA applies to a record, its first successful factor does
//! not log it in but answers 401 with an `mfaId`; a second factor of a
//! *different* method that sends that `mfaId` back finishes the login.
//!
//! A pending MFA is a `meta` entry under `mfa/<collection>/<record>/<id>`,
//! never a record a client could list. Keying it by the record means a
//! second factor looks only among its own record's entries, so another
//! account's factor can never finish someone's login, whatever `mfaId` it
//! sends. An entry works once (taken under a per-id lock, so of two
//! concurrent second factors exactly one wins), dies with `duration`, and
//! dies when the record's `tokenKey` changes (a password change rotates it,
//! as PocketBase drops MFAs when the password changes). Entries cannot pile
//! up: each record keeps at most [`MAX_PENDING`], every new one first
//! removes its record's expired ones, and at most once every
//! [`SWEEP_EVERY_MS`] a new one sweeps every expired entry.
//!
//! Token refresh and impersonation do not ask for a second factor, as in
//! PocketBase: neither is a login (a refresh needs a token that a full login
//! issued; impersonation needs a superuser).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::login::{LoginContext, Method};
use super::{options, record_id, Caller, RequestInfo};
use crate::clock::now_millis;
use crate::error::ApiError;
use crate::schema::mfa::MAX_DURATION;
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::{meta, WriteOp};

/// Pending MFAs one record keeps; a new one past this drops the oldest.
/// A pending MFA needs a correct first factor, so only who already holds
/// one factor of the account can make them; the cap bounds what that costs.
pub const MAX_PENDING: usize = 5;

/// Least time between two sweeps of every pending MFA.
pub const SWEEP_EVERY_MS: i64 = 3_600_000;

/// When the next full sweep may run (Unix ms; per process).
static NEXT_SWEEP: AtomicI64 = AtomicI64::new(0);

/// Stripes of the locks that let one second factor at a time spend an
/// `mfaId`. Kept apart from `AppState::record_locks` on purpose:
/// `auth-with-otp` holds one of those (its OTP's) while the login
/// completes, and a tokio mutex is not re-entrant, so taking a stripe of
/// the same array here could make a login wait on itself (or two logins
/// on each other). Nothing is locked while one of these is held.
const LOCK_STRIPES: usize = 256;
static LOCKS: LazyLock<Vec<tokio::sync::Mutex<()>>> =
    LazyLock::new(|| (0..LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect());

fn lock_for(id: &str) -> &'static tokio::sync::Mutex<()> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    &LOCKS[(h.finish() as usize) % LOCK_STRIPES]
}

/// A pending MFA: what its first factor was, when, and a digest of the
/// record's `tokenKey` then.
#[derive(serde::Serialize, serde::Deserialize)]
struct Pending {
    method: String,
    /// Unix ms.
    created: i64,
    /// SHA-256 (hex) of the record's `tokenKey` at the first factor.
    key: String,
}

/// PocketBase's message for an `mfaId` that names no pending login of
/// this record (unknown, spent, expired, another account's).
pub const SESSION_INVALID: &str = "Invalid or expired MFA session.";

fn invalid_or_expired() -> ApiError {
    ApiError::bad_request(SESSION_INVALID)
}

fn key_digest(record: &Value) -> String {
    let key = record.get("tokenKey").and_then(Value::as_str).unwrap_or_default();
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a pending MFA made at `created` has expired at `now` (both Unix
/// ms) for a collection whose duration is `duration` seconds: as
/// PocketBase, the *current* duration counts, and the very last millisecond
/// still works.
fn expired(created: i64, now: i64, duration: u64) -> bool {
    now.saturating_sub(created) > (duration.min(MAX_DURATION) as i64) * 1000
}

/// An `mfaId` as Basalt issues them (15 of `a-z0-9`); anything else cannot
/// name an entry and is refused before any lookup.
fn well_formed(id: &str) -> bool {
    id.len() == 15 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Decides whether the login of `record` by `method` may finish now: yes
/// when MFA is off or its rule exempts the record, or when `ctx` carries
/// the `mfaId` of a pending first factor of this record by another method
/// (which is spent); otherwise the login becomes a pending MFA and the
/// answer is the 401 carrying its `mfaId`.
pub(super) async fn check(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    record: &Value,
    method: Method,
    ctx: &LoginContext,
) -> Result<(), ApiError> {
    let opts = options(collection).mfa;
    if !opts.enabled || !applies(state, collection, record, method, &opts.rule) {
        return Ok(());
    }
    match ctx.mfa_id.as_deref() {
        None => {
            let id = start(state, collection, record, method, opts.duration).await?;
            Err(ApiError::mfa_required(&id))
        }
        Some(id) => finish(state, collection, record, method, id, opts.duration).await,
    }
}

/// Whether the MFA rule asks `record` for a second factor: an empty rule
/// asks everyone. The rule sees the record as `@request.auth` and the
/// method as `@request.context`, as the authRule does. A rule that does not
/// parse (saves refuse those) asks too: the safer mistake, as PocketBase.
fn applies(state: &AppState, collection: &Arc<CompiledCollection>, record: &Value, method: Method, rule: &str) -> bool {
    if rule.trim().is_empty() {
        return true;
    }
    let Ok(filter) = crate::query::parse_filter(rule) else {
        return true;
    };
    let req = RequestInfo::internal(
        Caller::Auth {
            collection: collection.clone(),
            record: record.clone(),
            refreshable: true,
        },
        "POST",
        method.as_str(),
    );
    crate::rules::holds(
        crate::core::rule_data(state, &req.budget),
        collection,
        &filter,
        record,
        &req.to_json(&Value::Null),
    )
}

/// Records a first factor of `record` by `method`; returns its `mfaId`.
/// Expired entries of the record (and, now and then, of everyone) go in the
/// same write, and the oldest live ones past [`MAX_PENDING`].
async fn start(
    state: &AppState,
    collection: &CompiledCollection,
    record: &Value,
    method: Method,
    duration: u64,
) -> Result<String, ApiError> {
    let now = now_millis();
    let (cid, rid) = (collection.def.id.as_str(), record_id(record));
    let id = crate::ids::record_id();
    let pending = Pending {
        method: method.as_str().to_owned(),
        created: now,
        key: key_digest(record),
    };
    let mut ops = vec![WriteOp::PutMeta {
        key: meta::mfa(cid, &rid, &id),
        value: Some(serde_json::to_vec(&pending).expect("serialize mfa")),
    }];
    let mut live: Vec<(i64, String)> = Vec::new();
    for key in state.store.meta_keys(&meta::mfa_prefix(cid, &rid))? {
        match read(state, &key)? {
            Some(p) if !expired(p.created, now, duration) => live.push((p.created, key)),
            _ => ops.push(WriteOp::PutMeta { key, value: None }),
        }
    }
    live.sort();
    let excess = (live.len() + 1).saturating_sub(MAX_PENDING);
    for (_, key) in live.into_iter().take(excess) {
        ops.push(WriteOp::PutMeta { key, value: None });
    }
    if sweep_due(&NEXT_SWEEP, now) {
        ops.extend(sweep(state, now)?);
    }
    state.store.write(ops).await?;
    Ok(id)
}

/// Checks and spends the pending MFA `id` for a second factor of `record`
/// by `method`. The same method as the first factor is refused and the
/// entry kept (the client may still send the other factor).
async fn finish(
    state: &AppState,
    collection: &CompiledCollection,
    record: &Value,
    method: Method,
    id: &str,
    duration: u64,
) -> Result<(), ApiError> {
    if !well_formed(id) {
        return Err(invalid_or_expired());
    }
    let key = meta::mfa(&collection.def.id, &record_id(record), id);
    // One second factor at a time per entry: of two concurrent ones, the
    // second finds the entry gone.
    let _turn = lock_for(id).lock().await;
    let Some(pending) = read(state, &key)? else {
        return Err(invalid_or_expired());
    };
    if expired(pending.created, now_millis(), duration) || pending.key != key_digest(record) {
        state.store.write(vec![WriteOp::PutMeta { key, value: None }]).await?;
        return Err(invalid_or_expired());
    }
    if pending.method == method.as_str() {
        return Err(ApiError::bad_request("A different authentication method is required."));
    }
    state.store.write(vec![WriteOp::PutMeta { key, value: None }]).await?;
    Ok(())
}

/// The entry under `key`; one that does not parse reads as absent (and is
/// then removed like an expired one).
fn read(state: &AppState, key: &str) -> Result<Option<Pending>, ApiError> {
    Ok(state
        .store
        .meta_get(key)?
        .and_then(|raw| serde_json::from_slice(&raw).ok()))
}

/// Whether the full sweep `next` times is due at `now`; claims it if so.
fn sweep_due(next_sweep: &AtomicI64, now: i64) -> bool {
    let next = next_sweep.load(Ordering::Relaxed);
    now >= next
        && next_sweep
            .compare_exchange(next, now + SWEEP_EVERY_MS, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Removals for every pending MFA that can no longer finish: expired for
/// its collection's current duration, or of a collection that is gone or
/// has MFA off.
fn sweep(state: &AppState, now: i64) -> Result<Vec<WriteOp>, ApiError> {
    let mut ops = Vec::new();
    for key in state.store.meta_keys(meta::MFA_PREFIX)? {
        let collection_id = key[meta::MFA_PREFIX.len()..].split('/').next().unwrap_or_default();
        let mfa = state
            .registry
            .get(collection_id)
            .filter(|c| c.def.id == collection_id)
            .map(|c| options(&c).mfa);
        let alive = match (mfa, read(state, &key)?) {
            (Some(m), Some(p)) => m.enabled && !expired(p.created, now, m.duration),
            _ => false,
        };
        if !alive {
            ops.push(WriteOp::PutMeta { key, value: None });
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_counts_the_current_duration_inclusively() {
        assert!(!expired(1_000, 1_000 + 10_000, 10));
        assert!(expired(1_000, 1_000 + 10_001, 10));
        assert!(!expired(1_000, 500, 10), "a clock stepping back does not expire");
        assert!(
            expired(0, (MAX_DURATION as i64 + 1) * 1000, u64::MAX),
            "capped at a day"
        );
    }

    #[test]
    fn only_issued_ids_are_looked_up() {
        assert!(well_formed(&crate::ids::record_id()));
        for bad in [
            "",
            "abc",
            "ABCDEFGHIJKLMNO",
            "abcdefghijklmn/",
            "../../secretxx",
            "abcdefghijklmnop",
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn the_sweep_runs_once_per_period() {
        let next = AtomicI64::new(0);
        let t = 1_000_000;
        assert!(sweep_due(&next, t));
        assert!(!sweep_due(&next, t + 1));
        assert!(!sweep_due(&next, t + SWEEP_EVERY_MS - 1));
        assert!(sweep_due(&next, t + SWEEP_EVERY_MS));
    }
}
