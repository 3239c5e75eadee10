//! Backups as the dashboard and the API manage them: files in
//! `<data dir>/backups/`, each the store's snapshot and the stored files
//! (the format and restoring: [`archive`]).

pub mod archive;

use std::path::PathBuf;

use serde::Serialize;

use crate::clock::{format_datetime, now_millis};
use crate::error::ApiError;
use crate::state::AppState;
use archive::ArchiveInfo;

/// Every backup file name ends with this.
pub const SUFFIX: &str = ".backup";

/// Where backups go.
pub fn dir(state: &AppState) -> PathBuf {
    state.config.dir.join("backups")
}

/// Only names of this shape are made, listed, served or deleted: no paths,
/// no dot files.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 100
        && name.ends_with(SUFFIX)
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A backup file, as PocketBase lists them (`key`, `size`, `modified`).
#[derive(Debug, Clone, Serialize)]
pub struct BackupFile {
    pub key: String,
    pub size: u64,
    pub modified: String,
}

/// The backups, newest first.
pub fn list(state: &AppState) -> Vec<BackupFile> {
    let mut out: Vec<(std::time::SystemTime, BackupFile)> = std::fs::read_dir(dir(state))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let key = e.file_name().into_string().ok()?;
            if !valid_name(&key) {
                return None;
            }
            let meta = e.metadata().ok()?;
            let modified = meta.modified().ok()?;
            let ms = modified
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            Some((
                modified,
                BackupFile {
                    key,
                    size: meta.len(),
                    modified: format_datetime(ms),
                },
            ))
        })
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    out.into_iter().map(|(_, e)| e).collect()
}

/// Writes a backup named `name` (or `basalt-<UTC date>-<time>.backup`);
/// an existing name is refused.
pub async fn create(state: &AppState, name: Option<&str>) -> Result<(String, ArchiveInfo), ApiError> {
    let target = dir(state);
    std::fs::create_dir_all(&target)
        .map_err(|e| ApiError::internal(format!("Cannot create {}: {e}", target.display())))?;
    let name = match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) if valid_name(n) => {
            if target.join(n).exists() {
                return Err(ApiError::field(
                    "name",
                    "validation_not_unique",
                    "A backup with this name exists.",
                ));
            }
            n.to_owned()
        }
        Some(_) => {
            return Err(ApiError::field(
                "name",
                "validation_invalid_value",
                "Use letters, digits, '-', '_' and '.', ending with .backup (at most 100 characters).",
            ))
        }
        None => {
            let stamp: String = format_datetime(now_millis())
                .chars()
                .filter(|c| c.is_ascii_digit())
                .take(14)
                .collect();
            let base = format!("basalt-{}-{}", &stamp[..8], &stamp[8..]);
            let mut name = format!("{base}{SUFFIX}");
            let mut n = 1;
            while target.join(&name).exists() {
                n += 1;
                name = format!("{base}-{n}{SUFFIX}");
            }
            name
        }
    };
    let info = archive::write(&state.store, &state.storage, &target.join(&name))
        .await
        .map_err(|e| ApiError::internal(format!("Backup failed: {e}")))?;
    Ok((name, info))
}

/// Deletes a backup (404 for an unknown or invalid name).
pub fn delete(state: &AppState, name: &str) -> Result<(), ApiError> {
    if !valid_name(name) {
        return Err(ApiError::missing());
    }
    std::fs::remove_file(dir(state).join(name)).map_err(|_| ApiError::missing())
}

/// The path of an existing backup (404 otherwise).
pub fn path(state: &AppState, name: &str) -> Result<PathBuf, ApiError> {
    let p = dir(state).join(name);
    if valid_name(name) && p.is_file() {
        Ok(p)
    } else {
        Err(ApiError::missing())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_backup_names_are_valid() {
        assert!(valid_name("basalt-20261128-071500.backup"));
        for bad in [
            "../x.backup",
            "x/y.backup",
            ".backup",
            "x.backup.tmp",
            "x.partial",
            "a b.backup",
            "",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
