//! File fields on the write path (SPEC §8): what an upload becomes, what a
//! body may say about a record's files, and the order that keeps records
//! and stored files consistent:
//!
//! 1. [`prepare`]: each upload is checked against its field (size, type,
//!    not empty) and given its stored name — before any rule or write.
//! 2. [`apply`]: inside the write's plan, against the record as it is
//!    then, the body's file values (`field`, `field+`, `+field`, `field-`,
//!    uploads) become the field's final list of names. A name the record
//!    did not hold is refused (`validation_invalid_file`): a client cannot
//!    point a record at another record's file, or at any path.
//! 3. [`Staged`]: the new files are stored durably *before* the record
//!    commits, held (see `Storage::hold`) until the write is answered.
//! 4. [`spawn_cleanup`]: files are removed only after a committed change
//!    left them unnamed (an update replaced them, the record was deleted —
//!    by any path: REST, batch, cascade, truncate, dashboard), read from
//!    the change feed; [`sweep`] removes what a crash or a missed event
//!    left behind, after a grace period.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::error::{ApiError, FieldError, FieldErrors};
use crate::files::upload::{extension_of, Upload};
use crate::files::{key, names, record_prefix, Storage};
use crate::schema::files::FileSpec;
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::{Action, Change};

/// How an upload joins its field's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// `field`: replaces the list (with the names sent under `field`).
    Set,
    /// `field+`.
    Append,
    /// `+field`.
    Prepend,
}

/// One checked, named upload.
#[derive(Debug)]
pub struct NewFile {
    pub field: String,
    place: Place,
    pub name: String,
    pub upload: Upload,
}

/// The uploads of one record write, checked and named.
#[derive(Debug, Default)]
pub struct NewFiles(pub Vec<NewFile>);

fn field_error(errors: &mut FieldErrors, field: &str, code: &str, message: String) {
    errors.entry(field.to_owned()).or_insert(FieldError {
        code: code.to_owned(),
        message,
    });
}

/// The field and placement a part name means (`avatar`, `avatar+`, `+avatar`).
fn split_part(part: &str) -> (&str, Place) {
    if let Some(f) = part.strip_suffix('+') {
        (f, Place::Append)
    } else if let Some(f) = part.strip_prefix('+') {
        (f, Place::Prepend)
    } else {
        (part, Place::Set)
    }
}

