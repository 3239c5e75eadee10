//! Server configuration (built by the CLI from flags and `BASALT_*` env vars).

use std::path::PathBuf;

/// How log lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

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
        }
    }
}
