//! OAuth2 / OpenID Connect without I/O: the providers Basalt knows (their
//! endpoints, scopes and how their user answer maps to an [`AuthUser`], as
//! PocketBase 0.40 has them), PKCE, and the verification of ID tokens
//! against a provider's JSON Web Key Set (signature, `iss`, `aud`, `exp`,
//! `nonce`) with `jsonwebtoken`. Fetching (token exchange, user info,
//! key sets) is `core::auth`'s job.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::Rng;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A provider's built-in endpoints and defaults (PocketBase's presets; the
/// generic OpenID Connect slots have none of their own).
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub display_name: &'static str,
    pub auth_url: &'static str,
    pub token_url: &'static str,
    pub user_info_url: &'static str,
    pub scopes: &'static [&'static str],
    pub pkce: bool,
    /// Where the ID token's keys are, for providers whose user is the ID
    /// token (Apple).
    pub jwks_url: &'static str,
    /// The `iss` such an ID token must carry.
    pub issuer: &'static str,
}

const OIDC: Preset = Preset {
    display_name: "OIDC",
    auth_url: "",
    token_url: "",
    user_info_url: "",
    scopes: &["openid", "email", "profile"],
    pkce: true,
    jwks_url: "",
    issuer: "",
};

/// The preset of a provider name (`None`: Basalt does not know it).
pub fn preset(name: &str) -> Option<Preset> {
    Some(match name {
        "oidc" | "oidc2" | "oidc3" => OIDC,
        "google" => Preset {
            display_name: "Google",
            auth_url: "https://accounts.google.com/o/oauth2/v2/auth",
            token_url: "https://oauth2.googleapis.com/token",
            user_info_url: "https://www.googleapis.com/oauth2/v3/userinfo",
            scopes: &[
                "https://www.googleapis.com/auth/userinfo.profile",
                "https://www.googleapis.com/auth/userinfo.email",
            ],
            ..OIDC
        },
        "github" => Preset {
            display_name: "GitHub",
            auth_url: "https://github.com/login/oauth/authorize",
            token_url: "https://github.com/login/oauth/access_token",
            user_info_url: "https://api.github.com/user",
            scopes: &["read:user", "user:email"],
            ..OIDC
        },
        "microsoft" => Preset {
            display_name: "Microsoft",
            auth_url: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            token_url: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            user_info_url: "https://graph.microsoft.com/v1.0/me",
            scopes: &["User.Read"],
            ..OIDC
        },
        "apple" => Preset {
            display_name: "Apple",
            auth_url: "https://appleid.apple.com/auth/authorize",
            token_url: "https://appleid.apple.com/auth/token",
            user_info_url: "",
            scopes: &["name", "email"],
            jwks_url: "https://appleid.apple.com/auth/keys",
            issuer: "https://appleid.apple.com",
            ..OIDC
        },
        "gitlab" => Preset {
            display_name: "GitLab",
            auth_url: "https://gitlab.com/oauth/authorize",
            token_url: "https://gitlab.com/oauth/token",
            user_info_url: "https://gitlab.com/api/v4/user",
            scopes: &["read_user"],
            ..OIDC
        },
        "discord" => Preset {
            display_name: "Discord",
            auth_url: "https://discord.com/api/oauth2/authorize",
            token_url: "https://discord.com/api/oauth2/token",
            user_info_url: "https://discord.com/api/users/@me",
            scopes: &["identify", "email"],
            ..OIDC
        },
        _ => return None,
    })
}

/// The provider's account as Basalt uses it. `email` is set only when the
/// provider vouches that the address belongs to the account (verified):
/// an address the provider did not verify must never find an existing
/// user, so it is not carried at all (as PocketBase's `AuthUser.Email`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthUser {
    pub id: String,
    pub name: String,
    pub username: String,
    pub email: String,
    pub avatar_url: String,
    pub raw: Map<String, Value>,
}

