//! Reading `multipart/form-data` bodies into a JSON object, as the
//! PocketBase SDKs send them: the JS SDK's `createBatch().send()` (and any
//! call with a `FormData` body) puts the JSON fields in a part named
//! `@jsonPayload`; plain parts become string fields. File parts are refused
//! with a clear 400 until file fields exist.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The `boundary` parameter of a multipart content type.
pub fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// `name="…"` / `filename="…"` from a Content-Disposition header.
fn disposition_param(header: &str, key: &str) -> Option<String> {
    header.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Parses the body into one JSON object. A body without a part (empty, or
/// only the closing delimiter) is refused: it is a broken upload, not an
/// empty record.
pub fn parse(body: &[u8], boundary: &str) -> Result<Map<String, Value>, ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("Malformed multipart body: {why}."));
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("empty body"));
    }
    let delim = format!("--{boundary}").into_bytes();
    let mut out = Map::new();
    let mut pos = find(body, &delim, 0).ok_or_else(|| bad("no boundary"))? + delim.len();
    let mut parts = 0usize;
    loop {
        if body[pos..].starts_with(b"--") {
            if parts == 0 {
                return Err(bad("no parts"));
            }
            break; // closing delimiter
        }
        parts += 1;
        let start = if body[pos..].starts_with(b"\r\n") { pos + 2 } else { pos };
        let head_end = find(body, b"\r\n\r\n", start).ok_or_else(|| bad("part without headers"))?;
        let headers = String::from_utf8_lossy(&body[start..head_end]).into_owned();
        let next = find(body, &delim, head_end + 4).ok_or_else(|| bad("unterminated part"))?;
        let mut content = &body[head_end + 4..next];
        if content.ends_with(b"\r\n") {
            content = &content[..content.len() - 2];
        }
        let disposition = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .ok_or_else(|| bad("part without Content-Disposition"))?;
        let name = disposition_param(disposition, "name").ok_or_else(|| bad("part without a name"))?;
        if disposition_param(disposition, "filename").is_some() {
            return Err(ApiError::field(
                &name,
                "validation_not_supported",
                "File uploads are not supported yet.",
            ));
        }
        let text = std::str::from_utf8(content).map_err(|_| bad("a field is not UTF-8"))?;
        if name == "@jsonPayload" {
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => out.extend(m),
                Ok(_) => return Err(ApiError::bad_request("@jsonPayload must be a JSON object.")),
                Err(e) => return Err(ApiError::bad_request(format!("Malformed @jsonPayload: {e}."))),
            }
        } else {
            out.insert(name, Value::String(text.to_owned()));
        }
        pos = next + delim.len();
        if pos > body.len() {
            return Err(bad("truncated"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_payload_and_fields() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"@jsonPayload\"\r\n\r\n{\"requests\":[1]}\r\n--XX\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhi\r\n--XX--\r\n";
        let m = parse(body, "XX").unwrap();
        assert_eq!(m["requests"], serde_json::json!([1]));
        assert_eq!(m["title"], "hi");
        assert_eq!(boundary("multipart/form-data; boundary=\"XX\"").as_deref(), Some("XX"));
        assert!(parse(
            b"--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nx\r\n--XX--",
            "XX"
        )
        .is_err());
        assert!(parse(b"garbage", "XX").is_err());
        assert!(parse(b"", "XX").is_err());
        assert!(parse(b"\r\n", "XX").is_err());
        assert!(parse(b"--XX--\r\n", "XX").is_err());
        assert!(parse(b"--XX\r\nno headers end", "XX").is_err());
    }
}
