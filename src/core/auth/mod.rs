//! Auth flows: password and OTP login, token refresh, impersonation,
//! verification, password reset, email change, and resolving a request's
//! token into a [`Caller`].
//!
//! Request endpoints (`request-*`) answer the same way, at once, whether or
//! not the address belongs to an account: the lookup and the mail happen in
//! a background task, so neither the answer nor its timing tells an
//! attacker which addresses are registered.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{Caller, RequestInfo};
pub use crate::auth::TokenKind;
use crate::auth::{Claims, Tokens};
use crate::clock::now_millis;
use crate::error::ApiError;
use crate::ratelimit::LoginAttempt;
use crate::schema::collection::AuthOptions;
use crate::schema::record::{export, is_valid_email};
use crate::schema::{CollectionType, CompiledCollection};
use crate::state::AppState;

mod alerts;
mod external_auths;
mod login;
mod mail_flows;
pub mod mails;
mod methods;
mod mfa;
mod oauth2;
mod oauth2_http;
mod otp;
mod password_login;

pub use external_auths::{
    ensure_collection as ensure_external_auths, linked as linked_providers, unlink as unlink_provider, unlink_deleted,
    verified_upgrade, EXTERNAL_AUTHS,
};
pub use login::{LoginContext, Method};
pub use mail_flows::{
    confirm_email_change, confirm_password_reset, confirm_verification, mailed_token, request_email_change,
    request_password_reset, request_verification, MailedToken,
};
pub use methods::methods;
pub use mfa::SESSION_INVALID as MFA_SESSION_INVALID;
pub use oauth2::with_oauth2;
pub use otp::{issue_otp, otp_enabled, request_otp, with_otp, IssuedOtp};
pub use password_login::{check_old_password, with_password};

/// Resolves an `Authorization` header value (`TOKEN` or `Bearer TOKEN`).
/// Any problem with the token makes the caller a guest, as in PocketBase;
/// routes that need auth then answer 401.
pub fn resolve(state: &AppState, header: Option<&str>) -> Caller {
    resolve_until(state, header).0
}

/// [`resolve`], with the token's expiry (its `exp`, seconds since the
/// epoch) for an authenticated caller: realtime connections outlive their
/// token and turn into guests when it expires.
pub fn resolve_until(state: &AppState, header: Option<&str>) -> (Caller, Option<i64>) {
    let Some(raw) = header else {
        return (Caller::Guest, None);
    };
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .unwrap_or(raw)
        .trim();
    match verify_token(state, token, TokenKind::Auth) {
        Some((collection, record, claims)) => {
            let caller = Caller::Auth {
                collection,
                record,
                refreshable: claims.refreshable,
            };
            (caller, Some(claims.exp))
        }
        None => (Caller::Guest, None),
    }
}

/// The caller a *file* token (`?token=` from `POST /api/files/token`)
/// stands for; anything else, an auth token included, is a guest.
pub fn resolve_file_token(state: &AppState, token: &str) -> Caller {
    match verify_token(state, token.trim(), TokenKind::File) {
        Some((collection, record, _)) => Caller::Auth {
            collection,
            record,
            refreshable: false,
        },
        None => Caller::Guest,
    }
}

/// Checks a token of `kind`: its collection and record exist, its signature
/// matches the record's current `tokenKey`, it has not expired.
fn verify_token(state: &AppState, token: &str, kind: TokenKind) -> Option<(Arc<CompiledCollection>, Value, Claims)> {
    if token.is_empty() {
        return None;
    }
    let claims = Tokens::peek(token).ok()?;
    if claims.kind != kind {
        return None;
    }
    let collection = state.registry.get(&claims.collection_id)?;
    if collection.def.kind != CollectionType::Auth || collection.def.id != claims.collection_id {
        return None;
    }
    let stored = state.store.get(&collection.def.id, &claims.id).ok()??;
    let key = stored.data.get("tokenKey").and_then(Value::as_str).unwrap_or_default();
    let claims = state.tokens.verify(token, key, now_millis() / 1000).ok()?;
    Some((collection, stored.data, claims))
}

fn options(collection: &CompiledCollection) -> AuthOptions {
    collection.def.auth_options.clone().unwrap_or_default()
}

