//! The one error type every request path returns, rendered as the contract's
//! `{"status","message","data"}` (see `api::errors` for the HTTP side), and
//! the per-field errors it carries. Below every module but `store` (whose
//! errors it maps): a module's own error type maps itself into `ApiError`
//! (e.g. `schema::SchemaError`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::store::{StoreError, WriteError};

/// A field error as the API reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldError {
    pub code: String,
    pub message: String,
}

/// Field path → error; `""` holds root-level problems.
pub type FieldErrors = BTreeMap<String, FieldError>;

const MFA_ID: &str = "mfaId";

/// An error a client sees. `data` holds per-field errors keyed by field path.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub data: Map<String, Value>,
    /// Seconds, for 429 and 503 answers.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            data: Map::new(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }
    /// The generic 404 PocketBase answers for a missing record or collection.
    pub fn missing() -> ApiError {
        ApiError::not_found("The requested resource wasn't found.")
    }

    /// The 401 that asks for a second login factor: `data.mfaId` names the
    /// pending login, and the answer repeats it at the top level, where
    /// PocketBase puts it (its SDKs read `response.mfaId`).
    pub fn mfa_required(mfa_id: &str) -> ApiError {
        let mut e = ApiError::unauthorized("A second authentication factor is required.");
        e.data.insert(MFA_ID.into(), Value::String(mfa_id.to_owned()));
        e
    }

    /// The pending login's id when this is the 401 of [`ApiError::mfa_required`].
    pub fn mfa_id(&self) -> Option<&str> {
        (self.status == 401).then(|| self.data.get(MFA_ID)?.as_str()).flatten()
    }

    /// A 400 with per-field errors.
    pub fn validation(errors: FieldErrors) -> ApiError {
        let mut e = ApiError::bad_request("Failed to validate the submitted data.");
        for (field, fe) in errors {
            e.data
                .insert(field, serde_json::json!({"code": fe.code, "message": fe.message}));
        }
        e
    }

    /// A 400 with one field error.
    pub fn field(field: &str, code: &str, message: &str) -> ApiError {
        let mut errors = FieldErrors::new();
        errors.insert(
            field.to_owned(),
            FieldError {
                code: code.to_owned(),
                message: message.to_owned(),
            },
        );
        ApiError::validation(errors)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let StoreError::Unavailable(msg) = &e {
            tracing::warn!(error = %msg, "store read failed: database unavailable");
            let mut e = ApiError::new(503, "The database is unavailable; retry shortly.");
            e.retry_after = Some(1);
            return e;
        }
        tracing::error!(error = %e, "store read failed");
        ApiError::internal("Something went wrong while reading data.")
    }
}

/// An auth record id already used in another auth collection (PocketBase's
/// error for it).
pub fn invalid_auth_id() -> ApiError {
    ApiError::field(
        "id",
        "validation_invalid_auth_id",
        "Invalid or duplicated auth record id.",
    )
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NoCollection | WriteError::NotFound => ApiError::missing(),
            WriteError::IdTaken => ApiError::field("id", "validation_not_unique", "The id is already taken."),
            // Only auth creates ask for an id free in other collections.
            WriteError::IdInUse => invalid_auth_id(),
            WriteError::NotUnique { fields, .. } => {
                let mut errors = FieldErrors::new();
                for f in fields {
                    errors.insert(
                        f,
                        FieldError {
                            code: "validation_not_unique".into(),
                            message: "Value must be unique.".into(),
                        },
                    );
                }
                ApiError::validation(errors)
            }
            WriteError::Conflict => ApiError::new(409, "The record was changed by another request; retry."),
            WriteError::Overloaded => {
                let mut e = ApiError::new(503, "The server is busy; retry shortly.");
                e.retry_after = Some(1);
                e
            }
            WriteError::ShuttingDown => ApiError::new(503, "The server is shutting down."),
            WriteError::Unstorable { field } => ApiError::field(
                &field,
                "validation_invalid_string",
                "Text with the character U+0000 cannot be stored.",
            ),
            WriteError::Unavailable(msg) => {
                tracing::warn!(error = %msg, "write failed: database unavailable");
                let mut e = ApiError::new(503, "The database is unavailable; retry shortly.");
                e.retry_after = Some(1);
                e
            }
            WriteError::Storage(msg) => {
                tracing::error!(error = %msg, "write failed");
                ApiError::internal("Something went wrong while saving data.")
            }
        }
    }
}
