//! File fields in the dashboard: links to a record's stored files (with a
//! thumbnail for images) for the form and the table, and the form's file
//! values back to the API's (`field-` names to remove).
//!
//! Files are served by `/api/files/{collectionId}/{recordId}/{name}` as
//! PocketBase serves them. The dashboard is a cookie session, which that
//! endpoint does not read: a protected file needs `?token=`, so a page that
//! shows one mints a short-lived superuser file token (the same token as
//! `POST /api/files/token`), once per page.

use serde_json::{Map, Value};

use crate::admin::view::enc;
use crate::admin::Admin;
use crate::core::auth;
use crate::schema::files::FileSpec;
use crate::schema::CompiledCollection;

/// The thumbnail size the dashboard asks for (PocketBase always serves
/// this one, whatever the field's `thumbs`).
pub const THUMB: &str = "100x100";

/// Extensions of the stored names that get a thumbnail (the image types
/// thumbnails are made of).
const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "gif", "webp"];

/// One stored file as a page shows it.
pub struct FileLink {
    pub name: String,
    /// Opens the file.
    pub url: String,
    /// The thumbnail's URL for an image, else empty.
    pub thumb: String,
    /// Ticked "remove" (a refused post shows the ticks again).
    pub removed: bool,
}

/// Builds file URLs for the records of one collection on one page.
pub struct FileUrls {
    collection_id: String,
    /// A file token when the collection has protected file fields.
    token: Option<String>,
}

impl FileUrls {
    /// Mints the page's file token only if some file field is protected.
    pub fn new(admin: &Admin, coll: &CompiledCollection) -> FileUrls {
        let token = coll
            .files
            .iter()
            .any(|(_, f)| f.protected)
            .then(|| auth::file_token(&admin.state, &admin.caller()).ok())
            .flatten()
            .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_owned));
        FileUrls {
            collection_id: coll.def.id.clone(),
            token,
        }
    }

    /// The links for the names a record's file field holds.
    pub fn links(&self, record_id: &str, spec: &FileSpec, value: Option<&Value>) -> Vec<FileLink> {
        FileSpec::names(value)
            .into_iter()
            .map(|name| {
                let mut url = format!(
                    "/api/files/{}/{}/{}",
                    enc(&self.collection_id),
                    enc(record_id),
                    enc(&name)
                );
                let token = match (&self.token, spec.protected) {
                    (Some(t), true) => Some(enc(t)),
                    _ => None,
                };
                let thumb = if is_image(&name) {
                    match &token {
                        Some(t) => format!("{url}?thumb={THUMB}&token={t}"),
                        None => format!("{url}?thumb={THUMB}"),
                    }
                } else {
                    String::new()
                };
                if let Some(t) = token {
                    url = format!("{url}?token={t}");
                }
                FileLink {
                    name,
                    url,
                    thumb,
                    removed: false,
                }
            })
            .collect()
    }
}

/// Whether a stored name is an image a thumbnail can be made of.
fn is_image(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)))
}

/// The name a file input posts its uploads under: a single field's upload
/// replaces its file (`field`), a multiple field's is added (`field+`).
pub fn upload_name(field: &str, spec: &FileSpec) -> String {
    if spec.multiple {
        format!("{field}+")
    } else {
        field.to_owned()
    }
}

/// The name of a field's "remove" checkboxes (the API's `field-`).
pub fn remove_name(field: &str) -> String {
    format!("{field}-")
}

/// Adds the ticked "remove" boxes of each file field to the body as
/// `field-` (names to remove); `all` gives every value of a form name.
pub fn read_removals<'a>(
    coll: &CompiledCollection,
    all: impl Fn(&str) -> Vec<&'a str>,
    body: &mut Map<String, Value>,
) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (field, _) in &coll.files {
        let names: Vec<String> = all(&remove_name(field))
            .into_iter()
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if !names.is_empty() {
            body.insert(
                remove_name(field),
                Value::Array(names.iter().cloned().map(Value::String).collect()),
            );
            out.push((field.clone(), names));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_told_by_their_extension() {
        for yes in ["a_x.png", "b.JPG", "c.jpeg", "d.gif", "e.webp"] {
            assert!(is_image(yes), "{yes}");
        }
        for no in ["a.pdf", "png", "a.png.txt", "a.svg", ""] {
            assert!(!is_image(no), "{no}");
        }
    }
}
