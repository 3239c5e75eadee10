//! Reading `multipart/form-data` bodies into a JSON object, as the
//! PocketBase SDKs send them: the JS SDK's `createBatch().send()` (and any
//! call with a `FormData` body) puts the JSON fields in a part named
//! `@jsonPayload`; plain parts become string fields. File parts are refused
//! with a clear 400 until file fields exist.
//!
//! Parsing is `multer`'s (a maintained streaming parser: `memmem` searches,
//! so its cost is linear in the body), behind limits of our own:
//! - the boundary is 1–70 characters of RFC 2046's alphabet, checked from
//!   the `Content-Type` before any of the body is read (a 100 KB boundary
//!   made a naive search cost seconds of CPU per request);
//! - at most [`MAX_PARTS`] parts, [`MAX_PART_HEADER`] bytes of headers per
//!   part (multer itself takes at most 32 header lines), and the body limit
//!   for the whole stream and for each part.
//!
//! [`parse`] takes a stream, so file parts can later be streamed to disk
//! part by part (the `filename` branch below is where they go). Today the
//! extractor hands it the body it has already read (bounded by
//! `--max-body` and the body read timeout), so every search in multer runs
//! once over the whole buffer. A live, chunked stream would make multer
//! search its growing buffer again on every chunk while it looks for the end
//! of a part's headers; streaming file parts must bound the bytes read
//! without progress first.

use std::convert::Infallible;

use actix_web::web::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value};

use crate::error::ApiError;
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

/// Reads a `multipart/form-data` body (at most `limit` bytes) into one JSON
/// object. A body without a part (empty, or only the closing delimiter) is
/// refused: it is a broken upload, not an empty record.
pub async fn parse<S>(body: S, boundary: &str, limit: usize) -> Result<Map<String, Value>, ApiError>
where
    S: Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    let size = multer::SizeLimit::new()
        .whole_stream(limit as u64)
        .per_field(limit as u64);
    let constraints = multer::Constraints::new().size_limit(size);
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);
    let mut out = Map::new();
    let mut parts = 0usize;
    while let Some(field) = multipart.next_field().await.map_err(|e| parse_error(e, limit))? {
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
        if field.file_name().is_some() {
            // Where file parts will be streamed to storage.
            return Err(ApiError::field(
                &name,
                "validation_not_supported",
                "File uploads are not supported yet.",
            ));
        }
        let content = field.bytes().await.map_err(|e| parse_error(e, limit))?;
        let text = std::str::from_utf8(&content).map_err(|_| malformed("a field is not UTF-8"))?;
        if name == "@jsonPayload" {
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => match numbers::out_of_range_integer(text.as_bytes()) {
                    // As for JSON bodies: no integer outside i64 becomes a float.
                    Some(path) => return Err(ApiError::field(&path, numbers::INVALID_NUMBER, numbers::OUT_OF_RANGE)),
                    None => out.extend(m),
                },
                Ok(_) => return Err(ApiError::bad_request("@jsonPayload must be a JSON object.")),
                Err(e) => return Err(ApiError::bad_request(format!("Malformed @jsonPayload: {e}."))),
            }
        } else {
            out.insert(name, Value::String(text.to_owned()));
        }
    }
    if parts == 0 {
        return Err(malformed("no parts"));
    }
    Ok(out)
}

/// [`parse`] over a body already in memory.
pub async fn parse_bytes(body: Bytes, boundary: &str, limit: usize) -> Result<Map<String, Value>, ApiError> {
    parse(futures_util::stream::iter([Ok(body)]), boundary, limit).await
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
