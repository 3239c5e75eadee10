//! `GET`/`HEAD /api/files/{collection}/{recordId}/{name}`: a record's file
//! (or its thumbnail), with PocketBase's headers. `core::file_access`
//! decides who may have it and which stored object answers; this module
//! is HTTP: conditional requests (`ETag`, `Last-Modified` → 304), one
//! `Range` (206, or 416), the type and disposition, and the body streamed
//! from storage in chunks (a file is never held whole in memory).
//!
//! Uploaded files are attacker content served from the API's origin, so
//! every answer is sandboxed by its `Content-Security-Policy` (scripts in
//! an opened SVG or HTML file do not run) and `nosniff`; only types a
//! browser shows passively (images, audio, video, PDF) are `inline`,
//! everything else, HTML and SVG included, is an `attachment`.

use std::io::{self, Read, Seek, SeekFrom};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, EntityTag, Header, HttpDate, IfModifiedSince, IfNoneMatch, IfRange};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::core::file_access::{self, FileQuery};
use crate::core::RequestInfo;
use crate::error::ApiError;
use crate::files::{upload, Body, ObjectMeta};
use crate::state::AppState;

/// PocketBase's policy for served files: nothing loads, nothing runs.
const CSP: &str = "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; sandbox";
/// PocketBase's: fresh for 30 days, then reused for a day while revalidated.
const CACHE_CONTROL: &str = "max-age=2592000, stale-while-revalidate=86400";
/// Bytes read to type a file (as PocketBase's detector reads).
const SNIFF_LEN: usize = 3072;
/// Bytes read per blocking read while streaming.
const CHUNK: u64 = 256 * 1024;

/// Types served `inline` (PocketBase's list, plus the names this server's
/// detector gives the same formats); everything else is an attachment.
const INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpg",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
    "video/webm",
    "video/mp4",
    "video/3gpp",
    "video/quicktime",
    "video/x-ms-wmv",
    "audio/basic",
    "audio/aiff",
    "audio/x-aiff",
    "audio/mpeg",
    "audio/midi",
    "audio/mp3",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-mpeg",
    "audio/x-m4a",
    "audio/m4a",
    "audio/aac",
    "application/pdf",
    "application/x-pdf",
];

/// Types PocketBase takes from the extension rather than the content
/// (formats a content sniffer cannot tell apart from text or zip).
fn type_by_extension(key: &str) -> Option<&'static str> {
    let ext = &key[key.rfind('.')?..];
    Some(match ext {
        ".svg" => "image/svg+xml",
        ".css" => "text/css",
        ".js" | ".mjs" => "text/javascript",
        ".xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ".docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ".pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        _ => return None,
    })
}

/// Marks a response the security middleware leaves without
/// `X-Frame-Options`: files may be embedded (PocketBase drops the header
/// for them; the sandboxing CSP already disarms what they hold).
pub struct Embeddable;

/// The query parameters a download reads (first value of each, as Go's
/// `Query().Get`).
#[derive(Default)]
struct Params {
    token: Option<String>,
    thumb: Option<String>,
    download: bool,
}

impl Params {
    fn parse(query: &str) -> Params {
        let mut p = Params::default();
        let mut download = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "token" if p.token.is_none() => p.token = Some(v.into_owned()),
                "thumb" if p.thumb.is_none() => p.thumb = Some(v.into_owned()),
                "download" if download.is_none() => download = Some(v.into_owned()),
                _ => {}
            }
        }
        // Go's strconv.ParseBool: anything else is false.
        p.download = matches!(download.as_deref(), Some("1" | "t" | "T" | "true" | "TRUE" | "True"));
        p
    }
}

