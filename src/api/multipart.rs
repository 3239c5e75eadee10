//! Reading `multipart/form-data` bodies as the PocketBase SDKs send them:
//! JSON fields in a part named `@jsonPayload`, plain parts as string
//! fields (typed later by the collection's schema), and file parts named
//! after their field (`avatar`, `avatar+`, in a batch `requests.0.avatar`).
//!
//! Parsing is `multer`'s (a maintained streaming parser: `memmem`
//! searches, so its cost is linear in the body), behind limits of our own:
//! - the boundary is 1–70 characters of RFC 2046's alphabet, checked from
//!   the `Content-Type` before any of the body is read (a 100 KB boundary
//!   made a naive search cost seconds of CPU per request);
//! - at most [`MAX_PARTS`] parts and [`MAX_PART_HEADER`] bytes of headers
//!   per part; plain parts at most `Limits::field` bytes each, the whole
//!   body at most `Limits::body`;
//! - multer searches its buffer again for the end of a part's headers each
//!   time a chunk arrives, so bytes that arrive while no part is open (a
//!   preamble, headers) are bounded by [`MAX_BETWEEN_PARTS`]: a slow
//!   stream of header bytes costs linear, not quadratic, work.
//!
//! File parts stream to a spool file on local disk (`Storage::spool_dir`)
//! as they arrive, so memory stays bounded whatever the file's size; the
//! spool file is removed when its [`Upload`] is dropped.

use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::web::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;
use crate::files::upload::{sniff, SpoolFile, Upload};
use crate::schema::numbers;

/// Longest boundary RFC 2046 allows (§5.1.1: `1*70 bchars`).
pub const MAX_BOUNDARY: usize = 70;
/// Most parts one body may have. A record has far fewer fields; a batch
/// sends one `@jsonPayload` part (and, later, its files).
pub const MAX_PARTS: usize = 1_000;
/// Most bytes of headers one part may have (names, values, separators).
pub const MAX_PART_HEADER: usize = 8 * 1024;

/// The boundary of a `multipart/form-data` content type, checked against
/// RFC 2046: 1 to 70 characters from `bchars` (letters, digits and
/// `'()+_,-./:=? `), not ending with a space.
pub fn boundary(content_type: &str) -> Result<String, ApiError> {
    let value = content_type
        .split(';')
        .skip(1)
        .find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim())
        })
        .ok_or_else(|| ApiError::bad_request("multipart/form-data needs a boundary."))?;
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    let bchar = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    if value.is_empty() || value.len() > MAX_BOUNDARY || !value.chars().all(bchar) || value.ends_with(' ') {
        return Err(ApiError::bad_request(format!(
            "The multipart boundary must be 1 to {MAX_BOUNDARY} letters, digits or '()+_,-./:=? (RFC 2046)."
        )));
    }
    Ok(value.to_owned())
}

fn malformed(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Malformed multipart body: {why}."))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(413, format!("The request body is larger than the {limit}-byte limit."))
}

/// multer's errors as answers: size limits are 413, the rest 400.
fn parse_error(e: multer::Error, limit: usize) -> ApiError {
    match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => too_large(limit),
        multer::Error::IncompleteStream => malformed("empty or truncated"),
        other => malformed(other),
    }
}

/// Most bytes that may arrive while no part is open (preamble, part
/// headers, the delimiter): see the module comment.
pub const MAX_BETWEEN_PARTS: usize = 64 * 1024;
/// Bytes of a file part used to sniff its type.
const SNIFF_BYTES: usize = 8 * 1024;

/// How much a body may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole body.
    pub body: u64,
    /// All plain parts and `@jsonPayload`s together: they are held in memory.
    pub field: u64,
    /// One file part (the largest `maxSize` the route's fields allow): a
    /// part past it is refused while it streams, not after.
    pub file: u64,
}

/// A parsed body: the fields (plain parts and `@jsonPayload`) and the
/// spooled file parts. `plain` names the fields that came from plain parts,
/// which are strings until the schema types them.
#[derive(Debug, Default)]
pub struct Parsed {
    pub fields: Map<String, Value>,
    pub plain: Vec<String>,
    pub uploads: Vec<Upload>,
}

/// What the parser's input knows of the parse: whether a part is open,
/// and the bytes handed over since the last part ended.
struct Between {
    open: AtomicBool,
    bytes: AtomicUsize,
    /// The budget ran out once without a part opening (see [`Guarded`]).
    stalled: AtomicBool,
}

impl Between {
    /// A new part's headers are awaited.
    fn await_headers(&self) {
        self.open.store(false, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.stalled.store(false, Ordering::Relaxed);
    }
}

/// A transport error while the body streams in (the read deadline, a
/// broken connection), already shaped as the answer.
#[derive(Debug)]
pub struct BodyError(pub ApiError);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {}

#[derive(Debug)]
struct HeadersTooLarge;

impl std::fmt::Display for HeadersTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {MAX_BETWEEN_PARTS} bytes between parts")
    }
}

impl std::error::Error for HeadersTooLarge {}

