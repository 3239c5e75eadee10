//! The end every login takes, whatever proved who the caller is (password,
//! one-time password, OAuth2): the collection's authRule, the second factor
//! when MFA asks for one, the token, and the new-device alert. Keeping this
//! in one place is what makes a check added here hold on every login path.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;

use super::{auth_response, issue_token, Caller, RequestInfo};
use crate::error::ApiError;
use crate::schema::CompiledCollection;
use crate::state::AppState;

/// How a first factor was proven: the method names of PocketBase's `_mfas`
/// records and of `auth-methods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Password,
    Otp,
    OAuth2,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Otp => "otp",
            Method::OAuth2 => "oauth2",
        }
    }
}

/// What the request that logs in tells about its client, besides the
/// factor itself: where it comes from (rate limits, new-device alerts) and
/// the `mfaId` of an earlier first factor, if it sends one.
#[derive(Debug, Clone, Default)]
pub struct LoginContext {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// `mfaId` from the body: this login is the second factor of that one.
    pub mfa_id: Option<String>,
}

/// Finishes a login of `record` proven by `method`: refuses it when the
/// authRule does not let the record in, asks for (or checks) the second
/// factor, then issues the token and answers `{token, record}`.
pub async fn complete(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    record: Value,
    method: Method,
    ctx: &LoginContext,
) -> Result<Value, ApiError> {
    if !auth_rule_allows(state, collection, &record, method.as_str()) {
        return Err(ApiError::bad_request("Failed to authenticate."));
    }
    super::mfa::check(state, collection, &record, method, ctx).await?;
    let token = issue_token(state, collection, &record, true);
    super::alerts::after_login(state, collection, &record, ctx);
    Ok(auth_response(collection, record, token))
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
