//! Changing the superuser-editable settings, for the API (`PATCH
//! /api/settings`) and the dashboard alike: `settings::SettingsStore`
//! validates and stores them; going through here keeps every write of every
//! entry point in `core`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::files::s3::{S3Config, S3};
use crate::files::Backend;
use crate::settings::Settings;
use crate::state::AppState;

/// Applies `patch` (the API's settings shape) and returns the settings now
/// in effect; a 400 naming the fields when it does not validate.
pub async fn update(state: &AppState, patch: Map<String, Value>) -> Result<Arc<Settings>, ApiError> {
    let saved = state.settings.patch(&state.store, patch).await?;
    apply_storage(state);
    Ok(saved)
}

/// Reloads the settings from the store (another node changed them) and
/// points file storage where they say.
pub async fn reload(state: &AppState) -> Result<(), ApiError> {
    if state.settings.reload(&state.store).await? {
        apply_storage(state);
    }
    Ok(())
}

/// The `files` configuration of an `s3` settings section (`files` knows
/// nothing of settings).
pub fn s3_config(s: &crate::settings::S3Settings) -> S3Config {
    S3Config {
        bucket: s.bucket.trim().to_owned(),
        region: s.region.trim().to_owned(),
        endpoint: s.endpoint.trim().to_owned(),
        access_key: s.access_key.trim().to_owned(),
        secret: s.secret.clone(),
        force_path_style: s.force_path_style,
    }
}

/// Points file storage at the bucket of the `s3` settings when they are
/// enabled, at the local disk (`<dir>/storage`) otherwise: at start and
/// after every settings change. Only new writes (and reads) go to the new
/// place: files stored before the switch stay where they were and are not
/// migrated (as PocketBase), so records made before it point at files the
/// new backend does not have until they are copied over by hand.
///
/// A configuration the S3 client refuses (one settings validation let
/// through, e.g. a bucket name that cannot be a host name without path
/// style) keeps the current backend and is logged; "Test S3" shows why.
pub fn apply_storage(state: &AppState) {
    // Two settings saves racing: each applies the settings current when it
    // holds this, so the last to run applies the last saved.
    static SWITCH: Mutex<()> = Mutex::new(());
    let _switching = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let settings = state.settings.get();
    let wanted = settings.s3.enabled.then(|| s3_config(&settings.s3));
    let current = match &*state.storage.backend() {
        Backend::S3(s3) => Some(s3.config().clone()),
        Backend::Local(_) => None,
    };
    if wanted == current {
        return;
    }
    match wanted {
        None => {
            tracing::info!("file storage: local disk");
            let local = crate::files::local::Local::new(state.config.dir.join("storage"));
            state.storage.set_backend(Backend::Local(local));
        }
        Some(config) => match S3::new(config) {
            Ok(s3) => {
                tracing::info!(bucket = %s3.config().bucket, endpoint = %s3.config().endpoint, "file storage: S3");
                state.storage.set_backend(Backend::S3(s3));
            }
            Err(e) => {
                tracing::error!(error = %e, "file storage: the s3 settings cannot be used; storage stays where it was")
            }
        },
    }
}

/// The longest "Test S3" may take, whatever the endpoint does (each of its
/// requests has its own shorter deadlines too).
const S3_TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// `POST /api/settings/test/s3` and the dashboard's "Test S3": checks the
/// saved settings of `filesystem` (`storage` = `s3`, `backups` =
/// `backups.s3`) as PocketBase does: the field must name one of them, the
/// section must be enabled, and a probe object is written, read back and
/// deleted. Any failure is a 400 whose message says which step failed and
/// S3's answer (bad credentials, missing bucket, unreachable endpoint).
pub async fn test_s3(state: &AppState, filesystem: Option<&Value>) -> Result<(), ApiError> {
    let failed = |field_code: &str, message: &str| {
        let mut e = ApiError::field("filesystem", field_code, message);
        e.message = "Failed to test the S3 filesystem.".into();
        e
    };
    let settings = state.settings.get();
    let s3 = match filesystem {
        None | Some(Value::Null) => return Err(failed("validation_required", "Cannot be blank.")),
        Some(Value::String(s)) if s.is_empty() => return Err(failed("validation_required", "Cannot be blank.")),
        Some(Value::String(s)) if s == "storage" => &settings.s3,
        Some(Value::String(s)) if s == "backups" => &settings.backups.s3,
        Some(_) => return Err(failed("validation_in_invalid", "Must be a valid value.")),
    };
    let raw_error = |raw: &dyn std::fmt::Display| {
        ApiError::bad_request(format!("Failed to test the S3 filesystem. Raw error: \n{raw}"))
    };
    if !s3.enabled {
        return Err(raw_error(&"S3 storage filesystem is not enabled."));
    }
    let client = S3::new(s3_config(s3)).map_err(|e| raw_error(&format!("invalid S3 settings: {e}")))?;
    match tokio::time::timeout(S3_TEST_TIMEOUT, client.probe()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(raw_error(&e)),
        Err(_) => Err(raw_error(&"the S3 endpoint did not answer in time.")),
    }
}
