//! `auth-methods`: what a client may sign in with.

use serde_json::{json, Value};

use super::{options, require_auth_collection};
use crate::error::ApiError;
use crate::schema::CompiledCollection;

/// `auth-methods`, in PocketBase's shape. MFA's duration shows only while
/// MFA is on, as PocketBase.
pub fn methods(collection: &CompiledCollection) -> Result<Value, ApiError> {
    require_auth_collection(collection)?;
    let opts = options(collection);
    let (oauth2, auth_providers) = super::oauth2::methods_view(collection);
    Ok(json!({
        "password": {"enabled": true, "identityFields": opts.identity_fields},
        "oauth2": oauth2,
        "mfa": {"enabled": opts.mfa.enabled, "duration": if opts.mfa.enabled { opts.mfa.duration } else { 0 }},
        "otp": {"enabled": opts.otp.enabled, "duration": opts.otp.duration},
        "authProviders": auth_providers,
        "usernamePassword": opts.identity_fields.iter().any(|f| f != "email"),
        "emailPassword": opts.identity_fields.iter().any(|f| f == "email"),
    }))
}
