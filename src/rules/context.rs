//! Who is asking and what they sent: the `@request.*` side of rules.

use std::sync::Arc;

use serde_json::{Map, Value};

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
        /// False for impersonation tokens, which `auth-refresh` refuses.
        refreshable: bool,
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
            Caller::Auth { collection, record, .. } => Viewer {
                superuser: self.is_superuser(),
                auth: record
                    .get("id")
                    .and_then(Value::as_str)
                    .map(|id| (collection.def.id.clone(), id.to_owned())),
            },
        }
    }

    /// `@request.auth`: the caller's record (without secrets) plus
    /// `collectionId`/`collectionName`, or null for a guest.
    pub fn auth_json(&self) -> Value {
        match self {
            Caller::Guest => Value::Null,
            Caller::Auth { collection, record, .. } => {
                let mut m = Map::new();
                m.insert("collectionId".into(), Value::String(collection.def.id.clone()));
                m.insert("collectionName".into(), Value::String(collection.def.name.clone()));
                if let Some(obj) = record.as_object() {
                    for (k, v) in obj {
                        if k != "password" && k != "tokenKey" {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
                Value::Object(m)
            }
        }
    }
}

/// Everything about a request that rules may look at, except the body
/// (passed separately: only writes have one).
#[derive(Clone)]
pub struct RequestInfo {
    pub caller: Caller,
    pub method: String,
    /// Query parameters (last value wins).
    pub query: Map<String, Value>,
    /// Header names lowercased with `-` as `_` (PocketBase's convention,
    /// so `@request.headers.x_api_key` works).
    pub headers: Map<String, Value>,
    /// `default`, `realtime`, `password`, ...
    pub context: &'static str,
    /// The client's address (behind a trusted proxy, the one it reports);
    /// `None` for internal requests. Not visible to rules: the per-account
    /// login limit keys on it (`oldPassword` checks).
    pub ip: Option<std::net::IpAddr>,
    /// The work this request may still do (shared by clones: a batch's
    /// sub-requests draw from one budget).
    pub budget: Arc<super::Budget>,
}

impl Default for RequestInfo {
    fn default() -> Self {
        RequestInfo {
            caller: Caller::Guest,
            method: "GET".into(),
            query: Map::new(),
            headers: Map::new(),
            context: "default",
            ip: None,
            budget: Arc::default(),
        }
    }
}

impl RequestInfo {
    /// An internal request by `caller` (CLI, batch sub-requests, realtime).
    pub fn internal(caller: Caller, method: &str, context: &'static str) -> RequestInfo {
        RequestInfo {
            caller,
            method: method.to_owned(),
            context,
            ..RequestInfo::default()
        }
    }

    /// The `@request` object the evaluator reads.
    pub fn to_json(&self, body: &Value) -> Value {
        serde_json::json!({
            "auth": self.caller.auth_json(),
            "body": body,
            "query": self.query,
            "headers": self.headers,
            "method": self.method,
            "context": self.context,
        })
    }
}
