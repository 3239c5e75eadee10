//! Talking to OAuth2 / OpenID Connect providers: the code exchange, the
//! user-info request and the issuers' key sets (JWKS, by discovery when
//! only the issuer is known), over ONE shared HTTP client with timeouts,
//! no redirects followed and a cap on every answer's size.
//!
//! Provider answers are attacker input as far as Basalt is concerned (a
//! misconfigured or hostile endpoint): nothing here trusts a length, waits
//! without a deadline or reads more than [`MAX_ANSWER`] bytes.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jsonwebtoken::jwk::Jwk;
use serde_json::{Map, Value};

use crate::auth::oauth2 as pure;

/// Largest answer read from a provider (tokens, user info, key sets are a
/// few kilobytes).
const MAX_ANSWER: usize = 256 * 1024;
/// Connecting to a provider.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One whole request to a provider, answer read included.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fetched key set is used before it is fetched again.
const KEYS_TTL: Duration = Duration::from_secs(600);
/// A key set is fetched again for an unknown `kid` at most this often.
const KEYS_REFETCH: Duration = Duration::from_secs(30);
/// Key sets (and discovered `jwks_uri`s) kept at most.
const MAX_CACHED: usize = 64;

/// Why talking to the provider failed (logged, never sent to the client:
/// it may quote the provider).
#[derive(Debug)]
pub(super) struct ProviderError(pub String);

impl<E: std::fmt::Display> From<E> for ProviderError {
    fn from(e: E) -> Self {
        ProviderError(e.to_string())
    }
}

/// The one HTTP client every provider request goes through.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("basalt/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the OAuth2 HTTP client builds")
    })
}

/// Sends `req` and reads its JSON answer, at most [`MAX_ANSWER`] bytes;
/// a status outside 2xx is an error.
async fn json_answer(req: reqwest::RequestBuilder) -> Result<Value, ProviderError> {
    let resp = req.header("Accept", "application/json").send().await?;
    let status = resp.status();
    if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(ProviderError(format!("answer of {status} is too large")));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(ProviderError(format!("answer of {status} is too large")));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(ProviderError(format!("status {status}: {text}")));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// The token endpoint's answer.
#[derive(Debug, Default)]
pub(super) struct TokenAnswer {
    pub access_token: String,
    pub refresh_token: String,
    pub id_token: String,
    /// Seconds the access token lives, when the provider says.
    pub expires_in: Option<i64>,
}

/// Exchanges an authorization code at `token_url` (client credentials in
/// the form body, `client_secret_post`).
pub(super) async fn exchange(token_url: &str, form: &[(&str, &str)]) -> Result<TokenAnswer, ProviderError> {
    let v = json_answer(client().post(token_url).form(form)).await?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let answer = TokenAnswer {
        access_token: s("access_token"),
        refresh_token: s("refresh_token"),
        id_token: s("id_token"),
        expires_in: v.get("expires_in").and_then(|e| match e {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }),
    };
    if answer.access_token.is_empty() {
        return Err(ProviderError("the token answer has no access_token".into()));
    }
    Ok(answer)
}

/// GETs a JSON document with the access token (user info, GitHub's emails).
pub(super) async fn get_with_token(url: &str, access_token: &str) -> Result<Value, ProviderError> {
    json_answer(client().get(url).bearer_auth(access_token)).await
}

/// Claims of a JSON object answer.
pub(super) fn object(v: Value) -> Result<Map<String, Value>, ProviderError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ProviderError("the answer is not a JSON object".into())),
    }
}

struct Cached {
    at: Instant,
    keys: Vec<Jwk>,
}

fn cache() -> &'static Mutex<HashMap<String, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn cache_put(url: &str, keys: Vec<Jwk>) {
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    if c.len() >= MAX_CACHED && !c.contains_key(url) {
        if let Some(oldest) = c.iter().min_by_key(|(_, v)| v.at).map(|(k, _)| k.clone()) {
            c.remove(&oldest);
        }
    }
    c.insert(
        url.to_owned(),
        Cached {
            at: Instant::now(),
            keys,
        },
    );
}

/// The keys at `jwks_url` that may verify a token naming `kid`: the cached
/// set while it is fresh and knows the key, else fetched again (an unknown
/// key id fetches at most every [`KEYS_REFETCH`], so forged `kid`s cannot
/// make Basalt hammer the provider).
pub(super) async fn keys(jwks_url: &str, kid: Option<&str>) -> Result<Vec<Jwk>, ProviderError> {
    {
        let c = cache().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = c.get(jwks_url) {
            let age = entry.at.elapsed();
            let knows = kid.is_none_or(|k| entry.keys.iter().any(|j| j.common.key_id.as_deref() == Some(k)));
            if age < KEYS_TTL && (knows || age < KEYS_REFETCH) {
                return Ok(entry.keys.clone());
            }
        }
    }
    let keys = pure::signing_keys(&json_answer(client().get(jwks_url)).await?);
    cache_put(jwks_url, keys.clone());
    Ok(keys)
}

/// The `jwks_uri` of `issuer`'s discovery document (whose `issuer` must be
/// the same), cached like key sets.
pub(super) async fn discover_jwks_uri(issuer: &str) -> Result<String, ProviderError> {
    static FOUND: OnceLock<Mutex<HashMap<String, (Instant, String)>>> = OnceLock::new();
    let found = FOUND.get_or_init(Default::default);
    if let Some((at, uri)) = found.lock().unwrap_or_else(|e| e.into_inner()).get(issuer) {
        if at.elapsed() < KEYS_TTL {
            return Ok(uri.clone());
        }
    }
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let doc = json_answer(client().get(&url)).await?;
    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
        return Err(ProviderError("the discovery document names another issuer".into()));
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError("the discovery document has no jwks_uri".into()))?
        .to_owned();
    let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
    if f.len() >= MAX_CACHED {
        f.clear();
    }
    f.insert(issuer.to_owned(), (Instant::now(), uri.clone()));
    Ok(uri)
}
