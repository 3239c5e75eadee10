//! File fields (SPEC §8): a property with `x-file` holds stored file names,
//! `{"type":"string","x-file":{…}}` for one file or
//! `{"type":"array","items":{"type":"string"},"x-file":{…}}` for several.
//! `x-file` is `{maxSize, maxSelect, mimeTypes, thumbs, protected}` as
//! PocketBase's file field options. This module only reads and checks the
//! options at collection save; `core::files` applies them to uploads.

use serde_json::Value;

/// The keyword.
pub const FILE: &str = "x-file";
/// PocketBase's default `maxSize` (5 MiB).
pub const DEFAULT_MAX_SIZE: u64 = 5 * 1024 * 1024;
/// Largest `maxSize` a field may set (8 GiB): uploads stream to disk, so
/// this bounds disk use per file, not memory.
pub const MAX_MAX_SIZE: u64 = 8 * 1024 * 1024 * 1024;
/// Most files a multiple field may hold when `maxSelect` is not set.
pub const DEFAULT_MAX_SELECT: usize = 99;
/// Largest thumbnail side (pixels): a thumbnail is made once per size and
/// cached, and its cost grows with its area.
pub const MAX_THUMB_SIDE: u32 = 4096;

/// How a thumbnail is fitted (PocketBase's size syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThumbFit {
    /// `WxH`: crop to the box from the center.
    Center,
    /// `WxHt`: crop from the top.
    Top,
    /// `WxHb`: crop from the bottom.
    Bottom,
    /// `WxHf`: fit inside the box, keeping the aspect ratio.
    Fit,
}

/// One thumbnail size; a zero side follows the other's aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thumb {
    pub width: u32,
    pub height: u32,
    pub fit: ThumbFit,
}

impl Thumb {
    /// Parses `WxH`, `WxHt`, `WxHb`, `WxHf`, `0xH`, `Wx0` (not `0x0`).
    pub fn parse(s: &str) -> Option<Thumb> {
        let (fit, dims) = match s.as_bytes().last()? {
            b't' => (ThumbFit::Top, &s[..s.len() - 1]),
            b'b' => (ThumbFit::Bottom, &s[..s.len() - 1]),
            b'f' => (ThumbFit::Fit, &s[..s.len() - 1]),
            _ => (ThumbFit::Center, s),
        };
        let (w, h) = dims.split_once('x')?;
        let side = |t: &str| {
            (!t.is_empty() && t.len() <= 5 && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<u32>().ok())
                .flatten()
        };
        let (width, height) = (side(w)?, side(h)?);
        if (width == 0 && height == 0) || width > MAX_THUMB_SIDE || height > MAX_THUMB_SIDE {
            return None;
        }
        Some(Thumb { width, height, fit })
    }
}

/// A file field's options, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    /// Largest file, in bytes.
    pub max_size: u64,
    /// Most files the field holds (1 for a single file field).
    pub max_select: usize,
    /// Whether the field holds a list of names.
    pub multiple: bool,
    /// Allowed MIME types (empty: any).
    pub mime_types: Vec<String>,
    /// Thumbnail sizes as written (`100x100`), served on `?thumb=`.
    pub thumbs: Vec<String>,
    /// Files served only with a file token and the viewRule.
    pub protected: bool,
    /// Whether the field is required (at least one file).
    pub required: bool,
}

impl FileSpec {
    /// Whether `mime` (sniffed, maybe with parameters) is allowed.
    pub fn allows_mime(&self, mime: &str) -> bool {
        let bare = mime.split(';').next().unwrap_or_default().trim();
        self.mime_types.is_empty() || self.mime_types.iter().any(|m| m.eq_ignore_ascii_case(bare))
    }

    /// The names a record's value holds.
    pub fn names(value: Option<&Value>) -> Vec<String> {
        match value {
            Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => vec![],
        }
    }

    /// The value a record stores for `names`.
    pub fn value(&self, names: Vec<String>) -> Value {
        if self.multiple {
            Value::Array(names.into_iter().map(Value::String).collect())
        } else {
            Value::String(names.into_iter().next().unwrap_or_default())
        }
    }
}

fn is_mime(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= 127
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    s.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
}

