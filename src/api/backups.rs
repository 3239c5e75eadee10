//! `/api/backups`, PocketBase's backup routes for superusers, over the same
//! files as the dashboard's Backups page (`core::backups`): list, create,
//! delete and download. Names end with `.backup` (Basalt's own snapshot
//! format, not PocketBase's zip). Restoring needs the store reopened, so
//! `…/restore` answers 400 and points to `basalt backup restore`.

use std::io::Read;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::extract::{require_superuser, JsonBody};
use crate::core::{auth, backups, Caller};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/backups`: `[{key, size, modified}]`, newest first.
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    Ok(HttpResponse::Ok().json(backups::list(&state)))
}

/// `POST /api/backups` `{name?}`: 204 once the snapshot is on disk.
pub async fn create(state: web::Data<AppState>, caller: Caller, body: JsonBody) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    let name = match body.0.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::field("name", "validation_invalid_type", "Must be a string.")),
    };
    backups::create(&state, name.as_deref()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /api/backups/{key}`.
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    backups::delete(&state, &key)?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/backups/{key}`: the file, for a superuser auth token in the
/// `Authorization` header, or a superuser *file* token in `?token=` (the
/// links the SDK builds: `pb.backups.getDownloadURL(await
/// pb.files.getToken(), key)`). A URL ends up in logs, history and
/// `Referer`s, so it never takes the long-lived auth token: only a file
/// token, which lives minutes (as PocketBase: anything else in `?token=`
/// gets 403).
pub async fn download(
    state: web::Data<AppState>,
    caller: Caller,
    key: web::Path<String>,
    q: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let caller = match q.get("token") {
        Some(token) if !caller.is_superuser() => {
            let holder = auth::resolve_file_token(&state, token);
            if !holder.is_superuser() {
                return Err(ApiError::forbidden("Insufficient permissions to access the resource."));
            }
            holder
        }
        _ => caller,
    };
    require_superuser(&caller)?;
    let path = backups::path(&state, &key)?;
    stream_file(&path, &key).map_err(|_| ApiError::missing())
}

/// A file as a download, read in 256 KiB chunks off the async workers
/// (backups can be large). Shared with the dashboard's Backups page.
pub fn stream_file(path: &std::path::Path, name: &str) -> std::io::Result<HttpResponse> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let chunks = futures_util::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let read = web::block(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((buf, file))
        })
        .await;
        match read {
            Ok(Ok((buf, _))) if buf.is_empty() => None,
            Ok(Ok((buf, file))) => Some((Ok::<_, actix_web::Error>(web::Bytes::from(buf)), Some(file))),
            Ok(Err(e)) => Some((Err(e.into()), None)),
            Err(e) => Some((Err(e.into()), None)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .no_chunking(len)
        .streaming(chunks))
}

/// `POST /api/backups/{key}/restore`: not while the server runs.
pub async fn restore(
    state: web::Data<AppState>,
    caller: Caller,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    backups::path(&state, &key)?;
    let mut e = ApiError::bad_request(
        "Restoring replaces the whole data dir: stop the server and run `basalt backup restore FILE --dir NEW_DIR`.",
    );
    e.data.insert(
        "key".into(),
        json!({"code": "restore_offline_only", "message": "Restore with the CLI while the server is stopped."}),
    );
    Err(e)
}
