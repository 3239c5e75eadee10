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

use hmac::Mac;
use rand::Rng;
use serde_json::{json, Map, Value};

use super::{Caller, RequestInfo};
pub use crate::auth::TokenKind;
use crate::auth::{password, Claims, Tokens};
use crate::clock::now_millis;
use crate::error::ApiError;
use crate::mail::templates;
use crate::mail::throttle::MailKind;
use crate::ratelimit::LoginAttempt;
use crate::schema::collection::AuthOptions;
use crate::schema::record::{export, is_valid_email};
use crate::schema::{CollectionType, CompiledCollection};
use crate::state::AppState;
use crate::store::{meta, Expect, WriteOp};

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

/// `auth-with-password`: `{identity, password, identityField?}` → `{token, record}`,
/// for a client at `ip`.
///
/// A failed login costs one argon2 verification whether or not the identity
/// exists (a dummy hash stands in), so timing does not reveal accounts.
pub async fn with_password(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    identity: &str,
    password_plain: &str,
    identity_field: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<Value, ApiError> {
    require_auth_collection(collection)?;
    let opts = options(collection);
    let fields: Vec<&str> = match identity_field {
        Some(f) if opts.identity_fields.iter().any(|x| x == f) => vec![f],
        Some(f) => {
            return Err(ApiError::field(
                "identityField",
                "validation_invalid_value",
                &format!("'{f}' is not an identity field."),
            ))
        }
        None => opts.identity_fields.iter().map(String::as_str).collect(),
    };
    let mut found = None;
    for f in fields {
        if let Some(rec) = find_by_field(state, collection, f, identity)? {
            found = Some(rec);
            break;
        }
    }
    // One window per account whatever identity spelled it (record ids never
    // start with `?`, so an unknown identity cannot share an account's).
    let account = match &found {
        Some(rec) => record_id(rec),
        None => format!("?{}", identity.to_lowercase()),
    };
    let attempt = login_attempt(state, collection, &account, ip)?;
    let hash = found
        .as_ref()
        .and_then(|r| r.get("password").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| password::dummy_hash().to_owned());
    let pw = password_plain.to_owned();
    let ok = password::verify_async(pw, hash).await;
    match found {
        Some(rec) if ok && auth_rule_allows(state, collection, &rec, "password") => {
            attempt.succeeded();
            let token = issue_token(state, collection, &rec, true);
            Ok(auth_response(collection, rec, token))
        }
        _ => Err(ApiError::bad_request("Failed to authenticate.")),
    }
}

/// Checks the `oldPassword` a non-superuser sends to change the password of
/// `record` (an auth record of `collection`), from `ip`: a wrong one is a
/// failed login for that account and address (same limiter as logins, so
/// it is no unlimited oracle), 429 once those tries are used up.
pub async fn check_old_password(
    state: &AppState,
    collection: &CompiledCollection,
    record: &Value,
    old: &str,
    ip: Option<IpAddr>,
) -> Result<(), ApiError> {
    let attempt = login_attempt(state, collection, &record_id(record), ip)?;
    let hash = record
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if password::verify_async(old.to_owned(), hash).await {
        attempt.succeeded();
        Ok(())
    } else {
        Err(ApiError::field(
            "oldPassword",
            "validation_invalid_old_password",
            "Missing or invalid old password.",
        ))
    }
}

/// The authRule (checked against the authenticating record, with that
/// record as `@request.auth`): `null` disables logins for the collection.
fn auth_rule_allows(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    record: &Value,
    context: &'static str,
) -> bool {
    match &collection.rules.auth {
        None => false,
        Some(rule) if rule.is_empty() => true,
        Some(rule) => {
            let req = RequestInfo::internal(
                Caller::Auth {
                    collection: collection.clone(),
                    record: record.clone(),
                    refreshable: true,
                },
                "POST",
                context,
            );
            crate::rules::holds(
                crate::core::rule_data(state, &req.budget),
                collection,
                rule,
                record,
                &req.to_json(&Value::Null),
            )
        }
    }
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

/// `auth-methods`, in PocketBase's shape (OAuth2 and MFA are not offered).
pub fn methods(collection: &CompiledCollection) -> Result<Value, ApiError> {
    require_auth_collection(collection)?;
    let opts = options(collection);
    Ok(json!({
        "password": {"enabled": true, "identityFields": opts.identity_fields},
        "oauth2": {"enabled": false, "providers": []},
        "mfa": {"enabled": false, "duration": 0},
        "otp": {"enabled": opts.otp.enabled, "duration": opts.otp.duration},
        "authProviders": [],
        "usernamePassword": opts.identity_fields.iter().any(|f| f != "email"),
        "emailPassword": opts.identity_fields.iter().any(|f| f == "email"),
    }))
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

/// One of the mail-a-token flows (verification, password reset).
struct MailFlow {
    name: &'static str,
    kind: TokenKind,
    duration: fn(&AuthOptions) -> u64,
    template: fn(&crate::settings::MetaSettings, &str, &str) -> crate::mail::Mail,
    /// Accounts that get no mail (already verified, for verification).
    skip: fn(&Value) -> bool,
    /// Its per-recipient throttle.
    mail: MailKind,
}

const VERIFICATION: MailFlow = MailFlow {
    name: "request-verification",
    kind: TokenKind::Verification,
    duration: |o| o.verification_token_duration,
    template: templates::verification,
    skip: |rec| rec.get("verified").and_then(Value::as_bool) == Some(true),
    mail: MailKind::Verification,
};

const PASSWORD_RESET: MailFlow = MailFlow {
    name: "request-password-reset",
    kind: TokenKind::PasswordReset,
    duration: |o| o.password_reset_token_duration,
    template: templates::password_reset,
    skip: |_| false,
    mail: MailKind::PasswordReset,
};

/// Answers at once; in the background, finds the account, issues the flow's
/// token for its address and mails it, unless that address got the
/// throttle's share of these mails lately (`Mailer::admit`; the answer is
/// the same either way).
fn mail_token(
    flow: MailFlow,
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    body: &Map<String, Value>,
) -> Result<(), ApiError> {
    require_auth_collection(collection)?;
    let email = required_email(body, "email")?.to_owned();
    let (state, collection) = (state.clone(), collection.clone());
    background(flow.name, async move {
        let Some(rec) = find_by_email(&state, &collection, &email)? else {
            return Ok(());
        };
        if (flow.skip)(&rec) {
            return Ok(());
        }
        let to = rec.get("email").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !state.mailer.admit(flow.mail, &to) {
            return Ok(());
        }
        let d = (flow.duration)(&options(&collection));
        let token = issue(&state, &collection, &rec, flow.kind, d, (Some(to.clone()), None), false);
        send(&state, (flow.template)(&state.settings.get().meta, &to, &token)).await
    });
    Ok(())
}

/// `request-verification {email}` → 204; mails a verification link to an
/// unverified account.
pub fn request_verification(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    body: &Map<String, Value>,
) -> Result<(), ApiError> {
    mail_token(VERIFICATION, state, collection, body)
}

/// Applies `change` to the stored record of a verified token (with the
/// usual revision check), through the normal write path.
async fn rewrite<F>(state: &AppState, collection: &CompiledCollection, id: &str, change: F) -> Result<(), ApiError>
where
    F: Fn(&mut Map<String, Value>),
{
    let plan = async || {
        let stored = state.store.get(&collection.def.id, id)?.ok_or_else(ApiError::missing)?;
        let mut data = stored.data.as_object().cloned().unwrap_or_default();
        change(&mut data);
        data.insert("updated".into(), Value::String(crate::clock::now_string()));
        let op = WriteOp::PutRecord {
            collection_id: collection.def.id.clone(),
            id: id.to_owned(),
            data: Value::Object(data),
            expect: Expect::Rev(stored.rev),
        };
        Ok((vec![op], ()))
    };
    super::replan::write(state, super::replan::Replan::OnConflict, plan).await?;
    Ok(())
}

fn invalid_token(field: &str) -> ApiError {
    ApiError::field(field, "validation_invalid_token", "Invalid or expired token.")
}

/// A mailed token (verification, password reset, email change) that still
/// works, and what it is for.
pub struct MailedToken {
    pub collection: Arc<CompiledCollection>,
    /// The stored record it was issued for.
    pub record: Value,
    pub claims: Claims,
}

/// Checks a mailed token of `kind` without using it: its record exists, it
/// is signed with the record's current `tokenKey` (a password reset or an
/// email change rotates it, which spends the token), it has not expired,
/// and it was issued for the record's current address (an email-change
/// token also names the new one). The confirm endpoints use it, and so do
/// the mail-link pages, whose GET must change nothing.
pub fn mailed_token(state: &AppState, token: &str, kind: TokenKind) -> Result<MailedToken, ApiError> {
    let (collection, record, claims) = verify_token(state, token, kind).ok_or_else(|| invalid_token("token"))?;
    let same_address = record.get("email").and_then(Value::as_str) == claims.email.as_deref();
    if !same_address || (kind == TokenKind::EmailChange && claims.new_email.is_none()) {
        return Err(invalid_token("token"));
    }
    Ok(MailedToken {
        collection,
        record,
        claims,
    })
}

/// [`mailed_token`], for `collection` only (the confirm endpoints name it).
fn mailed_token_of(
    state: &AppState,
    collection: &CompiledCollection,
    token: &str,
    kind: TokenKind,
) -> Result<MailedToken, ApiError> {
    let t = mailed_token(state, token, kind)?;
    if t.collection.def.id != collection.def.id {
        return Err(invalid_token("token"));
    }
    Ok(t)
}

/// `confirm-verification {token}` → 204.
pub async fn confirm_verification(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    body: &Map<String, Value>,
) -> Result<(), ApiError> {
    require_auth_collection(collection)?;
    let token = required_string(body, "token")?;
    let MailedToken { claims, .. } = mailed_token_of(state, collection, token, TokenKind::Verification)?;
    rewrite(state, collection, &claims.id, |d| {
        d.insert("verified".into(), Value::Bool(true));
    })
    .await
}

/// `request-password-reset {email}` → 204.
pub fn request_password_reset(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    body: &Map<String, Value>,
) -> Result<(), ApiError> {
    mail_token(PASSWORD_RESET, state, collection, body)
}

fn check_new_password(body: &Map<String, Value>) -> Result<String, ApiError> {
    let pw = required_string(body, "password")?;
    let n = pw.chars().count();
    if !(crate::schema::record::PASSWORD_MIN..=crate::schema::record::PASSWORD_MAX).contains(&n) {
        return Err(ApiError::field(
            "password",
            "validation_length_out_of_range",
            "Must be 8 to 256 characters.",
        ));
    }
    if body.get("passwordConfirm").and_then(Value::as_str) != Some(pw) {
        return Err(ApiError::field(
            "passwordConfirm",
            "validation_values_mismatch",
            "Values don't match.",
        ));
    }
    Ok(pw.to_owned())
}

/// `confirm-password-reset {token, password, passwordConfirm}` → 204. The
/// new password rotates `tokenKey` (every older token, this one included,
/// stops working); the account counts as verified (the mail arrived).
pub async fn confirm_password_reset(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    body: &Map<String, Value>,
) -> Result<(), ApiError> {
    require_auth_collection(collection)?;
    let token = required_string(body, "token")?;
    let pw = check_new_password(body)?;
    let MailedToken { claims, .. } = mailed_token_of(state, collection, token, TokenKind::PasswordReset)?;
    let hash = password::hash_async(pw).await.map_err(ApiError::internal)?;
    let key = crate::ids::token_key();
    rewrite(state, collection, &claims.id, |d| {
        d.insert("password".into(), Value::String(hash.clone()));
        d.insert("tokenKey".into(), Value::String(key.clone()));
        d.insert("verified".into(), Value::Bool(true));
    })
    .await
}

/// `request-email-change {newEmail}` (authenticated) → 204; mails a
/// confirmation link to the new address, unless it got the throttle's
/// share of these mails lately (then 204 and no mail, as for a sent one).
pub async fn request_email_change(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    caller: &Caller,
    body: &Map<String, Value>,
) -> Result<(), ApiError> {
    require_auth_collection(collection)?;
    let Caller::Auth {
        collection: c, record, ..
    } = caller
    else {
        return Err(ApiError::unauthorized(
            "The request requires a valid record authorization token.",
        ));
    };
    if c.def.id != collection.def.id {
        return Err(ApiError::forbidden("The token belongs to another collection."));
    }
    let new_email = required_email(body, "newEmail")?.to_owned();
    if find_by_email(state, collection, &new_email)?.is_some() {
        return Err(ApiError::field(
            "newEmail",
            "validation_not_unique",
            "The email is invalid or already in use.",
        ));
    }
    if !state.mailer.admit(MailKind::EmailChange, &new_email) {
        return Ok(());
    }
    let old = record.get("email").and_then(Value::as_str).map(str::to_owned);
    let d = options(collection).email_change_token_duration;
    let token = issue(
        state,
        collection,
        record,
        TokenKind::EmailChange,
        d,
        (old, Some(new_email.clone())),
        false,
    );
    let (state, mail) = (
        state.clone(),
        templates::email_change(&state.settings.get().meta, &new_email, &token),
    );
    background("request-email-change", async move { send(&state, mail).await });
    Ok(())
}

/// `confirm-email-change {token, password}` from a client at `ip` → 204;
/// rotates `tokenKey`. A wrong password is a failed login of the account
/// from that address (the logins' limiter): the token survives a wrong
/// password, so without it whoever holds a token could guess unlimited.
pub async fn confirm_email_change(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    body: &Map<String, Value>,
    ip: Option<IpAddr>,
) -> Result<(), ApiError> {
    require_auth_collection(collection)?;
    let token = required_string(body, "token")?;
    let pw = required_string(body, "password")?.to_owned();
    let MailedToken {
        record: rec, claims, ..
    } = mailed_token_of(state, collection, token, TokenKind::EmailChange)?;
    let new_email = claims.new_email.clone().ok_or_else(|| invalid_token("token"))?;
    let hash = rec
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let attempt = login_attempt(state, collection, &record_id(&rec), ip)?;
    let ok = password::verify_async(pw, hash).await;
    if !ok {
        return Err(ApiError::field(
            "password",
            "validation_invalid_password",
            "Invalid password.",
        ));
    }
    attempt.succeeded();
    let key = crate::ids::token_key();
    rewrite(state, collection, &claims.id, |d| {
        d.insert("email".into(), Value::String(new_email.clone()));
        d.insert("verified".into(), Value::Bool(true));
        d.insert("tokenKey".into(), Value::String(key.clone()));
    })
    .await
    .map_err(|e| {
        if e.data.contains_key("email") {
            ApiError::field(
                "newEmail",
                "validation_not_unique",
                "The email is invalid or already in use.",
            )
        } else {
            e
        }
    })
}

/// A stored OTP: which record it logs into, a MAC of the code, expiry.
#[derive(serde::Serialize, serde::Deserialize)]
struct OtpEntry {
    collection_id: String,
    record_id: String,
    /// HMAC-SHA256 of the code under the server secret (never the code).
    mac: String,
    exp: i64,
    /// Wrong codes tried so far (the OTP dies at [`OTP_MAX_FAILURES`]).
    #[serde(default)]
    failures: u32,
}

/// Wrong codes one OTP takes: the fifth wrong one deletes it, so even the
/// right code then fails like a wrong one (a fresh OTP works as usual, so
/// this locks nobody out: only who holds an `otpId` can burn it).
const OTP_MAX_FAILURES: u32 = 5;

fn code_mac(state: &AppState, otp_id: &str, code: &str) -> String {
    let mut mac = state.tokens.hmac_for(otp_id);
    mac.update(code.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// `request-otp {email}` → `{otpId}`. An unknown address gets an `otpId`
/// too (that never works), so the answer does not reveal accounts; so does
/// an address that got the throttle's share of codes lately (no mail: the
/// code of an earlier mail still works with the `otpId` it came with).
pub async fn request_otp(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    require_auth_collection(collection)?;
    let opts = options(collection);
    if !opts.otp.enabled {
        return Err(ApiError::bad_request(
            "One-time passwords are not enabled for this collection.",
        ));
    }
    let email = required_email(body, "email")?.to_owned();
    let otp_id = crate::ids::record_id();
    let (state2, collection2, id2) = (state.clone(), collection.clone(), otp_id.clone());
    background("request-otp", async move {
        let Some(rec) = find_by_email(&state2, &collection2, &email)? else {
            return Ok(());
        };
        let to = rec.get("email").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !state2.mailer.admit(MailKind::Otp, &to) {
            return Ok(());
        }
        let len = opts.otp.length.clamp(4, 16);
        let code: String = {
            let mut rng = rand::thread_rng();
            (0..len).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect()
        };
        let entry = OtpEntry {
            collection_id: collection2.def.id.clone(),
            record_id: record_id(&rec),
            mac: code_mac(&state2, &id2, &code),
            exp: now_millis() / 1000 + opts.otp.duration as i64,
            failures: 0,
        };
        state2
            .store
            .write(vec![WriteOp::PutMeta {
                key: meta::otp(&id2),
                value: Some(serde_json::to_vec(&entry).expect("serialize otp")),
            }])
            .await?;
        send(&state2, templates::otp(&state2.settings.get().meta, &to, &code)).await
    });
    Ok(json!({"otpId": otp_id}))
}

/// `auth-with-otp {otpId, password}` from a client at `ip` → `{token,
/// record}`; a code works once, and an OTP dies after
/// [`OTP_MAX_FAILURES`] wrong codes. Wrong codes are also failed logins of
/// the account (the per-account and address limit of password logins).
pub async fn with_otp(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    body: &Map<String, Value>,
    ip: Option<IpAddr>,
) -> Result<Value, ApiError> {
    require_auth_collection(collection)?;
    let otp_id = required_string(body, "otpId")?;
    let code = required_string(body, "password")?;
    let fail = || ApiError::bad_request("Invalid or expired one-time password.");
    let key = meta::otp(otp_id);
    // One check at a time per OTP: concurrent guesses cannot share a count.
    let _turn = state.record_lock("otp", otp_id).lock().await;
    let mut entry: OtpEntry = match state.store.meta_get(&key)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| fail())?,
        None => return Err(fail()),
    };
    if entry.exp <= now_millis() / 1000 || entry.collection_id != collection.def.id {
        return Err(fail());
    }
    let attempt = login_attempt(state, collection, &entry.record_id, ip)?;
    let given = code_mac(state, otp_id, code);
    let same: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), entry.mac.as_bytes()).into();
    if !same {
        entry.failures += 1;
        let value = (entry.failures < OTP_MAX_FAILURES).then(|| serde_json::to_vec(&entry).expect("serialize otp"));
        state.store.write(vec![WriteOp::PutMeta { key, value }]).await?;
        return Err(fail());
    }
    attempt.succeeded();
    state.store.write(vec![WriteOp::PutMeta { key, value: None }]).await?;
    let rec = state
        .store
        .get(&collection.def.id, &entry.record_id)?
        .ok_or_else(fail)?
        .data;
    if !auth_rule_allows(state, collection, &rec, "otp") {
        return Err(ApiError::bad_request("Failed to authenticate."));
    }
    let token = issue_token(state, collection, &rec, true);
    Ok(auth_response(collection, rec, token))
}

/// Whether any superuser exists (the dashboard offers its setup link, the
/// CLI prints it, until one does).
pub fn has_superuser(state: &AppState) -> bool {
    state
        .registry
        .get(super::SUPERUSERS)
        .map(|c| state.store.count(&c.def.id) > 0)
        .unwrap_or(false)
}

/// A one-time password issued to an operator (the `superuser otp` command).
#[derive(Debug, Clone)]
pub struct IssuedOtp {
    /// The `otpId` for `auth-with-otp`.
    pub id: String,
    /// The code (the `password` of `auth-with-otp`).
    pub code: String,
    /// Seconds it stays valid.
    pub duration: u64,
}

/// Whether `collection` accepts one-time passwords.
pub fn otp_enabled(collection: &CompiledCollection) -> bool {
    options(collection).otp.enabled
}

/// Issues a one-time password for the record `record_id` of `collection`
/// and hands it to the caller instead of mailing it: the operator on the
/// server's machine asked for it. Stored like `request-otp`'s codes (only
/// a MAC of the code), so `auth-with-otp` checks it the same way.
pub async fn issue_otp(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    record_id: &str,
) -> Result<IssuedOtp, ApiError> {
    require_auth_collection(collection)?;
    let opts = options(collection);
    if !opts.otp.enabled {
        return Err(ApiError::bad_request(
            "One-time passwords are not enabled for this collection.",
        ));
    }
    let id = crate::ids::record_id();
    let len = opts.otp.length.clamp(4, 16);
    let code: String = {
        let mut rng = rand::thread_rng();
        (0..len).map(|_| char::from(b'0' + rng.gen_range(0..10u8))).collect()
    };
    let entry = OtpEntry {
        collection_id: collection.def.id.clone(),
        record_id: record_id.to_owned(),
        mac: code_mac(state, &id, &code),
        exp: now_millis() / 1000 + opts.otp.duration as i64,
        failures: 0,
    };
    state
        .store
        .write(vec![WriteOp::PutMeta {
            key: format!("otp/{id}"),
            value: Some(serde_json::to_vec(&entry).expect("serialize otp")),
        }])
        .await?;
    Ok(IssuedOtp {
        id,
        code,
        duration: opts.otp.duration,
    })
}
