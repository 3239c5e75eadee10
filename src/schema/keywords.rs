//! Basalt's validating `x-` keywords, the ones PocketBase's field options
//! need and plain JSON Schema cannot say (see `pocketbase` for the mapping):
//!
//! - `x-maxSize: n` — the value takes at most `n` bytes (a string's UTF-8
//!   bytes, any other value's compact JSON), PocketBase's `editor`/`json`
//!   `maxSize`.
//! - `x-onlyDomains: [..]` / `x-exceptDomains: [..]` — the domain of an email
//!   address (after `@`) or of a URL's host must (not) be one of these.
//! - `x-date: {min?, max?}` — a date string as PocketBase writes them
//!   (`YYYY-MM-DD HH:MM:SS.mmmZ`, `T` also accepted), within the bounds.
//! - `x-blank: v` — PocketBase's "optional" semantics: the blank value `v`
//!   (`""`, `0`, `false`, `[]`, `null`) passes every other keyword of the
//!   property. `compile` rewrites such a property into
//!   `{"if": {"const": v}, "else": {...the rest}}` in its working copy.
//!
//! Annotation keywords the record code reads (the validator ignores them):
//! `x-autogenerate` (a pattern filling an empty text on create) and
//! `x-autodate: {onCreate, onUpdate}` (the server sets the date).
//! Error messages are `code: message`, split again by `compile::describe`.

use jsonschema::{Keyword, ValidationError};
use serde_json::{Map, Value};

pub const MAX_SIZE: &str = "x-maxSize";
pub const ONLY_DOMAINS: &str = "x-onlyDomains";
pub const EXCEPT_DOMAINS: &str = "x-exceptDomains";
pub const DATE: &str = "x-date";
pub const BLANK: &str = "x-blank";
pub const AUTOGENERATE: &str = "x-autogenerate";
pub const AUTODATE: &str = "x-autodate";

/// The validating custom keywords, for `compile` to register.
pub const VALIDATING: &[&str] = &[MAX_SIZE, ONLY_DOMAINS, EXCEPT_DOMAINS, DATE];

fn bad_keyword(keyword: &str, what: &str) -> ValidationError<'static> {
    ValidationError::custom(format!("{keyword} must be {what}"))
}

/// Builds the validator of one of [`VALIDATING`] from its value in a schema.
pub fn build(name: &str, value: &Value) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'static>> {
    match name {
        MAX_SIZE => match value.as_u64() {
            Some(n) => Ok(Box::new(MaxSize(n))),
            None => Err(bad_keyword(name, "a non-negative integer")),
        },
        ONLY_DOMAINS | EXCEPT_DOMAINS => {
            let list = value
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_str().map(str::to_ascii_lowercase)).collect())
                .ok_or_else(|| bad_keyword(name, "a list of domain names"))?;
            Ok(Box::new(Domains {
                only: name == ONLY_DOMAINS,
                list,
            }))
        }
        DATE => {
            let bound = |key: &str| -> Result<Option<String>, ValidationError<'static>> {
                match value.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if s.is_empty() => Ok(None),
                    Some(Value::String(s)) => normal_date(s)
                        .map(Some)
                        .ok_or_else(|| bad_keyword(DATE, "{min?, max?} with dates as YYYY-MM-DD HH:MM:SS.mmmZ")),
                    Some(_) => Err(bad_keyword(DATE, "{min?, max?} with dates as strings")),
                }
            };
            if !value.is_object() {
                return Err(bad_keyword(DATE, "an object {min?, max?}"));
            }
            Ok(Box::new(DateKeyword {
                min: bound("min")?,
                max: bound("max")?,
            }))
        }
        _ => Err(bad_keyword(name, "a known keyword")),
    }
}

struct MaxSize(u64);

impl MaxSize {
    fn problem(&self, v: &Value) -> Option<String> {
        let size = match v {
            Value::String(s) => s.len(),
            other => serde_json::to_string(other).map(|s| s.len()).unwrap_or(0),
        };
        (size as u64 > self.0).then(|| format!("validation_max_size: Must be at most {} bytes.", self.0))
    }
}

impl<'i> Keyword<'i> for MaxSize {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        self.problem(instance)
            .map_or(Ok(()), |m| Err(ValidationError::custom(m)))
    }
    fn is_valid(&self, instance: &'i Value) -> bool {
        self.problem(instance).is_none()
    }
}

struct Domains {
    only: bool,
    list: Vec<String>,
}

