//! Request extractors: the JSON body (with our limits and error shape) and
//! the caller's identity.

use std::future::{ready, Future, Ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::core::{auth, Caller, RequestInfo};
use crate::error::ApiError;
use crate::schema::numbers;
use crate::state::AppState;

/// A JSON object body. An empty JSON body reads as `{}` (SDK calls such as
/// `create()` with no data send none); anything else must be a JSON object
/// sent as `application/json` (or `multipart/form-data` with an
/// `@jsonPayload` part, as the SDKs send batches), within `--max-body` bytes
/// and `limits.bodyTimeout` seconds (408 past it, see `api::bounds`).
/// An empty multipart body, or one without parts, is a 400; so is a
/// multipart boundary longer than RFC 2046's 70 characters, before any of
/// the body is read.
pub struct JsonBody(pub Map<String, Value>);

/// How a body is encoded.
enum BodyKind {
    Json,
    /// `multipart/form-data` with this boundary.
    Multipart(String),
    /// `multipart/form-data` without a boundary or with one RFC 2046 does
    /// not allow (e.g. longer than 70 characters).
    BadMultipart(ApiError),
}

fn body_kind(req: &HttpRequest) -> Result<BodyKind, ApiError> {
    match req.headers().get(header::CONTENT_TYPE) {
        None => Ok(BodyKind::Json),
        Some(v) => {
            let raw = v.to_str().unwrap_or_default();
            let lower = raw.to_ascii_lowercase();
            let mime = lower.split(';').next().unwrap_or_default().trim();
            if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
                Ok(BodyKind::Json)
            } else if mime == "multipart/form-data" {
                Ok(super::multipart::boundary(raw).map_or_else(BodyKind::BadMultipart, BodyKind::Multipart))
            } else {
                Err(ApiError::new(
                    415,
                    format!("Unsupported Content-Type '{mime}': send the body as application/json."),
                ))
            }
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(413, format!("The request body is larger than the {limit}-byte limit."))
}

/// Parses a JSON body into an object, with clear messages. An integer
/// literal outside the signed 64-bit range anywhere in it is refused (400,
/// `data.<path>.code = validation_invalid_number`), whatever the endpoint:
/// parsed, it would silently become another number.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => match numbers::out_of_range_integer(bytes) {
            // No integer outside i64 is ever rounded into a float (SPEC §7).
            Some(path) => Err(ApiError::field(&path, numbers::INVALID_NUMBER, numbers::OUT_OF_RANGE)),
            None => Ok(m),
        },
        Ok(other) => Err(ApiError::bad_request(format!(
            "The request body must be a JSON object, not {}.",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        ))),
        Err(e) => Err(ApiError::bad_request(format!("Malformed JSON body: {e}."))),
    }
}

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<JsonBody, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.config.max_body)
            .unwrap_or(1024 * 1024);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let content_type = body_kind(req);
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large(limit));
            }
            let content_type = match content_type {
                // A boundary the parser must not search with: refused
                // before the body is read.
                Ok(BodyKind::BadMultipart(e)) => return Err(e),
                other => other,
            };
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    super::bounds::body_timeout(&e)
                        .unwrap_or_else(|| ApiError::bad_request(format!("Failed to read the request body: {e}.")))
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            let multipart = matches!(content_type, Ok(BodyKind::Multipart(_)));
            // Not for multipart: its bodies always have parts, so an empty
            // one is a broken upload (PocketBase answers 400 too).
            if !multipart && body.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok(JsonBody(Map::new()));
            }
            match content_type? {
                BodyKind::Json => parse_object(&body).map(JsonBody),
                BodyKind::Multipart(boundary) => super::multipart::parse_bytes(body.freeze(), &boundary, limit)
                    .await
                    .map(JsonBody),
                BodyKind::BadMultipart(e) => Err(e),
            }
        })
    }
}

/// A record body: JSON (as [`JsonBody`]) or `multipart/form-data` whose
/// file parts are streamed to the spool as they arrive, so memory stays
/// bounded whatever the upload's size. The whole multipart body may hold
/// `--max-body` bytes plus what the collection's file fields may take
/// (each field's `maxSize` × `maxSelect`, as PocketBase adds them); a
/// batch may hold its `batch.maxBodySize` (128 MiB when 0).
pub struct RecordBody {
    pub fields: Map<String, Value>,
    /// Fields that came from plain form parts (strings until typed).
    pub plain: Vec<String>,
    pub uploads: Vec<crate::files::upload::Upload>,
}

impl RecordBody {
    /// The fields (plain form parts typed by the collection's schema) and
    /// the uploads.
    pub fn split(
        mut self,
        coll: &crate::schema::CompiledCollection,
    ) -> (Map<String, Value>, Vec<crate::files::upload::Upload>) {
        if !self.plain.is_empty() {
            crate::schema::form::type_plain(coll, &mut self.fields, &self.plain);
        }
        (self.fields, self.uploads)
    }
}

/// Default whole-body limit of a multipart batch (PocketBase's 128 MiB).
const BATCH_BODY: u64 = 128 * 1024 * 1024;

/// What a multipart body for a record of collection `name` may hold:
/// `base` bytes of form fields, plus what the collection's file fields may
/// take for the whole body, and one file at most the largest `maxSize`.
/// The dashboard's record forms use it too, with their own `base`.
pub fn record_limits(state: &AppState, name: &str, base: u64) -> super::multipart::Limits {
    let mut limits = super::multipart::Limits {
        body: base,
        field: base,
        file: 0,
    };
    if let Some(c) = state.registry.get(name) {
        for (_, f) in &c.files {
            limits.body = limits
                .body
                .saturating_add(f.max_size.saturating_mul(f.max_select as u64));
            limits.file = limits.file.max(f.max_size);
        }
    }
    limits
}

