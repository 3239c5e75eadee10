//! The collection model as the collections API takes and returns it, and the
//! checks a definition must pass before it is saved.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::mail_templates::{AuthAlert, MailTemplate};
use super::pocketbase::{self, RelationIds};
use super::SchemaError;
use crate::store::index::IndexField;
use crate::store::IndexDef;

/// `base` holds plain records; `auth` adds users' system fields and login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionType {
    Base,
    Auth,
}

/// A declared secondary index, as the API spells it:
/// `{"name":"by_views","fields":["views","-created"],"unique":false}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSpec {
    pub name: String,
    pub fields: Vec<String>,
    #[serde(default)]
    pub unique: bool,
}

/// One-time-password login settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct OtpOptions {
    pub enabled: bool,
    /// Seconds a code stays valid.
    pub duration: u64,
    /// Digits in a code.
    pub length: usize,
    /// `otp.emailTemplate` (`None`: the default; see `schema::mail_templates`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_template: Option<MailTemplate>,
}

impl Default for OtpOptions {
    fn default() -> Self {
        OtpOptions {
            enabled: false,
            duration: 180,
            length: 8,
            email_template: None,
        }
    }
}

/// Options of auth collections (token lifetimes in seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AuthOptions {
    pub auth_token_duration: u64,
    pub verification_token_duration: u64,
    pub password_reset_token_duration: u64,
    pub email_change_token_duration: u64,
    /// File tokens (`POST /api/files/token`): short-lived, for `?token=`
    /// links such as backup downloads (PocketBase: 3 minutes).
    pub file_token_duration: u64,
    pub identity_fields: Vec<String>,
    pub otp: OtpOptions,
    /// Mail templates and login alerts (`None`: the default; see
    /// `schema::mail_templates`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_template: Option<MailTemplate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_password_template: Option<MailTemplate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm_email_change_template: Option<MailTemplate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_alert: Option<AuthAlert>,
    pub mfa: super::mfa::MfaOptions,
    /// PocketBase's `oauth2` option (shown as the top-level `oauth2` key only).
    pub oauth2: super::oauth2::OAuth2Options,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            // PocketBase's default is 5 days; the contract asks for 7.
            auth_token_duration: 7 * 24 * 3600,
            verification_token_duration: 3 * 24 * 3600,
            password_reset_token_duration: 1800,
            email_change_token_duration: 1800,
            file_token_duration: 180,
            identity_fields: vec!["email".into()],
            otp: OtpOptions::default(),
            verification_template: None,
            reset_password_template: None,
            confirm_email_change_template: None,
            auth_alert: None,
            mfa: Default::default(),
            oauth2: Default::default(),
        }
    }
}

/// A collection definition. Rules: `None` = superusers only, `""` = anyone,
/// otherwise a filter expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Collection {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: CollectionType,
    #[serde(default)]
    pub system: bool,
    pub schema: Value,
    #[serde(default)]
    pub indexes: Vec<IndexSpec>,
    pub list_rule: Option<String>,
    pub view_rule: Option<String>,
    pub create_rule: Option<String>,
    pub update_rule: Option<String>,
    pub delete_rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage_rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_options: Option<AuthOptions>,
    pub created: String,
    pub updated: String,
    /// PocketBase auth options Basalt has no equivalent for (`mfa`,
    /// `oauth2`, mail templates, …), kept and returned as given.
    #[serde(flatten, default)]
    pub kept: Map<String, Value>,
}

/// Fields every record has, managed by the server.
pub const BASE_SYSTEM_FIELDS: &[&str] = &["id", "collectionId", "collectionName", "created", "updated", "expand"];

/// Extra system fields of auth records (plus write-only helpers).
pub const AUTH_SYSTEM_FIELDS: &[&str] = &[
    "email",
    "emailVisibility",
    "verified",
    "password",
    "passwordConfirm",
    "oldPassword",
    "tokenKey",
];

