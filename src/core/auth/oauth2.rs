//! OAuth2 / OpenID Connect sign-in, as PocketBase 0.40: the providers of
//! `auth-methods` (authorization URL, state, PKCE), and
//! `auth-with-oauth2 {provider, code, codeVerifier, redirectURL, createData}`
//! → `{token, record, meta}`.
//!
//! Every talk with the provider (code exchange, user info, ID token check)
//! happens before anything is written, so a failed step leaves no user and
//! no link behind. The account found or made is then linked in the same
//! write that creates or upgrades the user. Linking rules (PocketBase's):
//! an existing link wins; else a signed-in caller of this collection is
//! linked; else a user with the provider's *verified* email (an address
//! the provider did not verify is never carried, see
//! `crate::auth::oauth2::AuthUser`); else a new user is created through
//! the collection's createRule.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::external_auths as links;
use super::login::{self, LoginContext, Method};
use super::oauth2_http::{self as http, ProviderError, TokenAnswer};
use super::{find_by_email, find_by_field, options, record_id, require_auth_collection};
use crate::auth::oauth2::{self as pure, AuthUser, IdTokenCheck};
use crate::error::ApiError;
use crate::rules::{Caller, RequestInfo};
use crate::schema::oauth2::{is_oidc, OAuth2Options, ProviderConfig};
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::{Expect, WriteOp};

/// A provider's configuration with its preset filled in.
struct Provider<'a> {
    config: &'a ProviderConfig,
    preset: pure::Preset,
}

impl<'a> Provider<'a> {
    fn new(config: &'a ProviderConfig) -> Option<Provider<'a>> {
        Some(Provider {
            config,
            preset: pure::preset(&config.name)?,
        })
    }
    fn or<'b>(given: &'b str, preset: &'b str) -> &'b str {
        if given.is_empty() {
            preset
        } else {
            given
        }
    }
    fn auth_url(&self) -> &str {
        Self::or(&self.config.auth_url, self.preset.auth_url)
    }
    fn token_url(&self) -> &str {
        Self::or(&self.config.token_url, self.preset.token_url)
    }
    fn user_info_url(&self) -> &str {
        Self::or(&self.config.user_info_url, self.preset.user_info_url)
    }
    fn pkce(&self) -> bool {
        self.config.pkce.unwrap_or(self.preset.pkce)
    }
    fn display_name(&self) -> &str {
        Self::or(&self.config.display_name, self.preset.display_name)
    }
    /// Issuers an ID token may come from: `extra.issuers`, else the preset's.
    fn issuers(&self) -> Vec<String> {
        let mut v = self.config.extra_strings("issuers");
        if v.is_empty() && !self.preset.issuer.is_empty() {
            v.push(self.preset.issuer.to_owned());
        }
        v
    }
    /// Whether the user is read from the ID token (no user-info endpoint).
    fn user_from_id_token(&self) -> bool {
        self.user_info_url().is_empty()
    }
    /// Whether Basalt can verify this provider's ID tokens (it knows the
    /// issuer, hence where its keys are).
    fn verifies_id_tokens(&self) -> bool {
        (is_oidc(&self.config.name) || self.config.name == "apple") && !self.issuers().is_empty()
    }
}

// ---- auth-methods ------------------------------------------------------------

/// The `oauth2` part of `auth-methods` and the legacy `authProviders` list.
pub(super) fn methods_view(collection: &CompiledCollection) -> (Value, Value) {
    let opts = options(collection).oauth2;
    if !opts.enabled {
        return (json!({"providers": [], "enabled": false}), json!([]));
    }
    let providers: Vec<Value> = opts
        .providers
        .iter()
        .filter_map(Provider::new)
        .map(|p| provider_info(&p))
        .collect();
    let legacy: Vec<Value> = providers.clone();
    (json!({"providers": providers, "enabled": true}), Value::Array(legacy))
}

/// One provider of `auth-methods`: a fresh state and PKCE pair, and the
/// authorization URL ending in `&redirect_uri=` for the client to complete.
fn provider_info(p: &Provider) -> Value {
    let state = pure::state();
    let mut params: Vec<(&str, String)> = vec![
        ("client_id", p.config.client_id.clone()),
        ("response_type", "code".into()),
        ("scope", p.preset.scopes.join(" ")),
        ("state", state.clone()),
    ];
    let (mut verifier, mut challenge, mut method) = (String::new(), String::new(), "");
    if p.pkce() {
        verifier = pure::code_verifier();
        challenge = pure::code_challenge(&verifier);
        method = "S256";
        params.push(("code_challenge", challenge.clone()));
        params.push(("code_challenge_method", method.into()));
        if p.preset.scopes.contains(&"openid") {
            params.push(("nonce", pure::nonce_for(&verifier)));
        }
    }
    if p.config.name == "apple" {
        params.push(("response_mode", "form_post".into()));
    }
    params.sort_by(|a, b| a.0.cmp(b.0));
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &params {
        query.append_pair(k, v);
    }
    let base = p.auth_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let auth_url = format!("{base}{sep}{}&redirect_uri=", query.finish());
    json!({
        "name": p.config.name,
        "displayName": p.display_name(),
        "logo": "",
        "state": state,
        "authURL": auth_url,
        "authUrl": auth_url,
        "codeVerifier": verifier,
        "codeChallenge": challenge,
        "codeChallengeMethod": method,
    })
}

// ---- auth-with-oauth2 --------------------------------------------------------

/// The request body of `auth-with-oauth2`.
struct Form {
    provider: String,
    code: String,
    code_verifier: String,
    redirect_url: String,
    create_data: Map<String, Value>,
}

fn string_field(body: &Map<String, Value>, key: &str, max: usize) -> Result<String, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) if s.len() <= max => Ok(s.clone()),
        Some(Value::String(_)) => Err(ApiError::field(
            key,
            "validation_length_out_of_range",
            &format!("Must be at most {max} characters."),
        )),
        Some(_) => Err(ApiError::field(key, "validation_invalid_type", "Must be a string.")),
    }
}