/// What a multipart body to this route may hold: a record's (see
/// [`record_limits`]); a batch: `batch.maxBodySize`, or no more than a
/// JSON body while batches are off (the handler answers 403).
fn multipart_limits(req: &HttpRequest, state: &AppState) -> super::multipart::Limits {
    let base = state.config.max_body as u64;
    if let Some(name) = req.match_info().get("c") {
        return record_limits(state, name, base);
    }
    let mut limits = super::multipart::Limits {
        body: base,
        field: base,
        file: 0,
    };
    let batch = &state.settings.get().batch;
    if batch.enabled {
        limits.body = match batch.max_body_size {
            0 => BATCH_BODY,
            n => n,
        };
        limits.file = limits.body;
    }
    limits
}

impl FromRequest for RecordBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<RecordBody, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (Some(state), Ok(BodyKind::Multipart(boundary))) = (req.app_data::<web::Data<AppState>>(), body_kind(req))
        else {
            let json = JsonBody::from_request(req, payload);
            return Box::pin(async move {
                Ok(RecordBody {
                    fields: json.await?.0,
                    plain: Vec::new(),
                    uploads: Vec::new(),
                })
            });
        };
        let limits = multipart_limits(req, state);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let spool = state.storage.spool_dir().to_owned();
        let payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|n| n > limits.body) {
                return Err(too_large(limits.body as usize));
            }
            let parsed = stream_multipart(payload, boundary, limits, spool).await?;
            Ok(RecordBody {
                fields: parsed.fields,
                plain: parsed.plain,
                uploads: parsed.uploads,
            })
        })
    }
}

/// Feeds actix's payload (not `Send`) to the parser through a small
/// channel, both driven by this one future: the parser pulls, the pump
/// reads only as fast as the parser (and the spool's disk) takes chunks.
/// Shared with the dashboard's form extractor (`admin::session`).
pub async fn stream_multipart(
    mut payload: Payload,
    boundary: String,
    limits: super::multipart::Limits,
    spool: std::path::PathBuf,
) -> Result<super::multipart::Parsed, ApiError> {
    use super::multipart::BodyError;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, BodyError>>(2);
    let pump = async move {
        let mut read = 0u64;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                BodyError(
                    super::bounds::body_timeout(&e)
                        .unwrap_or_else(|| ApiError::bad_request(format!("Failed to read the request body: {e}."))),
                )
            });
            let stop = chunk.is_err();
            if let Ok(c) = &chunk {
                read += c.len() as u64;
                if read > limits.body {
                    let _ = tx.send(Err(BodyError(too_large(limits.body as usize)))).await;
                    return;
                }
            }
            if tx.send(chunk).await.is_err() || stop {
                return;
            }
        }
    };
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let parse = super::multipart::parse(chunks, &boundary, limits, Some(&spool));
    futures_util::pin_mut!(pump, parse);
    match futures_util::future::select(parse, pump).await {
        futures_util::future::Either::Left((parsed, _)) => parsed,
        // The body ended (or failed, which the parser now reads): the
        // parser finishes with what the channel still holds.
        futures_util::future::Either::Right(((), parse)) => parse.await,
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return ready(Err(ApiError::internal("missing app state")));
        };
        let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let caller = auth::resolve(state, header);
        super::middleware::mark_caller(req, &caller);
        ready(Ok(caller))
    }
}

/// Requires a superuser caller: 401 for guests, 403 for other users.
pub fn require_superuser(caller: &Caller) -> Result<(), ApiError> {
    match caller {
        _ if caller.is_superuser() => Ok(()),
        Caller::Guest => Err(ApiError::unauthorized(
            "The request requires valid superuser authorization token.",
        )),
        Caller::Auth { .. } => Err(ApiError::forbidden(
            "The authorized record is not allowed to perform this action.",
        )),
    }
}

impl FromRequest for RequestInfo {
    type Error = ApiError;
    type Future = Ready<Result<RequestInfo, ApiError>>;

    /// Captures what rules may read: the caller, method, query parameters and
    /// headers (names lowercased, `-` → `_`, as PocketBase exposes them).
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = match Caller::from_request(req, payload).into_inner() {
            Ok(c) => c,
            Err(e) => return ready(Err(e)),
        };
        let mut headers = Map::new();
        for (name, value) in req.headers() {
            if name == header::AUTHORIZATION || name == header::COOKIE {
                continue;
            }
            if let Ok(v) = value.to_str() {
                headers.insert(name.as_str().replace('-', "_"), Value::String(v.to_owned()));
            }
        }
        let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| q.into_inner().into_iter().map(|(k, v)| (k, Value::String(v))).collect())
            .unwrap_or_default();
        ready(Ok(RequestInfo {
            caller,
            method: req.method().as_str().to_owned(),
            query,
            headers,
            context: "default",
            ip: super::middleware::client_ip(req),
            budget: std::sync::Arc::new(crate::rules::Budget::new(
                req.app_data::<web::Data<AppState>>()
                    .map(|s| s.settings.get().budget.limits())
                    .unwrap_or_default(),
            )),
        }))
    }
}
