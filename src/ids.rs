//! Random identifiers and secrets.

use rand::{distributions::Alphanumeric, Rng};

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A record id as PocketBase makes them: 15 characters of `[a-z0-9]`
/// (77 bits of entropy, so collisions are not a practical concern; a clash is
/// still caught by the writer and answered as `validation_not_unique`).
pub fn record_id() -> String {
    random_from(ID_ALPHABET, 15)
}

/// A collection id: `c_` plus 13 characters, so it is never mistaken for a name
/// a user would pick and is as long as a record id.
pub fn collection_id() -> String {
    format!("c_{}", random_from(ID_ALPHABET, 13))
}

/// A per-user token key (rotated to revoke all of a user's tokens).
pub fn token_key() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(50)
        .map(char::from)
        .collect()
}

/// `len` characters drawn uniformly from `alphabet` with the thread-local CSPRNG.
pub fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// Whether `id` is acceptable as a client-supplied record id.
pub fn is_valid_record_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