/// The body as the parser sees it. multer reads every chunk that is ready
/// before it parses, and parses a part's headers from the start each time,
/// so while no part is open at most [`MAX_BETWEEN_PARTS`] bytes are handed
/// over (a chunk is split, its rest held back until the part opens). If the
/// budget runs out, the parser is made to parse what it has (a wake-up and
/// `Pending`); if it still opens no part, the headers are too large.
struct Guarded<S> {
    inner: Pin<Box<S>>,
    between: Arc<Between>,
    held: Option<Bytes>,
}

impl<S, E> Stream for Guarded<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<Bytes, Box<dyn std::error::Error + Send + Sync>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let mut chunk = match this.held.take() {
            Some(held) => held,
            None => match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(c))) => c,
            },
        };
        let between = &this.between;
        if between.open.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Ok(chunk)));
        }
        let budget = MAX_BETWEEN_PARTS.saturating_sub(between.bytes.load(Ordering::Relaxed));
        if budget == 0 {
            this.held = Some(chunk);
            if between.stalled.swap(true, Ordering::Relaxed) {
                return Poll::Ready(Some(Err(Box::new(HeadersTooLarge))));
            }
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if chunk.len() > budget {
            this.held = Some(chunk.split_off(budget));
        }
        between.bytes.fetch_add(chunk.len(), Ordering::Relaxed);
        Poll::Ready(Some(Ok(chunk)))
    }
}

fn stream_error(e: multer::Error, limit: u64) -> ApiError {
    match e {
        multer::Error::StreamReadFailed(inner) if inner.is::<HeadersTooLarge>() => malformed(inner),
        // The body read deadline and other transport errors.
        multer::Error::StreamReadFailed(inner) => match inner.downcast::<BodyError>() {
            Ok(body) => body.0,
            Err(inner) => ApiError::bad_request(format!("Failed to read the request body: {inner}.")),
        },
        other => parse_error(other, limit as usize),
    }
}

/// Reads a `multipart/form-data` body. File parts are spooled into
/// `spool` (or refused with a 400 when `spool` is `None`: the endpoint
/// takes no files). A body without a part (empty, or only the closing
/// delimiter) is refused: it is a broken upload, not an empty record.
pub async fn parse<S, E>(body: S, boundary: &str, limits: Limits, spool: Option<&Path>) -> Result<Parsed, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let size = multer::SizeLimit::new()
        .whole_stream(limits.body)
        .per_field(limits.body);
    let constraints = multer::Constraints::new().size_limit(size);
    let between = Arc::new(Between {
        open: AtomicBool::new(false),
        bytes: AtomicUsize::new(0),
        stalled: AtomicBool::new(false),
    });
    let guarded = Guarded {
        inner: Box::pin(body),
        between: between.clone(),
        held: None,
    };
    let mut multipart = multer::Multipart::with_constraints(guarded, boundary, constraints);
    let mut out = Parsed::default();
    let mut parts = 0usize;
    // What plain parts may still hold (they are kept in memory).
    let mut plain_left = limits.field;
    loop {
        between.await_headers();
        let Some(field) = multipart.next_field().await.map_err(|e| stream_error(e, limits.body))? else {
            break;
        };
        between.open.store(true, Ordering::Relaxed);
        parts += 1;
        if parts > MAX_PARTS {
            return Err(malformed(format_args!("more than {MAX_PARTS} parts")));
        }
        let header_bytes: usize = field
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes > MAX_PART_HEADER {
            return Err(malformed(format_args!(
                "a part has more than {MAX_PART_HEADER} bytes of headers"
            )));
        }
        let name = field
            .name()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| malformed("a part without a name"))?
            .to_owned();
        if let Some(original) = field.file_name().map(str::to_owned) {
            let Some(dir) = spool else {
                return Err(ApiError::field(
                    &name,
                    "validation_not_supported",
                    "This endpoint takes no files.",
                ));
            };
            let upload = spool_part(field, name, original, dir, limits).await?;
            // A form's file input left empty sends a nameless, empty part:
            // no file, not an empty one.
            if !(upload.original_name.is_empty() && upload.size == 0) {
                out.uploads.push(upload);
            }
            continue;
        }
        let text = read_plain(field, plain_left, limits.body).await?;
        plain_left -= text.len() as u64;
        if name == "@jsonPayload" {
            out.fields.extend(json_payload(&text)?);
        } else {
            add_plain(&mut out, name, text);
        }
    }
    if parts == 0 {
        return Err(malformed("no parts"));
    }
    Ok(out)
}

/// A plain part's text, at most `left` bytes (what the body's plain parts
/// may still hold).
async fn read_plain(mut field: multer::Field<'static>, left: u64, body: u64) -> Result<String, ApiError> {
    let mut content = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| stream_error(e, body))? {
        if (content.len() + chunk.len()) as u64 > left {
            return Err(ApiError::new(
                413,
                "The form's fields (parts without a file) are larger than --max-body bytes together.",
            ));
        }
        content.extend_from_slice(&chunk);
    }
    String::from_utf8(content).map_err(|_| malformed("a field is not UTF-8"))
}