/// `GET` and `HEAD /api/files/{collection}/{recordId}/{name}`.
pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    info: RequestInfo,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (collection, record_id, name) = path.into_inner();
    let params = Params::parse(req.query_string());
    let query = FileQuery {
        collection: &collection,
        record_id: &record_id,
        name: &name,
        token: params.token.as_deref(),
        thumb: params.thumb.as_deref().filter(|t| !t.is_empty()),
    };
    let mut served = file_access::resolve(&state, query, info).await?;
    let (meta, stored) = match served.fresh.take() {
        Some(fresh) => (fresh.meta, Stored::Memory(fresh.bytes)),
        None => {
            let object = state
                .storage
                .get(&served.key, None)
                .await
                .map_err(|e| ApiError::internal(format!("reading a stored file: {e}")))?
                .ok_or_else(ApiError::missing)?;
            (object.meta, Stored::Object(object.body))
        }
    };
    let etag = etag(&meta);
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((header::LAST_MODIFIED, HttpDate::from(seconds(meta.modified))))
        .insert_header(header::ETag(etag.clone()))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    res.extensions_mut().insert(Embeddable);
    if not_modified(&req, &etag, meta.modified) {
        let disposition = disposition("inline", &served.name);
        res.status(StatusCode::NOT_MODIFIED)
            .insert_header((header::CONTENT_DISPOSITION, disposition));
        return Ok(res.finish());
    }
    let range = match requested_range(&req, &etag, &meta) {
        Ok(range) => range,
        Err(()) => return Ok(unsatisfiable(meta.size)),
    };
    let head = req.method() == Method::HEAD;
    let (sniffed, body) = match stored {
        Stored::Memory(bytes) => memory_body(bytes, range.clone(), head),
        Stored::Object(body) => open_body(&state, &served.key, body, range.clone(), head).await?,
    };
    let content_type = match type_by_extension(&served.key) {
        Some(t) => t.to_owned(),
        // Text as PocketBase's detector names it (with its charset).
        None if sniffed.starts_with("text/") && !sniffed.contains(';') => format!("{sniffed}; charset=utf-8"),
        None => sniffed,
    };
    let inline = !params.download && INLINE_TYPES.contains(&content_type.as_str());
    res.insert_header((header::CONTENT_TYPE, content_type)).insert_header((
        header::CONTENT_DISPOSITION,
        disposition(if inline { "inline" } else { "attachment" }, &served.name),
    ));
    let len = match &range {
        Some(r) => {
            res.status(StatusCode::PARTIAL_CONTENT).insert_header((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", r.start, r.end - 1, meta.size),
            ));
            r.end - r.start
        }
        None => meta.size,
    };
    Ok(res.no_chunking(len).streaming(body))
}

fn disposition(kind: &str, name: &str) -> String {
    // Stored names hold only `[A-Za-z0-9_.*+=#-]`: nothing to escape.
    format!("{kind}; filename=\"{name}\"")
}

/// A time cut to whole seconds (what HTTP dates carry).
fn seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A strong tag from size and modification time: stored objects are
/// written once under their name and never changed in place.
fn etag(meta: &ObjectMeta) -> EntityTag {
    let nanos = meta.modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    EntityTag::new_strong(format!("{:x}-{:x}", meta.size, nanos))
}

/// `If-None-Match` (weak comparison), else `If-Modified-Since`, as RFC
/// 9110 orders them.
fn not_modified(req: &HttpRequest, etag: &EntityTag, modified: SystemTime) -> bool {
    if req.headers().contains_key(header::IF_NONE_MATCH) {
        return match IfNoneMatch::parse(req) {
            Ok(IfNoneMatch::Any) => true,
            Ok(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(etag)),
            Err(_) => false,
        };
    }
    match IfModifiedSince::parse(req) {
        Ok(IfModifiedSince(since)) => seconds(modified) <= SystemTime::from(since),
        Err(_) => false,
    }
}

/// The one range to send, if any: `None` serves the whole object (no
/// `Range`, a stale `If-Range`, a malformed header, several ranges: RFC
/// 9110 lets a server ignore those); `Err` is 416.
fn requested_range(req: &HttpRequest, etag: &EntityTag, meta: &ObjectMeta) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(value) = req.headers().get(header::RANGE) else {
        return Ok(None);
    };
    if req.headers().contains_key(header::IF_RANGE) {
        let current = match IfRange::parse(req) {
            Ok(IfRange::EntityTag(tag)) => tag.strong_eq(etag),
            Ok(IfRange::Date(date)) => SystemTime::from(date) == seconds(meta.modified),
            Err(_) => false,
        };
        if !current {
            return Ok(None);
        }
    }
    let Ok(value) = value.to_str() else { return Ok(None) };
    use http_range_header::RangeUnsatisfiableError as E;
    let ranges = match http_range_header::parse_range_header(value).and_then(|p| p.validate(meta.size)) {
        Ok(ranges) => ranges,
        Err(E::Invalid(_)) => return Ok(None),
        Err(_) => return Err(()),
    };
    match ranges.as_slice() {
        [one] => Ok(Some(*one.start()..*one.end() + 1)),
        _ => Ok(None),
    }
}

