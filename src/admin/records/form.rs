//! The record form, generated from the collection's JSON Schema (its
//! top-level `properties`), and the way back from submitted text to typed
//! JSON.
//!
//! Each property gets the closest HTML control: strings → text input or
//! textarea (by `maxLength`), `format` email/uri/date/date-time → the
//! matching input, `enum` → select, numbers → number inputs, booleans → a
//! checkbox (with a hidden `false` before it, so unchecked still says
//! false), anything else (arrays, objects, unions) → a JSON textarea. Empty
//! inputs mean "absent": omitted on create, removed on edit. A stored value
//! the control cannot show faithfully (say a number in a string field after
//! a schema change) falls back to a JSON textarea, so saving the form never
//! loses data silently.

use serde_json::{Map, Number, Value};

use super::files::{self, FileLink, FileUrls};
use super::{field_messages, properties};
use crate::error::ApiError;
use crate::schema::files::FileSpec;
use crate::schema::numbers;
use crate::schema::record::{is_system_field, PASSWORD_MIN};
use crate::schema::CompiledCollection;

/// Strings longer than this (by `maxLength`, or unbounded) get a textarea.
const LINE_MAX: u64 = 255;

/// How a submitted value becomes JSON.
#[derive(Clone, Copy, PartialEq)]
enum Parse {
    Text,
    /// Textarea text: the browser's CRLF line ends become LF.
    Multiline,
    DateTime,
    Number,
    Integer,
    Bool,
    /// A select whose options are plain strings.
    EnumText,
    /// A select whose option values are JSON (non-string enums).
    EnumJson,
    Json,
    /// Auth passwords: empty = unchanged, never shown back.
    Password,
    /// A file field: uploads and `field-` removals, never read as text.
    File,
}

pub struct SelectOption {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// One control of the form (what the template needs).
pub struct Field {
    pub name: String,
    /// `input`, `textarea`, `select`, `checkbox`, `json` or `file`.
    pub widget: &'static str,
    /// The `type` of an `input`.
    pub input_type: &'static str,
    pub required: bool,
    pub value: String,
    pub checked: bool,
    pub options: Vec<SelectOption>,
    pub min: String,
    pub max: String,
    pub step: String,
    pub minlength: String,
    pub maxlength: String,
    pub autocomplete: &'static str,
    pub hint: String,
    pub error: String,
    /// A file field: its stored files, whether it takes several, the
    /// `accept` list and the part names of its uploads and removals.
    pub files: Vec<FileLink>,
    pub multiple: bool,
    pub accept: String,
    pub upload_name: String,
    pub remove_name: String,
    parse: Parse,
    /// An auth system field (email, password…), not a schema property.
    system: bool,
}

impl Field {
    fn new(name: &str, widget: &'static str, input_type: &'static str, parse: Parse) -> Field {
        Field {
            name: name.to_owned(),
            widget,
            input_type,
            required: false,
            value: String::new(),
            checked: false,
            options: Vec::new(),
            min: String::new(),
            max: String::new(),
            step: String::new(),
            minlength: String::new(),
            maxlength: String::new(),
            autocomplete: "off",
            hint: String::new(),
            error: String::new(),
            files: Vec::new(),
            multiple: false,
            accept: String::new(),
            upload_name: String::new(),
            remove_name: String::new(),
            parse,
            system: false,
        }
    }

    /// Turns this control into a JSON textarea (the universal fallback).
    fn into_json(mut self, why: &str) -> Field {
        self.widget = "json";
        self.input_type = "";
        self.parse = Parse::Json;
        self.options.clear();
        for a in [
            &mut self.min,
            &mut self.max,
            &mut self.step,
            &mut self.minlength,
            &mut self.maxlength,
        ] {
            a.clear();
        }
        self.hint = join_hint(why, &self.hint);
        self
    }

    /// Shows a stored value; `false` when this control cannot show it.
    fn show(&mut self, v: &Value) -> bool {
        match (self.parse, v) {
            (Parse::Text | Parse::Multiline, Value::String(s)) => self.value = s.clone(),
            (Parse::DateTime, Value::String(s)) => match to_local(s) {
                Some(local) => {
                    if local.contains('.') {
                        self.step = "0.001".into();
                    }
                    self.value = local;
                }
                None => return false,
            },
            (Parse::Number | Parse::Integer, Value::Number(n)) => self.value = n.to_string(),
            (Parse::Bool, Value::Bool(b)) => self.checked = *b,
            (Parse::EnumText | Parse::EnumJson, v) => {
                let text = option_value(v, self.parse == Parse::EnumJson);
                match self.options.iter_mut().find(|o| o.value == text) {
                    Some(o) => o.selected = true,
                    None => return false,
                }
                self.value = text;
            }
            (Parse::Json, v) => self.value = serde_json::to_string_pretty(v).unwrap_or_default(),
            _ => return false,
        }
        true
    }

