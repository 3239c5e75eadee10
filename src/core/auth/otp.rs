//! One-time passwords: mailed (`request-otp`) or handed to the operator.

use std::sync::Arc;

use hmac::Mac;
use rand::Rng;
use serde_json::{json, Map, Value};

use super::login::{self, LoginContext, Method};
use super::mail_flows::rewrite;
use super::{
    background, find_by_email, login_attempt, options, record_id, require_auth_collection, required_email,
    required_string, send,
};
use crate::auth::password;
use crate::clock::now_millis;
use crate::error::ApiError;
use crate::mail::throttle::MailKind;
use crate::schema::mail_templates::TemplateKind;
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::{meta, WriteOp};

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
    /// The address the code was mailed to (`None`: handed to the operator).
    /// A login with a code mailed to the record's current address proves
    /// that address, so it marks the record verified, as PocketBase does.
    #[serde(default)]
    sent_to: Option<String>,
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
            sent_to: Some(to.clone()),
        };
        state2
            .store
            .write(vec![WriteOp::PutMeta {
                key: meta::otp(&id2),
                value: Some(serde_json::to_vec(&entry).expect("serialize otp")),
            }])
            .await?;
        let values = [("{OTP}", code.as_str()), ("{OTP_ID}", id2.as_str())];
        let mail = super::mails::compose(&state2, &collection2, &rec, TemplateKind::Otp, &to, &values);
        send(&state2, mail).await
    });
    Ok(json!({"otpId": otp_id}))
}

/// `auth-with-otp {otpId, password}` from the client `ctx` describes → `{token,
/// record}`; a code works once, and an OTP dies after
/// [`OTP_MAX_FAILURES`] wrong codes. Wrong codes are also failed logins of
/// the account (the per-account and address limit of password logins).
pub async fn with_otp(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    body: &Map<String, Value>,
    ctx: &LoginContext,
) -> Result<Value, ApiError> {
    require_auth_collection(collection)?;
    let otp_id = required_string(body, "otpId")?;
    let code = required_string(body, "password")?;
    let fail = || ApiError::bad_request("Invalid or expired one-time password.");
    let key = meta::otp(otp_id);
    // One check at a time per OTP: concurrent guesses cannot share a count.
    let turn = state.record_lock("otp", otp_id).lock().await;
    let mut entry: OtpEntry = match state.store.meta_get(&key)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| fail())?,
        None => return Err(fail()),
    };
    if entry.exp <= now_millis() / 1000 || entry.collection_id != collection.def.id {
        return Err(fail());
    }
    let attempt = login_attempt(state, collection, &entry.record_id, ctx.ip)?;
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
    // The OTP is spent: let go of its stripe before the login completes, so
    // nothing `login::complete` locks (the MFA check, the new-device
    // alert's writes) can ever wait on a stripe this task holds.
    drop(turn);
    let mut rec = state
        .store
        .get(&collection.def.id, &entry.record_id)?
        .ok_or_else(fail)?
        .data;
    if proves_address(&entry, &rec) {
        verify_address(state, collection, &entry.record_id).await?;
        rec = state
            .store
            .get(&collection.def.id, &entry.record_id)?
            .ok_or_else(fail)?
            .data;
    }
    login::complete(state, collection, rec, Method::Otp, ctx).await
}

/// Whether a spent OTP proves the unverified record's current address.
fn proves_address(entry: &OtpEntry, rec: &Value) -> bool {
    let unverified = rec.get("verified").and_then(Value::as_bool) != Some(true);
    unverified && entry.sent_to.is_some() && rec.get("email").and_then(Value::as_str) == entry.sent_to.as_deref()
}

/// Marks the record verified after an OTP login proved its address. Unless
/// MFA guards the collection, the password is replaced by a random one
/// (and `tokenKey` rotated) as PocketBase does: whoever registered the
/// address before its owner proved it (pre-hijacking) loses the account.
async fn verify_address(state: &AppState, collection: &CompiledCollection, id: &str) -> Result<(), ApiError> {
    let reset = !options(collection).mfa.enabled;
    let hash = if reset {
        let random = crate::ids::token_key();
        Some(password::hash_async(random).await.map_err(ApiError::internal)?)
    } else {
        None
    };
    let key = crate::ids::token_key();
    rewrite(state, collection, id, |d| {
        d.insert("verified".into(), Value::Bool(true));
        if let Some(hash) = &hash {
            d.insert("password".into(), Value::String(hash.clone()));
            d.insert("tokenKey".into(), Value::String(key.clone()));
        }
    })
    .await
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
        sent_to: None,
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
