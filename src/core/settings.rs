//! Changing the superuser-editable settings, for the API (`PATCH
//! /api/settings`) and the dashboard alike: `settings::SettingsStore`
//! validates and stores them; going through here keeps every write of every
//! entry point in `core`.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::settings::Settings;
use crate::state::AppState;

/// Applies `patch` (the API's settings shape) and returns the settings now
/// in effect; a 400 naming the fields when it does not validate.
pub async fn update(state: &AppState, patch: Map<String, Value>) -> Result<Arc<Settings>, ApiError> {
    state.settings.patch(&state.store, patch).await
}
