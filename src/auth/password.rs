//! Password hashing with argon2id.
//!
//! Parameters are the argon2 crate's defaults, which are OWASP's recommended
//! minimum for argon2id (m = 19 MiB, t = 2, p = 1). Hashing costs tens of
//! milliseconds of CPU, so callers run it on the blocking pool
//! (`web::block`/`spawn_blocking`), never on an async worker.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks `password` against a PHC string. An unparsable hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A fixed hash to verify against when the identity does not exist, so a
/// failed login costs the same whether or not the account is real.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("basalt-dummy-password").unwrap_or_default())
}
