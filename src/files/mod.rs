//! Where uploaded files live: the local disk (`<dir>/storage`, as
//! PocketBase) or an S3-compatible bucket. Everything above this module
//! speaks in keys (`<collectionId>/<recordId>/<name>`, see [`key`]) and
//! never learns which backend holds them.
//!
//! Consistency (SPEC §8) is kept by the callers' order, not here: a file is
//! written (durably) before the record that names it commits, and removed
//! only after the record (or that file) is gone. A crash between the two
//! leaves an orphan that [`sweep`] removes later; it can never leave a
//! record pointing at a missing file.

pub mod backup;
pub mod local;
pub mod names;
pub mod s3;
pub mod thumbs;
pub mod upload;

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::BoxStream;

/// Size and modification time of a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub modified: SystemTime,
}

/// The bytes of a stored object (or of the requested range of it).
pub enum Body {
    /// A local file, positioned at the range's start; `len` bytes to send.
    File { file: std::fs::File, len: u64 },
    /// A remote object's bytes as they arrive.
    Stream(BoxStream<'static, io::Result<Bytes>>),
}

/// An object opened for reading: the whole object's meta (for
/// `Content-Range`, `ETag`, `Last-Modified`) and the body of the range.
pub struct Object {
    pub meta: ObjectMeta,
    pub body: Body,
}

/// The key of a record's file: `<collectionId>/<recordId>/<name>`.
pub fn key(collection_id: &str, record_id: &str, name: &str) -> String {
    format!("{collection_id}/{record_id}/{name}")
}

/// The prefix under which a record's files (and their thumbnails) live.
pub fn record_prefix(collection_id: &str, record_id: &str) -> String {
    format!("{collection_id}/{record_id}/")
}

/// The backends. An enum, not a trait object: two known kinds, and async
/// methods stay plain `async fn`.
pub enum Backend {
    Local(local::Local),
    S3(s3::S3),
}

/// Cheap-clone handle to the current backend. The backend can be swapped
/// when the `s3` settings change; a request that already holds the old one
/// finishes with it.
#[derive(Clone)]
pub struct Storage {
    backend: Arc<RwLock<Arc<Backend>>>,
    /// Where uploads are spooled while a request streams in, whatever the
    /// backend (`<dir>/.uploads`): local disk, removed when dropped.
    spool: PathBuf,
    /// Keys stored for writes that have not committed yet (see
    /// [`Storage::hold`]): the cleanup must not take them for orphans.
    pending: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Backups running now, and where removed local files are kept for
    /// them (see [`backup`]).
    holds: Arc<backup::Holds>,
}

/// Where local storage lives under the data dir (as PocketBase's
/// `pb_data/storage`).
pub const LOCAL_DIR: &str = "storage";

impl Storage {
    /// Local storage under `<dir>/storage`, spooling under `<dir>/.uploads`.
    /// Leftover spool files of a previous run (a crash mid-upload) are
    /// removed, and so are files a crashed backup retained.
    pub fn open(dir: &Path) -> io::Result<Storage> {
        let spool = dir.join(".uploads");
        let _ = std::fs::remove_dir_all(&spool);
        std::fs::create_dir_all(&spool)?;
        Ok(Storage {
            backend: Arc::new(RwLock::new(Arc::new(Backend::Local(local::Local::new(
                dir.join(LOCAL_DIR),
            ))))),
            spool,
            pending: Default::default(),
            holds: Arc::new(backup::Holds::new(dir.join(backup::RETAINED_DIR))),
        })
    }

    /// Marks `key` as stored for a write that has not committed yet. Call
    /// it before the key is written and [`Storage::release`] after the
    /// write committed or failed: a key the cleanup finds unreferenced and
    /// not held was either committed (the record now names it) or is an
    /// orphan.
    pub fn hold(&self, key: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned());
    }

