//! Mailed-token flows: verification, password reset, email change.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{
    background, find_by_email, issue, login_attempt, options, record_id, require_auth_collection, required_email,
    required_string, send, verify_token, Caller, TokenKind,
};
use crate::auth::{password, Claims};
use crate::error::ApiError;
use crate::mail::throttle::MailKind;
use crate::schema::collection::AuthOptions;
use crate::schema::mail_templates::TemplateKind;
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::{Expect, WriteOp};

/// One of the mail-a-token flows (verification, password reset).
struct MailFlow {
    name: &'static str,
    kind: TokenKind,
    duration: fn(&AuthOptions) -> u64,
    /// The collection's template for its mail.
    template: TemplateKind,
    /// Accounts that get no mail (already verified, for verification).
    skip: fn(&Value) -> bool,
    /// Its per-recipient throttle.
    mail: MailKind,
}

const VERIFICATION: MailFlow = MailFlow {
    name: "request-verification",
    kind: TokenKind::Verification,
    duration: |o| o.verification_token_duration,
    template: TemplateKind::Verification,
    skip: |rec| rec.get("verified").and_then(Value::as_bool) == Some(true),
    mail: MailKind::Verification,
};

const PASSWORD_RESET: MailFlow = MailFlow {
    name: "request-password-reset",
    kind: TokenKind::PasswordReset,
    duration: |o| o.password_reset_token_duration,
    template: TemplateKind::ResetPassword,
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
        let mail = super::mails::compose(&state, &collection, &rec, flow.template, &to, &[("{TOKEN}", &token)]);
        send(&state, mail).await
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
pub(super) async fn rewrite<F>(
    state: &AppState,
    collection: &CompiledCollection,
    id: &str,
    change: F,
) -> Result<(), ApiError>
where
    F: Fn(&mut Map<String, Value>),
{
    let plan = async || {
        let stored = state.store.get(&collection.def.id, id)?.ok_or_else(ApiError::missing)?;
        let mut data = stored.data.as_object().cloned().unwrap_or_default();
        change(&mut data);
        data.insert("updated".into(), Value::String(crate::clock::now_string()));
        let mut data = Value::Object(data);
        let unlinks = super::verified_upgrade(state, collection, &stored.data, &mut data)?;
        let op = WriteOp::PutRecord {
            collection_id: collection.def.id.clone(),
            id: id.to_owned(),
            data,
            expect: Expect::Rev(stored.rev),
        };
        Ok((std::iter::once(op).chain(unlinks).collect(), ()))
    };
    crate::core::replan::write(state, crate::core::replan::Replan::OnConflict, plan).await?;
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
    let mail = super::mails::compose(
        state,
        collection,
        record,
        TemplateKind::ConfirmEmailChange,
        &new_email,
        &[("{TOKEN}", &token)],
    );
    let state = state.clone();
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