impl Form {
    fn parse(body: &Map<String, Value>, opts: &OAuth2Options) -> Result<Form, ApiError> {
        let provider = string_field(body, "provider", 100)?;
        if provider.is_empty() {
            return Err(ApiError::field("provider", "validation_required", "Cannot be blank."));
        }
        if opts.provider(&provider).is_none() {
            return Err(ApiError::field(
                "provider",
                "validation_invalid_provider",
                &format!("Provider with name {provider} is missing or is not enabled."),
            ));
        }
        let code = string_field(body, "code", 4096)?;
        if code.is_empty() {
            return Err(ApiError::field("code", "validation_required", "Cannot be blank."));
        }
        let mut redirect_url = string_field(body, "redirectURL", 2048)?;
        if redirect_url.is_empty() {
            redirect_url = string_field(body, "redirectUrl", 2048)?;
        }
        let create_data = match body.get("createData") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(ApiError::field(
                    "createData",
                    "validation_invalid_type",
                    "Must be an object.",
                ))
            }
        };
        Ok(Form {
            provider,
            code,
            code_verifier: string_field(body, "codeVerifier", 256)?,
            redirect_url,
            create_data,
        })
    }
}

fn token_failed(provider: &str, e: ProviderError) -> ApiError {
    tracing::info!(provider, error = %e.0, "OAuth2 code exchange failed");
    ApiError::bad_request("Failed to fetch OAuth2 token.")
}

fn user_failed(provider: &str, e: ProviderError) -> ApiError {
    tracing::info!(provider, error = %e.0, "OAuth2 user lookup failed");
    ApiError::bad_request("Failed to fetch OAuth2 user.")
}

/// `auth-with-oauth2` for the client `ctx` describes; `caller` (a signed-in
/// user of this collection) gets the provider account linked.
pub async fn with_oauth2(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    body: &Map<String, Value>,
    caller: &Caller,
    ctx: &LoginContext,
) -> Result<Value, ApiError> {
    require_auth_collection(collection)?;
    let opts = options(collection).oauth2;
    if !opts.enabled {
        return Err(ApiError::forbidden(
            "The collection is not configured to allow OAuth2 authentication.",
        ));
    }
    let form = Form::parse(body, &opts)?;
    let config = opts.provider(&form.provider).ok_or_else(ApiError::missing)?;
    let provider = Provider::new(config)
        .ok_or_else(|| ApiError::bad_request(format!("Failed to init provider {}", form.provider)))?;
    let token = exchange(&provider, &form)
        .await
        .map_err(|e| token_failed(&form.provider, e))?;
    let user = fetch_user(&provider, &form, &token)
        .await
        .map_err(|e| user_failed(&form.provider, e))?;
    let (record, is_new) = link_or_create(state, collection, &form, &user, caller).await?;
    let mut answer = login::complete(state, collection, record, Method::OAuth2, ctx).await?;
    answer["meta"] = meta(&user, &token, is_new);
    Ok(answer)
}

