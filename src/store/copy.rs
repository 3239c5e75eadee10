//! `basalt store copy --from … --to …`: the whole store from a data dir or
//! a PostgreSQL database into an empty one of either kind, verified.
//!
//! 1. The source is opened as a server would open it (a data dir's lock:
//!    refused while a server runs on it) and a snapshot is taken (the
//!    backup's: one consistent point in time; on PostgreSQL one
//!    repeatable-read transaction, so nodes still running on the source
//!    do not make it inconsistent, but their writes after it are not
//!    copied: stop them first to copy everything).
//! 2. The snapshot goes into the target, which must be empty: a data dir
//!    without a database, or a database no node has started on
//!    (`pg_import`). Records keep ids, revisions and dates, users their
//!    password hashes; collections, settings, the secret, counts, index
//!    entries and the change log are copied as they are.
//! 3. The target is opened and snapshotted in turn, and every tree of both
//!    snapshots is summed (count and checksum); the sums are printed per
//!    collection and must match. PostgreSQL keeps JSON as JSONB (member
//!    order and spacing are its own), so JSON values are summed in a
//!    canonical form: keys sorted, numbers by value.
//!
//! Uploaded files are not copied: they stay in the source data dir's
//! `storage` (or the S3 bucket).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::backup::{self, BackupError};
use super::{pg_import, EngineChoice, Store, StoreError};

/// Where a store is: a data dir, or a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    Postgres(String),
}

impl Location {
    /// `postgres://…` / `postgresql://…` is a database, anything else a
    /// data dir.
    pub fn parse(s: &str) -> Location {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Location::Postgres(s.to_owned())
        } else {
            Location::Dir(PathBuf::from(s))
        }
    }

    /// For messages (no password).
    pub fn describe(&self) -> String {
        match self {
            Location::Dir(d) => format!("data dir {}", d.display()),
            Location::Postgres(url) => pg_import::describe(url),
        }
    }
}

/// The count and checksum of one tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSum {
    pub entries: u64,
    /// The wrapping sum of every entry's hash (order-free: engines list a
    /// tree's entries in their own order).
    pub sum: u128,
}

/// What a copy did, tree by tree (source and target).
#[derive(Debug, Default)]
pub struct CopyReport {
    /// `(tree, source, target)` for every tree with entries on either side.
    pub trees: Vec<(String, TreeSum, TreeSum)>,
    /// Collection id → name, from the source's definitions.
    pub names: BTreeMap<String, String>,
}

impl CopyReport {
    /// The trees whose sums differ.
    pub fn mismatches(&self) -> Vec<&str> {
        self.trees
            .iter()
            .filter(|(_, a, b)| a != b)
            .map(|(t, _, _)| t.as_str())
            .collect()
    }

    /// The lines printed after a copy: one per collection, then totals.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{:<32} {:>10} {:>10}  {:<16}",
            "collection", "source", "target", "checksum"
        )];
        let mark = |a: &TreeSum, b: &TreeSum| if a == b { "ok" } else { "MISMATCH" };
        for (tree, a, b) in &self.trees {
            if let Some(id) = tree.strip_prefix("rec/") {
                let name = self.names.get(id).map_or(id, String::as_str);
                out.push(format!(
                    "{name:<32} {:>10} {:>10}  {:016x} {}",
                    a.entries,
                    b.entries,
                    (a.sum >> 64) as u64,
                    mark(a, b)
                ));
            }
        }
        // Collections without records have no tree on either side.
        for (id, name) in &self.names {
            let tree = format!("rec/{id}");
            if !self.trees.iter().any(|(t, _, _)| *t == tree) {
                out.push(format!("{name:<32} {:>10} {:>10}  {:<16} ok", 0, 0, "-"));
            }
        }
        let mut other: BTreeMap<&str, (TreeSum, TreeSum, bool)> = BTreeMap::new();
        for (tree, a, b) in &self.trees {
            let kind = if tree.starts_with("idx/") {
                "index entries"
            } else if tree == "changes" {
                "change log"
            } else if tree == "meta" {
                "definitions, settings, counts"
            } else if tree.starts_with("rec/") {
                continue;
            } else {
                tree.as_str()
            };
            let e = other
                .entry(kind)
                .or_insert((TreeSum::default(), TreeSum::default(), true));
            e.0.entries += a.entries;
            e.1.entries += b.entries;
            e.2 &= a == b;
        }
        for (kind, (a, b, same)) in other {
            let verdict = if same { "ok" } else { "MISMATCH" };
            out.push(format!("{kind:<32} {:>10} {:>10}  {verdict}", a.entries, b.entries));
        }
        out
    }
}

/// A failed copy: one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CopyError(pub String);

