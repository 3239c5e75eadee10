//! Collection management handlers (superusers only): CRUD in both Basalt's
//! and PocketBase's formats, dry run, import, truncate, scaffolds.

use actix_web::{web, HttpResponse};

use super::extract::{require_superuser, JsonBody};
use super::handlers::{collection, ok, Data, Query};
use crate::core::{self, Caller, RequestInfo};
use crate::error::ApiError;
use crate::schema::pocketbase;

pub async fn list(state: Data, caller: Caller, q: Query) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    let params = core::list::ListParams::from_query(&q)?;
    Ok(ok(core::collections::list(&state, &params)?))
}

pub async fn create(state: Data, caller: Caller, body: JsonBody) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    Ok(ok(core::collections::create(&state, body.0).await?))
}

pub async fn view(state: Data, caller: Caller, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    Ok(ok(core::collections::export(&state, &*collection(&state, &name)?)))
}

pub async fn update(
    state: Data,
    caller: Caller,
    name: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    Ok(ok(core::collections::update(&state, &name, body.0).await?))
}

pub async fn delete(state: Data, caller: Caller, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    core::collections::delete(&state, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn dry_run(
    state: Data,
    caller: Caller,
    name: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    // The proposed schema, or PocketBase's `fields` turned into one.
    let schema = match (body.0.get("schema"), body.0.get("fields")) {
        (Some(schema), _) => schema.clone(),
        (None, Some(fields)) => {
            let c = collection(&state, &name)?;
            pocketbase::fields_to_schema(fields, c.def.kind, &c.def.schema)?
        }
        (None, None) => {
            return Err(ApiError::field(
                "schema",
                "validation_required",
                "Missing required value.",
            ))
        }
    };
    Ok(ok(core::collections::dry_run(&state, &name, &schema)?))
}

/// `PUT /api/collections/import` → 204, as PocketBase.
pub async fn import(state: Data, caller: Caller, body: JsonBody) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    core::collections::import(&state, body.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /api/collections/{c}/truncate` → 204.
pub async fn truncate(state: Data, req: RequestInfo, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    require_superuser(&req.caller)?;
    core::collections::truncate(&state, &name, &req).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/collections/meta/scaffolds`.
pub async fn scaffolds(caller: Caller) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    Ok(ok(pocketbase::scaffolds()))
}
