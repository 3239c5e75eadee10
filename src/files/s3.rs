//! The S3-compatible backend: AWS S3, MinIO, R2, Wasabi, ... spoken
//! directly over HTTP (reqwest) with AWS Signature Version 4, the few calls
//! storage needs: PUT / GET (ranged) / HEAD / DELETE an object,
//! ListObjectsV2 and the three multipart-upload calls.
//!
//! Everything is bounded: every request has a deadline (connect, then the
//! whole exchange; a download's body may take as long as its reader needs
//! but never stalls longer than [`IDLE`]), every answer read into memory (a
//! list page, an error, an upload id) is capped, and uploads stream from the
//! spool file, in parts above [`PART_SIZE`], never whole into memory.
//! Redirects are not followed (S3 answers a wrong region with an error, and
//! following one would send the signed request elsewhere).
//!
//! Payloads are signed (their SHA-256 is in the signature), so S3 itself
//! refuses a body that changed on the way.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use super::{Body, Object, ObjectMeta};

/// Where a bucket is and how to sign for it (PocketBase's `s3` settings,
/// converted by the caller: `files` knows nothing of settings).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`, ...
    /// (no scheme: https).
    pub endpoint: String,
    pub access_key: String,
    pub secret: String,
    /// `<endpoint>/<bucket>/<key>` instead of `<bucket>.<endpoint host>/<key>`
    /// (MinIO and most self-hosted servers need it).
    pub force_path_style: bool,
}

/// The secret never reaches a log line.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("force_path_style", &self.force_path_style)
            .finish_non_exhaustive()
    }
}

/// Connecting (TCP + TLS) to the endpoint.
const CONNECT: Duration = Duration::from_secs(5);
/// A small exchange (HEAD, DELETE, a list page, a small PUT), answer included;
/// also the time to a download's first byte and the longest silence within
/// any answer.
const IDLE: Duration = Duration::from_secs(30);
/// Completing a multipart upload (S3 may take minutes for a big object).
const COMPLETE: Duration = Duration::from_secs(300);
/// The slowest upload throughput tolerated (bytes/s), on top of [`IDLE`]:
/// an upload of n bytes must finish within `IDLE + n / MIN_RATE`.
const MIN_RATE: u64 = 256 * 1024;
/// Files above this are uploaded in parts of (at least) this size. S3's
/// floor for a part is 5 MiB; 16 MiB keeps the request count low.
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
/// S3's ceiling on the parts of one upload.
const MAX_PARTS: u64 = 10_000;
/// A list page (1,000 keys of at most 1 KiB each, plus XML).
const MAX_LIST_ANSWER: usize = 4 * 1024 * 1024;
/// Error answers and the other small XML answers.
const MAX_SMALL_ANSWER: usize = 64 * 1024;
/// Reads of the spool file while uploading.
const CHUNK: u64 = 256 * 1024;
/// Deletes in flight at once when removing a prefix.
const DELETE_CONCURRENCY: usize = 8;
/// SHA-256 of the empty payload.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub struct S3 {
    config: S3Config,
    client: reqwest::Client,
    /// `scheme://host[:port]`.
    origin: String,
    /// The Host header as signed (reqwest sends the same: no default port).
    host: String,
    /// The bucket's path ("" for virtual-hosted style, or the endpoint's
    /// own path), already encoded; object paths are `<root>/<key>`.
    root: String,
    part_size: u64,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