    /// Reads the submitted text (kept for showing the form again); `None`
    /// for an empty control.
    fn read(&mut self, raw: Option<&str>) -> Result<Option<Value>, String> {
        let text = raw.unwrap_or_default();
        if self.parse == Parse::Bool {
            self.checked = matches!(text, "true" | "on");
            return Ok(Some(Value::Bool(self.checked)));
        }
        self.value = if self.parse == Parse::Multiline {
            text.replace("\r\n", "\n")
        } else {
            text.to_owned()
        };
        for o in &mut self.options {
            o.selected = o.value == self.value;
        }
        let secret = self.parse == Parse::Password;
        if secret {
            // Never echo a password back into the page.
            self.value.clear();
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        let v = match self.parse {
            Parse::Text | Parse::Multiline | Parse::EnumText => Value::String(self.value.clone()),
            Parse::Password => Value::String(text.to_owned()),
            Parse::DateTime => Value::String(
                from_local(text.trim()).ok_or("Enter a date and time such as 2024-05-01T13:45:00 (UTC).".to_owned())?,
            ),
            Parse::Number => Value::Number(parse_number(text.trim())?),
            Parse::Integer => Value::from(
                text.trim()
                    .parse::<i64>()
                    .map_err(|_| "Must be a whole number (an integer).".to_owned())?,
            ),
            Parse::EnumJson | Parse::Json => {
                let v = serde_json::from_str(text).map_err(|e| {
                    format!(
                        "Invalid JSON at line {}, column {}: {}",
                        e.line(),
                        e.column(),
                        strip_position(&e.to_string())
                    )
                })?;
                if let Some(path) = numbers::out_of_range_integer(text.as_bytes()) {
                    let at = if path.is_empty() {
                        String::new()
                    } else {
                        format!(" (at {path})")
                    };
                    return Err(format!("{}{at}", numbers::OUT_OF_RANGE));
                }
                v
            }
            Parse::Bool => unreachable!("handled above"),
            Parse::File => unreachable!("file fields are not read as text"),
        };
        Ok(Some(v))
    }
}

fn join_hint(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a} {b}"),
    }
}

/// serde_json's message without its trailing " at line L column C".
fn strip_position(msg: &str) -> &str {
    msg.rsplit_once(" at line ").map_or(msg, |(m, _)| m)
}

/// A number field's text: an integer literal must fit `i64` (never rounded
/// into a float); anything with a fraction or exponent is a float.
fn parse_number(s: &str) -> Result<Number, String> {
    if let Ok(i) = s.parse::<i64>() {
        return Ok(Number::from(i));
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(numbers::OUT_OF_RANGE.to_owned());
    }
    s.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .ok_or_else(|| "Must be a number.".to_owned())
}

fn option_value(v: &Value, json: bool) -> String {
    match v {
        Value::String(s) if !json => s.clone(),
        other => other.to_string(),
    }
}

