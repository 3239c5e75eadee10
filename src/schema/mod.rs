//! Collections: the model, JSON Schema compilation and its cache, system
//! fields and the record shape (what a client may write, what it may see).

pub mod collection;
pub mod compile;
pub mod fields;
pub mod files;
pub mod form;
pub mod keywords;
pub mod mail_templates;
pub mod mfa;
pub mod numbers;
pub mod oauth2;
pub mod pocketbase;
pub mod record;
mod registry;

pub use collection::{Collection, CollectionType, IndexSpec};
pub use compile::{FieldError, FieldErrors};
pub use registry::{stored_spec, CompiledCollection, CompiledRules, Registry, Relation};

/// Why a collection definition was refused; reported as a 400 naming the field.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SchemaError {
    #[error("{field}: {message}")]
    Invalid {
        field: String,
        code: String,
        message: String,
    },
}

impl From<SchemaError> for crate::error::ApiError {
    fn from(e: SchemaError) -> Self {
        match e {
            SchemaError::Invalid { field, code, message } => crate::error::ApiError::field(&field, &code, &message),
        }
    }
}
