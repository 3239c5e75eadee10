//! Server configuration (built by the CLI from flags and `BASALT_*` env vars).

use std::path::PathBuf;

/// How log lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Default of `--max-connections`: room for many clients (an idle
/// connection costs a socket and a few KiB), small enough that a flood of
/// connections is refused before memory or file descriptors run out.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default of `--header-timeout` in seconds: headers are a few hundred
/// bytes; 10 s leaves room for a slow mobile link's retransmissions.
pub const DEFAULT_HEADER_TIMEOUT: u64 = 10;
/// Default of `--keep-alive` in seconds. PocketBase keeps idle connections
/// for minutes; actix's 5 s default races clients (Node's fetch) that reuse
/// a socket after ~4 s.
pub const DEFAULT_KEEP_ALIVE: u64 = 120;

/// Default of `--orphan-grace` in seconds: longer than any upload takes
/// between being stored and its record committing.
pub const DEFAULT_ORPHAN_GRACE: u64 = 3600;

/// Default of `--store-wait` in seconds: long enough for a database
/// restart or an HA failover (Patroni's takes ~10 s), short enough that a
/// wrong URL is reported within a minute.
pub const DEFAULT_STORE_WAIT: u64 = 60;

#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (tests).
    pub http: String,
    /// Data directory (created on first start).
    pub dir: PathBuf,
    /// Allowed CORS origins: `*` or a comma-separated list.
    pub origins: String,
    /// Largest accepted JSON body in bytes.
    pub max_body: usize,
    /// HTTP worker threads (0 = one per CPU core).
    pub workers: usize,
    /// Open connections the server holds at most, all addresses together
    /// (more wait in the listen backlog until one closes). Lowered at start
    /// to what the open-file limit allows.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (408 after).
    pub header_timeout: u64,
    /// Seconds an idle connection stays open for the next request.
    pub keep_alive: u64,
    /// Seconds an unreferenced stored file is kept before the orphan sweep
    /// removes it.
    pub orphan_grace: u64,
    /// Where the data lives: `None` = the embedded store in `dir`, or a
    /// `postgres://…` URL (`--store`; `dir` still holds the lock, the
    /// control socket, files and this node's request log).
    pub store: Option<String>,
    /// Seconds to wait for the database at start before giving up.
    pub store_wait: u64,
}

impl Config {
    /// Defaults for a data dir, listening on a random local port (tests).
    pub fn for_dir(dir: impl Into<PathBuf>) -> Config {
        Config {
            http: "127.0.0.1:0".into(),
            dir: dir.into(),
            origins: "*".into(),
            max_body: 1024 * 1024,
            workers: 0,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            keep_alive: DEFAULT_KEEP_ALIVE,
            orphan_grace: DEFAULT_ORPHAN_GRACE,
            store: None,
            store_wait: DEFAULT_STORE_WAIT,
        }
    }
}
