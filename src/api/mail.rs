//! `POST /api/settings/test/email`: lets a superuser check the mail settings
//! by sending one of the auth mails, with a dummy token, to any address; and
//! `POST /api/settings/test/s3`, the same for an S3 bucket.

use actix_web::{web, HttpResponse};
use serde_json::Value;

use super::extract::{require_superuser, JsonBody};
use crate::core::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// `{"email": "...", "template": "verification" | "password-reset" |
/// "email-change" | "otp" | "login-alert", "collection": "<auth collection>"}`
/// (defaults `verification`, `_superusers`, as PocketBase) → 204 once the
/// mail, that collection's template filled with sample values (never a
/// usable token), is
/// handed over (to the SMTP server, or to the dev outbox when SMTP is off);
/// 400 with the delivery error otherwise, so the dashboard can show why.
pub async fn test_email(state: web::Data<AppState>, caller: Caller, body: JsonBody) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    let body = body.0;
    let text = |key: &str| match body.get(key) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(ApiError::field(key, "validation_invalid_type", "Must be a string.")),
    };
    send_test(&state, text("email")?, text("template")?, text("collection")?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Sends the test mail `template` (empty = `verification`) of the auth
/// collection `collection` (empty = `_superusers`) to `email`: shared by
/// the API above and the dashboard's settings page, so both check and
/// deliver the same way. Field errors are keyed `email` / `template` /
/// `collection`.
pub async fn send_test(state: &AppState, email: &str, template: &str, collection: &str) -> Result<(), ApiError> {
    if email.is_empty() {
        return Err(ApiError::field(
            "email",
            "validation_required",
            "Missing required value.",
        ));
    }
    if !crate::schema::record::is_valid_email(email) {
        return Err(ApiError::field(
            "email",
            "validation_invalid_email",
            "Must be a valid email address.",
        ));
    }
    let mail = crate::core::auth::mails::test_mail(state, collection, template, email)?;
    state
        .mailer
        .send(mail)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `POST /api/settings/test/s3` (`{"filesystem": "storage" | "backups"}`):
/// 204 once a probe object was written to, read back from and deleted from
/// that bucket with the saved settings; 400 saying what failed otherwise
/// (`core::settings::test_s3`, shared with the dashboard).
pub async fn test_s3(state: web::Data<AppState>, caller: Caller, body: JsonBody) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    crate::core::settings::test_s3(&state, body.0.get("filesystem")).await?;
    Ok(HttpResponse::NoContent().finish())
}