impl From<BackupError> for CopyError {
    fn from(e: BackupError) -> CopyError {
        CopyError(e.to_string())
    }
}

/// Copies the store at `from` into the empty `to` and verifies it (see the
/// module doc). `Ok` holds the report even when it shows a mismatch: the
/// caller prints it and fails.
pub async fn copy(from: &Location, to: &Location) -> Result<CopyReport, CopyError> {
    if from == to {
        return Err(CopyError("--from and --to name the same store".into()));
    }
    let work = WorkDir::new()?;
    let source = open(from, &work.path.join("source")).await?;
    let snap_a = work.path.join("source.snapshot");
    let taken = snapshot(&source, &snap_a).await;
    close(source).await;
    taken?;
    let (sums_a, names) = sums(&snap_a)?;
    if names.is_empty() {
        return Err(CopyError(format!("{} holds no Basalt data", from.describe())));
    }
    load(to, &snap_a).await?;
    let target = open(to, &work.path.join("target")).await?;
    let snap_b = work.path.join("target.snapshot");
    let taken = snapshot(&target, &snap_b).await;
    close(target).await;
    taken?;
    let (sums_b, _) = sums(&snap_b)?;
    let mut trees: BTreeMap<String, (TreeSum, TreeSum)> = BTreeMap::new();
    for (t, s) in sums_a {
        trees.entry(t).or_default().0 = s;
    }
    for (t, s) in sums_b {
        trees.entry(t).or_default().1 = s;
    }
    Ok(CopyReport {
        trees: trees.into_iter().map(|(t, (a, b))| (t, a, b)).collect(),
        names,
    })
}