fn text(raw: &Map<String, Value>, key: &str) -> String {
    match raw.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// `true`, `"true"` (Apple sends strings) or 1: the claim says verified.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// Maps a provider's user answer (user info, or the verified ID token's
/// claims) to an [`AuthUser`]. GitHub's verified email comes from its own
/// request (`github_email`). `None` when the answer names no account.
pub fn map_user(provider: &str, raw: Map<String, Value>, github_email: Option<String>) -> Option<AuthUser> {
    let mut u = AuthUser::default();
    match provider {
        "github" => {
            u.id = text(&raw, "id");
            u.name = text(&raw, "name");
            u.username = text(&raw, "login");
            u.avatar_url = text(&raw, "avatar_url");
            u.email = github_email.unwrap_or_default();
        }
        "gitlab" => {
            u.id = text(&raw, "id");
            u.name = text(&raw, "name");
            u.username = text(&raw, "username");
            u.avatar_url = text(&raw, "avatar_url");
            // GitLab confirms addresses: `confirmed_at` is set once it did.
            if !text(&raw, "confirmed_at").is_empty() {
                u.email = text(&raw, "email");
            }
        }
        "discord" => {
            u.id = text(&raw, "id");
            u.username = text(&raw, "username");
            u.name = text(&raw, "global_name");
            if u.name.is_empty() {
                u.name = u.username.clone();
                let d = text(&raw, "discriminator");
                if !d.is_empty() && d != "0" {
                    u.name = format!("{}#{d}", u.name);
                }
            }
            let avatar = text(&raw, "avatar");
            if !avatar.is_empty() {
                u.avatar_url = format!("https://cdn.discordapp.com/avatars/{}/{avatar}.png", u.id);
            }
            if truthy(raw.get("verified")) {
                u.email = text(&raw, "email");
            }
        }
        "microsoft" => {
            // Graph's `mail` is whatever the tenant typed in, not a verified
            // address (PocketBase trusts it; Basalt does not link by it).
            u.id = text(&raw, "id");
            u.name = text(&raw, "displayName");
        }
        _ => {
            // OpenID Connect claims: google, apple and the oidc slots.
            u.id = text(&raw, "sub");
            u.name = text(&raw, "name");
            u.username = text(&raw, "preferred_username");
            u.avatar_url = text(&raw, "picture");
            if truthy(raw.get("email_verified")) {
                u.email = text(&raw, "email");
            }
        }
    }
    u.raw = raw;
    (!u.id.is_empty()).then_some(u)
}

/// A fresh PKCE code verifier (43 characters, as PocketBase's).
pub fn code_verifier() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..43).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

/// A random `state` (30 characters, as PocketBase's).
pub fn state() -> String {
    code_verifier()[..30].to_owned()
}

/// The S256 code challenge of a verifier.
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The `nonce` Basalt puts in an authorization URL, derived from that
/// flow's code verifier: `auth-with-oauth2` gets the verifier back and can
/// tell whether an ID token was issued for this flow, without storing
/// anything between the two requests.
pub fn nonce_for(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("basalt-oidc-nonce:{verifier}").as_bytes()))
}

/// Why an ID token was refused (logged; clients get one generic message).
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is not a JWT: {0}")]
    Malformed(String),
    #[error("the ID token's algorithm {0:?} is not an asymmetric signature")]
    Algorithm(String),
    #[error("no key of the provider's key set matches the ID token")]
    NoKey,
    #[error("the ID token failed verification: {0}")]
    Invalid(String),
    #[error("the ID token's nonce is not the one of this sign-in")]
    Nonce,
}

/// Only signatures made with a private key: `none` cannot even be parsed
/// into a header, and HMAC (which a forger could key with the public key)
/// is never accepted.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Leeway for `exp`/`nbf` against clock skew (PocketBase allows 5 minutes).
const LEEWAY_SECS: u64 = 300;

/// What an ID token must be for: the client it was issued to, the issuers
/// that may have issued it, and the nonce of this flow (when the flow had
/// one: an ID token that carries a nonce must carry this one).
pub struct IdTokenCheck<'a> {
    pub client_id: &'a str,
    pub issuers: &'a [String],
    pub nonce: Option<&'a str>,
}

