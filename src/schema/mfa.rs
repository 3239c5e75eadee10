//! The `mfa` option of auth collections (PocketBase's `MFAConfig`):
//! whether a login needs a second, different method, how long the first
//! one stays usable, and which records it applies to. `core::auth::mfa`
//! enforces it; this file only reads, shows and checks it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::SchemaError;

/// Bounds of `mfa.duration` in seconds, as PocketBase checks them when MFA
/// is on (10 s to a day).
pub const MIN_DURATION: u64 = 10;
pub const MAX_DURATION: u64 = 86_400;

/// `mfa: {enabled, duration, rule}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MfaOptions {
    pub enabled: bool,
    /// Seconds a first factor waits for the second one.
    pub duration: u64,
    /// Which records need a second factor: a filter over the auth record;
    /// empty means every record (as PocketBase).
    pub rule: String,
}

impl Default for MfaOptions {
    fn default() -> Self {
        MfaOptions {
            enabled: false,
            duration: 600,
            rule: String::new(),
        }
    }
}

fn error(field: &str, code: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        field: format!("mfa.{field}"),
        code: code.to_owned(),
        message: message.into(),
    }
}

impl MfaOptions {
    /// PocketBase's view of the option.
    pub fn view(&self) -> Value {
        json!({"enabled": self.enabled, "duration": self.duration, "rule": self.rule})
    }

    /// Applies PocketBase's `mfa` object: the keys it sends replace the
    /// current values; an unknown key or a wrong type is a 400 naming it.
    /// Whether the result makes sense is [`MfaOptions::check`]'s job (it
    /// needs the other options).
    pub fn apply(&mut self, obj: &Map<String, Value>) -> Result<(), SchemaError> {
        for (k, v) in obj {
            match (k.as_str(), v) {
                (_, Value::Null) => {}
                ("enabled", Value::Bool(b)) => self.enabled = *b,
                ("enabled", _) => return Err(error(k, "validation_invalid_value", "Must be true or false.")),
                ("duration", v) => {
                    // PocketBase stores an int64: a negative or fractional
                    // number is a type error, not a silent clamp.
                    self.duration = v
                        .as_u64()
                        .ok_or_else(|| error(k, "validation_invalid_value", "Must be a whole number of seconds."))?
                }
                ("rule", Value::String(s)) => self.rule = s.clone(),
                ("rule", _) => return Err(error(k, "validation_invalid_value", "Must be a string.")),
                _ => {
                    return Err(error(
                        k,
                        "validation_unknown_field",
                        "Unknown key (mfa has enabled, duration and rule).",
                    ))
                }
            }
        }
        Ok(())
    }

    /// The checks PocketBase runs when the collection is saved with MFA on
    /// (off, the values are kept as given): duration within
    /// [`MIN_DURATION`]..=[`MAX_DURATION`], a second login method to ask for
    /// (`methods_enabled`: how many login methods the collection has on),
    /// and a rule that parses.
    pub fn check(&self, methods_enabled: usize) -> Result<(), SchemaError> {
        if !self.enabled {
            return Ok(());
        }
        if self.duration == 0 {
            return Err(error("duration", "validation_required", "Cannot be blank."));
        }
        if self.duration < MIN_DURATION {
            return Err(error(
                "duration",
                "validation_min_greater_equal_than_required",
                format!("Must be no less than {MIN_DURATION}."),
            ));
        }
        if self.duration > MAX_DURATION {
            return Err(error(
                "duration",
                "validation_max_less_equal_than_required",
                format!("Must be no greater than {MAX_DURATION}."),
            ));
        }
        if methods_enabled < 2 {
            return Err(error(
                "enabled",
                "validation_mfa_not_enough_auths",
                "MFA requires at least 2 auth methods to be enabled.",
            ));
        }
        if !self.rule.is_empty() {
            crate::query::parse_filter(&self.rule).map_err(|e| {
                error(
                    "rule",
                    "validation_invalid_rule",
                    format!("Invalid rule. Raw error: {e}"),
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(v: Value) -> Result<MfaOptions, SchemaError> {
        let mut o = MfaOptions::default();
        o.apply(v.as_object().unwrap())?;
        Ok(o)
    }

    fn field_of(e: SchemaError) -> (String, String) {
        let SchemaError::Invalid { field, code, .. } = e;
        (field, code)
    }

    #[test]
    fn apply_sets_what_is_sent_and_refuses_bad_types() {
        let o = applied(json!({"enabled": true, "duration": 60, "rule": "verified = true"})).unwrap();
        assert_eq!((o.enabled, o.duration, o.rule.as_str()), (true, 60, "verified = true"));
        let o = applied(json!({"enabled": true})).unwrap();
        assert_eq!(o.duration, 600, "keys not sent keep their value");
        for bad in [
            json!({"enabled": "yes"}),
            json!({"duration": -5}),
            json!({"duration": 1.5}),
            json!({"duration": "60"}),
            json!({"rule": 5}),
            json!({"extra": 1}),
        ] {
            assert!(applied(bad.clone()).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn check_applies_pocketbase_bounds_only_when_enabled() {
        let off = applied(json!({"enabled": false, "duration": 3, "rule": "(("})).unwrap();
        assert!(off.check(1).is_ok(), "disabled MFA is stored as given");
        let on = |v: Value| {
            let mut o = applied(v).unwrap();
            o.enabled = true;
            o
        };
        assert_eq!(
            field_of(on(json!({"duration": 9})).check(2).unwrap_err()),
            (
                "mfa.duration".into(),
                "validation_min_greater_equal_than_required".into()
            )
        );
        assert_eq!(
            field_of(on(json!({"duration": 86_401})).check(2).unwrap_err()),
            ("mfa.duration".into(), "validation_max_less_equal_than_required".into())
        );
        assert_eq!(
            field_of(on(json!({"duration": 0})).check(2).unwrap_err()),
            ("mfa.duration".into(), "validation_required".into())
        );
        assert_eq!(
            field_of(on(json!({})).check(1).unwrap_err()),
            ("mfa.enabled".into(), "validation_mfa_not_enough_auths".into())
        );
        assert_eq!(
            field_of(on(json!({"rule": "email = "})).check(2).unwrap_err()),
            ("mfa.rule".into(), "validation_invalid_rule".into())
        );
        assert!(on(json!({"duration": 10, "rule": "verified = true"})).check(2).is_ok());
        assert!(on(json!({"duration": 86_400})).check(2).is_ok());
    }
}