fn number_attr(p: &Value, key: &str) -> String {
    p.get(key)
        .and_then(Value::as_number)
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// The control for one schema property.
fn control(name: &str, p: &Value, required: bool) -> Field {
    let ty = match p.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        None => None,
        Some(_) => Some("union"),
    };
    let mut f = match (ty, p.get("enum").and_then(Value::as_array)) {
        (None | Some("string" | "number" | "integer" | "boolean"), Some(values)) if !values.is_empty() => {
            let json = !values.iter().all(Value::is_string);
            let mut f = Field::new(name, "select", "", if json { Parse::EnumJson } else { Parse::EnumText });
            f.options = values
                .iter()
                .map(|v| SelectOption {
                    value: option_value(v, json),
                    label: option_value(v, false),
                    selected: false,
                })
                .collect();
            f
        }
        (Some("string"), _) => {
            let max = p.get("maxLength").and_then(Value::as_u64);
            let mut f = match p.get("format").and_then(Value::as_str) {
                Some("email") => Field::new(name, "input", "email", Parse::Text),
                Some("uri" | "url" | "iri") => Field::new(name, "input", "url", Parse::Text),
                Some("date") => Field::new(name, "input", "date", Parse::Text),
                Some("date-time") => {
                    let mut f = Field::new(name, "input", "datetime-local", Parse::DateTime);
                    f.step = "1".into();
                    f.hint = "In UTC; stored as an RFC 3339 time ending in Z.".into();
                    f
                }
                _ if max.is_some_and(|m| m <= LINE_MAX) => Field::new(name, "input", "text", Parse::Text),
                _ => Field::new(name, "textarea", "", Parse::Multiline),
            };
            if f.parse != Parse::DateTime {
                f.minlength = number_attr(p, "minLength");
                f.maxlength = number_attr(p, "maxLength");
            }
            f
        }
        (Some(t @ ("number" | "integer")), _) => {
            let integer = t == "integer";
            let mut f = Field::new(
                name,
                "input",
                "number",
                if integer { Parse::Integer } else { Parse::Number },
            );
            f.step = if integer { "1" } else { "any" }.into();
            f.min = number_attr(p, "minimum");
            f.max = number_attr(p, "maximum");
            f
        }
        (Some("boolean"), _) => Field::new(name, "checkbox", "", Parse::Bool),
        (Some("array"), _) => Field::new(name, "json", "", Parse::Json).into_json("JSON array."),
        (Some("object"), _) => Field::new(name, "json", "", Parse::Json).into_json("JSON object."),
        _ => Field::new(name, "json", "", Parse::Json).into_json("JSON value."),
    };
    f.required = required;
    let about = p
        .get("description")
        .or_else(|| p.get("title"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    f.hint = join_hint(about, &f.hint);
    f
}

/// The auth system fields an auth record's form has.
fn auth_fields(creating: bool, record: Option<&Value>) -> Vec<Field> {
    let mut email = Field::new("email", "input", "email", Parse::Text);
    email.required = creating;
    email.autocomplete = "off";
    let visibility = Field::new("emailVisibility", "checkbox", "", Parse::Bool);
    let mut verified = Field::new("verified", "checkbox", "", Parse::Bool);
    verified.hint = "Verified accounts skip the verification mail.".into();
    let mut password = Field::new("password", "input", "password", Parse::Password);
    password.required = creating;
    password.minlength = PASSWORD_MIN.to_string();
    password.autocomplete = "new-password";
    if !creating {
        password.hint = "Leave empty to keep the current password.".into();
    }
    let mut confirm = Field::new("passwordConfirm", "input", "password", Parse::Password);
    confirm.required = creating;
    confirm.autocomplete = "new-password";
    confirm.hint = "The same password again.".into();
    let mut out = vec![email, visibility, verified, password, confirm];
    for f in &mut out {
        f.system = true;
        if let Some(v) = record.and_then(|r| r.get(&f.name)) {
            if f.parse != Parse::Password {
                f.show(v);
            }
        }
    }
    out
}

/// The control of a file field: a file input (several files for a multiple
/// field, `accept` from `mimeTypes`) and the stored files, each with a
/// "remove" checkbox.
fn file_control(name: &str, spec: &FileSpec, record: Option<&Value>, urls: &FileUrls) -> Field {
    let mut f = Field::new(name, "file", "file", Parse::File);
    f.multiple = spec.multiple;
    f.accept = spec.mime_types.join(",");
    f.upload_name = files::upload_name(name, spec);
    f.remove_name = files::remove_name(name);
    f.required = spec.required && record.is_none();
    if let Some(r) = record {
        let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
        f.files = urls.links(id, spec, r.get(name));
    }
    let size = match crate::admin::settings::format_size(spec.max_size) {
        s if s.bytes().all(|b| b.is_ascii_digit()) => format!("{s} bytes"),
        s => s,
    };
    let mut hint = format!("Up to {size}");
    if spec.multiple {
        hint = format!("Up to {} files of {size} each", spec.max_select);
    }
    if !spec.mime_types.is_empty() {
        hint = format!("{hint}; {}", spec.mime_types.join(", "));
    }
    if spec.protected {
        hint = format!("{hint}; protected (served with a file token)");
    }
    f.hint = if spec.multiple || record.is_none() || f.files.is_empty() {
        format!("{hint}.")
    } else {
        format!("{hint}. A new file replaces the current one.")
    };
    f
}

/// The form for a record of `coll`: empty (create) or showing `record`.
pub fn fields_for(coll: &CompiledCollection, record: Option<&Value>, urls: &FileUrls) -> Vec<Field> {
    let auth = coll.is_auth();
    let mut out = if auth {
        auth_fields(record.is_none(), record)
    } else {
        Vec::new()
    };
    let required: Vec<&str> = coll
        .def
        .schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, p) in properties(coll) {
        if is_system_field(&name, auth) {
            continue;
        }
        if let Some(spec) = coll.file_field(&name) {
            out.push(file_control(&name, spec, record, urls));
            continue;
        }
        let mut f = control(&name, &p, required.contains(&name.as_str()));
        if let Some(v) = record.and_then(|r| r.get(&name)) {
            if !f.show(v) {
                f = control(&name, &p, f.required).into_json("The stored value does not fit the form's control:");
                f.show(v);
            }
        }
        out.push(f);
    }
    out
}

/// A submitted form as an API body.
pub struct Submission {
    pub body: Map<String, Value>,
    /// Schema fields left empty: removed from the record on edit.
    pub unset: Vec<String>,
    /// Some control's text did not parse (the field shows why).
    pub invalid: bool,
}

/// Reads every control from the form (`get` = the last value of a name).
pub fn read_form<'a>(fields: &mut [Field], get: impl Fn(&str) -> Option<&'a str>) -> Submission {
    let mut out = Submission {
        body: Map::new(),
        unset: Vec::new(),
        invalid: false,
    };
    for f in fields {
        if f.parse == Parse::File {
            // Uploads travel as files, removals as `field-` (see `files`).
            continue;
        }
        match f.read(get(&f.name)) {
            Ok(Some(v)) => {
                out.body.insert(f.name.clone(), v);
            }
            Ok(None) if !f.system => out.unset.push(f.name.clone()),
            Ok(None) => {}
            Err(msg) => {
                f.error = msg;
                out.invalid = true;
            }
        }
    }
    out
}

