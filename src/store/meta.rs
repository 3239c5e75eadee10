//! Every key of the `meta` tree, spelled once (ARCHITECTURE.md's storage
//! layout lists what each holds).

/// The head seq (u64 BE): the last seq a record write took.
pub const SEQ: &str = "seq";
/// The change log's bytes, keys + values (u64 BE), kept by the writer.
pub const CHANGE_BYTES: &str = "changes/bytes";
/// The collections/settings version several nodes compare (PostgreSQL:
/// `basalt.head.specs_version`; never written on the embedded engine).
pub const SPECS_VERSION: &str = "specs/version";
/// The token signing secret.
pub const SECRET: &str = "secret";
/// Set once the default collections were created.
pub const BOOTSTRAPPED: &str = "bootstrapped";
/// The superuser-editable settings (JSON).
pub const SETTINGS: &str = "settings";
/// The index key format (u64 BE; absent = format 1).
pub const KEY_FORMAT: &str = "keyformat";

/// Collection definitions: `coll/<id>` → JSON.
pub const COLLECTION_PREFIX: &str = "coll/";
/// Unfinished index builds: `idxbuild/<collection id>/<index>`.
pub const INDEX_BUILD_PREFIX: &str = "idxbuild/";
/// Dashboard sessions: `adminsess/<sha256 of the cookie, hex>`.
pub const ADMIN_SESSION_PREFIX: &str = "adminsess/";

/// A collection's definition.
pub fn collection(id: &str) -> String {
    format!("{COLLECTION_PREFIX}{id}")
}

/// A collection's record count (u64 BE).
pub fn count(collection_id: &str) -> String {
    ["count/", collection_id].concat()
}

/// The marker of an unfinished build of `index` (see `core::indexing`).
pub fn index_build(collection_id: &str, index: &str) -> String {
    format!("{INDEX_BUILD_PREFIX}{collection_id}/{index}")
}

/// A one-time password request (`core::auth`).
pub fn otp(id: &str) -> String {
    format!("otp/{id}")
}

/// A dashboard session, by the hex hash of its cookie value.
pub fn admin_session(hash_hex: &str) -> String {
    format!("{ADMIN_SESSION_PREFIX}{hash_hex}")
}

/// Pending multi-factor logins (`core::auth::mfa`):
/// `mfa/<collection id>/<record id>/<mfa id>`.
pub const MFA_PREFIX: &str = "mfa/";

/// The pending multi-factor logins of one auth record.
pub fn mfa_prefix(collection_id: &str, record_id: &str) -> String {
    format!("{MFA_PREFIX}{collection_id}/{record_id}/")
}

/// One pending multi-factor login, by the `mfaId` its first factor got.
pub fn mfa(collection_id: &str, record_id: &str, id: &str) -> String {
    format!("{}{id}", mfa_prefix(collection_id, record_id))
}

/// The known login origins of one auth record (`core::auth::alerts`).
pub fn auth_origins(collection_id: &str, record_id: &str) -> String {
    format!("authorigins/{collection_id}/{record_id}")
}
