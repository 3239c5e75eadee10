//! The collection form shared by the create and edit pages: what the user
//! typed (kept verbatim so a refused form comes back exactly as sent), how
//! it becomes a collections API body, and how the API's errors are placed
//! next to the fields they are about.
//!
//! Rules need three states (`null` = superusers only, `""` = everyone, an
//! expression), which one text box cannot express without a magic value, so
//! each rule is a select (`<key>_mode`: `locked` / `public` / `expr`) plus
//! the expression box `<key>`. A post without the select (a script, an old
//! page) falls back to "empty box = superusers only".

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::super::AdminForm;
use crate::error::ApiError;

/// The schema a new collection starts with: one string property and no
/// others allowed, which shows the shape a user builds on.
pub const STARTER_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "title": { "type": "string", "maxLength": 200 }
  },
  "additionalProperties": false
}"#;

/// The rules, in the order the form shows them: (API key, label, who it
/// gates, auth collections only).
const RULES: &[(&str, &str, &str, bool)] = &[
    ("listRule", "List", "who may list and search records", false),
    ("viewRule", "View", "who may read one record", false),
    ("createRule", "Create", "who may create records", false),
    ("updateRule", "Update", "who may change records", false),
    ("deleteRule", "Delete", "who may delete records", false),
    ("authRule", "Auth", "extra condition a user must meet to log in", true),
    (
        "manageRule",
        "Manage",
        "who may manage other users' accounts (email, password) like a superuser",
        true,
    ),
];

/// A rule error from the filter parser, split around the position it names
/// so the page can point at the offending character.
pub struct RuleError {
    pub message: String,
    /// The rule text before, at and after the error position (empty `at`
    /// and `after` when the message names no position).
    pub before: String,
    pub at: String,
    pub after: String,
    pub has_position: bool,
}

impl RuleError {
    fn new(message: &str, text: &str) -> RuleError {
        let position = message.split_once("at position ").and_then(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok()
        });
        let chars: Vec<char> = text.chars().collect();
        match position {
            Some(p) if p <= chars.len() => RuleError {
                message: message.to_owned(),
                before: chars[..p].iter().collect(),
                // At the very end, a space marks "something is missing here".
                at: chars.get(p).map_or(" ".to_owned(), char::to_string),
                after: chars.get(p + 1..).map(|s| s.iter().collect()).unwrap_or_default(),
                has_position: true,
            },
            _ => RuleError {
                message: message.to_owned(),
                before: String::new(),
                at: String::new(),
                after: String::new(),
                has_position: false,
            },
        }
    }
}

/// One rule row of the form.
pub struct RuleField {
    pub key: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub auth_only: bool,
    /// `locked`, `public` or `expr`.
    pub mode: &'static str,
    pub text: String,
    pub error: Option<RuleError>,
}

impl RuleField {
    /// The form field name of the mode select.
    pub fn mode_name(&self) -> String {
        format!("{}_mode", self.key)
    }

    /// The API value: `None` = superusers only.
    fn value(&self) -> Option<String> {
        match self.mode {
            "locked" => None,
            "public" => Some(String::new()),
            _ => Some(self.text.clone()),
        }
    }
}

fn mode_of(rule: Option<&str>) -> &'static str {
    match rule {
        None => "locked",
        Some("") => "public",
        Some(_) => "expr",
    }
}

/// The form's values and errors.
pub struct CollectionForm {
    pub name: String,
    pub auth: bool,
    pub schema: String,
    pub indexes: String,
    pub auth_options: String,
    pub rules: Vec<RuleField>,
    /// Errors by form field: `name`, `type`, `schema`, `indexes`, `authOptions`.
    pub errors: BTreeMap<String, String>,
    /// Errors not about one field.
    pub general: Vec<String>,
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A JSON syntax error with the line and column where it was found (the
/// same position the page's script reports while typing).
pub fn json_error(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let what = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m);
    format!("JSON syntax error at line {}, column {}: {what}", e.line(), e.column())
}

impl CollectionForm {
    /// A new collection: the starter schema, no indexes, rules locked
    /// (auth collections: anyone who passes the password check may log in).
    pub fn blank() -> CollectionForm {
        let rules = RULES
            .iter()
            .map(|&(key, label, help, auth_only)| RuleField {
                key,
                label,
                help,
                auth_only,
                mode: if key == "authRule" { "public" } else { "locked" },
                text: String::new(),
                error: None,
            })
            .collect();
        CollectionForm {
            name: String::new(),
            auth: false,
            schema: STARTER_SCHEMA.to_owned(),
            indexes: "[]".to_owned(),
            auth_options: String::new(),
            rules,
            errors: BTreeMap::new(),
            general: Vec::new(),
        }
    }