/// Ticks the "remove" boxes of the files a refused post asked to remove.
pub fn show_removals(fields: &mut [Field], removals: &[(String, Vec<String>)]) {
    for (field, names) in removals {
        for f in fields.iter_mut().filter(|f| &f.name == field) {
            for link in &mut f.files {
                link.removed = names.contains(&link.name);
            }
        }
    }
}

/// Puts an API error's per-field messages next to their controls (an error
/// on `meta.lang` goes to `meta`); returns the ones no control shows.
pub fn apply_errors(fields: &mut [Field], e: &ApiError) -> Vec<String> {
    let mut rest = Vec::new();
    for (key, msg) in field_messages(e) {
        let top = key.split(['.', '[', '/']).next().unwrap_or_default();
        match fields.iter_mut().find(|f| f.name == key || f.name == top) {
            Some(f) => {
                let text = if f.name == key { msg } else { format!("{key}: {msg}") };
                f.error = join_hint(&f.error, &text);
            }
            None => rest.push(format!("{key}: {msg}")),
        }
    }
    rest
}

fn digits(s: &str, at: usize, n: usize) -> Option<i64> {
    let part = s.get(at..at + n)?;
    part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
}

/// Parses `YYYY-MM-DD[T ]HH:MM[:SS[.fff]][Z|±HH:MM]` (no zone = UTC) into
/// epoch seconds and the fraction's digits.
///
/// The text comes from users (the form, or any stored value), and the
/// positions below are byte offsets: anything but ASCII is refused first,
/// so every offset is a character boundary and no slice can panic.
fn parse_stamp(s: &str) -> Option<(i64, String)> {
    if !s.is_ascii() {
        return None;
    }
    let at = |i: usize, c: &[u8]| s.as_bytes().get(i).is_some_and(|b| c.contains(b));
    let (y, mo, d) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":")) {
        return None;
    }
    let (h, mi) = (digits(s, 11, 2)?, digits(s, 14, 2)?);
    let mut pos = 16;
    let mut sec = 0;
    if at(pos, b":") {
        sec = digits(s, pos + 1, 2)?;
        pos += 3;
    }
    let mut frac = String::new();
    if at(pos, b".") {
        frac = s.get(pos + 1..)?.chars().take_while(char::is_ascii_digit).collect();
        if frac.is_empty() {
            return None;
        }
        pos += 1 + frac.len();
    }
    let offset = match s.get(pos..)? {
        "" | "Z" | "z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) && z.get(3..4) == Some(":") => {
            let mins = digits(z, 1, 2)? * 60 + digits(z, 4, 2)?;
            if z.starts_with('-') {
                -mins * 60
            } else {
                mins * 60
            }
        }
        _ => return None,
    };
    // The calendar (month lengths, leap years) is the `time` crate's.
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?).ok()?;
    let clock = time::Time::from_hms(u8::try_from(h).ok()?, u8::try_from(mi).ok()?, u8::try_from(sec).ok()?).ok()?;
    let secs = time::PrimitiveDateTime::new(date, clock).assume_utc().unix_timestamp();
    Some((secs - offset, frac))
}

