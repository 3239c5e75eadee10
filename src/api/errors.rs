//! Rendering [`ApiError`] as HTTP, and turning actix's own extractor errors
//! into the same JSON shape.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use crate::error::ApiError;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        let mut body = json!({"status": self.status, "message": self.message, "data": self.data});
        if let Some(id) = self.mfa_id() {
            body["mfaId"] = json!(id);
        }
        res.json(body)
    }
}

/// Fallback for unknown routes.
pub async fn not_found(_req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("The requested resource wasn't found."))
}

/// Query-string errors from actix extractors.
pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("Invalid query string: {err}")).into()
}

/// Path errors from actix extractors.
pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("Invalid path: {err}")).into()
}

/// 405 with the contract's error shape and an `Allow` header.
pub fn method_not_allowed(allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .json(json!({
            "status": 405,
            "message": format!("Method not allowed here; use {allow}."),
            "data": {},
        }))
}