    /// An existing collection as `core::collections::export` returns it.
    pub fn from_export(v: &Value) -> CollectionForm {
        let rules = RULES
            .iter()
            .map(|&(key, label, help, auth_only)| {
                let rule = v.get(key).and_then(Value::as_str);
                RuleField {
                    key,
                    label,
                    help,
                    auth_only,
                    mode: mode_of(rule),
                    text: rule.unwrap_or_default().to_owned(),
                    error: None,
                }
            })
            .collect();
        CollectionForm {
            name: v.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            auth: v.get("type").and_then(Value::as_str) == Some("auth"),
            schema: pretty(v.get("schema").unwrap_or(&Value::Null)),
            indexes: pretty(v.get("indexes").unwrap_or(&json!([]))),
            auth_options: v.get("authOptions").map(pretty).unwrap_or_default(),
            rules,
            errors: BTreeMap::new(),
            general: Vec::new(),
        }
    }

    /// The submitted form. `auth` is the collection's type when editing
    /// (the type cannot change), `None` when creating (read from the form).
    pub fn from_post(form: &AdminForm, auth: Option<bool>) -> CollectionForm {
        let mut errors = BTreeMap::new();
        if auth.is_none() && !matches!(form.text("type"), "base" | "auth") {
            errors.insert(
                "type".to_owned(),
                "Choose “base” (plain records) or “auth” (users who log in).".to_owned(),
            );
        }
        let auth = auth.unwrap_or_else(|| form.text("type") == "auth");
        let rules = RULES
            .iter()
            .map(|&(key, label, help, auth_only)| {
                let text = form.text(key).to_owned();
                let mode = match form.get(&format!("{key}_mode")) {
                    Some("locked") => "locked",
                    Some("public") => "public",
                    Some("expr") => "expr",
                    _ if text.trim().is_empty() => "locked",
                    _ => "expr",
                };
                RuleField {
                    key,
                    label,
                    help,
                    auth_only,
                    mode,
                    text,
                    error: None,
                }
            })
            .collect();
        CollectionForm {
            name: form.text("name").trim().to_owned(),
            auth,
            schema: form.text("schema").to_owned(),
            indexes: form.text("indexes").to_owned(),
            auth_options: form.text("authOptions").to_owned(),
            rules,
            errors,
            general: Vec::new(),
        }
    }

    /// The error shown beside form field `field`, if any.
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || !self.general.is_empty() || self.rules.iter().any(|r| r.error.is_some())
    }

