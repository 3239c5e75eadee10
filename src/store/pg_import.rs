//! Loading a store snapshot (`backup`'s format, whichever engine wrote it)
//! into an empty PostgreSQL database: the other half of `basalt store
//! copy`, and what `basalt backup restore --store postgres://…` does.
//!
//! The whole load is one transaction that holds the write turn (the
//! `basalt.head` row lock, see `postgres.rs`) from its emptiness check to
//! its COMMIT: a damaged snapshot, a refused row or a lost connection
//! leaves the database as it was, and a node writing meanwhile waits for
//! it. The database must be empty (no node has started on it: a node's
//! first start writes the built-in collections); anything else is refused
//! before a row is written, so a load never mixes two data sets.

use std::io::Read;
use std::path::Path;

use tokio_postgres::Client;

use super::backup::{self, BackupError, Counts};
use super::postgres::{self, Writes};
use super::{meta, WriteError};

/// Entries sent per batch of statements.
const BATCH: usize = 5_000;
/// sled's default tree: always in a snapshot of the embedded engine, empty
/// (Basalt keeps nothing in it).
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

/// Host(s) and database of `url`, without the user or password: what
/// messages may show.
pub fn describe(url: &str) -> String {
    match postgres::parse_url(url) {
        Ok((config, _)) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            format!(
                "PostgreSQL database {} on {}",
                config.get_dbname().unwrap_or("(default)"),
                hosts.join(",")
            )
        }
        Err(_) => "the PostgreSQL database".into(),
    }
}

/// Loads the snapshot `input` is positioned at into the empty database at
/// `url` (creating Basalt's tables if needed); `path` names the snapshot in
/// messages. Nothing is written unless all of it is (the checksum, at the
/// snapshot's end, included). Runs on a thread of its own, so any caller
/// (an async one too) may call it.
pub fn load<R: Read + Send>(url: &str, input: &mut R, path: &Path) -> Result<Counts, BackupError> {
    let (config, tls) = postgres::parse_url(url).map_err(|e| BackupError::Io(e.to_string()))?;
    let target = describe(url);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| BackupError::Io(format!("cannot start a runtime: {e}")))?;
                let client = rt
                    .block_on(super::pg_tls::connect(&config, &tls))
                    .map_err(|e| pg_error(&target, e))?;
                let result = load_with(&rt, &client, input, path, &target);
                if result.is_err() {
                    let _ = rt.block_on(client.batch_execute("ROLLBACK"));
                }
                result
            })
            .join()
            .unwrap_or_else(|_| Err(BackupError::Io("loading into PostgreSQL panicked".into())))
    })
}

fn pg_error(target: &str, e: tokio_postgres::Error) -> BackupError {
    let why = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    };
    BackupError::Io(format!("{target}: {why}"))
}

fn load_with<R: Read>(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    input: &mut R,
    path: &Path,
    target: &str,
) -> Result<Counts, BackupError> {
    let pg = |e| pg_error(target, e);
    rt.block_on(client.batch_execute(postgres::SCHEMA)).map_err(pg)?;
    rt.block_on(client.batch_execute("BEGIN; SELECT 1 FROM basalt.head FOR UPDATE"))
        .map_err(pg)?;
    let held = rt
        .block_on(client.query_one(
            "SELECT (SELECT seq FROM basalt.head), \
                    (SELECT count(*) FROM basalt.meta WHERE key <> $1), \
                    (SELECT count(*) FROM basalt.records)",
            &[&meta::KEY_FORMAT],
        ))
        .map_err(pg)?;
    let (seq, keys, records): (i64, i64, i64) = (held.get(0), held.get(1), held.get(2));
    if seq != 0 || keys != 0 || records != 0 {
        return Err(BackupError::Io(format!(
            "{target} already holds Basalt data (seq {seq}, {records} records, {keys} settings and definitions); \
             load into a new, empty database (CREATE DATABASE …) and start no node on it before"
        )));
    }
    let mut writes = Writes::default();
    let mut pending = 0usize;
    let send = |w: &Writes| rt.block_on(postgres::write_rows(client, w)).map_err(pg);
    let counts = backup::read_entries(input, path, &mut |tree, k, v| {
        if tree == SLED_DEFAULT_TREE {
            return Ok(());
        }
        let name = std::str::from_utf8(tree).map_err(|_| refused(path, "a tree name that is not UTF-8"))?;
        writes.add(name, k, Some(v)).map_err(|e| match e {
            WriteError::Storage(why) => refused(path, &why),
            other => BackupError::Io(other.to_string()),
        })?;
        pending += 1;
        if pending >= BATCH {
            send(&std::mem::take(&mut writes))?;
            pending = 0;
        }
        Ok(())
    })?;
    send(&writes)?;
    rt.block_on(client.batch_execute("COMMIT")).map_err(pg)?;
    Ok(counts)
}

fn refused(path: &Path, why: &str) -> BackupError {
    BackupError::Refused(path.to_path_buf(), why.to_owned())
}
