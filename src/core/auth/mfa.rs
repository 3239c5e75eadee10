//! Multi-factor logins (`mfa: {enabled, duration, rule}`): not built yet,
//! so a collection cannot turn MFA on (`schema::pocketbase` refuses it) and
//! every first factor completes the login.

use std::sync::Arc;

use serde_json::Value;

use super::login::{LoginContext, Method};
use crate::error::ApiError;
use crate::schema::CompiledCollection;
use crate::state::AppState;

/// Decides whether the login of `record` by `method` may finish now.
pub(super) async fn check(
    _state: &AppState,
    _collection: &Arc<CompiledCollection>,
    _record: &Value,
    _method: Method,
    _ctx: &LoginContext,
) -> Result<(), ApiError> {
    Ok(())
}