/// A private scratch dir (the snapshots, and the data dirs a PostgreSQL
/// store is opened with: its lock and node log), removed when dropped.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn new() -> Result<WorkDir, CopyError> {
        let stamp = crate::clock::now_millis();
        let path = std::env::temp_dir().join(format!("basalt-copy-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| CopyError(format!("cannot create {}: {e}", path.display())))?;
        super::restrict_permissions(&path, 0o700);
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Opens the store at `at` (`scratch`: the data dir of a PostgreSQL one).
async fn open(at: &Location, scratch: &Path) -> Result<Store, CopyError> {
    let (dir, engine) = match at {
        Location::Dir(dir) => {
            if !dir.join("db").exists() {
                return Err(CopyError(format!("{} holds no Basalt data", dir.display())));
            }
            (dir.clone(), EngineChoice::default())
        }
        Location::Postgres(url) => (
            scratch.to_path_buf(),
            EngineChoice {
                url: Some(url.clone()),
                wait: std::time::Duration::from_secs(10),
            },
        ),
    };
    let what = at.describe();
    tokio::task::spawn_blocking(move || Store::open_with(&dir, &engine))
        .await
        .map_err(|e| CopyError(format!("opening {what} failed: {e}")))?
        .map_err(|e| match e {
            StoreError::Locked(_) => CopyError(format!(
                "{what} is in use by a running server: stop it first (a copy must not miss writes)"
            )),
            other => CopyError(format!("{what}: {other}")),
        })
}

async fn close(store: Store) {
    let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
}

/// Writes a snapshot of `store` into the file `path`.
async fn snapshot(store: &Store, path: &Path) -> Result<(), CopyError> {
    let file = File::create(path).map_err(|e| CopyError(format!("cannot create {}: {e}", path.display())))?;
    let (out, _) = store.backup_into(BufWriter::with_capacity(1 << 20, file)).await?;
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .map_err(|e| CopyError(format!("cannot write {}: {e}", path.display())))
}

/// Loads the snapshot at `path` into the empty store at `to`.
async fn load(to: &Location, path: &Path) -> Result<(), CopyError> {
    let (to, path) = (to.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut input = BufReader::with_capacity(1 << 20, File::open(&path).map_err(|e| CopyError(e.to_string()))?);
        match &to {
            Location::Postgres(url) => {
                pg_import::load(url, &mut input, &path)?;
            }
            Location::Dir(dir) => {
                // Held while the database is written: no server starts on
                // the dir meanwhile.
                let _lock = super::lock_dir(dir).map_err(|e| match e {
                    StoreError::Locked(_) => CopyError(format!("{} is in use by a running server", dir.display())),
                    other => CopyError(format!("{}: {other}", dir.display())),
                })?;
                let db = dir.join("db");
                if db.exists() {
                    return Err(CopyError(format!(
                        "{} already holds a database; copy into a new, empty data dir",
                        dir.display()
                    )));
                }
                backup::restore_from(&mut input, &path, &db)?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| CopyError(format!("loading failed: {e}")))?
}

type Sums = (BTreeMap<String, TreeSum>, BTreeMap<String, String>);

/// Every non-empty tree's count and checksum in the snapshot at `path`,
/// and the collections' names by id.
fn sums(path: &Path) -> Result<Sums, CopyError> {
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| CopyError(e.to_string()))?);
    let mut trees: BTreeMap<String, TreeSum> = BTreeMap::new();
    let mut names = BTreeMap::new();
    backup::read_entries(&mut input, path, &mut |tree, k, v| {
        let tree = String::from_utf8_lossy(tree).into_owned();
        if tree == "meta" {
            if let Some(id) = std::str::from_utf8(&k)
                .ok()
                .and_then(|k| k.strip_prefix(super::meta::COLLECTION_PREFIX))
            {
                let def: Value = serde_json::from_slice(&v).unwrap_or_default();
                let name = def["name"].as_str().unwrap_or(id).to_owned();
                names.insert(id.to_owned(), name);
            }
        }
        let h = entry_hash(&tree, &k, &v);
        let s = trees.entry(tree).or_default();
        s.entries += 1;
        s.sum = s.sum.wrapping_add(h);
        Ok(())
    })?;
    Ok((trees, names))
}

/// An entry's hash: its key and its value, JSON values in canonical form.
fn entry_hash(tree: &str, key: &[u8], value: &[u8]) -> u128 {
    let mut h = Sha256::new();
    h.update((key.len() as u64).to_be_bytes());
    h.update(key);
    let canonical = |json: &[u8]| match serde_json::from_slice::<Value>(json) {
        Ok(v) => {
            let mut out = Vec::with_capacity(json.len());
            canonical_json(&v, &mut out);
            out
        }
        Err(_) => json.to_vec(),
    };
    if tree.starts_with("rec/") && value.len() >= 8 {
        h.update(&value[..8]);
        h.update(canonical(&value[8..]));
    } else if tree == "changes" {
        h.update(canonical(value));
    } else {
        h.update(value);
    }
    let d = h.finalize();
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

/// JSON with object keys sorted and integral floats written as integers
/// (JSONB keeps `1.0` as written but reorders keys; the sum must not
/// depend on either engine's spelling).
fn canonical_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut members: Vec<_> = m.iter().collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                canonical_json(v, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(v, out);
            }
            out.push(b']');
        }
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                let _ = write!(out, "{}", f as i64);
            }
            _ => {
                let _ = write!(out, "{n}");
            }
        },
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_member_order_spacing_and_integral_floats() {
        let a: Value = serde_json::from_str(r#"{"b": [1, 2.0, {"y": 1, "x": null}], "a": "s"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":"s","b":[1.0,2,{"x":null,"y":1}]}"#).unwrap();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        canonical_json(&a, &mut x);
        canonical_json(&b, &mut y);
        assert_eq!(x, y);
        assert_eq!(String::from_utf8(x).unwrap(), r#"{"a":"s","b":[1,2,{"x":null,"y":1}]}"#);
        let mut z = Vec::new();
        canonical_json(&serde_json::json!({"a": "t"}), &mut z);
        assert_ne!(z, y);
    }

    #[test]
    fn a_difference_in_any_tree_is_a_mismatch_and_printed() {
        let same = TreeSum { entries: 2, sum: 7 };
        let other = TreeSum { entries: 2, sum: 8 };
        let mut report = CopyReport {
            trees: vec![
                ("rec/c1".into(), same, same),
                ("idx/c1/by_x".into(), same, same),
                ("meta".into(), same, same),
            ],
            names: BTreeMap::from([("c1".to_owned(), "notes".to_owned())]),
        };
        assert!(report.mismatches().is_empty());
        assert!(report
            .lines()
            .iter()
            .any(|l| l.starts_with("notes ") && l.ends_with(" ok")));
        report.names.insert("c9".into(), "empty".into());
        assert!(report
            .lines()
            .iter()
            .any(|l| l.starts_with("empty ") && l.contains(" 0 ")));
        report.trees[1].2 = other;
        report.trees.push(("rec/c2".into(), same, TreeSum::default()));
        assert_eq!(report.mismatches(), vec!["idx/c1/by_x", "rec/c2"]);
        let lines = report.lines().join("\n");
        assert!(lines.contains("c2 ") && lines.contains("MISMATCH"), "{lines}");
        assert!(
            lines
                .lines()
                .any(|l| l.starts_with("index entries") && l.ends_with("MISMATCH")),
            "{lines}"
        );
    }

    #[test]
    fn locations_are_urls_or_dirs() {
        assert_eq!(
            Location::parse("postgresql://h/db"),
            Location::Postgres("postgresql://h/db".into())
        );
        assert_eq!(Location::parse("./data"), Location::Dir(PathBuf::from("./data")));
    }
}