async fn exchange(p: &Provider<'_>, form: &Form) -> Result<TokenAnswer, ProviderError> {
    let mut fields = vec![
        ("grant_type", "authorization_code"),
        ("code", form.code.as_str()),
        ("redirect_uri", form.redirect_url.as_str()),
        ("client_id", p.config.client_id.as_str()),
        ("client_secret", p.config.client_secret.as_str()),
    ];
    if p.pkce() {
        fields.push(("code_verifier", form.code_verifier.as_str()));
    }
    http::exchange(p.token_url(), &fields).await
}

/// The provider's account: from its user-info endpoint, or from the ID
/// token, which is verified (signature by the issuer's keys, `iss`, `aud`,
/// `exp`, and the nonce of this flow) whenever Basalt can: always when the
/// user is read from it.
async fn fetch_user(p: &Provider<'_>, form: &Form, token: &TokenAnswer) -> Result<AuthUser, ProviderError> {
    let id_claims = if p.verifies_id_tokens() && (p.user_from_id_token() || !token.id_token.is_empty()) {
        Some(verified_id_token(p, form, &token.id_token).await?)
    } else if p.user_from_id_token() {
        return Err(ProviderError(
            "the provider has no user-info endpoint nor verifiable ID token".into(),
        ));
    } else {
        None
    };
    let raw = if p.user_from_id_token() {
        id_claims.clone().unwrap_or_default()
    } else {
        http::object(http::get_with_token(p.user_info_url(), &token.access_token).await?)?
    };
    if let (Some(claims), false) = (&id_claims, p.user_from_id_token()) {
        // Both name the account: they must name the same one.
        if claims.get("sub") != raw.get("sub") {
            return Err(ProviderError(
                "the ID token and the user info name different accounts".into(),
            ));
        }
    }
    let github_email = if p.config.name == "github" {
        github_verified_email(p, &token.access_token).await
    } else {
        None
    };
    pure::map_user(&p.config.name, raw, github_email)
        .ok_or_else(|| ProviderError("the provider's answer names no account".into()))
}

async fn verified_id_token(p: &Provider<'_>, form: &Form, id_token: &str) -> Result<Map<String, Value>, ProviderError> {
    if id_token.is_empty() {
        return Err(ProviderError("the token answer has no id_token".into()));
    }
    let issuers = p.issuers();
    let mut jwks_url = p.config.extra_string("jwksURL");
    if jwks_url.is_empty() {
        jwks_url = p.preset.jwks_url.to_owned();
    }
    if jwks_url.is_empty() {
        jwks_url = http::discover_jwks_uri(&issuers[0]).await?;
    }
    let kid = pure::id_token_kid(id_token)?;
    let keys = http::keys(&jwks_url, kid.as_deref()).await?;
    let nonce = (!form.code_verifier.is_empty()).then(|| pure::nonce_for(&form.code_verifier));
    let check = IdTokenCheck {
        client_id: &p.config.client_id,
        issuers: &issuers,
        nonce: nonce.as_deref(),
    };
    Ok(pure::verify_id_token(id_token, &keys, &check)?)
}

/// GitHub's primary address when GitHub verified it (none otherwise, or
/// when the token may not read addresses).
async fn github_verified_email(p: &Provider<'_>, access_token: &str) -> Option<String> {
    let url = format!("{}/emails", p.user_info_url());
    let list = http::get_with_token(&url, access_token).await.ok()?;
    list.as_array()?
        .iter()
        .find(|e| e.get("verified") == Some(&json!(true)) && e.get("primary") == Some(&json!(true)))
        .and_then(|e| e.get("email").and_then(Value::as_str))
        .map(str::to_owned)
}