/// Reads `x-file` of a property, if it has one. `required`: the property
/// is in the schema's `required` list.
pub fn file_spec(prop: &Value, required: bool) -> Result<Option<FileSpec>, String> {
    let Some(opts) = prop.get(FILE) else { return Ok(None) };
    let opts = opts.as_object().ok_or("x-file must be an object")?;
    for key in opts.keys() {
        if !["maxSize", "maxSelect", "mimeTypes", "thumbs", "protected"].contains(&key.as_str()) {
            return Err(format!(
                "x-file has no option '{key}' (maxSize, maxSelect, mimeTypes, thumbs, protected)"
            ));
        }
    }
    let ty = prop.get("type").and_then(Value::as_str);
    let multiple = match ty {
        Some("string") => false,
        Some("array") if prop.pointer("/items/type").and_then(Value::as_str) == Some("string") => true,
        _ => return Err("a property with x-file must be {\"type\":\"string\"} or {\"type\":\"array\",\"items\":{\"type\":\"string\"}}".into()),
    };
    let count = |key: &str| -> Result<Option<u64>, String> {
        match opts.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or(format!("x-file.{key} must be a non-negative integer")),
        }
    };
    let max_size = match count("maxSize")? {
        None | Some(0) => DEFAULT_MAX_SIZE,
        Some(n) if n > MAX_MAX_SIZE => return Err(format!("x-file.maxSize must be at most {MAX_MAX_SIZE} bytes")),
        Some(n) => n,
    };
    let max_items = prop.get("maxItems").and_then(Value::as_u64);
    let max_select = match (multiple, count("maxSelect")?) {
        (false, None | Some(0 | 1)) => 1,
        (false, Some(_)) => return Err("x-file.maxSelect above 1 needs an array property".into()),
        (true, None | Some(0)) => max_items.unwrap_or(DEFAULT_MAX_SELECT as u64).min(10_000) as usize,
        (true, Some(n)) if n > 10_000 => return Err("x-file.maxSelect must be at most 10000".into()),
        (true, Some(n)) => n as usize,
    };
    let strings = |key: &str| -> Result<Vec<String>, String> {
        match opts.get(key) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) if a.len() <= 1_000 => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(format!("x-file.{key} must be a list of strings")),
            _ => Err(format!("x-file.{key} must be a list of at most 1000 strings")),
        }
    };
    let mime_types = strings("mimeTypes")?;
    if let Some(bad) = mime_types.iter().find(|m| !is_mime(m)) {
        return Err(format!(
            "x-file.mimeTypes: '{bad}' is not a MIME type such as image/png"
        ));
    }
    let thumbs = strings("thumbs")?;
    if let Some(bad) = thumbs.iter().find(|t| Thumb::parse(t).is_none()) {
        return Err(format!(
            "x-file.thumbs: '{bad}' is not a size such as 100x100, 100x100t, 100x100b, 100x100f, 0x100 or 100x0 (sides up to {MAX_THUMB_SIDE})"
        ));
    }
    let protected = match opts.get("protected") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        _ => return Err("x-file.protected must be true or false".into()),
    };
    Ok(Some(FileSpec {
        max_size,
        max_select,
        multiple,
        mime_types,
        thumbs,
        protected,
        required,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thumb_sizes_as_pocketbase() {
        assert_eq!(Thumb::parse("100x50").unwrap().fit, ThumbFit::Center);
        assert_eq!(Thumb::parse("100x50t").unwrap().fit, ThumbFit::Top);
        assert_eq!(Thumb::parse("100x50b").unwrap().fit, ThumbFit::Bottom);
        assert_eq!(Thumb::parse("100x50f").unwrap().fit, ThumbFit::Fit);
        assert_eq!(Thumb::parse("0x50").unwrap().width, 0);
        assert_eq!(Thumb::parse("50x0").unwrap().height, 0);
        for bad in [
            "0x0",
            "x1",
            "1x",
            "-1x2",
            "1x2z",
            "99999x1",
            "1 x2",
            "",
            "f",
            "100x100ff",
        ] {
            assert!(Thumb::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn options_are_checked() {
        let one = file_spec(&json!({"type":"string","x-file":{}}), false)
            .unwrap()
            .unwrap();
        assert_eq!(
            (one.max_size, one.max_select, one.multiple),
            (DEFAULT_MAX_SIZE, 1, false)
        );
        let many = file_spec(
            &json!({"type":"array","items":{"type":"string"},"maxItems":3,"x-file":{"thumbs":["10x10"],"mimeTypes":["image/png"]}}),
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!((many.max_select, many.multiple, many.required), (3, true, true));
        assert!(many.allows_mime("image/png") && !many.allows_mime("text/html; charset=utf-8"));
        for bad in [
            json!({"type":"integer","x-file":{}}),
            json!({"type":"string","x-file":[]}),
            json!({"type":"string","x-file":{"maxSelect":2}}),
            json!({"type":"string","x-file":{"thumbs":["big"]}}),
            json!({"type":"string","x-file":{"mimeTypes":["png"]}}),
            json!({"type":"string","x-file":{"maxSize":-1}}),
            json!({"type":"string","x-file":{"other":1}}),
            json!({"type":"string","x-file":{"protected":"yes"}}),
        ] {
            assert!(file_spec(&bad, false).is_err(), "{bad}");
        }
        assert!(file_spec(&json!({"type":"string"}), false).unwrap().is_none());
    }
}
