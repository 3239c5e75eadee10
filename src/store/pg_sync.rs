//! What several nodes on one PostgreSQL database need beyond the data:
//! hearing of each other's collection and settings changes, and taking
//! turns at once-only background work.
//!
//! Each node keeps one connection of its own for this (its
//! `application_name` names the node: `basalt <host>/<pid>`, so
//! `pg_locks` joined with `pg_stat_activity` shows who holds which
//! lease). Every [`POLL`] it
//!
//! - reads `basalt.head.specs_version`, which the writer of any node bumps
//!   in the same transaction as a collection, settings or index-build
//!   change (see `writer.rs`), and announces a new value on a watch
//!   channel (the node then reloads its caches: `core::nodes`);
//! - tries the session advisory lock of each once-only job it does not
//!   hold yet ([`Lease`]). A lock stays held as long as this session
//!   lives: when the node dies (or loses its connection) PostgreSQL
//!   releases it and the next node's poll takes it, so each job runs on
//!   one node at a time and moves within a poll or so of its holder's
//!   death.
//!
//! A poll that fails or hangs drops the session and every lease with it
//! (the node stops running the jobs until it has them again).
//!
//! Why a poll and not LISTEN/NOTIFY: one indexed single-row read per node
//! every 250 ms costs nothing measurable, needs no extra statement in the
//! writer's transaction, and is also what detects a lost lease session.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use super::postgres::Link;
use super::Lease;

/// How often a node reads the specs version and tries the leases it lacks.
const POLL: Duration = Duration::from_millis(250);
/// A poll taking longer than this means the connection is gone (a dead
/// peer without a reset): the session is dropped and reopened.
const POLL_DEADLINE: Duration = Duration::from_secs(5);

/// The advisory-lock key of a lease (beside the schema's 7361696).
fn lock_key(job: Lease) -> i64 {
    7_361_697
        + match job {
            Lease::IndexBuilds => 0,
            Lease::Retention => 1,
            Lease::FileSweep => 2,
        }
}

const ALL: [Lease; 3] = [Lease::IndexBuilds, Lease::Retention, Lease::FileSweep];

fn bit(job: Lease) -> u8 {
    1 << (lock_key(job) - 7_361_697)
}

/// A node's view of the shared state, kept by its poll.
pub(super) struct NodeSync {
    /// The last `specs_version` seen (dropped when the store shuts down,
    /// which ends the tasks following it).
    version: Mutex<Option<watch::Sender<u64>>>,
    /// The leases this node holds, one bit per [`Lease`].
    held: AtomicU8,
    /// Set at shutdown: the poll ends and its session, with the leases,
    /// goes at once (another node takes them over within a poll).
    stopped: AtomicBool,
}

impl NodeSync {
    pub(super) fn holds(&self, job: Lease) -> bool {
        !self.stopped.load(Ordering::Acquire) && self.held.load(Ordering::Acquire) & bit(job) != 0
    }

    pub(super) fn changes(&self) -> watch::Receiver<u64> {
        match &*self.version.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(tx) => tx.subscribe(),
            // Stopped: a receiver whose sender is gone.
            None => watch::channel(0).1,
        }
    }

    /// Stops the poll, gives up the leases and ends the followers.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.held.store(0, Ordering::Release);
        self.version.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn announce(&self, version: u64) {
        if let Some(tx) = &*self.version.lock().unwrap_or_else(|e| e.into_inner()) {
            tx.send_if_modified(|v| std::mem::replace(v, version) != version);
        }
    }
}

/// The name this node's sync session shows in `pg_stat_activity`.
pub(super) fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("basalt {host}/{}", std::process::id())
}

/// Starts the node's poll on `rt`; it ends when the returned handle (held
/// by the store) is dropped, closing the session and releasing the leases.
pub(super) fn start(rt: &tokio::runtime::Runtime, link: Arc<Link>) -> Arc<NodeSync> {
    let sync = Arc::new(NodeSync {
        version: Mutex::new(Some(watch::channel(0).0)),
        held: AtomicU8::new(0),
        stopped: AtomicBool::new(false),
    });
    let weak = Arc::downgrade(&sync);
    rt.spawn(run(weak, link));
    sync
}

async fn run(sync: Weak<NodeSync>, link: Arc<Link>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = sync.upgrade().filter(|n| !n.stopped.load(Ordering::Acquire)) else {
            break;
        };
        match tokio::time::timeout(POLL_DEADLINE, poll(&node, &link)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => lost(&node, &link, &e),
            Err(_) => lost(&node, &link, &"the poll timed out"),
        }
    }
    link.forget();
}

/// Drops the session and every lease it held.
fn lost(node: &NodeSync, link: &Link, why: &dyn std::fmt::Display) {
    if node.held.swap(0, Ordering::AcqRel) != 0 {
        tracing::warn!(error = %why, "lost the PostgreSQL session holding this node's leases; other nodes take them over");
    } else {
        tracing::debug!(error = %why, "node sync poll failed");
    }
    link.forget();
}

async fn poll(node: &NodeSync, link: &Link) -> Result<(), String> {
    // A session that closed since the last poll took its locks with it.
    if !link.is_open() {
        node.held.store(0, Ordering::Release);
    }
    let s = link.session().await.map_err(|e| e.to_string())?;
    let row = s
        .client
        .query_one("SELECT specs_version FROM basalt.head", &[])
        .await
        .map_err(|e| e.to_string())?;
    let version = row.get::<_, i64>(0) as u64;
    node.announce(version);
    let held = node.held.load(Ordering::Acquire);
    let wanted: Vec<i64> = ALL
        .iter()
        .filter(|j| held & bit(**j) == 0)
        .map(|j| lock_key(*j))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let rows = s
        .client
        .query(
            "SELECT k, pg_try_advisory_lock(k) FROM unnest($1::int8[]) AS t(k)",
            &[&wanted],
        )
        .await
        .map_err(|e| e.to_string())?;
    for r in rows {
        let (key, got): (i64, bool) = (r.get(0), r.get(1));
        if let Some(job) = ALL.iter().find(|j| lock_key(**j) == key).filter(|_| got) {
            if node.stopped.load(Ordering::Acquire) {
                break;
            }
            tracing::info!(job = ?job, "this node took the lease");
            node.held.fetch_or(bit(*job), Ordering::AcqRel);
        }
    }
    Ok(())
}
