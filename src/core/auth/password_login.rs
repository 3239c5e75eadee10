//! Password logins and the old-password check of a password change.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;

use super::login::{self, LoginContext, Method};
use super::{find_by_field, login_attempt, options, record_id, require_auth_collection};
use crate::auth::password;
use crate::error::ApiError;
use crate::schema::CompiledCollection;
use crate::state::AppState;

/// `auth-with-password`: `{identity, password, identityField?}` → `{token, record}`,
/// for the client `ctx` describes.
///
/// A failed login costs one argon2 verification whether or not the identity
/// exists (a dummy hash stands in), so timing does not reveal accounts.
pub async fn with_password(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    identity: &str,
    password_plain: &str,
    identity_field: Option<&str>,
    ctx: &LoginContext,
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
    let attempt = login_attempt(state, collection, &account, ctx.ip)?;
    let hash = found
        .as_ref()
        .and_then(|r| r.get("password").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| password::dummy_hash().to_owned());
    let pw = password_plain.to_owned();
    let ok = password::verify_async(pw, hash).await;
    match found {
        Some(rec) if ok => {
            attempt.succeeded();
            login::complete(state, collection, rec, Method::Password, ctx).await
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