/// 416 in the contract's shape, with the size the client may ask within.
fn unsatisfiable(size: u64) -> HttpResponse {
    let mut res = ApiError::new(416, "The requested range is not satisfiable.").error_response();
    if let Ok(v) = header::HeaderValue::from_str(&format!("bytes */{size}")) {
        res.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    res
}

type BodyStream = BoxStream<'static, Result<Bytes, io::Error>>;

/// Where an answer's bytes come from.
enum Stored {
    /// A stored object, opened.
    Object(Body),
    /// A thumbnail just made (see `thumbs::Fresh`).
    Memory(Bytes),
}

/// The sniffed type and the body of an answer from memory.
fn memory_body(bytes: Bytes, range: Option<std::ops::Range<u64>>, head_only: bool) -> (String, BodyStream) {
    let sniffed = upload::sniff(&bytes[..bytes.len().min(SNIFF_LEN)]);
    let range = range.unwrap_or(0..bytes.len() as u64);
    let body = match head_only {
        true => stream::empty().boxed(),
        false => stream::once(std::future::ready(Ok(
            bytes.slice(range.start as usize..range.end as usize)
        )))
        .boxed(),
    };
    (sniffed, body)
}

/// The object's sniffed type and the stream of `range` of it (nothing for
/// `HEAD`). A local file is typed and its first chunk read in one trip to
/// the blocking pool, so a small file costs one.
async fn open_body(
    state: &AppState,
    key: &str,
    body: Body,
    range: Option<std::ops::Range<u64>>,
    head_only: bool,
) -> Result<(String, BodyStream), ApiError> {
    let failed = |e: io::Error| ApiError::internal(format!("reading a stored file: {e}"));
    match body {
        Body::File { file, len } => {
            let range = range.unwrap_or(0..len);
            let want = if head_only { 0 } else { range.end - range.start };
            let (sniffed, first, file) = web::block(move || first_chunk(file, range.start, want))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .map_err(failed)?;
            let rest = want - first.len() as u64;
            let first = stream::once(async move { Ok(first) });
            Ok((sniffed, first.chain(file_chunks(file, rest)).boxed()))
        }
        Body::Stream(whole) => {
            // A remote object: the first bytes from a ranged read, then the
            // range itself.
            drop(whole);
            let head = match state
                .storage
                .get(key, Some(0..SNIFF_LEN as u64))
                .await
                .map_err(failed)?
            {
                Some(o) => collect_head(o.body).await.map_err(failed)?,
                None => return Err(ApiError::missing()),
            };
            let body = match (head_only, state.storage.get(key, range).await.map_err(failed)?) {
                (true, _) => stream::empty().boxed(),
                (false, Some(o)) => into_stream(o.body),
                (false, None) => return Err(ApiError::missing()),
            };
            Ok((upload::sniff(&head), body))
        }
    }
}

/// Types the file from its first bytes, then reads up to one chunk of
/// the `want` bytes at `start`.
fn first_chunk(mut file: std::fs::File, start: u64, want: u64) -> io::Result<(String, Bytes, std::fs::File)> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    (&mut file).take(SNIFF_LEN as u64).read_to_end(&mut head)?;
    let sniffed = upload::sniff(&head);
    let first = if start == 0 && want <= head.len() as u64 {
        head.truncate(want as usize);
        head
    } else {
        file.seek(SeekFrom::Start(start))?;
        read_exactly(&mut file, want.min(CHUNK))?
    };
    Ok((sniffed, Bytes::from(first), file))
}

fn read_exactly(file: &mut std::fs::File, n: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; n as usize];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// The next `remaining` bytes of `file`, a chunk per blocking read.
fn file_chunks(file: std::fs::File, remaining: u64) -> BodyStream {
    stream::unfold(Some((file, remaining)), |state| async move {
        let (mut file, remaining) = state.filter(|(_, r)| *r > 0)?;
        let n = remaining.min(CHUNK);
        let read = web::block(move || read_exactly(&mut file, n).map(|buf| (buf, file))).await;
        match read {
            Ok(Ok((buf, file))) => Some((Ok(Bytes::from(buf)), Some((file, remaining - n)))),
            // An error ends the body (the connection is closed mid-body).
            Ok(Err(e)) => Some((Err(e), None)),
            Err(e) => Some((Err(io::Error::other(e.to_string())), None)),
        }
    })
    .boxed()
}

/// A remote body as a stream.
fn into_stream(body: Body) -> BodyStream {
    match body {
        Body::Stream(s) => s,
        Body::File { file, len } => file_chunks(file, len),
    }
}

/// Up to [`SNIFF_LEN`] first bytes of `body`.
async fn collect_head(body: Body) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    let mut chunks = into_stream(body);
    while head.len() < SNIFF_LEN {
        match chunks.next().await {
            Some(chunk) => head.extend_from_slice(&chunk?),
            None => break,
        }
    }
    head.truncate(SNIFF_LEN);
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_as_pocketbase_reads_them() {
        let p = Params::parse("thumb=10x10&thumb=20x20&download=1&token=a%2Bb");
        assert_eq!(
            (p.thumb.as_deref(), p.download, p.token.as_deref()),
            (Some("10x10"), true, Some("a+b"))
        );
        for (q, download) in [
            ("download=true", true),
            ("download=yes", false),
            ("download=0", false),
            ("", false),
        ] {
            assert_eq!(Params::parse(q).download, download, "{q}");
        }
    }

    #[test]
    fn types_pocketbase_takes_from_the_extension() {
        assert_eq!(type_by_extension("c/r/x_abc.svg"), Some("image/svg+xml"));
        assert_eq!(type_by_extension("c/r/x_abc.mjs"), Some("text/javascript"));
        assert_eq!(type_by_extension("c/r/x_abc.png"), None);
        assert_eq!(type_by_extension("c/r/noext"), None);
    }
}
