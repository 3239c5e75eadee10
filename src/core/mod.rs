//! Operations shared by every entry point (REST, batch, dashboard, CLI):
//! handlers parse and shape, these functions decide and write.

pub mod auth;
pub mod bootstrap;
pub mod collections;
pub mod records;

use std::sync::Arc;

use serde_json::Value;

use crate::schema::record::Viewer;
use crate::schema::CompiledCollection;

/// Name of the system collection of dashboard superusers.
pub const SUPERUSERS: &str = "_superusers";

/// Who is making a request, resolved from its token.
#[derive(Clone, Default)]
pub enum Caller {
    #[default]
    Guest,
    Auth {
        collection: Arc<CompiledCollection>,
        record: Value,
    },
}

impl Caller {
    pub fn is_superuser(&self) -> bool {
        matches!(self, Caller::Auth { collection, .. } if collection.def.name == SUPERUSERS)
    }

    /// The caller's record id, if authenticated.
    pub fn id(&self) -> Option<&str> {
        match self {
            Caller::Auth { record, .. } => record.get("id").and_then(Value::as_str),
            Caller::Guest => None,
        }
    }

    pub fn viewer(&self) -> Viewer {
        match self {
            Caller::Guest => Viewer::default(),
            Caller::Auth { collection, record } => Viewer {
                superuser: self.is_superuser(),
                auth: record
                    .get("id")
                    .and_then(Value::as_str)
                    .map(|id| (collection.def.id.clone(), id.to_owned())),
            },
        }
    }
}