/// The keys of a JSON Web Key Set that may verify signatures (keys of
/// other kinds or uses, or that `jsonwebtoken` cannot read, are skipped:
/// one odd key must not make the whole set unusable).
pub fn signing_keys(jwks: &Value) -> Vec<Jwk> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter(|k| {
            matches!(
                k.algorithm,
                AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_)
            )
        })
        .collect()
}

/// The key id (`kid`) an ID token names, if any, so a caller can refresh
/// its key set when it does not know the key yet.
pub fn id_token_kid(token: &str) -> Result<Option<String>, IdTokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| IdTokenError::Malformed(e.to_string()))?;
    Ok(header.kid)
}

/// Verifies an ID token against `keys` and `check`; its claims when valid.
pub fn verify_id_token(token: &str, keys: &[Jwk], check: &IdTokenCheck) -> Result<Map<String, Value>, IdTokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| IdTokenError::Malformed(e.to_string()))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(IdTokenError::Algorithm(format!("{:?}", header.alg)));
    }
    let candidates = keys.iter().filter(|k| match (&header.kid, &k.common.key_id) {
        (Some(want), Some(have)) => want == have,
        (Some(_), None) => false,
        (None, _) => true,
    });
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY_SECS;
    validation.set_audience(&[check.client_id]);
    validation.set_issuer(check.issuers);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let mut last = IdTokenError::NoKey;
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation) {
            Ok(data) => {
                let claims = data.claims;
                if let (Some(sent), Some(got)) = (check.nonce, claims.get("nonce")) {
                    if got.as_str() != Some(sent) {
                        return Err(IdTokenError::Nonce);
                    }
                }
                return Ok(claims);
            }
            Err(e) => last = IdTokenError::Invalid(e.to_string()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn challenge_is_rfc7636_s256() {
        // `printf %s VERIFIER | openssl dgst -sha256 -binary | basenc --base64url`, unpadded.
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gXk9BzFe8"),
            "DE7KGhsWKoxvQ-krTHaGZB5Nk13RgDmd6VxEqpP8uvk"
        );
        assert_eq!(code_verifier().len(), 43);
        assert_ne!(nonce_for("a"), nonce_for("b"));
    }

    #[test]
    fn unverified_emails_are_not_carried() {
        let raw = |v: Value| v.as_object().cloned().unwrap();
        let u = map_user(
            "oidc",
            raw(json!({"sub": "1", "email": "a@x.test", "email_verified": false})),
            None,
        )
        .unwrap();
        assert_eq!(u.email, "");
        let u = map_user(
            "apple",
            raw(json!({"sub": "1", "email": "a@x.test", "email_verified": "true"})),
            None,
        )
        .unwrap();
        assert_eq!(u.email, "a@x.test");
        let u = map_user("microsoft", raw(json!({"id": "1", "mail": "a@x.test"})), None).unwrap();
        assert_eq!(u.email, "");
        let u = map_user("gitlab", raw(json!({"id": 7, "email": "a@x.test"})), None).unwrap();
        assert_eq!((u.id.as_str(), u.email.as_str()), ("7", ""));
        assert!(map_user("oidc", raw(json!({"email": "a@x.test"})), None).is_none());
    }

    #[test]
    fn hmac_and_none_are_refused_before_any_key_is_tried() {
        let check = IdTokenCheck {
            client_id: "c",
            issuers: &[],
            nonce: None,
        };
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let body = enc(json!({"sub": "1", "aud": "c", "iss": "i", "exp": 4_000_000_000u64}));
        let none = format!("{}.{body}.", enc(json!({"alg": "none"})));
        assert!(verify_id_token(&none, &[], &check).is_err());
        let hs = format!("{}.{body}.c2ln", enc(json!({"alg": "HS256"})));
        assert!(matches!(
            verify_id_token(&hs, &[], &check),
            Err(IdTokenError::Algorithm(_))
        ));
        let oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(signing_keys(&oct).is_empty());
    }
}