/// A stored RFC 3339 time as a `datetime-local` value in UTC
/// (`YYYY-MM-DDTHH:MM:SS[.fff]`); `None` if it is not one.
pub fn to_local(stored: &str) -> Option<String> {
    let (secs, frac) = parse_stamp(stored)?;
    // `format_datetime` gives `YYYY-MM-DD HH:MM:SS.mmmZ`.
    let text = crate::clock::format_datetime(secs.checked_mul(1000)?);
    if text.len() != 24 {
        return None; // outside years 0000-9999
    }
    let base = text.get(..19)?.replacen(' ', "T", 1);
    Some(if frac.is_empty() {
        base
    } else {
        format!("{base}.{frac}")
    })
}

/// A `datetime-local` value (taken as UTC) as an RFC 3339 time ending in Z.
pub fn from_local(input: &str) -> Option<String> {
    let (secs, frac) = parse_stamp(input)?;
    let local = to_local(&crate::clock::format_datetime(secs.checked_mul(1000)?))?;
    let local = local.split('.').next().unwrap_or_default().to_owned();
    Some(if frac.is_empty() {
        format!("{local}Z")
    } else {
        format!("{local}.{frac}Z")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_inputs_never_round_integers() {
        assert_eq!(parse_number("9223372036854775807"), Ok(Number::from(i64::MAX)));
        assert_eq!(parse_number("-9223372036854775808"), Ok(Number::from(i64::MIN)));
        assert!(parse_number("18446744073709551616").is_err());
        assert!(parse_number("-9223372036854775809").is_err());
        assert!(parse_number("+9223372036854775808").is_err());
        assert_eq!(parse_number("1.5e19").ok().and_then(|n| n.as_f64()), Some(1.5e19));
        assert_eq!(parse_number("2.5").ok().and_then(|n| n.as_f64()), Some(2.5));
        assert!(parse_number("abc").is_err());
    }

    #[test]
    fn date_times_round_trip_through_utc() {
        assert_eq!(to_local("2024-05-01T10:20:30Z").unwrap(), "2024-05-01T10:20:30");
        assert_eq!(to_local("2024-05-01 10:20:30.123Z").unwrap(), "2024-05-01T10:20:30.123");
        // An offset is converted, across midnight and a leap day.
        assert_eq!(to_local("2024-03-01T01:30:00+02:00").unwrap(), "2024-02-29T23:30:00");
        assert_eq!(to_local("2023-12-31T23:00:00-01:30").unwrap(), "2024-01-01T00:30:00");
        assert_eq!(from_local("2024-05-01T10:20").unwrap(), "2024-05-01T10:20:00Z");
        assert_eq!(from_local("2024-05-01T10:20:30").unwrap(), "2024-05-01T10:20:30Z");
        assert_eq!(from_local("2024-05-01T10:20:30.5").unwrap(), "2024-05-01T10:20:30.5Z");
        for bad in [
            "",
            "2024-13-01T00:00",
            "2023-02-29T00:00",
            "2024-05-01",
            "2024-05-01T25:00",
            "soon",
        ] {
            assert_eq!(from_local(bad), None, "{bad}");
        }
        // Multi-byte characters anywhere (user input: byte offsets must
        // never split one).
        for bad in [
            "2024-01-01T10:00é",
            "2024-01-0１ 10:00:00",
            "2024-01-01T10:00+0é00",
            "2024-01-01T10:00:00+é:00",
            "2024-01-01T10:00:00.é",
            "é024-01-01T10:00",
            "2024-01-01T10:0é",
            "２０２４-01-01T10:00",
        ] {
            assert_eq!(from_local(bad), None, "{bad}");
            assert_eq!(to_local(bad), None, "{bad}");
        }
        assert_eq!(parse_stamp("1970-01-01T00:00").map(|s| s.0), Some(0));
        assert_eq!(parse_stamp("2000-03-01T00:00").map(|s| s.0), Some(11_017 * 86_400));
    }
}
