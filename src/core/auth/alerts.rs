//! Login alerts (PocketBase's `authAlert`): not built yet.

use std::sync::Arc;

use serde_json::Value;

use super::login::LoginContext;
use crate::schema::CompiledCollection;
use crate::state::AppState;

/// Runs after a login succeeded (never delays or fails it).
pub(super) fn after_login(
    _state: &AppState,
    _collection: &Arc<CompiledCollection>,
    _record: &Value,
    _ctx: &LoginContext,
) {
}