    /// The schema textarea parsed, or an inline error on it.
    pub fn parsed_schema(&mut self) -> Option<Value> {
        if self.schema.trim().is_empty() {
            self.errors.insert(
                "schema".into(),
                "The schema is required: at least {\"type\": \"object\"}.".into(),
            );
            return None;
        }
        match serde_json::from_str(&self.schema) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.insert("schema".into(), json_error(&e));
                None
            }
        }
    }

    /// The API body for `core::collections::create` (`creating`) or
    /// `update`; `None` when the form already has errors of its own
    /// (unparsable JSON, a rule whose select contradicts its text).
    pub fn api_body(&mut self, creating: bool) -> Option<Map<String, Value>> {
        let mut body = Map::new();
        body.insert("name".into(), json!(self.name));
        if creating {
            body.insert("type".into(), json!(if self.auth { "auth" } else { "base" }));
        }
        if let Some(schema) = self.parsed_schema() {
            body.insert("schema".into(), schema);
        }
        let indexes = if self.indexes.trim().is_empty() {
            "[]"
        } else {
            &self.indexes
        };
        match serde_json::from_str::<Value>(indexes) {
            Ok(v) => {
                body.insert("indexes".into(), v);
            }
            Err(e) => {
                self.errors.insert("indexes".into(), json_error(&e));
            }
        }
        if self.auth && !self.auth_options.trim().is_empty() {
            match serde_json::from_str::<Value>(&self.auth_options) {
                Ok(v) => {
                    body.insert("authOptions".into(), v);
                }
                Err(e) => {
                    self.errors.insert("authOptions".into(), json_error(&e));
                }
            }
        }
        for rule in &mut self.rules {
            if rule.auth_only && !self.auth {
                continue;
            }
            let has_text = !rule.text.trim().is_empty();
            let problem = match rule.mode {
                "expr" if !has_text => {
                    Some("Write an expression, or choose “Everyone” or “Superusers only”.".to_owned())
                }
                "locked" | "public" if has_text => Some(format!(
                    "An expression is filled in but “{}” is chosen: choose “Only when…” to use the expression, or clear it.",
                    if rule.mode == "locked" { "Superusers only" } else { "Everyone" }
                )),
                // Checked here too (the same parser core uses, so the same
                // message), so that a rule error shows up together with a
                // schema that is not even valid JSON.
                "expr" => crate::query::parse_filter(&rule.text).err().map(|e| e.to_string()),
                _ => None,
            };
            match problem {
                Some(message) => {
                    rule.error = Some(RuleError::new(&message, &rule.text));
                }
                None => {
                    body.insert(rule.key.into(), rule.value().map_or(Value::Null, Value::String));
                }
            }
        }
        if self.has_errors() {
            None
        } else {
            Some(body)
        }
    }

    /// Places the API's errors beside their fields; anything not about a
    /// field of this form is shown at the top.
    pub fn absorb(&mut self, e: &ApiError) {
        if e.data.is_empty() {
            self.general.push(e.message.clone());
            return;
        }
        for (field, detail) in &e.data {
            let message = detail
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or(e.message.as_str())
                .to_owned();
            if let Some(rule) = self.rules.iter_mut().find(|r| r.key == field) {
                rule.error = Some(RuleError::new(&message, &rule.text));
                continue;
            }
            let target = match field.as_str() {
                "name" | "type" | "schema" | "authOptions" => field.clone(),
                f if f == "indexes" || f.starts_with("indexes.") => "indexes".to_owned(),
                _ => {
                    self.general.push(if field.is_empty() {
                        message
                    } else {
                        format!("{field}: {message}")
                    });
                    continue;
                }
            };
            let message = match field.strip_prefix("indexes.").and_then(|n| n.parse::<usize>().ok()) {
                Some(i) => format!("Index #{}: {message}", i + 1),
                None => message,
            };
            self.errors
                .entry(target)
                .and_modify(|m| {
                    m.push(' ');
                    m.push_str(&message)
                })
                .or_insert(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_errors_split_around_the_parsers_position() {
        let e = RuleError::new("invalid filter at position 6: unknown operator", "title ==");
        assert!(e.has_position);
        assert_eq!(
            (e.before.as_str(), e.at.as_str(), e.after.as_str()),
            ("title ", "=", "=")
        );
        // At the end of the text: a blank marks where something is missing.
        let e = RuleError::new("invalid filter at position 7: expected an operand", "title =");
        assert_eq!(
            (e.before.as_str(), e.at.as_str(), e.after.as_str()),
            ("title =", " ", "")
        );
        // Offsets count characters, not bytes.
        let e = RuleError::new("invalid filter at position 2: x", "é é");
        assert_eq!((e.before.as_str(), e.at.as_str()), ("é ", "é"));
        assert!(!RuleError::new("at position 99: x", "short").has_position);
        assert!(!RuleError::new("no position", "x").has_position);
    }

    #[test]
    fn json_errors_name_line_and_column_once() {
        let e = serde_json::from_str::<Value>("{\n  \"a\": 1\n  \"b\": 2\n}").unwrap_err();
        assert_eq!(
            json_error(&e),
            "JSON syntax error at line 3, column 3: expected `,` or `}`"
        );
    }
}