fn json_payload(text: &str) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => match numbers::out_of_range_integer(text.as_bytes()) {
            // As for JSON bodies: no integer outside i64 becomes a float.
            Some(path) => Err(ApiError::field(&path, numbers::INVALID_NUMBER, numbers::OUT_OF_RANGE)),
            None => Ok(m),
        },
        Ok(_) => Err(ApiError::bad_request("@jsonPayload must be a JSON object.")),
        Err(e) => Err(ApiError::bad_request(format!("Malformed @jsonPayload: {e}."))),
    }
}

/// A plain part; several parts of one name make a list (as PocketBase
/// reads a form: `tags=a&tags=b`).
fn add_plain(out: &mut Parsed, name: String, text: String) {
    match out.fields.get_mut(&name) {
        Some(Value::Array(list)) if out.plain.contains(&name) => list.push(Value::String(text)),
        Some(existing) if out.plain.contains(&name) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, Value::String(text)]);
        }
        _ => {
            out.plain.push(name.clone());
            out.fields.insert(name, Value::String(text));
        }
    }
}

/// Streams one file part into a new spool file.
/// Bytes buffered before a spool write: a body sent in tiny chunks costs
/// one write per buffer, not one per chunk.
const SPOOL_BUFFER: usize = 256 * 1024;

async fn spool_part(
    mut field: multer::Field<'static>,
    name: String,
    original: String,
    dir: &Path,
    limits: Limits,
) -> Result<Upload, ApiError> {
    let spool = SpoolFile::new_in(dir);
    let io = |e: std::io::Error| ApiError::internal(format!("cannot spool an upload: {e}"));
    let file = tokio::fs::File::create(spool.path()).await.map_err(io)?;
    let mut file = tokio::io::BufWriter::with_capacity(SPOOL_BUFFER, file);
    let mut head = Vec::new();
    let mut size = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(|e| stream_error(e, limits.body))? {
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        size += chunk.len() as u64;
        if size > limits.file {
            return Err(ApiError::field(
                &name,
                "validation_file_size_limit",
                &format!("A file part is larger than the {}-byte limit.", limits.file),
            ));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok(Upload {
        field: name,
        original_name: original,
        size,
        mime: sniff(&head),
        spool,
    })
}

/// [`parse`] over a body already in memory, taking no files.
pub async fn parse_bytes(body: Bytes, boundary: &str, limit: usize) -> Result<Map<String, Value>, ApiError> {
    let limits = Limits {
        body: limit as u64,
        field: limit as u64,
        file: 0,
    };
    let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(body)]);
    Ok(parse(stream, boundary, limits, None).await?.fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &'static [u8]) -> Result<Map<String, Value>, ApiError> {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(parse_bytes(Bytes::from_static(body), "XX", 1024))
    }

    #[test]
    fn reads_json_payload_and_fields() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"@jsonPayload\"\r\n\r\n{\"requests\":[1]}\r\n--XX\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhi\r\n--XX--\r\n";
        let m = run(body).unwrap();
        assert_eq!(m["requests"], serde_json::json!([1]));
        assert_eq!(m["title"], "hi");
        let file = b"--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nx\r\n--XX--";
        assert_eq!(run(file).unwrap_err().data["f"]["code"], "validation_not_supported");
        let twice = b"--XX\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\na\r\n--XX\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nb\r\n--XX--";
        assert_eq!(run(twice).unwrap()["t"], serde_json::json!(["a", "b"]));
        for bad in [
            &b"garbage"[..],
            b"",
            b"\r\n",
            b"--XX--\r\n",
            b"--XX\r\nno headers end",
            b"--XX\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhi\r\n--XX",
            b"--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n--XX--",
        ] {
            let e = run(bad).unwrap_err();
            assert_eq!(e.status, 400, "{:?}", String::from_utf8_lossy(bad));
        }
        let big: &'static [u8] = Box::leak(
            format!(
                "--XX\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n{}\r\n--XX--",
                "x".repeat(2000)
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        assert_eq!(run(big).unwrap_err().status, 413);
    }

    #[test]
    fn boundaries_follow_rfc_2046() {
        assert_eq!(boundary("multipart/form-data; boundary=\"XX\"").unwrap(), "XX");
        assert_eq!(
            boundary("multipart/form-data; charset=utf-8; BOUNDARY=a'b(c)").unwrap(),
            "a'b(c)"
        );
        let seventy = "b".repeat(70);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={seventy}")).unwrap(),
            seventy
        );
        for bad in [
            "multipart/form-data".to_owned(),
            "multipart/form-data; boundary=".to_owned(),
            "multipart/form-data; boundary=\"\"".to_owned(),
            format!("multipart/form-data; boundary={}", "b".repeat(71)),
            "multipart/form-data; boundary=\"ends with space \"".to_owned(),
            "multipart/form-data; boundary=semi\u{e9}".to_owned(),
        ] {
            assert_eq!(boundary(&bad).unwrap_err().status, 400, "{bad}");
        }
    }
}