/// PocketBase's `meta`: the provider's account and tokens, and `isNew`.
fn meta(user: &AuthUser, token: &TokenAnswer, is_new: bool) -> Value {
    let expiry = token
        .expires_in
        .map(|s| crate::clock::format_datetime(crate::clock::now_millis() + s.clamp(0, 10 * 365 * 86400) * 1000))
        .unwrap_or_default();
    json!({
        "id": user.id,
        "name": user.name,
        "username": user.username,
        "email": user.email,
        "avatarURL": user.avatar_url,
        "avatarUrl": user.avatar_url,
        "rawUser": user.raw,
        "accessToken": token.access_token,
        "refreshToken": token.refresh_token,
        "expiry": expiry,
        "isNew": is_new,
    })
}

// ---- linking -----------------------------------------------------------------

/// The record this provider account signs into (and whether it was made
/// now), with the link and any upgrade of the record written at once.
async fn link_or_create(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    form: &Form,
    user: &AuthUser,
    caller: &Caller,
) -> Result<(Value, bool), ApiError> {
    let mut stale = Vec::new();
    let existing = match links::find(state, collection, &form.provider, &user.id)? {
        Some(link) => match state.store.get(&collection.def.id, &link.record_id)? {
            Some(r) => Some((r.data, r.rev, true)),
            None => {
                // A link to a record that is gone: replaced below.
                stale.push(WriteOp::DeleteRecord {
                    collection_id: state
                        .registry
                        .get(links::EXTERNAL_AUTHS)
                        .map(|c| c.def.id.clone())
                        .unwrap_or_default(),
                    id: link.id,
                    expect: Expect::Rev(link.rev),
                });
                None
            }
        },
        None => None,
    };
    let existing = match existing {
        Some(found) => Some(found),
        None => match caller_of(collection, caller) {
            Some(id) => state
                .store
                .get(&collection.def.id, &id)?
                .map(|r| (r.data, r.rev, false)),
            None if !user.email.is_empty() => find_by_email(state, collection, &user.email)?
                .and_then(|r| {
                    let id = record_id(&r);
                    state.store.get(&collection.def.id, &id).ok().flatten()
                })
                .map(|r| (r.data, r.rev, false)),
            None => None,
        },
    };
    match existing {
        Some((record, rev, linked)) => {
            let record = upgrade_existing(state, collection, form, user, caller, record, rev, linked, stale).await?;
            Ok((record, false))
        }
        None => Ok((create(state, collection, form, user, caller, stale).await?, true)),
    }
}

/// The id of `caller` when it is a user of `collection`.
fn caller_of(collection: &CompiledCollection, caller: &Caller) -> Option<String> {
    match caller {
        Caller::Auth {
            collection: c, record, ..
        } if c.def.id == collection.def.id => Some(record_id(record)),
        _ => None,
    }
}

/// Signs into an existing record, as PocketBase: an unverified record
/// (which anyone may have pre-created with this address) loses its
/// password unless its owner is the signed-in caller, and its other
/// provider links; it gets the provider's verified email when it had none,
/// and becomes verified when its email is the provider's verified one.
#[allow(clippy::too_many_arguments)]
async fn upgrade_existing(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    form: &Form,
    user: &AuthUser,
    caller: &Caller,
    mut record: Value,
    rev: u64,
    linked: bool,
    mut ops: Vec<WriteOp>,
) -> Result<Value, ApiError> {
    let id = record_id(&record);
    let verified = record.get("verified").and_then(Value::as_bool).unwrap_or(false);
    let email = record
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut changed = false;
    let mut linked = linked;
    if !verified {
        if caller_of(collection, caller).as_deref() != Some(id.as_str()) {
            let random = crate::ids::token_key();
            let hash = crate::auth::password::hash_async(random)
                .await
                .map_err(ApiError::internal)?;
            record["password"] = json!(hash);
            record["tokenKey"] = json!(crate::ids::token_key());
            changed = true;
        }
        ops.extend(links::delete_all_ops(state, collection, &id)?);
        linked = false;
    }
    if email.is_empty() && !user.email.is_empty() {
        record["email"] = json!(user.email);
        changed = true;
    }
    let email_now = record.get("email").and_then(Value::as_str).unwrap_or_default();
    if !verified && (email_now.is_empty() || email_now == user.email) {
        record["verified"] = json!(true);
        changed = true;
    }
    if changed {
        record["updated"] = json!(crate::clock::now_string());
        ops.push(WriteOp::PutRecord {
            collection_id: collection.def.id.clone(),
            id: id.clone(),
            data: record.clone(),
            expect: Expect::Rev(rev),
        });
    }
    if !linked {
        ops.push(links::create_op(state, collection, &id, &form.provider, &user.id)?);
    }
    if !ops.is_empty() {
        state.store.write(ops).await?;
    }
    Ok(record)
}