fn record_id(record: &Value) -> String {
    record.get("id").and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// Issues a token of `kind` for `record`, valid `duration` seconds.
fn issue(
    state: &AppState,
    collection: &CompiledCollection,
    record: &Value,
    kind: TokenKind,
    duration: u64,
    extra: (Option<String>, Option<String>),
    refreshable: bool,
) -> String {
    let claims = Claims {
        id: record_id(record),
        kind,
        collection_id: collection.def.id.clone(),
        refreshable,
        exp: now_millis() / 1000 + duration.min(i64::MAX as u64 / 2) as i64,
        email: extra.0,
        new_email: extra.1,
    };
    state.tokens.issue(
        &claims,
        record.get("tokenKey").and_then(Value::as_str).unwrap_or_default(),
    )
}

/// Issues an auth token for `record` of `collection`.
pub fn issue_token(state: &AppState, collection: &CompiledCollection, record: &Value, refreshable: bool) -> String {
    let d = options(collection).auth_token_duration;
    issue(state, collection, record, TokenKind::Auth, d, (None, None), refreshable)
}

fn auth_response(collection: &Arc<CompiledCollection>, record: Value, token: String) -> Value {
    let caller = Caller::Auth {
        collection: collection.clone(),
        record: record.clone(),
        refreshable: true,
    };
    json!({"token": token, "record": export(collection, &record, &caller.viewer())})
}

fn require_auth_collection(collection: &CompiledCollection) -> Result<(), ApiError> {
    if collection.def.kind != CollectionType::Auth {
        return Err(ApiError::bad_request(format!(
            "Collection '{}' is not an auth collection.",
            collection.def.name
        )));
    }
    Ok(())
}

/// Finds an auth record by email (case-insensitive).
fn find_by_email(state: &AppState, collection: &CompiledCollection, email: &str) -> Result<Option<Value>, ApiError> {
    find_by_field(state, collection, "email", email)
}

/// Finds an auth record by an identity field: `email`, or any field with a
/// single-field unique index.
fn find_by_field(
    state: &AppState,
    collection: &CompiledCollection,
    field: &str,
    value: &str,
) -> Result<Option<Value>, ApiError> {
    let index = collection
        .spec
        .indexes
        .iter()
        .find(|i| i.unique && i.fields.len() == 1 && i.fields[0].path.len() == 1 && i.fields[0].path[0] == field);
    let Some(index) = index else { return Ok(None) };
    let v = Value::String(value.to_owned());
    match state.store.unique_lookup(&collection.def.id, index, &[&v])? {
        Some(id) => Ok(state.store.get(&collection.def.id, &id)?.map(|r| r.data)),
        None => Ok(None),
    }
}

/// Takes a slot for a check of `account`'s secret from `ip` in the
/// per-account login limit (`crate::ratelimit`: failures count per account
/// and client address, so nobody can lock the owner out from elsewhere).
/// 429 when this address has used up its tries on this account.
fn login_attempt(
    state: &AppState,
    collection: &CompiledCollection,
    account: &str,
    ip: Option<IpAddr>,
) -> Result<LoginAttempt, ApiError> {
    let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let (name, id) = (&collection.def.name, &collection.def.id);
    state
        .rate_limiter
        .check_login(&state.settings.get(), name, id, account, ip)
        .map_err(crate::ratelimit::too_many)
}

/// `auth-refresh`: a valid, refreshable token of this collection → a new one.
pub fn refresh(state: &AppState, collection: &Arc<CompiledCollection>, caller: &Caller) -> Result<Value, ApiError> {
    require_auth_collection(collection)?;
    match caller {
        Caller::Auth {
            collection: c,
            record,
            refreshable,
        } if c.def.id == collection.def.id => {
            if !refreshable {
                return Err(ApiError::forbidden("This token cannot be refreshed."));
            }
            let token = issue_token(state, collection, record, true);
            Ok(auth_response(collection, record.clone(), token))
        }
        Caller::Auth { .. } => Err(ApiError::forbidden("The token belongs to another collection.")),
        Caller::Guest => Err(ApiError::unauthorized(
            "The request requires a valid record authorization token.",
        )),
    }
}

/// `POST /api/files/token` (any authenticated record) → `{token}`: a
/// short-lived file token (type `file`, the collection's
/// `fileTokenDuration`, 180 s by default as PocketBase), signed like auth
/// tokens with the record's `tokenKey`, for URLs that cannot carry a
/// header (`?token=` on backup downloads). It is no auth token: the
/// `Authorization` header refuses it, and URLs refuse auth tokens.
pub fn file_token(state: &AppState, caller: &Caller) -> Result<Value, ApiError> {
    let Caller::Auth { collection, record, .. } = caller else {
        return Err(ApiError::unauthorized(
            "The request requires valid record authorization token.",
        ));
    };
    let d = options(collection).file_token_duration;
    let token = issue(state, collection, record, TokenKind::File, d, (None, None), false);
    Ok(json!({"token": token}))
}

/// `impersonate/{id}` (superusers): a non-refreshable auth token for any
/// record, valid `duration` seconds (default: the collection's auth duration).
pub fn impersonate(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    id: &str,
    duration: Option<u64>,
) -> Result<Value, ApiError> {
    require_auth_collection(collection)?;
    let rec = state
        .store
        .get(&collection.def.id, id)?
        .ok_or_else(ApiError::missing)?
        .data;
    let d = duration
        .filter(|d| *d > 0)
        .unwrap_or(options(collection).auth_token_duration);
    let token = issue(state, collection, &rec, TokenKind::Auth, d, (None, None), false);
    Ok(auth_response(collection, rec, token))
}

fn required_string<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    match body.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(ApiError::field(key, "validation_required", "Missing required value."))
        }
        Some(_) => Err(ApiError::field(key, "validation_invalid_type", "Must be a string.")),
    }
}

fn required_email<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    let email = required_string(body, key)?;
    if !is_valid_email(email) {
        return Err(ApiError::field(
            key,
            "validation_invalid_email",
            "Must be a valid email address.",
        ));
    }
    Ok(email)
}

/// Runs `work` in the background; errors are logged, never shown.
fn background<F>(what: &'static str, work: F)
where
    F: std::future::Future<Output = Result<(), ApiError>> + 'static,
{
    actix_web::rt::spawn(async move {
        if let Err(e) = work.await {
            tracing::warn!(flow = what, error = %e.message, "background auth flow failed");
        }
    });
}

async fn send(state: &AppState, mail: crate::mail::Mail) -> Result<(), ApiError> {
    state
        .mailer
        .send(mail)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Whether any superuser exists (the dashboard offers its setup link, the
/// CLI prints it, until one does).
pub fn has_superuser(state: &AppState) -> bool {
    state
        .registry
        .get(crate::core::SUPERUSERS)
        .map(|c| state.store.count(&c.def.id) > 0)
        .unwrap_or(false)
}
