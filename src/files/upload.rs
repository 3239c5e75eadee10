//! An uploaded file while its request is handled: spooled to local disk as
//! it streams in (memory stays bounded whatever its size), typed by its
//! first bytes, and removed when dropped — stored files are copies made by
//! [`super::Storage::put_file`].

use std::path::{Path, PathBuf};

/// A spool file, removed when dropped (request done, failed or cancelled).
#[derive(Debug)]
pub struct SpoolFile(PathBuf);

impl SpoolFile {
    /// A new, unique path in `dir` (the file is created by the caller).
    pub fn new_in(dir: &Path) -> SpoolFile {
        SpoolFile(dir.join(crate::ids::record_id()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One file part of a request.
#[derive(Debug)]
pub struct Upload {
    /// The part's name: the field (`avatar`, `avatar+`, or in a batch
    /// `requests.0.avatar`), as the client sent it.
    pub field: String,
    /// The client's file name (not trusted: only [`super::names`] turns it
    /// into a stored name).
    pub original_name: String,
    pub size: u64,
    /// The type sniffed from the first bytes (not the client's header).
    pub mime: String,
    pub spool: SpoolFile,
}

/// The MIME type of a file from its first bytes (magic numbers), as
/// PocketBase types uploads by content: the client's `Content-Type` is not
/// trusted. UTF-8 text without a known signature is `text/plain`; anything
/// else unknown is `application/octet-stream`.
pub fn sniff(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut at the end of the sniffed head.
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    if head.is_empty() || !text || head.contains(&0) {
        return "application/octet-stream".into();
    }
    let lower: Vec<u8> = head.iter().take(512).map(u8::to_ascii_lowercase).collect();
    let trimmed = lower.trim_ascii_start();
    if trimmed.starts_with(b"<svg") || (trimmed.starts_with(b"<?xml") && contains(&lower, b"<svg")) {
        "image/svg+xml".into()
    } else if trimmed.starts_with(b"<!doctype html") || trimmed.starts_with(b"<html") {
        "text/html; charset=utf-8".into()
    } else {
        "text/plain; charset=utf-8".into()
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The usual extension of a sniffed type (`.png`), for uploads named
/// without one.
pub fn extension_of(mime: &str) -> &'static str {
    match mime.split(';').next().unwrap_or_default() {
        "image/png" => ".png",
        "image/jpeg" => ".jpg",
        "image/gif" => ".gif",
        "image/webp" => ".webp",
        "image/svg+xml" => ".svg",
        "application/pdf" => ".pdf",
        "text/plain" => ".txt",
        "text/html" => ".html",
        "application/zip" => ".zip",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_content() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"hello"), "text/plain; charset=utf-8");
        assert_eq!(sniff(b"  <svg xmlns='http://www.w3.org/2000/svg'/>"), "image/svg+xml");
        assert!(sniff(b"<!DOCTYPE html><script>").starts_with("text/html"));
        assert_eq!(sniff(b"\0\x01\x02"), "application/octet-stream");
        assert_eq!(sniff(b""), "application/octet-stream");
    }
}