/// Checks each upload against its field and names it (step 1).
pub fn prepare(coll: &CompiledCollection, uploads: Vec<Upload>) -> Result<NewFiles, ApiError> {
    let mut errors = FieldErrors::new();
    let mut out = Vec::with_capacity(uploads.len());
    for upload in uploads {
        let (field, place) = split_part(&upload.field);
        let Some(spec) = coll.file_field(field) else {
            field_error(
                &mut errors,
                &upload.field,
                "validation_unknown_file_field",
                format!("'{field}' is not a file field of this collection."),
            );
            continue;
        };
        let shown: String = upload.original_name.chars().take(300).collect();
        if upload.size == 0 {
            field_error(
                &mut errors,
                field,
                "validation_file_empty",
                format!("{shown:?} is empty."),
            );
        } else if upload.size > spec.max_size {
            field_error(
                &mut errors,
                field,
                "validation_file_size_limit",
                format!(
                    "Failed to upload {shown:?} - the maximum allowed file size is {} bytes.",
                    spec.max_size
                ),
            );
        } else if !spec.allows_mime(&upload.mime) {
            field_error(
                &mut errors,
                field,
                "validation_invalid_mime_type",
                format!("{shown:?} mime type must be one of: {}.", spec.mime_types.join(", ")),
            );
        }
        let name = names::stored_name(&upload.original_name, extension_of(&upload.mime));
        out.push(NewFile {
            field: field.to_owned(),
            place,
            name,
            upload,
        });
    }
    // More uploads than a field can hold are refused before anything is
    // stored (a single file field takes one per request).
    for (field, spec) in &coll.files {
        if out.iter().filter(|f| &f.field == field).count() > spec.max_select {
            field_error(
                &mut errors,
                field,
                "validation_too_many_files",
                format!("The maximum allowed files is {}", spec.max_select),
            );
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(NewFiles(out))
}

/// Names a body value holds (a string, a list of strings, `null`/`""` for none).
fn body_names(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Null => Some(vec![]),
        Value::String(s) if s.is_empty() => Some(vec![]),
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

/// The body's words about one file field, taken out of the body.
struct FieldInput {
    set: Option<Value>,
    append: Option<Value>,
    prepend: Option<Value>,
    remove: Option<Value>,
}

impl FieldInput {
    fn take(body: &mut Map<String, Value>, field: &str) -> FieldInput {
        FieldInput {
            set: body.remove(field),
            append: body.remove(&format!("{field}+")),
            prepend: body.remove(&format!("+{field}")),
            remove: body.remove(&format!("{field}-")),
        }
    }

    fn is_empty(&self) -> bool {
        self.set.is_none() && self.append.is_none() && self.prepend.is_none() && self.remove.is_none()
    }
}

/// One field's final list of names (step 2, for one field).
fn resolve(
    field: &str,
    spec: &FileSpec,
    current: &[String],
    input: FieldInput,
    uploads: &[&NewFile],
    errors: &mut FieldErrors,
) -> Vec<String> {
    let mut named = Vec::new();
    let mut read = |v: &Option<Value>, errors: &mut FieldErrors| -> Vec<String> {
        let Some(v) = v else { return vec![] };
        match body_names(v) {
            Some(list) => {
                named.extend(list.iter().cloned());
                list
            }
            None => {
                field_error(errors, field, "validation_invalid_file", "Must be file names.".into());
                vec![]
            }
        }
    };
    let uploaded = |place: Place| uploads.iter().filter(move |u| u.place == place).map(|u| u.name.clone());
    let replaced = input.set.is_some() || uploads.iter().any(|u| u.place == Place::Set);
    let mut list: Vec<String> = read(&input.prepend, errors);
    list.extend(uploaded(Place::Prepend));
    if replaced {
        list.extend(read(&input.set, errors));
        list.extend(uploaded(Place::Set));
    } else {
        list.extend(current.iter().cloned());
    }
    list.extend(read(&input.append, errors));
    list.extend(uploaded(Place::Append));
    let removed: HashSet<String> = read(&input.remove, errors).into_iter().collect();
    let invalid: Vec<&String> = named
        .iter()
        .filter(|n| !current.contains(n) && !removed.contains(*n))
        .collect();
    if !invalid.is_empty() {
        let shown: Vec<String> = invalid.iter().map(|n| n.chars().take(250).collect()).collect();
        field_error(
            errors,
            field,
            "validation_invalid_file",
            format!("Invalid new files: {}.", shown.join(", ")),
        );
    }
    let mut seen = HashSet::new();
    list.retain(|n| !removed.contains(n) && seen.insert(n.clone()));
    if !spec.multiple && list.len() > 1 {
        // A single file field keeps the last one, as PocketBase.
        list = list.split_off(list.len() - 1);
    }
    if list.len() > spec.max_select {
        field_error(
            errors,
            field,
            "validation_too_many_files",
            format!("The maximum allowed files is {}", spec.max_select),
        );
    }
    if list.is_empty() && spec.required {
        field_error(errors, field, "validation_required", "Cannot be blank.".into());
    }
    list
}

/// Turns the body's file values and the uploads into each file field's
/// final value, against `current` (the record as it is now; `None` on
/// create). Fields the body does not mention and no upload targets are
/// left as they are. Step 2: pure, so a plan can run it again.
pub fn apply(
    coll: &CompiledCollection,
    files: &NewFiles,
    current: Option<&Value>,
    body: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let mut errors = FieldErrors::new();
    for (field, spec) in &coll.files {
        let input = FieldInput::take(body, field);
        let uploads: Vec<&NewFile> = files.0.iter().filter(|f| &f.field == field).collect();
        if input.is_empty() && uploads.is_empty() {
            if current.is_none() && spec.required {
                field_error(&mut errors, field, "validation_required", "Cannot be blank.".into());
            }
            continue;
        }
        let now = FileSpec::names(current.and_then(|c| c.get(field)));
        let list = resolve(field, spec, &now, input, &uploads, &mut errors);
        body.insert(field.clone(), spec.value(list));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(())
}

/// How long the files of a cancelled write stay held: far longer than a
/// write takes to commit once handed to the writer.
const CANCELLED_HOLD: Duration = Duration::from_secs(600);

/// Files stored for a write that has not committed (step 3). Their keys
/// are held until [`Staged::committed`] or [`Staged::failed`]; if neither
/// is called (the request was cancelled), dropping removes them.
pub struct Staged {
    storage: Storage,
    keys: Vec<String>,
    done: bool,
}

impl Staged {
    pub fn none(storage: &Storage) -> Staged {
        Staged {
            storage: storage.clone(),
            keys: Vec::new(),
            done: false,
        }
    }

    /// Stores `files` for record `record_id`, durably.
    pub async fn store(
        storage: &Storage,
        collection_id: &str,
        record_id: &str,
        files: &NewFiles,
    ) -> Result<Staged, ApiError> {
        let mut staged = Staged::none(storage);
        for f in &files.0 {
            let k = key(collection_id, record_id, &f.name);
            storage.hold(&k);
            staged.keys.push(k.clone());
            if let Err(e) = storage.put_file(&k, f.upload.spool.path()).await {
                staged.failed().await;
                tracing::error!(key = %k, error = %e, "storing an upload failed");
                return Err(ApiError::new(503, "The file storage is not available; try again."));
            }
        }
        Ok(staged)
    }

    /// The record that names the files committed: they are its now.
    pub fn committed(mut self) {
        for k in &self.keys {
            self.storage.release(k);
        }
        self.done = true;
    }

    /// The write failed: its files go.
    pub async fn failed(mut self) {
        for k in &self.keys {
            if let Err(e) = self.storage.delete(k).await {
                tracing::warn!(key = %k, error = %e, "removing an unused upload failed (the sweep retries)");
            }
            self.storage.release(k);
        }
        self.done = true;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.done || self.keys.is_empty() {
            return;
        }
        // Cancelled mid-request: the write may still commit (the writer
        // thread has it), so the keys stay held for a while, then the
        // cleanup decides (a key the record does not name is an orphan).
        let (storage, keys) = (self.storage.clone(), std::mem::take(&mut self.keys));
        let release = async move {
            tokio::time::sleep(CANCELLED_HOLD).await;
            for k in &keys {
                storage.release(k);
            }
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(release);
        }
    }
}

/// Every file name a record's file fields hold.
fn referenced(coll: &CompiledCollection, record: Option<&Value>) -> HashSet<String> {
    let Some(record) = record else { return HashSet::new() };
    coll.files
        .iter()
        .flat_map(|(field, _)| FileSpec::names(record.get(field)))
        .collect()
}

/// The stored name a key under a record's prefix belongs to: the file
/// itself, or a thumbnail `thumbs_<name>/<size>_<name>`.
fn owner_name(rest: &str) -> &str {
    match rest.split_once('/') {
        Some((dir, _)) => dir.strip_prefix("thumbs_").unwrap_or(dir),
        None => rest,
    }
}

/// What the cleanup needs of the server: no strong handle on the store, so
/// a background task never keeps a closed store open.
#[derive(Clone)]
struct Cleaner {
    store: crate::store::WeakStore,
    registry: crate::schema::Registry,
    storage: Storage,
    grace: Duration,
}

impl Cleaner {
    fn of(state: &AppState) -> Cleaner {
        Cleaner {
            store: state.store.downgrade(),
            registry: state.registry.clone(),
            storage: state.storage.clone(),
            grace: Duration::from_secs(state.config.orphan_grace),
        }
    }

    /// Removes the keys under one record's prefix that its stored version
    /// does not name and no write in flight holds, if older than `grace`.
    /// Order matters: keys are listed, then each held check, then the
    /// record is read — a key not held by then was committed (and is
    /// named) or is an orphan.
    async fn clean_record(&self, collection_id: &str, record_id: &str, grace: Duration) -> std::io::Result<()> {
        let prefix = record_prefix(collection_id, record_id);
        let keys = self.storage.list(&prefix).await?;
        let keys: Vec<_> = keys.into_iter().filter(|(k, _)| !self.storage.is_held(k)).collect();
        if keys.is_empty() {
            return Ok(());
        }
        let store = self
            .store
            .upgrade()
            .ok_or_else(|| std::io::Error::other("the store is closed"))?;
        let coll = self.registry.get(collection_id);
        let named = match &coll {
            Some(c) => {
                let record = store
                    .get(collection_id, record_id)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                referenced(c, record.as_ref().map(|r| &r.data))
            }
            None => HashSet::new(),
        };
        drop(store);
        let now = SystemTime::now();
        for (k, meta) in keys {
            let rest = &k[prefix.len()..];
            let name = owner_name(rest);
            let old_enough = now.duration_since(meta.modified).unwrap_or_default() >= grace;
            // Only what Basalt stores under a record: a stored name, its
            // thumbnails, an interrupted write's `.part`.
            let made_here = names::is_stored_name(name) || (rest.starts_with('.') && rest.ends_with(".part"));
            if made_here && !named.contains(name) && old_enough {
                self.storage.delete(&k).await?;
            }
        }
        Ok(())
    }

    async fn clean_after(&self, change: &Arc<Change>) {
        if change.action == Action::Create {
            return;
        }
        let has_files = self
            .registry
            .get(&change.collection_id)
            .is_some_and(|c| !c.files.is_empty());
        if !has_files {
            return;
        }
        let Some(id) = change.record.get("id").and_then(Value::as_str) else {
            return;
        };
        if let Err(e) = self.clean_record(&change.collection_id, id, Duration::ZERO).await {
            tracing::warn!(collection = %change.collection_id, id, error = %e, "removing replaced files failed (the sweep retries)");
        }
    }

    /// Removes every stored file no record names and no write holds, once
    /// it is older than the grace period (orphans of a crash, collections
    /// deleted, events missed).
    async fn sweep(&self) -> std::io::Result<usize> {
        let keys = self.storage.list("").await?;
        let now = SystemTime::now();
        let mut records: Vec<(String, String)> = Vec::new();
        for (k, meta) in &keys {
            let parts: Vec<&str> = k.splitn(3, '/').collect();
            // Only keys Basalt made: under a collection that exists, a record
            // id, then a stored name (or a thumbnail folder). A bucket may
            // hold other things; they are never touched.
            let ours = self.registry.get(parts[0]).is_some_and(|c| c.def.id == parts[0]);
            match parts[..] {
                [_, id, _] if ours && crate::ids::is_valid_record_id(id) => {
                    records.push((parts[0].to_owned(), id.to_owned()))
                }
                // A file right under the collection: a record id that was
                // not one (kept out by the API since; swept if left behind).
                [_, name] if ours && names::is_stored_name(name) => {
                    let old = now.duration_since(meta.modified).unwrap_or_default() >= self.grace;
                    if old && !self.storage.is_held(k) {
                        self.storage.delete(k).await?;
                    }
                }
                _ => {}
            }
        }
        records.sort();
        records.dedup();
        for (coll, id) in &records {
            self.clean_record(coll, id, self.grace).await?;
        }
        Ok(records.len())
    }
}

/// Follows the change feed and cleans each updated or deleted record of a
/// collection with file fields (step 4). A lagging receiver falls back to
/// a sweep. Ends when the store closes.
pub fn spawn_cleanup(state: &AppState) {
    let mut rx = state.store.subscribe();
    let cleaner = Cleaner::of(state);
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match rx.recv().await {
                Ok(change) => cleaner.clean_after(&change).await,
                Err(RecvError::Lagged(_)) => {
                    if let Err(e) = cleaner.sweep().await {
                        tracing::warn!(error = %e, "file sweep failed");
                    }
                }
                // A PostgreSQL node's feed restarts after it lost its place
                // (see `store::Hub`; every second while its database is out
                // of reach): follow the new one; the hourly sweep removes
                // what was missed. Ends when the store is gone.
                Err(RecvError::Closed) => {
                    let Some(store) = cleaner.store.upgrade() else { break };
                    rx = store.subscribe();
                }
            }
        }
    });
}

/// Runs the orphan sweep now and then hourly, until the store closes.
pub fn spawn_sweeper(state: &AppState) {
    let cleaner = Cleaner::of(state);
    tokio::spawn(async move {
        loop {
            let Some(store) = cleaner.store.upgrade() else {
                break;
            };
            // Shared storage (S3) on several nodes: the lease holder sweeps
            // it. A node's local disk is its own: every node sweeps that.
            let shared = matches!(&*cleaner.storage.backend(), crate::files::Backend::S3(_));
            if shared && !store.holds_lease(crate::store::Lease::FileSweep) {
                drop(store);
                tokio::time::sleep(Duration::from_secs(3600)).await;
                continue;
            }
            drop(store);
            match cleaner.sweep().await {
                Ok(n) => tracing::debug!(records = n, "file sweep done"),
                Err(e) => tracing::warn!(error = %e, "file sweep failed"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}

/// After a collection is deleted: all of its files.
pub async fn remove_collection(state: &AppState, collection_id: &str) {
    if let Err(e) = state.storage.delete_prefix(&format!("{collection_id}/")).await {
        tracing::warn!(collection = collection_id, error = %e, "removing a deleted collection's files failed (the sweep retries)");
    }
}
