//! Password login, token refresh and resolving a request's token.

use std::sync::Arc;

use serde_json::{json, Value};

use super::Caller;
use crate::auth::{password, Claims, TokenKind, Tokens};
use crate::clock::now_millis;
use crate::error::ApiError;
use crate::schema::record::export;
use crate::schema::{CollectionType, CompiledCollection};
use crate::state::AppState;

/// Resolves an `Authorization` header value (`TOKEN` or `Bearer TOKEN`).
/// Any problem with the token makes the caller a guest, as in PocketBase;
/// routes that need auth then answer 401.
pub fn resolve(state: &AppState, header: Option<&str>) -> Caller {
    let Some(raw) = header else {
        return Caller::Guest;
    };
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .unwrap_or(raw)
        .trim();
    if token.is_empty() {
        return Caller::Guest;
    }
    let Ok(claims) = Tokens::peek(token) else {
        return Caller::Guest;
    };
    if claims.kind != TokenKind::Auth {
        return Caller::Guest;
    }
    let Some(collection) = state.registry.get(&claims.collection_id) else {
        return Caller::Guest;
    };
    if collection.def.kind != CollectionType::Auth || collection.def.id != claims.collection_id {
        return Caller::Guest;
    }
    let Ok(Some(stored)) = state.store.get(&collection.def.id, &claims.id) else {
        return Caller::Guest;
    };
    let key = stored.data.get("tokenKey").and_then(Value::as_str).unwrap_or_default();
    match state.tokens.verify(token, key, now_millis() / 1000) {
        Ok(_) => Caller::Auth {
            collection,
            record: stored.data,
        },
        Err(_) => Caller::Guest,
    }
}

/// Issues an auth token for `record` of `collection`.
pub fn issue_token(state: &AppState, collection: &CompiledCollection, record: &Value, refreshable: bool) -> String {
    let duration = collection
        .def
        .auth_options
        .as_ref()
        .map(|o| o.auth_token_duration)
        .unwrap_or(7 * 24 * 3600);
    let claims = Claims {
        id: record.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        kind: TokenKind::Auth,
        collection_id: collection.def.id.clone(),
        refreshable,
        exp: now_millis() / 1000 + duration as i64,
    };
    state.tokens.issue(
        &claims,
        record.get("tokenKey").and_then(Value::as_str).unwrap_or_default(),
    )
}

fn auth_response(state: &AppState, collection: &Arc<CompiledCollection>, record: Value) -> Value {
    let token = issue_token(state, collection, &record, true);
    let caller = Caller::Auth {
        collection: collection.clone(),
        record: record.clone(),
    };
    json!({"token": token, "record": export(collection, &record, &caller.viewer())})
}

fn require_auth_collection(collection: &CompiledCollection) -> Result<(), ApiError> {
    if collection.def.kind != CollectionType::Auth {
        return Err(ApiError::bad_request(format!(
            "Collection '{}' is not an auth collection.",
            collection.def.name
        )));
    }
    Ok(())
}

/// `auth-with-password`: `{identity, password}` → `{token, record}`.
///
/// A failed login costs one argon2 verification whether or not the identity
/// exists (a dummy hash stands in), so timing does not reveal accounts.
pub async fn with_password(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    identity: &str,
    password: &str,
) -> Result<Value, ApiError> {
    require_auth_collection(collection)?;
    let email = Value::String(identity.to_owned());
    let index = collection
        .spec
        .indexes
        .iter()
        .find(|i| i.name == "_sys_email")
        .ok_or_else(|| ApiError::internal("auth collection without email index"))?;
    let found = match state.store.unique_lookup(&collection.def.id, index, &[&email])? {
        Some(id) => state.store.get(&collection.def.id, &id)?,
        None => None,
    };
    let hash = found
        .as_ref()
        .and_then(|r| r.data.get("password").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| password::dummy_hash().to_owned());
    let pw = password.to_owned();
    let ok = actix_web::web::block(move || password::verify(&pw, &hash))
        .await
        .map_err(|_| ApiError::internal("password check failed"))?;
    match found {
        Some(rec) if ok && auth_rule_allows(state, collection, &rec.data) => {
            Ok(auth_response(state, collection, rec.data))
        }
        _ => Err(ApiError::bad_request("Failed to authenticate.")),
    }
}

/// The authRule (checked against the authenticating record, with that
/// record as `@request.auth`): `null` disables logins for the collection.
fn auth_rule_allows(state: &AppState, collection: &Arc<CompiledCollection>, record: &Value) -> bool {
    match &collection.rules.auth {
        None => false,
        Some(rule) if rule.is_empty() => true,
        Some(rule) => {
            let req = crate::rules::RequestInfo::internal(
                Caller::Auth {
                    collection: collection.clone(),
                    record: record.clone(),
                },
                "POST",
                "password",
            );
            crate::rules::holds(state, collection, rule, record, &req.to_json(&Value::Null))
        }
    }
}

/// `auth-refresh`: a valid, refreshable token of this collection → a new one.
pub fn refresh(state: &AppState, collection: &Arc<CompiledCollection>, caller: &Caller) -> Result<Value, ApiError> {
    require_auth_collection(collection)?;
    match caller {
        Caller::Auth { collection: c, record } if c.def.id == collection.def.id => {
            Ok(auth_response(state, collection, record.clone()))
        }
        Caller::Auth { .. } => Err(ApiError::forbidden("The token belongs to another collection.")),
        Caller::Guest => Err(ApiError::unauthorized(
            "The request requires a valid record authorization token.",
        )),
    }
}