/// The domain of an email address or the host of a URL, lowercased.
fn domain_of(s: &str) -> Option<String> {
    if s.contains("://") {
        return url::Url::parse(s).ok()?.host_str().map(str::to_ascii_lowercase);
    }
    s.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())
}

impl Domains {
    fn problem(&self, v: &Value) -> Option<&'static str> {
        let Value::String(s) = v else { return None };
        if s.is_empty() || self.list.is_empty() {
            return None;
        }
        let domain = domain_of(s)?;
        let listed = self.list.contains(&domain);
        // Allowed when listed in `onlyDomains`, or not listed in `exceptDomains`.
        (self.only != listed).then_some("validation_domain_not_allowed: The domain is not allowed.")
    }
}

impl<'i> Keyword<'i> for Domains {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        self.problem(instance)
            .map_or(Ok(()), |m| Err(ValidationError::custom(m)))
    }
    fn is_valid(&self, instance: &'i Value) -> bool {
        self.problem(instance).is_none()
    }
}

/// `YYYY-MM-DD HH:MM:SS[.f…]Z` (or with `T`) → `YYYY-MM-DD HH:MM:SS.mmmZ`,
/// which sorts as time does; `None` if it is not such a date.
pub fn normal_date(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 20 || !b.ends_with(b"Z") {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let seps_ok = b[4] == b'-' && b[7] == b'-' && (b[10] == b' ' || b[10] == b'T') && b[13] == b':' && b[16] == b':';
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 0,
    };
    if !seps_ok || day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let frac = &s[19..s.len() - 1];
    let millis = if frac.is_empty() {
        "000".to_owned()
    } else {
        let f = frac.strip_prefix('.')?;
        if f.is_empty() || !f.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        format!("{:0<3}", &f[..f.len().min(3)])
    };
    Some(format!("{} {}.{millis}Z", &s[..10], &s[11..19]))
}

struct DateKeyword {
    min: Option<String>,
    max: Option<String>,
}

impl DateKeyword {
    fn problem(&self, v: &Value) -> Option<String> {
        let Value::String(s) = v else { return None };
        let Some(date) = normal_date(s) else {
            return Some("validation_invalid_date: Must be a valid date (YYYY-MM-DD HH:MM:SS.mmmZ).".into());
        };
        if let Some(min) = self.min.as_ref().filter(|m| date < **m) {
            return Some(format!(
                "validation_min_date_constraint: Must be no earlier than {min}."
            ));
        }
        if let Some(max) = self.max.as_ref().filter(|m| date > **m) {
            return Some(format!("validation_max_date_constraint: Must be no later than {max}."));
        }
        None
    }
}

impl<'i> Keyword<'i> for DateKeyword {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        self.problem(instance)
            .map_or(Ok(()), |m| Err(ValidationError::custom(m)))
    }
    fn is_valid(&self, instance: &'i Value) -> bool {
        self.problem(instance).is_none()
    }
}

/// Rewrites every top-level property carrying `x-blank: v` into
/// `{"if": {"const": v}, "else": {...}}` (see the module doc), in place.
pub fn expand_blank(schema: &mut Value) {
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for prop in props.values_mut() {
        let Some(obj) = prop.as_object_mut() else { continue };
        let Some(blank) = obj.remove(BLANK) else { continue };
        let rest = std::mem::take(obj);
        let mut wrapped = Map::new();
        wrapped.insert("if".into(), serde_json::json!({ "const": blank }));
        wrapped.insert("else".into(), Value::Object(rest));
        *obj = wrapped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_normalise_and_refuse_nonsense() {
        assert_eq!(
            normal_date("2024-02-29T10:11:12Z").as_deref(),
            Some("2024-02-29 10:11:12.000Z")
        );
        assert_eq!(
            normal_date("2024-01-02 03:04:05.6789Z").as_deref(),
            Some("2024-01-02 03:04:05.678Z")
        );
        for bad in [
            "2023-02-29 00:00:00Z",
            "2024-13-01 00:00:00Z",
            "yesterday",
            "2024-01-02 03:04:05.Z",
            "",
        ] {
            assert_eq!(normal_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn domains_of_emails_and_urls() {
        assert_eq!(domain_of("a@Example.com").as_deref(), Some("example.com"));
        assert_eq!(domain_of("https://u:p@Host.io:8080/x?y").as_deref(), Some("host.io"));
        assert_eq!(domain_of("plain"), None);
    }
}
