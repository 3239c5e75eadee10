//! The `oauth2` auth-collection option, in PocketBase 0.40's shape:
//! `{providers: [...], mappedFields: {id, name, username, avatarURL}, enabled}`.
//!
//! Stored inside [`super::collection::AuthOptions`]. A provider's
//! `clientSecret` is never shown (PocketBase hides it from every JSON view,
//! superusers' included); a save that leaves it empty keeps the one stored
//! for the provider of the same name, so a collection read and written back
//! keeps its secrets.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::SchemaError;

/// The provider names Basalt accepts: PocketBase's generic OpenID Connect
/// slots and the presets Basalt knows (their endpoints: `auth::oauth2`).
pub const PROVIDER_NAMES: &[&str] = &[
    "oidc",
    "oidc2",
    "oidc3",
    "google",
    "github",
    "microsoft",
    "apple",
    "gitlab",
    "discord",
];

/// Whether `name` is one of PocketBase's generic OpenID Connect slots.
pub fn is_oidc(name: &str) -> bool {
    matches!(name, "oidc" | "oidc2" | "oidc3")
}

/// Most providers one collection may list (each is one line of
/// `auth-methods`).
const MAX_PROVIDERS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct OAuth2Options {
    pub providers: Vec<ProviderConfig>,
    pub mapped_fields: MappedFields,
    pub enabled: bool,
}

/// Which record fields a new user's provider data fills (empty: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct MappedFields {
    pub id: String,
    pub name: String,
    pub username: String,
    #[serde(rename = "avatarURL")]
    pub avatar_url: String,
}

/// One provider as an admin configured it; empty URLs and a missing `pkce`
/// mean the preset's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProviderConfig {
    pub pkce: Option<bool>,
    pub name: String,
    #[serde(rename = "clientId")]
    pub client_id: String,
    #[serde(rename = "clientSecret")]
    pub client_secret: String,
    #[serde(rename = "authURL")]
    pub auth_url: String,
    #[serde(rename = "tokenURL")]
    pub token_url: String,
    #[serde(rename = "userInfoURL")]
    pub user_info_url: String,
    #[serde(rename = "displayName")]
    pub display_name: String,
    pub extra: Option<Map<String, Value>>,
}

impl ProviderConfig {
    /// A string list from `extra` (e.g. `issuers`); a single string counts
    /// as a list of one.
    pub fn extra_strings(&self, key: &str) -> Vec<String> {
        match self.extra.as_ref().and_then(|e| e.get(key)) {
            Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A string from `extra` (e.g. `jwksURL`), empty when absent.
    pub fn extra_string(&self, key: &str) -> String {
        self.extra_strings(key).into_iter().next().unwrap_or_default()
    }
}

impl OAuth2Options {
    /// The provider configured under `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// PocketBase's view: every provider without its `clientSecret`.
    pub fn view(&self) -> Value {
        let providers: Vec<Value> = self
            .providers
            .iter()
            .map(|p| {
                json!({
                    "pkce": p.pkce, "name": p.name, "clientId": p.client_id,
                    "authURL": p.auth_url, "tokenURL": p.token_url, "userInfoURL": p.user_info_url,
                    "displayName": p.display_name, "extra": p.extra,
                })
            })
            .collect();
        json!({
            "providers": providers,
            "mappedFields": self.mapped_fields,
            "enabled": self.enabled,
        })
    }

    /// The options an `oauth2` value sets over the stored ones (`old`): the
    /// keys it sends replace theirs (as PocketBase binds a body onto the
    /// stored collection), and an empty `clientSecret` keeps the stored
    /// provider's. Checked when enabled.
    pub fn apply(value: &Map<String, Value>, old: &OAuth2Options) -> Result<OAuth2Options, SchemaError> {
        let mut merged = serde_json::to_value(old).expect("serialize oauth2 options");
        for (k, v) in value {
            merged[k] = v.clone();
        }
        let mut new: OAuth2Options = serde_json::from_value(merged).map_err(|e| {
            invalid(
                "oauth2",
                "validation_invalid_value",
                format!("invalid oauth2 options: {e}"),
            )
        })?;
        for p in &mut new.providers {
            if p.client_secret.is_empty() {
                if let Some(o) = old.provider(&p.name) {
                    p.client_secret = o.client_secret.clone();
                }
            }
        }
        if new.providers.len() > MAX_PROVIDERS {
            return Err(invalid(
                "oauth2.providers",
                "validation_too_many",
                format!("at most {MAX_PROVIDERS} providers"),
            ));
        }
        if new.enabled {
            new.check()?;
        }
        Ok(new)
    }

    /// PocketBase's checks (a known name, once; a client id and secret;
    /// URLs), and Basalt's for OpenID Connect: the endpoints, and where the
    /// ID token's keys and issuer come from when the user is read from it.
    fn check(&self) -> Result<(), SchemaError> {
        for (i, p) in self.providers.iter().enumerate() {
            let at = |k: &str| format!("oauth2.providers.{i}.{k}");
            if p.name.is_empty() {
                return Err(invalid(at("name"), "validation_required", "Cannot be blank."));
            }
            if !PROVIDER_NAMES.contains(&p.name.as_str()) {
                return Err(invalid(
                    at("name"),
                    "validation_missing_provider",
                    format!("Invalid or missing provider with name {}.", p.name),
                ));
            }
            if self.providers[..i].iter().any(|q| q.name == p.name) {
                return Err(invalid(
                    at("name"),
                    "validation_duplicated_provider",
                    format!("The provider {} is already registered.", p.name),
                ));
            }
            for (k, v) in [("clientId", &p.client_id), ("clientSecret", &p.client_secret)] {
                if v.is_empty() {
                    return Err(invalid(at(k), "validation_required", "Cannot be blank."));
                }
            }
            let mut urls = vec![
                ("authURL", p.auth_url.clone()),
                ("tokenURL", p.token_url.clone()),
                ("userInfoURL", p.user_info_url.clone()),
                ("extra.jwksURL", p.extra_string("jwksURL")),
            ];
            urls.extend(p.extra_strings("issuers").into_iter().map(|u| ("extra.issuers", u)));
            for (k, u) in urls {
                if !u.is_empty() && !is_http_url(&u) {
                    return Err(invalid(at(k), "validation_is_url", "Must be a valid url."));
                }
            }
            if is_oidc(&p.name) {
                check_oidc(p, &at)?;
            }
        }
        Ok(())
    }
}

/// An OpenID Connect provider has no preset endpoints; when the user comes
/// from the ID token (no `userInfoURL`), Basalt verifies that token and so
/// needs the issuer (`extra.issuers`) and its keys (`extra.jwksURL`, or the
/// issuer's discovery document).
fn check_oidc(p: &ProviderConfig, at: &dyn Fn(&str) -> String) -> Result<(), SchemaError> {
    for (k, v) in [("authURL", &p.auth_url), ("tokenURL", &p.token_url)] {
        if v.is_empty() {
            return Err(invalid(
                at(k),
                "validation_required",
                "Cannot be blank for an OpenID Connect provider.",
            ));
        }
    }
    if p.user_info_url.is_empty() && p.extra_strings("issuers").is_empty() {
        return Err(invalid(
            at("extra.issuers"),
            "validation_required",
            "Without a userInfoURL the user is read from the ID token, which Basalt verifies: \
             list the issuer in extra.issuers (its keys come from extra.jwksURL or the issuer's discovery document).",
        ));
    }
    Ok(())
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

fn invalid(field: impl Into<String>, code: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        field: field.into(),
        code: code.into(),
        message: message.into(),
    }
}