/// Creates the user for a provider account no record has yet: `createData`
/// plus the mapped fields, through the createRule, as PocketBase; the
/// record and its link are one write.
async fn create(
    state: &AppState,
    collection: &Arc<CompiledCollection>,
    form: &Form,
    user: &AuthUser,
    caller: &Caller,
    mut ops: Vec<WriteOp>,
) -> Result<Value, ApiError> {
    if collection.def.name == crate::rules::SUPERUSERS {
        return Err(ApiError::bad_request("Failed to authenticate."));
    }
    let body = create_body(state, collection, form, user);
    let req = RequestInfo::internal(caller.clone(), "POST", "oauth2");
    let no_files = Default::default();
    let mut data = crate::core::records::plan_create(state, collection, body, &no_files, &req).await?;
    crate::core::records::check_relations(state, collection, &data, &|_, _| None)?;
    let email = data.get("email").and_then(Value::as_str).unwrap_or_default();
    if email == user.email {
        data["verified"] = json!(true);
    }
    let id = record_id(&data);
    let guard = crate::core::records::auth_id_guard(state, collection, &id, &|_, _| None)?;
    ops.push(WriteOp::PutRecord {
        collection_id: collection.def.id.clone(),
        id: id.clone(),
        data: data.clone(),
        expect: Expect::Absent,
    });
    ops.extend(guard);
    ops.push(links::create_op(state, collection, &id, &form.provider, &user.id)?);
    state.store.write(ops).await?;
    Ok(data)
}

/// `createData`, with the provider's verified email and the mapped fields
/// where the client sent none, and a random password when it sent none.
fn create_body(state: &AppState, collection: &CompiledCollection, form: &Form, user: &AuthUser) -> Map<String, Value> {
    let mut body = form.create_data.clone();
    if body.get("email").and_then(Value::as_str).unwrap_or_default().is_empty() {
        body.insert("email".into(), json!(user.email));
    }
    let mapped = options(collection).oauth2.mapped_fields;
    let props = collection.def.schema.get("properties").and_then(Value::as_object);
    let has = |f: &str| !f.is_empty() && props.is_some_and(|p| p.contains_key(f));
    let text_field = |f: &str| {
        props
            .and_then(|p| p.get(f))
            .is_some_and(|s| s.get("type").and_then(Value::as_str) == Some("string") && s.get("x-file").is_none())
    };
    for (field, value) in [(&mapped.id, &user.id), (&mapped.name, &user.name)] {
        if has(field) && !body.contains_key(field.as_str()) {
            body.insert(field.clone(), json!(value));
        }
    }
    // A username another user has is left out (as PocketBase), not a 400.
    let u = &mapped.username;
    if has(u) && !body.contains_key(u.as_str()) && !user.username.is_empty() {
        let taken = find_by_field(state, collection, u, &user.username)
            .ok()
            .flatten()
            .is_some();
        if !taken {
            body.insert(u.clone(), json!(user.username));
        }
    }
    // Avatars go to text fields as URLs; file fields are not downloaded.
    let a = &mapped.avatar_url;
    if has(a) && text_field(a) && !body.contains_key(a.as_str()) && !user.avatar_url.is_empty() {
        body.insert(a.clone(), json!(user.avatar_url));
    }
    if !body.contains_key("password") {
        let random = crate::ids::token_key();
        body.insert("password".into(), json!(random));
        body.insert("passwordConfirm".into(), json!(random));
    }
    body
}