impl S3 {
    /// Checks the configuration and builds the client; no request is made.
    pub fn new(config: S3Config) -> io::Result<S3> {
        let endpoint = config.endpoint.trim();
        let endpoint = if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("https://{endpoint}")
        };
        let url = url::Url::parse(&endpoint).map_err(|e| invalid(format!("invalid S3 endpoint: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || !url.username().is_empty() {
            return Err(invalid("the S3 endpoint must be a plain http(s) URL"));
        }
        let endpoint_host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("the S3 endpoint has no host"))?;
        let bucket = &config.bucket;
        if bucket.is_empty() || bucket.len() > 255 || bucket.chars().any(|c| c == '/' || c.is_control()) {
            return Err(invalid("invalid S3 bucket name"));
        }
        if config.region.is_empty() || config.region.chars().any(|c| !c.is_ascii_graphic() || c == '/') {
            return Err(invalid("invalid S3 region"));
        }
        if config.access_key.is_empty() || config.access_key.chars().any(|c| !c.is_ascii_graphic() || c == '/') {
            return Err(invalid("invalid S3 access key"));
        }
        let base_path = url.path().trim_end_matches('/');
        let (host, root) = if config.force_path_style {
            (
                endpoint_host.to_owned(),
                format!("{base_path}/{}", uri_encode(bucket, false)),
            )
        } else {
            let label_ok = bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
            if !label_ok {
                return Err(invalid(
                    "this bucket name cannot be part of a host name: turn on force path style",
                ));
            }
            if !matches!(url.host(), Some(url::Host::Domain(_))) {
                return Err(invalid("an endpoint given by IP address needs force path style"));
            }
            (format!("{bucket}.{endpoint_host}"), base_path.to_owned())
        };
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT)
            .read_timeout(IDLE)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("basalt/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| io::Error::other(format!("cannot build the S3 client: {e}")))?;
        Ok(S3 {
            origin: format!("{}://{host}", url.scheme()),
            host,
            root,
            client,
            config,
            part_size: PART_SIZE,
        })
    }

    /// The configuration this backend was built from (to tell whether the
    /// settings changed).
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// Uploads above `size` bytes go in parts of `size` (at least S3's
    /// 5 MiB; tests use the floor to exercise multipart without big files).
    pub fn with_part_size(mut self, size: u64) -> S3 {
        self.part_size = size.max(5 * 1024 * 1024);
        self
    }

    pub async fn put_file(&self, key: &str, src: &Path) -> io::Result<()> {
        check_key(key)?;
        let len = std::fs::metadata(src)?.len();
        if len <= self.part_size {
            let hash = hash_file(src.to_owned(), 0, len).await?;
            let req = Req::new(Method::PUT, self.object_path(key))
                .body(Payload::File {
                    path: src.to_owned(),
                    offset: 0,
                    len,
                    sha256: hash,
                })
                .timeout(upload_timeout(len));
            self.call(req, "upload").await.map(drop)
        } else {
            self.put_multipart(key, src, len).await
        }
    }

    pub async fn put_bytes(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        check_key(key)?;
        let timeout = upload_timeout(bytes.len() as u64);
        let req = Req::new(Method::PUT, self.object_path(key))
            .body(Payload::Bytes(bytes))
            .timeout(timeout);
        self.call(req, "upload").await.map(drop)
    }

