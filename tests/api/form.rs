//! `multipart/form-data` bodies as the SDKs send them (a `FormData` with
//! `File`/`Blob` parts), for the file tests.

use awc::http::Method;
use serde_json::Value;

use crate::helpers::{read, Resp, TestApp};

pub const BOUNDARY: &str = "----basaltTestBoundary7MA4YWxk";

/// A form being built.
#[derive(Default, Clone)]
pub struct Form {
    body: Vec<u8>,
}

impl Form {
    pub fn new() -> Form {
        Form::default()
    }

    /// A plain text part.
    pub fn text(mut self, name: &str, value: &str) -> Form {
        self.body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
        self
    }

    /// The `@jsonPayload` part.
    pub fn json(self, value: &Value) -> Form {
        self.text("@jsonPayload", &value.to_string())
    }

    /// A file part (the client's content type is sent but not trusted).
    pub fn file(mut self, name: &str, filename: &str, content: &[u8]) -> Form {
        self.body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(content);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The finished body (closing delimiter added).
    pub fn finish(mut self) -> Vec<u8> {
        self.body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        self.body
    }

    /// The body without its closing delimiter (a truncated upload).
    pub fn unfinished(self) -> Vec<u8> {
        self.body
    }
}

pub fn content_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// Sends a form with `token` (None: guest).
pub async fn send(app: &TestApp, method: Method, path: &str, body: Vec<u8>, token: Option<&str>) -> Resp {
    let mut req = app
        .client
        .request(method, format!("{}{}", app.base, path))
        .insert_header(("Content-Type", content_type()));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", t.to_owned()));
    }
    read(req.send_body(body).await.expect("request sent")).await
}

/// A valid 1x1 PNG.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0b, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0x7a, 0x5e, 0xab, 0x3f, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];