    pub fn release(&self, key: &str) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Whether `key` is held by a write in flight.
    pub fn is_held(&self, key: &str) -> bool {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).contains(key)
    }

    /// The directory uploads stream into before they are stored.
    pub fn spool_dir(&self) -> &Path {
        &self.spool
    }

    /// The backend in use now.
    pub fn backend(&self) -> Arc<Backend> {
        self.backend.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Switches to another backend (settings change).
    pub fn set_backend(&self, backend: Backend) {
        *self.backend.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(backend);
    }

    /// Stores the file at `src` (a spooled upload) under `key`, durably:
    /// when this returns, the bytes survive a crash.
    pub async fn put_file(&self, key: &str, src: &Path) -> io::Result<()> {
        match &*self.backend() {
            Backend::Local(l) => l.put_file(key, src).await,
            Backend::S3(s) => s.put_file(key, src).await,
        }
    }

    /// Stores `bytes` under `key` (thumbnails).
    pub async fn put_bytes(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        match &*self.backend() {
            Backend::Local(l) => l.put_bytes(key, bytes, None).await,
            Backend::S3(s) => s.put_bytes(key, bytes).await,
        }
    }

    /// Stores a thumbnail dated `modified` where the backend can set a
    /// date (local files); an S3 object gets the bucket's own date, so a
    /// client revalidating the first answer's `ETag` downloads it once more.
    pub async fn put_thumb(&self, key: &str, bytes: Bytes, modified: SystemTime) -> io::Result<()> {
        match &*self.backend() {
            Backend::Local(l) => l.put_bytes(key, bytes, Some(modified)).await,
            Backend::S3(s) => s.put_bytes(key, bytes).await,
        }
    }

    /// Size and time of `key`, if it exists.
    pub async fn head(&self, key: &str) -> io::Result<Option<ObjectMeta>> {
        match &*self.backend() {
            Backend::Local(l) => l.head(key).await,
            Backend::S3(s) => s.head(key).await,
        }
    }

    /// Opens `key` for reading, the whole object or `range` of it (which
    /// the caller has checked against the object's size).
    pub async fn get(&self, key: &str, range: Option<Range<u64>>) -> io::Result<Option<Object>> {
        match &*self.backend() {
            Backend::Local(l) => l.get(key, range).await,
            Backend::S3(s) => s.get(key, range).await,
        }
    }

    /// Removes `key`; a missing key is not an error. While a backup runs,
    /// a local file is kept for it first (see [`backup`]).
    pub async fn delete(&self, key: &str) -> io::Result<()> {
        match &*self.backend() {
            Backend::Local(l) => {
                if !self.keep_for_backups(l, key, false).await? {
                    return Ok(());
                }
                l.delete(key).await
            }
            Backend::S3(s) => s.delete(key).await,
        }
    }

    /// Removes every key under `prefix` (a record's or a collection's
    /// files); kept for a running backup first, as [`Storage::delete`].
    pub async fn delete_prefix(&self, prefix: &str) -> io::Result<()> {
        match &*self.backend() {
            Backend::Local(l) => {
                if !self.keep_for_backups(l, prefix, true).await? {
                    return Ok(());
                }
                l.delete_prefix(prefix).await
            }
            Backend::S3(s) => s.delete_prefix(prefix).await,
        }
    }

    /// Before a local removal: if a backup runs, hard-links the file (or
    /// every file under the prefix) into the retained dir. `false`: it
    /// could not be kept and must stay (an orphan for the sweep).
    async fn keep_for_backups(&self, local: &local::Local, key: &str, prefix: bool) -> io::Result<bool> {
        let Some(dir) = self.holds.retaining() else {
            return Ok(true);
        };
        let path = local.path(key.trim_end_matches('/'))?;
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || match prefix {
            true => backup::keep_tree(&dir, &path, &key),
            false => backup::keep(&dir, &path, &key),
        })
        .await
        .map_err(|e| io::Error::other(format!("storage task failed: {e}")))
    }

    /// Holds removals for a backup (see [`backup`]): take it before the
    /// store snapshot, walk [`backup::Retention::files`] after it, drop it
    /// when the files are copied. `None` when files are not on the local
    /// disk (S3: they stay in the bucket and are not in backups).
    pub fn retain(&self) -> Option<backup::Retention> {
        match &*self.backend() {
            Backend::Local(l) => Some(backup::Retention::start(self.holds.clone(), l.root().to_path_buf())),
            Backend::S3(_) => None,
        }
    }

    /// Every key under `prefix`, with its meta (the orphan sweep).
    pub async fn list(&self, prefix: &str) -> io::Result<Vec<(String, ObjectMeta)>> {
        match &*self.backend() {
            Backend::Local(l) => l.list(prefix).await,
            Backend::S3(s) => s.list(prefix).await,
        }
    }
}
