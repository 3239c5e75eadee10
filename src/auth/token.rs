//! Auth tokens: JWT HS256, as PocketBase issues them.
//!
//! Claims `{id, type, collectionId, refreshable, exp}`; signing key =
//! server secret ++ the user's `tokenKey`, so rotating `tokenKey` (password or
//! email change) revokes all of that user's tokens.
//!
//! Why not the `jsonwebtoken` crate: version 11 makes every user pick a crypto
//! backend, `rust_crypto` (pulls the RSA/ECDSA stack, including the `rsa`
//! crate with an open timing advisory, none of it used for HS256) or
//! `aws_lc_rs` (a C/CMake build, minutes on 2 cores). We only ever need one
//! algorithm, so this module implements exactly HS256 on RustCrypto's `hmac`
//! and `sha2`: the header must say `HS256` (so `alg: none` and algorithm
//! confusion are impossible by construction) and the MAC is compared in
//! constant time by `hmac`'s `verify_slice`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// HMAC-SHA256, the MAC behind every token.
pub type HmacSha256 = Hmac<Sha256>;

/// The token types PocketBase defines; a token of one type is refused
/// wherever another is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TokenKind {
    Auth,
    File,
    Verification,
    PasswordReset,
    EmailChange,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: TokenKind,
    pub collection_id: String,
    #[serde(default)]
    pub refreshable: bool,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Verification / email-change tokens: the address they were issued for
    /// (a token for an old address stops working once the email changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Email-change tokens: the new address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("invalid token signature")]
    Signature,
    #[error("token expired")]
    Expired,
}

/// Issues and checks tokens with the per-install secret.
#[derive(Clone)]
pub struct Tokens {
    secret: std::sync::Arc<Vec<u8>>,
    /// `hmac_for(LIST_CURSOR)`, keyed once: every page of a list signs its
    /// `nextCursor`, and keying costs two SHA-256 blocks each time.
    list_cursor: std::sync::Arc<HmacSha256>,
}

/// The context list cursors are signed under.
const LIST_CURSOR: &str = "list-cursor";

#[derive(Deserialize)]
struct Header {
    alg: String,
}

impl Tokens {
    pub fn new(secret: Vec<u8>) -> Tokens {
        let mut tokens = Tokens {
            secret: std::sync::Arc::new(secret),
            list_cursor: std::sync::Arc::new(HmacSha256::new_from_slice(b"").expect("any key length")),
        };
        tokens.list_cursor = std::sync::Arc::new(tokens.mac(LIST_CURSOR));
        tokens
    }

    /// The HMAC list cursors are signed with (`hmac_for("list-cursor")`).
    pub fn list_cursor_mac(&self) -> HmacSha256 {
        (*self.list_cursor).clone()
    }

    fn mac(&self, token_key: &str) -> HmacSha256 {
        let mut key = Vec::with_capacity(self.secret.len() + token_key.len());
        key.extend_from_slice(&self.secret);
        key.extend_from_slice(token_key.as_bytes());
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&key).expect("HMAC takes any key length")
    }

    /// An HMAC keyed by the server secret and `context` (for values such as
    /// OTP codes that must be checked without being stored).
    pub fn hmac_for(&self, context: &str) -> HmacSha256 {
        self.mac(context)
    }

    /// Signs `claims` with the user's `token_key`.
    pub fn issue(&self, claims: &Claims, token_key: &str) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = B64.encode(serde_json::to_vec(claims).expect("serialize claims"));
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac(token_key);
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Reads the claims without checking the signature: only to learn which
    /// user's `tokenKey` to verify with. Never trust the result alone.
    pub fn peek(token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let header: Header = serde_json::from_slice(&B64.decode(h).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        serde_json::from_slice(&B64.decode(p).map_err(|_| TokenError::Malformed)?).map_err(|_| TokenError::Malformed)
    }

    /// Verifies signature and expiry against `token_key` at time `now` (seconds).
    pub fn verify(&self, token: &str, token_key: &str, now: i64) -> Result<Claims, TokenError> {
        let claims = Self::peek(token)?;
        let (signing_input, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Signature)?;
        let mut mac = self.mac(token_key);
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_cursor_mac_is_the_keyed_context() {
        let t = Tokens::new(b"secret-bytes".to_vec());
        let (mut a, mut b) = (t.list_cursor_mac(), t.hmac_for(LIST_CURSOR));
        a.update(b"key");
        b.update(b"key");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
        let mut other = t.hmac_for("other");
        other.update(b"key");
        let mut a = t.list_cursor_mac();
        a.update(b"key");
        assert_ne!(a.finalize().into_bytes(), other.finalize().into_bytes());
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            id: "u1".into(),
            kind: TokenKind::Auth,
            collection_id: "c1".into(),
            refreshable: true,
            exp,
            email: None,
            new_email: None,
        }
    }

    #[test]
    fn round_trip_and_attacks() {
        let t = Tokens::new(b"secret".to_vec());
        let tok = t.issue(&claims(100), "key");
        assert_eq!(t.verify(&tok, "key", 50).unwrap(), claims(100));
        assert_eq!(t.verify(&tok, "other", 50), Err(TokenError::Signature));
        assert_eq!(t.verify(&tok, "key", 100), Err(TokenError::Expired));
        // alg none
        let parts: Vec<&str> = tok.split('.').collect();
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(t.verify(&none, "key", 50), Err(TokenError::Algorithm));
        // edited payload
        let mut c = claims(100);
        c.id = "admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(serde_json::to_vec(&c).unwrap()),
            parts[2]
        );
        assert_eq!(t.verify(&forged, "key", 50), Err(TokenError::Signature));
        assert_eq!(t.verify("a.b", "key", 50), Err(TokenError::Malformed));
    }
}
