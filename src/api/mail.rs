//! `POST /api/settings/test/email`: lets a superuser check the mail settings
//! by sending one of the auth mails, with a dummy token, to any address.

use actix_web::{web, HttpResponse};
use serde_json::Value;

use super::extract::{require_superuser, JsonBody};
use crate::core::Caller;
use crate::error::ApiError;
use crate::mail::templates;
use crate::state::AppState;

/// Stands in for the token: the mail only has to show that delivery works,
/// and a real token would be a usable credential sent to an arbitrary address.
const DUMMY_TOKEN: &str = "TEST-TOKEN-not-valid";

/// `{"email": "...", "template": "verification" | "password-reset" |
/// "email-change" | "otp"}` (default `verification`) → 204 once the mail is
/// handed over (to the SMTP server, or to the dev outbox when SMTP is off);
/// 400 with the delivery error otherwise, so the dashboard can show why.
pub async fn test_email(state: web::Data<AppState>, caller: Caller, body: JsonBody) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    let body = body.0;
    let email = match body.get("email") {
        Some(Value::String(s)) if crate::schema::record::is_valid_email(s) => s.as_str(),
        Some(Value::String(s)) if !s.is_empty() => {
            return Err(ApiError::field(
                "email",
                "validation_invalid_email",
                "Must be a valid email address.",
            ))
        }
        Some(Value::String(_)) | Some(Value::Null) | None => {
            return Err(ApiError::field(
                "email",
                "validation_required",
                "Missing required value.",
            ))
        }
        Some(_) => return Err(ApiError::field("email", "validation_invalid_type", "Must be a string.")),
    };
    let template = match body.get("template") {
        None | Some(Value::Null) => "verification",
        Some(Value::String(s)) if s.is_empty() => "verification",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(ApiError::field(
                "template",
                "validation_invalid_type",
                "Must be a string.",
            ))
        }
    };
    let settings = state.settings.get();
    let meta = &settings.meta;
    let mail = match template {
        "verification" => templates::verification(meta, email, DUMMY_TOKEN),
        "password-reset" => templates::password_reset(meta, email, DUMMY_TOKEN),
        "email-change" => templates::email_change(meta, email, DUMMY_TOKEN),
        "otp" => templates::otp(meta, email, "000000"),
        _ => {
            return Err(ApiError::field(
                "template",
                "validation_invalid_value",
                "Must be verification, password-reset, email-change or otp.",
            ))
        }
    };
    state
        .mailer
        .send(mail)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(HttpResponse::NoContent().finish())
}