    pub async fn head(&self, key: &str) -> io::Result<Option<ObjectMeta>> {
        check_key(key)?;
        let req = Req::new(Method::HEAD, self.object_path(key));
        match self.call(req, "head").await {
            Ok(resp) => Ok(Some(ObjectMeta {
                size: header_length(resp.headers())
                    .ok_or_else(|| io::Error::other("S3 head: no Content-Length in the answer"))?,
                modified: last_modified(resp.headers()),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn get(&self, key: &str, range: Option<Range<u64>>) -> io::Result<Option<Object>> {
        check_key(key)?;
        if let Some(r) = &range {
            if r.start >= r.end {
                // An empty range: S3 cannot express it; the meta is all.
                return Ok(self.head(key).await?.map(|meta| Object {
                    meta,
                    body: Body::Stream(stream::empty().boxed()),
                }));
            }
        }
        let mut req = Req::new(Method::GET, self.object_path(key)).streaming();
        if let Some(r) = &range {
            req = req.header("range", &format!("bytes={}-{}", r.start, r.end - 1));
        }
        let resp = match self.call(req, "download").await {
            Ok(resp) => resp,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let modified = last_modified(resp.headers());
        let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
        let size = if partial {
            content_range_total(resp.headers()).ok_or_else(|| io::Error::other("S3 download: bad Content-Range"))?
        } else {
            header_length(resp.headers()).ok_or_else(|| io::Error::other("S3 download: no Content-Length"))?
        };
        let body = resp.bytes_stream().map_err(|e| io_error("download", &e)).boxed();
        let body = match range {
            // A server that ignored the Range header sent the whole object.
            Some(r) if !partial => slice_stream(body, r.start, r.end.min(size).saturating_sub(r.start)),
            _ => body,
        };
        Ok(Some(Object {
            meta: ObjectMeta { size, modified },
            body: Body::Stream(body),
        }))
    }

    pub async fn delete(&self, key: &str) -> io::Result<()> {
        check_key(key)?;
        match self
            .call(Req::new(Method::DELETE, self.object_path(key)), "delete")
            .await
        {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes every key under `prefix` (a "directory": `c/r` means `c/r/`).
    /// An empty prefix is refused: it would empty the whole bucket.
    pub async fn delete_prefix(&self, prefix: &str) -> io::Result<()> {
        if prefix.trim_end_matches('/').is_empty() {
            return Err(invalid("refusing to delete every object of the bucket"));
        }
        let keys = self.list(prefix).await?;
        let mut deletes = stream::iter(keys.into_iter().map(|(key, _)| async move { self.delete(&key).await }))
            .buffer_unordered(DELETE_CONCURRENCY);
        let mut first_error = None;
        while let Some(result) = deletes.next().await {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Every key under `prefix` (a "directory", as for the local disk; ""
    /// lists the whole bucket), page by page (ListObjectsV2, 1,000 keys).
    pub async fn list(&self, prefix: &str) -> io::Result<Vec<(String, ObjectMeta)>> {
        let prefix = match prefix.trim_end_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2".to_owned()), ("max-keys", "1000".to_owned())];
            if !prefix.is_empty() {
                query.push(("prefix", prefix.clone()));
            }
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let req = Req::new(Method::GET, self.bucket_path()).query(query);
            let resp = self.call(req, "list").await?;
            let page = parse_list(&read_bounded(resp, MAX_LIST_ANSWER, "list").await?)?;
            out.extend(page.objects);
            match page.next {
                // A server that hands the same token back would loop forever.
                Some(next) if page.truncated && token.as_deref() != Some(next.as_str()) => token = Some(next),
                Some(_) | None if page.truncated => {
                    return Err(io::Error::other(
                        "S3 list: truncated page without a new continuation token",
                    ))
                }
                _ => return Ok(out),
            }
        }
    }

    /// The connection test (settings' "Test S3"): writes a probe object,
    /// reads it back, and deletes its prefix (which lists it), as PocketBase
    /// does. The error says which step failed.
    pub async fn probe(&self) -> io::Result<()> {
        let prefix = format!("basalt_settings_test_{}", crate::ids::record_id());
        let key = format!("{prefix}/test.txt");
        let content = Bytes::from_static(b"basalt s3 test");
        let step = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("failed to {what}: {e}"));
        self.put_bytes(&key, content.clone())
            .await
            .map_err(|e| step("upload a test file", e))?;
        let read = async {
            let Some(obj) = self.get(&key, None).await? else {
                return Err(io::Error::new(io::ErrorKind::NotFound, "the test file is missing"));
            };
            let Body::Stream(body) = obj.body else {
                unreachable!("S3 bodies are streams")
            };
            let got: Vec<Bytes> = body.take(64).try_collect().await?;
            if got.concat() != content {
                return Err(io::Error::other("the test file came back with other bytes"));
            }
            Ok(())
        };
        let read = read.await.map_err(|e| step("read the test file back", e));
        let deleted = self
            .delete_prefix(&prefix)
            .await
            .map_err(|e| step("delete the test file", e));
        read.and(deleted)
    }

    async fn put_multipart(&self, key: &str, src: &Path, len: u64) -> io::Result<()> {
        let path = self.object_path(key);
        let req = Req::new(Method::POST, path.clone()).query(vec![("uploads", String::new())]);
        let resp = self.call(req, "start multipart upload").await?;
        let body = read_bounded(resp, MAX_SMALL_ANSWER, "start multipart upload").await?;
        let upload_id = xml_value(&body, &["InitiateMultipartUploadResult", "UploadId"])?
            .ok_or_else(|| io::Error::other("S3 start multipart upload: no UploadId in the answer"))?;
        let result = self.upload_parts(&path, &upload_id, src, len).await;
        if result.is_err() {
            // Best effort: S3 keeps (and bills) the parts of an unfinished upload.
            let abort = Req::new(Method::DELETE, path).query(vec![("uploadId", upload_id)]);
            if let Err(e) = self.call(abort, "abort multipart upload").await {
                tracing::warn!(error = %e, "S3: could not abort a failed multipart upload");
            }
        }
        result
    }

    async fn upload_parts(&self, path: &str, upload_id: &str, src: &Path, len: u64) -> io::Result<()> {
        let part_size = self.part_size.max(len.div_ceil(MAX_PARTS));
        let mut done = String::from("<CompleteMultipartUpload>");
        let mut offset = 0;
        let mut number = 1u64;
        while offset < len {
            let part_len = part_size.min(len - offset);
            let sha256 = hash_file(src.to_owned(), offset, part_len).await?;
            let req = Req::new(Method::PUT, path.to_owned())
                .query(vec![
                    ("partNumber", number.to_string()),
                    ("uploadId", upload_id.to_owned()),
                ])
                .body(Payload::File {
                    path: src.to_owned(),
                    offset,
                    len: part_len,
                    sha256,
                })
                .timeout(upload_timeout(part_len));
            let resp = self.call(req, "upload part").await?;
            let etag = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| io::Error::other("S3 upload part: no ETag in the answer"))?;
            done.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                quick_xml::escape::escape(etag)
            ));
            offset += part_len;
            number += 1;
        }
        done.push_str("</CompleteMultipartUpload>");
        let req = Req::new(Method::POST, path.to_owned())
            .query(vec![("uploadId", upload_id.to_owned())])
            .body(Payload::Bytes(Bytes::from(done)))
            .timeout(COMPLETE);
        let resp = self.call(req, "complete multipart upload").await?;
        // S3 may answer 200 and put the failure in the body.
        let body = read_bounded(resp, MAX_SMALL_ANSWER, "complete multipart upload").await?;
        match xml_error(&body) {
            Some((code, message)) => Err(io::Error::other(format!(
                "S3 complete multipart upload: {code}: {message}"
            ))),
            None => Ok(()),
        }
    }

    fn object_path(&self, key: &str) -> String {
        format!("{}/{}", self.root, uri_encode(key, false))
    }

    fn bucket_path(&self) -> String {
        if self.root.is_empty() {
            "/".into()
        } else {
            self.root.clone()
        }
    }

    /// Signs and sends `req`; a non-2xx answer becomes an error carrying
    /// S3's code and message (404 → `NotFound`, 403 → `PermissionDenied`).
    async fn call(&self, req: Req, what: &str) -> io::Result<reqwest::Response> {
        let sha256 = match &req.payload {
            Payload::Empty => EMPTY_SHA256.to_owned(),
            Payload::Bytes(b) => hex(&Sha256::digest(b)),
            Payload::File { sha256, .. } => sha256.clone(),
        };
        let query = canonical_query(&req.query);
        let now = SystemTime::now();
        let headers = self.sign(&req, &query, &sha256, now)?;
        let url = if query.is_empty() {
            format!("{}{}", self.origin, req.path)
        } else {
            format!("{}{}?{query}", self.origin, req.path)
        };
        let mut builder = self.client.request(req.method.clone(), url).headers(headers);
        builder = match req.payload {
            Payload::Empty => builder,
            Payload::Bytes(b) => builder.body(b),
            Payload::File { path, offset, len, .. } => builder
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(file_body(path, offset, len)),
        };
        let resp = if req.streaming {
            // The body may take as long as its reader needs (the client's
            // read timeout still bounds each silence); the answer's head
            // must come within IDLE.
            tokio::time::timeout(IDLE, builder.send())
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("S3 {what}: timed out")))?
        } else {
            builder.timeout(req.timeout).send().await
        };
        let resp = resp.map_err(|e| io_error(what, &e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(status_error(resp, what).await)
    }

    /// The SigV4 headers of `req`: `host`, `x-amz-date`,
    /// `x-amz-content-sha256` and `range` (if any) are signed.
    fn sign(&self, req: &Req, query: &str, sha256: &str, now: SystemTime) -> io::Result<HeaderMap> {
        let mut signed: Vec<(&str, String)> = vec![
            ("host", self.host.clone()),
            ("x-amz-content-sha256", sha256.to_owned()),
            ("x-amz-date", amz_date(now)),
        ];
        signed.extend(req.headers.iter().map(|(k, v)| (*k, v.clone())));
        signed.sort_by(|a, b| a.0.cmp(b.0));
        let auth = authorization(
            &self.config,
            req.method.as_str(),
            &req.path,
            query,
            &signed,
            sha256,
            now,
        );
        let mut headers = HeaderMap::new();
        for (name, value) in signed.iter().filter(|(n, _)| *n != "host") {
            let value = HeaderValue::from_str(value).map_err(|_| invalid("invalid S3 header value"))?;
            headers.insert(*name, value);
        }
        let auth = HeaderValue::from_str(&auth).map_err(|_| invalid("invalid S3 credentials"))?;
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        Ok(headers)
    }
}

/// One request before signing.
struct Req {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    /// Extra signed headers (lowercase names).
    headers: Vec<(&'static str, String)>,
    payload: Payload,
    timeout: Duration,
    streaming: bool,
}

enum Payload {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of the file at `path` from `offset`, whose SHA-256 is
    /// already known (hex).
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
        sha256: String,
    },
}

impl Req {
    fn new(method: Method, path: String) -> Req {
        Req {
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            payload: Payload::Empty,
            timeout: IDLE,
            streaming: false,
        }
    }
    fn query(mut self, query: Vec<(&'static str, String)>) -> Req {
        self.query = query;
        self
    }
    fn header(mut self, name: &'static str, value: &str) -> Req {
        self.headers.push((name, value.to_owned()));
        self
    }
    fn body(mut self, payload: Payload) -> Req {
        self.payload = payload;
        self
    }
    fn timeout(mut self, timeout: Duration) -> Req {
        self.timeout = timeout;
        self
    }
    fn streaming(mut self) -> Req {
        self.streaming = true;
        self
    }
}

fn upload_timeout(len: u64) -> Duration {
    IDLE + Duration::from_secs(len / MIN_RATE)
}

/// Keys are made by Basalt from ids and checked names; this refuses what
/// could address something else (`..`, empty segments, a leading `/`).
fn check_key(key: &str) -> io::Result<()> {
    let plain = !key.is_empty()
        && key.len() <= 1024
        && !key.contains(['\0', '\\'])
        && key.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
    if plain {
        Ok(())
    } else {
        Err(invalid("invalid storage key"))
    }
}

/// SigV4's URI encoding: every byte but `A-Za-z0-9-._~` as `%XX`; `/` kept
/// in paths, encoded in query values.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (b == b'/' && !encode_slash) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query as signed and as sent: encoded, sorted by name then value.
fn canonical_query(query: &[(&str, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The `Authorization` header of SigV4 for the canonical parts given;
/// `signed` holds every signed header, lowercase and sorted.
fn authorization(
    config: &S3Config,
    method: &str,
    path: &str,
    query: &str,
    signed: &[(&str, String)],
    sha256: &str,
    now: SystemTime,
) -> String {
    let amz_date = amz_date(now);
    let day = &amz_date[..8];
    let names = signed.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(";");
    let header_lines: String = signed.iter().map(|(n, v)| format!("{n}:{}\n", v.trim())).collect();
    let canonical = format!("{method}\n{path}\n{query}\n{header_lines}\n{names}\n{sha256}");
    let scope = format!("{day}/{}/s3/aws4_request", config.region);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{}", config.secret).as_bytes(), day.as_bytes());
    for part in [config.region.as_str(), "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={names}, Signature={signature}",
        config.access_key
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYMMDDTHHMMSSZ` (UTC).
fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// S3's list dates: `2024-05-01T12:34:56.789Z` (fraction optional).
fn parse_iso(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let rest = &s[19..];
    let (frac, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            (&r[..digits], &r[digits..])
        }
        None => ("", rest),
    };
    if zone != "Z" {
        return None;
    }
    let nanos = format!("{frac:0<9}").get(..9)?.parse::<u32>().ok()?;
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec);
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

fn last_modified(headers: &HeaderMap) -> SystemTime {
    headers
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .unwrap_or(UNIX_EPOCH)
}

/// The `Content-Length` header itself (reqwest's `content_length()` is the
/// body's size, always 0 for a HEAD).
fn header_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The total of `Content-Range: bytes a-b/total`.
fn content_range_total(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    v.rsplit_once('/')?.1.trim().parse().ok()
}

/// `len` bytes of `body` from `skip` on.
fn slice_stream(
    body: futures_util::stream::BoxStream<'static, io::Result<Bytes>>,
    skip: u64,
    len: u64,
) -> futures_util::stream::BoxStream<'static, io::Result<Bytes>> {
    body.scan((skip, len), |(skip, left), chunk| {
        let out = chunk.map(|mut c| {
            let drop_n = (*skip).min(c.len() as u64) as usize;
            *skip -= drop_n as u64;
            c = c.slice(drop_n..);
            let keep = (*left).min(c.len() as u64) as usize;
            *left -= keep as u64;
            c.slice(..keep)
        });
        futures_util::future::ready(Some(out))
    })
    .try_filter(|c| futures_util::future::ready(!c.is_empty()))
    .boxed()
}

/// A reqwest error as an io error that says what failed and why (the
/// causes' chain: "connection refused", "dns error", ...).
fn io_error(what: &str, e: &reqwest::Error) -> io::Error {
    let mut msg = format!("S3 {what}: ");
    if e.is_timeout() {
        msg.push_str("timed out");
    } else if e.is_connect() {
        msg.push_str("cannot connect");
    } else {
        msg.push_str("request failed");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    let kind = if e.is_timeout() {
        io::ErrorKind::TimedOut
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, msg)
}

/// A non-2xx answer as an error, with S3's `<Code>` and `<Message>` when
/// the (bounded) body has them.
async fn status_error(resp: reqwest::Response, what: &str) -> io::Error {
    let status = resp.status();
    let kind = match status {
        StatusCode::NOT_FOUND => io::ErrorKind::NotFound,
        StatusCode::FORBIDDEN => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    let detail = match read_bounded(resp, MAX_SMALL_ANSWER, what)
        .await
        .ok()
        .and_then(|b| xml_error(&b))
    {
        Some((code, message)) if message.is_empty() => format!(": {code}"),
        Some((code, message)) => format!(": {code}: {message}"),
        None => String::new(),
    };
    io::Error::new(kind, format!("S3 {what}: HTTP {status}{detail}"))
}

/// The answer's body, refused past `limit` bytes.
async fn read_bounded(resp: reqwest::Response, limit: usize, what: &str) -> io::Result<String> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(io::Error::other(format!("S3 {what}: answer too large")));
    }
    let mut body = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| io_error(what, &e))?;
        if body.len() + chunk.len() > limit {
            return Err(io::Error::other(format!("S3 {what}: answer too large")));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| io::Error::other(format!("S3 {what}: answer is not UTF-8")))
}

/// Walks an XML document, calling `f(path, text)` at the end of every
/// element with the path of element names from the root and the element's
/// own text (entities resolved).
fn xml_walk(xml: &str, mut f: impl FnMut(&[String], &str)) -> io::Result<()> {
    use quick_xml::events::Event;
    const MAX_DEPTH: usize = 16;
    let bad = |e: &dyn fmt::Display| io::Error::other(format!("S3 answered malformed XML: {e}"));
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(e) => {
                if path.len() >= MAX_DEPTH {
                    return Err(bad(&"nested too deep"));
                }
                path.push(e.local_name().as_ref().to_owned());
                texts.push(String::new());
            }
            Event::Empty(e) => {
                path.push(e.local_name().as_ref().to_owned());
                f(&path, "");
                path.pop();
            }
            Event::End(_) => {
                let text = texts.pop().unwrap_or_default();
                f(&path, &text);
                path.pop();
            }
            Event::Text(t) => {
                if let Some(cur) = texts.last_mut() {
                    cur.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(cur) = texts.last_mut() {
                    cur.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| bad(&e))? {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                        .ok_or_else(|| bad(&"unknown entity"))?
                        .to_owned(),
                };
                if let Some(cur) = texts.last_mut() {
                    cur.push_str(&resolved);
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The text of the element at `path` (from the root), if present.
fn xml_value(xml: &str, path: &[&str]) -> io::Result<Option<String>> {
    let mut found = None;
    xml_walk(xml, |p, text| {
        if found.is_none() && p.iter().map(String::as_str).eq(path.iter().copied()) {
            found = Some(text.to_owned());
        }
    })?;
    Ok(found)
}

/// `<Error><Code>…</Code><Message>…</Message></Error>`, if that is what
/// `xml` is.
fn xml_error(xml: &str) -> Option<(String, String)> {
    let code = xml_value(xml, &["Error", "Code"]).ok()??;
    let message = xml_value(xml, &["Error", "Message"]).ok().flatten().unwrap_or_default();
    Some((code, message))
}

struct ListPage {
    objects: Vec<(String, ObjectMeta)>,
    truncated: bool,
    next: Option<String>,
}

/// One ListObjectsV2 answer.
fn parse_list(xml: &str) -> io::Result<ListPage> {
    let mut page = ListPage {
        objects: Vec::new(),
        truncated: false,
        next: None,
    };
    let (mut key, mut size, mut modified) = (None::<String>, None::<u64>, None::<SystemTime>);
    let mut bad_entry = false;
    xml_walk(xml, |path, text| {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        match names.as_slice() {
            ["ListBucketResult", "IsTruncated"] => page.truncated = text.trim() == "true",
            ["ListBucketResult", "NextContinuationToken"] => page.next = Some(text.to_owned()),
            ["ListBucketResult", "Contents", "Key"] => key = Some(text.to_owned()),
            ["ListBucketResult", "Contents", "Size"] => size = text.trim().parse().ok(),
            ["ListBucketResult", "Contents", "LastModified"] => modified = parse_iso(text.trim()),
            ["ListBucketResult", "Contents"] => match (key.take(), size.take()) {
                (Some(k), Some(size)) => page.objects.push((
                    k,
                    ObjectMeta {
                        size,
                        modified: modified.take().unwrap_or(UNIX_EPOCH),
                    },
                )),
                _ => bad_entry = true,
            },
            _ => {}
        }
    })?;
    if bad_entry {
        return Err(io::Error::other("S3 list: an entry without a key or size"));
    }
    Ok(page)
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("storage task failed: {e}")))?
}

/// SHA-256 (hex) of `len` bytes of `path` from `offset`, read in chunks.
async fn hash_file(path: PathBuf, offset: u64, len: u64) -> io::Result<String> {
    blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0; CHUNK as usize];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK) as usize;
            file.read_exact(&mut buf[..n])?;
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(hex(&hasher.finalize()))
    })
    .await
}

/// `len` bytes of `path` from `offset` as a request body, read a chunk at
/// a time as the connection takes them.
fn file_body(path: PathBuf, offset: u64, len: u64) -> reqwest::Body {
    type State = (Option<std::fs::File>, PathBuf, u64, u64);
    let chunks = stream::try_unfold((None, path, offset, len), |(file, path, pos, left): State| async move {
        if left == 0 {
            return Ok(None);
        }
        let n = left.min(CHUNK);
        let (file, path, chunk) = blocking(move || {
            let mut file = match file {
                Some(f) => f,
                None => {
                    let mut f = std::fs::File::open(&path)?;
                    f.seek(SeekFrom::Start(pos))?;
                    f
                }
            };
            let mut buf = vec![0; n as usize];
            file.read_exact(&mut buf)?;
            Ok((file, path, buf))
        })
        .await?;
        Ok::<_, io::Error>(Some((Bytes::from(chunk), (Some(file), path, pos + n, left - n))))
    });
    reqwest::Body::wrap_stream(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path_style: bool) -> S3Config {
        S3Config {
            bucket: "examplebucket".into(),
            region: "us-east-1".into(),
            endpoint: "https://s3.amazonaws.com".into(),
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            force_path_style: path_style,
        }
    }

    /// AWS's published example ("GET Object" in the SigV4 header-auth
    /// docs): same inputs, same signature.
    #[test]
    fn signs_as_aws_documents() {
        let now = UNIX_EPOCH + Duration::from_secs(1_369_353_600); // 2013-05-24T00:00:00Z
        assert_eq!(amz_date(now), "20130524T000000Z");
        let signed = [
            ("host", "examplebucket.s3.amazonaws.com".to_owned()),
            ("range", "bytes=0-9".to_owned()),
            ("x-amz-content-sha256", EMPTY_SHA256.to_owned()),
            ("x-amz-date", "20130524T000000Z".to_owned()),
        ];
        let auth = authorization(&config(false), "GET", "/test.txt", "", &signed, EMPTY_SHA256, now);
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn addresses_virtual_hosted_and_path_style() {
        let s = S3::new(config(false)).unwrap();
        assert_eq!(
            (s.origin.as_str(), s.host.as_str()),
            (
                "https://examplebucket.s3.amazonaws.com",
                "examplebucket.s3.amazonaws.com"
            )
        );
        assert_eq!(s.object_path("c/r/a b.png"), "/c/r/a%20b.png");
        assert_eq!(s.bucket_path(), "/");
        let mut c = config(true);
        c.endpoint = "http://127.0.0.1:9000/base/".into();
        let s = S3::new(c).unwrap();
        assert_eq!(
            (s.origin.as_str(), s.host.as_str()),
            ("http://127.0.0.1:9000", "127.0.0.1:9000")
        );
        assert_eq!(s.object_path("c/r/x.txt"), "/base/examplebucket/c/r/x.txt");
        assert_eq!(s.bucket_path(), "/base/examplebucket");
        let mut c = config(false);
        c.bucket = "Under_Score".into();
        assert!(S3::new(c).is_err(), "not a host label without path style");
        let mut c = config(false);
        c.endpoint = "http://127.0.0.1:9000".into();
        assert!(S3::new(c).is_err(), "an IP address cannot take a bucket label");
        for endpoint in ["ftp://x", "http://", "http://u:p@host", "http://h/?q=1"] {
            let mut c = config(true);
            c.endpoint = endpoint.into();
            assert!(S3::new(c).is_err(), "{endpoint}");
        }
    }

    #[test]
    fn refuses_keys_that_address_something_else() {
        for bad in ["", "/a", "a//b", "a/../b", "./a", "a/", "a\\b", "a\0b"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key("c/r/a_b.png").is_ok());
    }

    #[test]
    fn canonical_query_is_sorted_and_encoded() {
        let q = canonical_query(&[
            ("prefix", "a b/c".into()),
            ("list-type", "2".into()),
            ("uploads", String::new()),
        ]);
        assert_eq!(q, "list-type=2&prefix=a%20b%2Fc&uploads=");
    }

    #[test]
    fn parses_list_pages_and_errors() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><IsTruncated>true</IsTruncated>
<Contents><Key>c/r/a&amp;b.txt</Key><LastModified>2024-05-01T12:34:56.789Z</LastModified><Size>12</Size></Contents>
<Contents><Key>c/r/x</Key><LastModified>2024-05-01T12:34:56Z</LastModified><Size>0</Size></Contents>
<NextContinuationToken>tok&#x2F;1</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list(xml).unwrap();
        assert!(page.truncated);
        assert_eq!(page.next.as_deref(), Some("tok/1"));
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].0, "c/r/a&b.txt");
        assert_eq!(page.objects[0].1.size, 12);
        assert_eq!(
            page.objects[0].1.modified,
            UNIX_EPOCH + Duration::new(1_714_566_896, 789_000_000)
        );
        assert!(parse_list("<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>").is_err());
        assert!(parse_list("<a><b></a>").is_err());
        let err = "<Error><Code>SignatureDoesNotMatch</Code><Message>bad &lt;sig&gt;</Message></Error>";
        assert_eq!(
            xml_error(err),
            Some(("SignatureDoesNotMatch".into(), "bad <sig>".into()))
        );
        assert_eq!(xml_error("<CompleteMultipartUploadResult/>"), None);
    }

    #[test]
    fn dates_round_trip() {
        for days in [-1000, 0, 19_000, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(parse_iso("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(parse_iso("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_iso("2024-01-01T00:00:00+01:00"), None);
    }

    #[tokio::test]
    async fn slices_a_whole_body_to_the_range() {
        let chunks: Vec<io::Result<Bytes>> = vec![Ok(Bytes::from_static(b"0123")), Ok(Bytes::from_static(b"456789"))];
        let body = slice_stream(stream::iter(chunks).boxed(), 3, 4);
        let got: Vec<Bytes> = body.try_collect().await.unwrap();
        assert_eq!(got.concat(), b"3456");
    }
}