/// Keys a client may send when creating or updating a collection.
const WRITABLE_KEYS: &[&str] = &[
    "name",
    "type",
    "schema",
    "fields",
    "indexes",
    "listRule",
    "viewRule",
    "createRule",
    "updateRule",
    "deleteRule",
    "authRule",
    "manageRule",
    "authOptions",
];

/// Keys the server sets; sending them is allowed (so a GET result can be
/// sent back) but they are ignored.
const READ_ONLY_KEYS: &[&str] = &["id", "system", "created", "updated", "indexStatus"];

/// A collection name as PocketBase allows it: 1-255 characters of
/// `A-Z a-z 0-9 _` (Go's `^\\w+$` with its length check).
pub fn is_valid_collection_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    name.len() <= 63 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn field_error(field: &str, code: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        field: field.to_owned(),
        code: code.to_owned(),
        message: message.into(),
    }
}

impl Collection {
    /// Builds a new collection from a create request body.
    pub fn from_create(body: Map<String, Value>, id: String, now: String) -> Result<Collection, SchemaError> {
        Collection::from_create_with(body, id, now, &|s: &str| s.to_owned())
    }

    /// [`Collection::from_create`], with relation targets shown as ids in
    /// PocketBase's `fields` view (see [`Collection::apply_with`]).
    pub fn from_create_with(
        body: Map<String, Value>,
        id: String,
        now: String,
        ids: RelationIds,
    ) -> Result<Collection, SchemaError> {
        let kind = match body.get("type") {
            None | Some(Value::Null) => CollectionType::Base,
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|_| field_error("type", "validation_invalid_value", "type must be \"base\" or \"auth\""))?,
        };
        let mut c = Collection {
            id,
            name: String::new(),
            kind,
            system: false,
            schema: serde_json::json!({"type": "object"}),
            indexes: vec![],
            list_rule: None,
            view_rule: None,
            create_rule: None,
            update_rule: None,
            delete_rule: None,
            auth_rule: None,
            manage_rule: None,
            auth_options: None,
            created: now.clone(),
            updated: now,
            kept: Map::new(),
        };
        if kind == CollectionType::Auth {
            c.auth_rule = Some(String::new());
            c.auth_options = Some(AuthOptions::default());
        }
        c.apply_with(body, ids)?;
        Ok(c)
    }

    /// Applies the writable keys of a create/patch body onto `self`.
    /// Absent keys are left as they are; `null` clears a rule.
    pub fn apply(&mut self, body: Map<String, Value>) -> Result<(), SchemaError> {
        self.apply_with(body, &|s: &str| s.to_owned())
    }

    /// [`Collection::apply`] for bodies in either format: Basalt's (`schema`,
    /// index objects, `authOptions`) or PocketBase's (`fields`, index SQL,
    /// top-level auth options), or both as read from an answer. `ids` maps a
    /// relation target to the id PocketBase's view shows.
    pub fn apply_with(&mut self, mut body: Map<String, Value>, ids: RelationIds) -> Result<(), SchemaError> {
        let before = self.clone();
        let fields = body.remove("fields");
        let sent_schema = body.get("schema").cloned();
        let auth_keys: Vec<(String, Value)> = pocketbase::AUTH_KEYS
            .iter()
            .filter_map(|k| body.remove(*k).map(|v| ((*k).to_owned(), v)))
            .collect();
        if let Some(Value::Array(items)) = body.get_mut("indexes") {
            if items.iter().any(Value::is_string) {
                *items = self.indexes_from_sql(std::mem::take(items))?;
            }
        }
        self.apply_basalt(body)?;
        if let Some(fields) = fields {
            self.schema = self.schema_from_fields(&fields, sent_schema.as_ref(), &before.schema, ids)?;
        }
        self.apply_auth_keys(auth_keys, &before)
    }

    /// Index entries of PocketBase's SQL form turned into Basalt's objects
    /// (PocketBase's own auth indexes dropped: Basalt keeps them itself).
    fn indexes_from_sql(&self, items: Vec<Value>) -> Result<Vec<Value>, SchemaError> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let Value::String(sql) = item else {
                out.push(item);
                continue;
            };
            match pocketbase::parse_index(&sql, self.kind) {
                Ok(Some(spec)) => out.push(serde_json::to_value(spec).expect("serialize index")),
                Ok(None) => {}
                Err(e) => {
                    return Err(field_error(
                        &format!("indexes.{i}"),
                        "validation_invalid_index",
                        format!("cannot use index '{sql}': {e}"),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// The schema a body's `fields` stands for. With `schema` sent too (a
    /// tool read both views, changed one and wrote everything back): if the
    /// fields are what the sent schema shows, the schema wins; else if the
    /// sent schema is the stored one, the fields win; else if the fields
    /// are the stored ones, the schema wins; else both changed: 400.
    fn schema_from_fields(
        &self,
        fields: &Value,
        sent: Option<&Value>,
        stored: &Value,
        ids: RelationIds,
    ) -> Result<Value, SchemaError> {
        let Some(sent) = sent else {
            return pocketbase::fields_to_schema(fields, self.kind, stored);
        };
        let sent_fields = pocketbase::normalise_fields(fields, self.kind, ids);
        if sent_fields == Some(pocketbase::schema_to_fields(sent, self.kind, ids)) {
            return Ok(sent.clone());
        }
        if sent == stored {
            return pocketbase::fields_to_schema(fields, self.kind, stored);
        }
        // The schema changed and the fields are the stored ones, as read.
        if sent_fields == Some(pocketbase::schema_to_fields(stored, self.kind, ids)) {
            return Ok(sent.clone());
        }
        Err(field_error(
            "fields",
            "validation_conflict",
            "both 'schema' and 'fields' were sent and they differ: send one of them, or change only one of the two views you read",
        ))
    }

    /// PocketBase's top-level auth options; one whose value is what the
    /// collection showed before is left alone (so a changed `authOptions`
    /// sent beside it wins).
    fn apply_auth_keys(&mut self, keys: Vec<(String, Value)>, before: &Collection) -> Result<(), SchemaError> {
        if keys.is_empty() {
            return Ok(());
        }
        if self.kind != CollectionType::Auth {
            return Err(field_error(
                &keys[0].0,
                "validation_invalid_value",
                "only auth collections have auth options",
            ));
        }
        let old_opts = before.auth_options.clone().unwrap_or_default();
        let mut opts = self.auth_options.clone().unwrap_or_default();
        for (key, value) in keys {
            if pocketbase::auth_key_view(&key, &old_opts, &before.kept).as_ref() == Some(&value) {
                continue;
            }
            pocketbase::apply_auth_key(&key, value, &mut opts, &mut self.kept)?;
        }
        self.auth_options = Some(opts);
        Ok(())
    }

    /// The collection as the API answers: Basalt's keys, PocketBase's
    /// `fields` view beside `schema`, and (auth) PocketBase's top-level
    /// auth options.
    pub fn to_api(&self, ids: RelationIds) -> Value {
        let mut out = Map::new();
        let Value::Object(own) = serde_json::to_value(self).expect("serialize collection") else {
            unreachable!("a collection serialises to an object")
        };
        for (k, v) in own {
            let is_schema = k == "schema";
            out.insert(k, v);
            if is_schema {
                out.insert(
                    "fields".into(),
                    Value::Array(pocketbase::schema_to_fields(&self.schema, self.kind, ids)),
                );
            }
        }
        if self.kind == CollectionType::Auth {
            // PocketBase always shows both auth rules (`null` = superusers only).
            out.entry("authRule").or_insert(Value::Null);
            out.entry("manageRule").or_insert(Value::Null);
        }
        if let Some(Value::Object(alias)) = out.get_mut("authOptions") {
            alias.remove("oauth2"); // shown as `oauth2`, without its secrets
        }
        if let (CollectionType::Auth, Some(opts)) = (self.kind, &self.auth_options) {
            for key in pocketbase::AUTH_KEYS {
                if let Some(v) = pocketbase::auth_key_view(key, opts, &self.kept) {
                    out.insert((*key).to_owned(), v);
                }
            }
        }
        Value::Object(out)
    }

    /// Basalt's own keys, one at a time: each key is checked and set by
    /// the step below that knows its rules, so an unknown or read-only key
    /// is told apart here, in one place.
    fn apply_basalt(&mut self, body: Map<String, Value>) -> Result<(), SchemaError> {
        for (key, value) in body {
            match key.as_str() {
                "name" => {
                    self.name = value
                        .as_str()
                        .ok_or_else(|| field_error("name", "validation_invalid_value", "name must be a string"))?
                        .to_owned()
                }
                "type" => self.check_same_type(value)?,
                "schema" => self.schema = value,
                "indexes" => {
                    self.indexes = serde_json::from_value(value).map_err(|e| {
                        field_error(
                            "indexes",
                            "validation_invalid_value",
                            format!("indexes must be a list of {{name, fields, unique?}}: {e}"),
                        )
                    })?
                }
                "listRule" | "viewRule" | "createRule" | "updateRule" | "deleteRule" | "authRule" | "manageRule" => {
                    self.apply_rule(&key, value)?
                }
                "authOptions" => self.apply_auth_options(value)?,
                k if READ_ONLY_KEYS.contains(&k) => {}
                k => {
                    return Err(field_error(
                        k,
                        "validation_unknown_field",
                        format!(
                            "unknown collection property '{k}' (allowed: {})",
                            WRITABLE_KEYS.join(", ")
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// `type` may be sent (a tool writes back what it read) but not
    /// changed: records stored under one type would not fit the other.
    fn check_same_type(&self, value: Value) -> Result<(), SchemaError> {
        let kind: CollectionType = serde_json::from_value(value)
            .map_err(|_| field_error("type", "validation_invalid_value", "type must be \"base\" or \"auth\""))?;
        if kind != self.kind {
            return Err(field_error(
                "type",
                "validation_invalid_value",
                "the type of an existing collection cannot change",
            ));
        }
        Ok(())
    }

    /// One of the access rules: a string sets it, `null` clears it (only
    /// superusers pass); `authRule` and `manageRule` exist on auth
    /// collections only, so sending them elsewhere is an error, not a no-op.
    fn apply_rule(&mut self, key: &str, value: Value) -> Result<(), SchemaError> {
        let rule = match value {
            Value::Null => None,
            Value::String(s) => Some(s),
            _ => {
                return Err(field_error(
                    key,
                    "validation_invalid_value",
                    "a rule must be a string or null",
                ))
            }
        };
        match key {
            "listRule" => self.list_rule = rule,
            "viewRule" => self.view_rule = rule,
            "createRule" => self.create_rule = rule,
            "updateRule" => self.update_rule = rule,
            "deleteRule" => self.delete_rule = rule,
            "authRule" | "manageRule" if self.kind != CollectionType::Auth => {
                return Err(field_error(
                    key,
                    "validation_invalid_value",
                    "only auth collections have this rule",
                ))
            }
            "authRule" => self.auth_rule = rule,
            _ => self.manage_rule = rule,
        }
        Ok(())
    }

    /// Basalt's `authOptions` object, replacing the whole set; refused on
    /// a base collection rather than stored where nothing would read it.
    fn apply_auth_options(&mut self, value: Value) -> Result<(), SchemaError> {
        if self.kind != CollectionType::Auth {
            return Err(field_error(
                "authOptions",
                "validation_invalid_value",
                "only auth collections have auth options",
            ));
        }
        let mut opts: AuthOptions = serde_json::from_value(value).map_err(|e| {
            field_error(
                "authOptions",
                "validation_invalid_value",
                format!("invalid auth options: {e}"),
            )
        })?;
        // OAuth2 is set through the `oauth2` key only (checked, secrets kept).
        opts.oauth2 = self.auth_options.as_ref().map(|o| o.oauth2.clone()).unwrap_or_default();
        self.auth_options = Some(opts);
        Ok(())
    }

    /// Checks the name, the system-field rules of the schema and the indexes.
    /// (The schema itself is compiled separately.)
    pub fn check(&self) -> Result<(), SchemaError> {
        if !is_valid_collection_name(&self.name) {
            return Err(field_error(
                "name",
                "validation_invalid_name",
                "name must be 1-255 characters of A-Z, a-z, 0-9 and _",
            ));
        }
        if let Some(props) = self.schema.get("properties").and_then(Value::as_object) {
            for key in props.keys() {
                let reserved = BASE_SYSTEM_FIELDS.contains(&key.as_str())
                    || (self.kind == CollectionType::Auth && AUTH_SYSTEM_FIELDS.contains(&key.as_str()));
                if reserved {
                    return Err(field_error(
                        "schema",
                        "validation_system_field",
                        format!("the schema may not define the system field '{key}'"),
                    ));
                }
                if key.ends_with('+') || key.ends_with('-') || key.starts_with('+') {
                    return Err(field_error(
                        "schema",
                        "validation_invalid_value",
                        format!(
                            "property '{key}' may not start with '+' or end with '+'/'-' (those are update modifiers)"
                        ),
                    ));
                }
            }
        }
        if let Some(opts) = &self.auth_options {
            super::mail_templates::check(opts)?;
            // Password sign-in cannot be turned off in Basalt, so it always
            // counts as one method.
            opts.mfa
                .check(1 + usize::from(opts.otp.enabled) + usize::from(opts.oauth2.enabled))?;
        }
        let mut names = std::collections::HashSet::new();
        for (i, idx) in self.indexes.iter().enumerate() {
            let at = format!("indexes.{i}");
            if !is_valid_name(&idx.name) {
                return Err(field_error(
                    &at,
                    "validation_invalid_name",
                    "an index name must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$",
                ));
            }
            if !names.insert(idx.name.as_str()) || idx.name.starts_with("_sys") {
                return Err(field_error(
                    &at,
                    "validation_not_unique",
                    format!("index name '{}' is taken or reserved", idx.name),
                ));
            }
            if idx.fields.is_empty() || idx.fields.len() > 8 {
                return Err(field_error(
                    &at,
                    "validation_invalid_value",
                    "an index needs 1 to 8 fields",
                ));
            }
            for f in &idx.fields {
                let path = f.strip_prefix('-').unwrap_or(f);
                if path.is_empty() || path.split('.').any(|s| s.is_empty() || s.len() > 255) {
                    return Err(field_error(
                        &at,
                        "validation_invalid_value",
                        format!("invalid index field '{f}'"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The store's index definitions: the declared ones plus system indexes
    /// (`_sys_created` for the default order, `_sys_email` on auth collections).
    pub fn index_defs(&self) -> Vec<IndexDef> {
        let mut out = vec![IndexDef {
            name: "_sys_created".into(),
            unique: false,
            fields: vec![IndexField {
                path: vec!["created".into()],
                desc: false,
            }],
            lowercase: false,
        }];
        if self.kind == CollectionType::Auth {
            out.push(IndexDef {
                name: "_sys_email".into(),
                unique: true,
                fields: vec![IndexField {
                    path: vec!["email".into()],
                    desc: false,
                }],
                lowercase: true,
            });
        }
        for idx in &self.indexes {
            out.push(IndexDef {
                name: idx.name.clone(),
                unique: idx.unique,
                fields: idx
                    .fields
                    .iter()
                    .map(|f| {
                        let (desc, path) = match f.strip_prefix('-') {
                            Some(p) => (true, p),
                            None => (false, f.as_str()),
                        };
                        IndexField {
                            path: path.split('.').map(str::to_owned).collect(),
                            desc,
                        }
                    })
                    .collect(),
                lowercase: false,
            });
        }
        out
    }
}
