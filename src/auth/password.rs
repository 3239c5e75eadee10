//! Password hashing with argon2id.
//!
//! Parameters are the argon2 crate's defaults, which are OWASP's recommended
//! minimum for argon2id (m = 19 MiB, t = 2, p = 1). Hashing costs tens of
//! milliseconds of CPU and 19 MiB of memory, so request paths use
//! [`hash_async`] / [`verify_async`]: they run on the blocking pool (never on
//! an async worker) and at most one hash per CPU core at a time — without
//! that bound, 64 concurrent logins measured 1.36 GiB peak RSS (64 × 19 MiB),
//! an easy memory exhaustion; with it, extra logins wait their turn.

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

/// Concurrent hashes allowed: one per core (hashing is CPU-bound, so more
/// only adds memory, not throughput).
fn slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        tokio::sync::Semaphore::new(n)
    })
}

/// [`hash`] on the blocking pool, bounded by [`slots`].
pub async fn hash_async(password: String) -> Result<String, String> {
    let _slot = slots().acquire().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| e.to_string())?
}

/// [`verify`] on the blocking pool, bounded by [`slots`]. A failure to run
/// counts as a mismatch.
pub async fn verify_async(password: String, phc: String) -> bool {
    let Ok(_slot) = slots().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || verify(&password, &phc))
        .await
        .unwrap_or(false)
}
