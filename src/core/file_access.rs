//! Who may download a record's file, and which stored object answers
//! (`GET /api/files/{collection}/{recordId}/{name}`, PocketBase's
//! `apis/file.go`): the one place that decides it.
//!
//! - The record must exist and `name` must be one of its file fields'
//!   values; anything else is 404 (a name is never looked up in storage
//!   before that, so no other key can be reached).
//! - A file of a field without `protected` is served to anyone: its name
//!   is unguessable and only readable through the record, as PocketBase.
//! - A protected file needs `?token=`, a file token (`POST /api/files/
//!   token`) of a user or superuser, and the collection's viewRule must
//!   hold for that caller (the same check as viewing the record, with
//!   `@request.context` = `protectedFile`). Every refusal is 404, so a
//!   protected file's existence is not revealed.
//! - `?thumb=` with a size the field lists (or `100x100`, which the
//!   dashboard always uses) serves the thumbnail, made on first use; other
//!   sizes, non-images and images no thumbnail can be made of get the
//!   original.

use std::sync::Arc;

use serde_json::Value;

use super::{auth, records, Caller, RequestInfo};
use crate::error::ApiError;
use crate::files::{self, names, thumbs};
use crate::schema::files::{FileSpec, Thumb, ThumbFit};
use crate::schema::CompiledCollection;
use crate::state::AppState;

/// Sizes served whatever the field lists (PocketBase's dashboard previews).
const DEFAULT_THUMBS: [&str; 1] = ["100x100"];

/// What a download asks for.
#[derive(Debug, Clone, Copy)]
pub struct FileQuery<'a> {
    /// The collection's name or id.
    pub collection: &'a str,
    pub record_id: &'a str,
    /// The stored name.
    pub name: &'a str,
    /// `?token=` (a file token).
    pub token: Option<&'a str>,
    /// `?thumb=`.
    pub thumb: Option<&'a str>,
}

/// The stored object that answers a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Its storage key (the original or a thumbnail).
    pub key: String,
    /// The name the client is given (`Content-Disposition`): the stored
    /// name, or `<size>_<name>` for a thumbnail, as PocketBase.
    pub name: String,
    /// A thumbnail this request waited for: served from memory (it may
    /// not be stored yet).
    pub fresh: Option<thumbs::Fresh>,
}

/// Decides whether `req` may download the file and which object answers.
/// `req` is the request as it came (its caller is the `Authorization`
/// header's, which a protected file does not use: only `?token=` counts).
pub async fn resolve(state: &AppState, q: FileQuery<'_>, req: RequestInfo) -> Result<Served, ApiError> {
    let (coll, record, spec) = locate(state, &q)?;
    if spec.protected {
        check_protected(state, &coll, &record, q.token, req)?;
    }
    let original = files::key(&coll.def.id, q.record_id, q.name);
    let Some((size_text, size)) = q.thumb.and_then(|t| thumb_size(&spec, t)) else {
        return Ok(Served {
            key: original,
            name: q.name.to_owned(),
            fresh: None,
        });
    };
    let thumb_key = thumbs::key(&coll.def.id, q.record_id, q.name, size_text);
    let cached = state
        .storage
        .head(&thumb_key)
        .await
        .ok()
        .flatten()
        .is_some_and(|m| m.size > 0);
    let mut fresh = None;
    if !cached {
        match state.thumbs.ensure(&state.storage, &original, &thumb_key, size).await {
            Ok(made) => fresh = made,
            Err(e) => {
                tracing::debug!(thumb = %thumb_key, error = %e, "serving the original: no thumbnail");
                return Ok(Served {
                    key: original,
                    name: q.name.to_owned(),
                    fresh: None,
                });
            }
        }
    }
    Ok(Served {
        key: thumb_key,
        name: format!("{size_text}_{}", q.name),
        fresh,
    })
}

/// The collection, the record and the file field holding `name`; 404 if
/// any is missing.
fn locate(state: &AppState, q: &FileQuery<'_>) -> Result<(Arc<CompiledCollection>, Value, FileSpec), ApiError> {
    if !names::is_stored_name(q.name) || q.record_id.is_empty() {
        return Err(ApiError::missing());
    }
    let coll = state.registry.get(q.collection).ok_or_else(ApiError::missing)?;
    let record = state
        .store
        .get(&coll.def.id, q.record_id)?
        .ok_or_else(ApiError::missing)?
        .data;
    let spec = coll
        .files
        .iter()
        .find(|(field, _)| FileSpec::names(record.get(field)).iter().any(|n| n == q.name))
        .map(|(_, spec)| spec.clone())
        .ok_or_else(ApiError::missing)?;
    Ok((coll, record, spec))
}

/// The viewRule for the file token's holder (a guest without a valid
/// one). Superusers pass, as everywhere. Locked rules and failed rules
/// are both 404 here, as PocketBase answers.
fn check_protected(
    state: &AppState,
    coll: &CompiledCollection,
    record: &Value,
    token: Option<&str>,
    mut req: RequestInfo,
) -> Result<(), ApiError> {
    req.caller = match token {
        Some(t) => auth::resolve_file_token(state, t),
        None => Caller::Guest,
    };
    req.context = "protectedFile";
    records::check_view(state, coll, &req, record).map_err(|e| match e.status {
        403 | 404 => ApiError::missing(),
        _ => e,
    })
}

/// The thumbnail size `text` names, if the field serves it.
fn thumb_size<'t>(spec: &FileSpec, text: &'t str) -> Option<(&'t str, thumbs::Size)> {
    let listed = DEFAULT_THUMBS.contains(&text) || spec.thumbs.iter().any(|t| t == text);
    let t = Thumb::parse(text).filter(|_| listed)?;
    let fit = match t.fit {
        ThumbFit::Center => thumbs::Fit::Center,
        ThumbFit::Top => thumbs::Fit::Top,
        ThumbFit::Bottom => thumbs::Fit::Bottom,
        ThumbFit::Fit => thumbs::Fit::Inside,
    };
    Some((
        text,
        thumbs::Size {
            width: t.width,
            height: t.height,
            fit,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(thumbs: &[&str]) -> FileSpec {
        FileSpec {
            max_size: 1,
            max_select: 1,
            multiple: false,
            mime_types: vec![],
            thumbs: thumbs.iter().map(|t| t.to_string()).collect(),
            protected: false,
            required: false,
        }
    }

    #[test]
    fn only_listed_sizes_and_the_dashboards_are_thumbnails() {
        let s = spec(&["50x30t", "0x20"]);
        let size = |t| thumb_size(&s, t).map(|(_, s)| s);
        assert_eq!(
            size("50x30t"),
            Some(thumbs::Size {
                width: 50,
                height: 30,
                fit: thumbs::Fit::Top
            })
        );
        assert_eq!(size("0x20").map(|s| (s.width, s.height)), Some((0, 20)));
        assert_eq!(size("100x100").map(|s| s.fit), Some(thumbs::Fit::Center));
        for other in ["50x30", "77x77", "", "100x100f", "0x0", "x"] {
            assert_eq!(size(other), None, "{other}");
        }
    }
}
