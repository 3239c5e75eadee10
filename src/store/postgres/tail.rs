//! Realtime across nodes: each node follows `basalt.changes` by seq and
//! publishes into its own hub, strictly in seq order, its own commits and
//! every other node's alike (SPEC §12).
//!
//! One task per node reads `seq > last` in pages and publishes each entry,
//! so nothing is skipped and nothing is published twice whatever wakes it.
//! Wake-ups only make it read sooner: this node's writer after each commit
//! (`PgBackend::apply`), other nodes' commits by a NOTIFY sent inside their
//! committing transaction (delivered at COMMIT to the LISTEN of this task's
//! connection), and a poll every [`POLL`] as the safety net (a notification
//! lost with a connection). The table is the truth.
//!
//! Why the order holds: every group commits holding `basalt.head` FOR
//! UPDATE, and PostgreSQL makes a transaction visible before it releases
//! its locks, so seq `n` is visible before seq `n + 1` can be taken; a read
//! never sees a later seq without the earlier ones.
//!
//! Falling behind is never silent. A reader that cannot keep up with the
//! hub lags and resyncs per connection, as on sled. When this task loses
//! its place — the connection is lost and cannot be opened again at once,
//! the next seq was trimmed before it was read, or the database's head went
//! back (a failover that lost commits) — it resets the hub ([`Hub::reset`]):
//! every client of the node is ended with a clear reason and resumes with
//! `since`, on this node or another (and again at every failed attempt to
//! reconnect, so no client waits on a node that cannot follow the log). A lost connection that opens again at
//! once (a restarted backend, `pg_terminate_backend`) loses nothing: the
//! task reads on from its last seq and clients only see a pause.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::{text_of, Pg, PgBackend};
use crate::store::embedded::decode_change;
use crate::store::Hub;

/// The channel of the wake-ups.
const CHANNEL: &str = "basalt_changes";
/// The statement a committing group sends (see `PgBackend::write`).
pub(super) const NOTIFY: &str = "NOTIFY basalt_changes";
/// The safety net's period: a notification lost with a connection delays
/// an event by at most this.
const POLL: Duration = Duration::from_millis(500);
/// How often a lost database is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// How long one read may take before the connection counts as lost (a
/// silent network partition would otherwise hold the task forever).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Entries read per query.
const BATCH: i64 = 1024;

/// Starts this node's tail of the change log after `from` (the head when
/// the node opened the store: nobody subscribed before), on the engine's
/// runtime; it ends with the runtime.
pub(in crate::store) fn tail(pg: &Pg, backend: &PgBackend, hub: Arc<Hub>, from: u64) {
    let mut config = pg.links[0].config.clone();
    // Named, so `pg_stat_activity` shows (and an operator can find) it.
    config.application_name("basalt-tail");
    let wake = backend.wake.clone();
    pg.rt.spawn(run(config, hub, wake, from));
}

/// Why following stopped: the connection failed (open another).
type Lost = String;

/// Connects, follows until the connection fails, and again, for ever.
async fn run(config: tokio_postgres::Config, hub: Arc<Hub>, wake: Arc<Notify>, mut last: u64) {
    // Whether the clients were told of the current outage already.
    let mut told = false;
    loop {
        let (client, heard) = match connect(&config).await {
            Ok(c) => c,
            Err(e) => {
                if !told {
                    tracing::warn!(error = %e, "realtime: the change-log tail lost the database; clients are told to resume with since");
                    told = true;
                }
                // Again at every failed attempt: a client that subscribed
                // meanwhile (its reads may work while this connection
                // cannot be opened, e.g. at max_connections) must not wait
                // for events silently either.
                hub.reset();
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if told {
            tracing::info!(after = last, "realtime: the change-log tail reconnected");
            told = false;
        }
        let why = follow(&client, &heard, &wake, &hub, &mut last).await;
        tracing::warn!(error = %why, after = last, "realtime: the change-log tail's connection failed; reconnecting");
    }
}

/// A connection that LISTENs for commits; `heard` is notified on each
/// notification and when the connection ends.
async fn connect(config: &tokio_postgres::Config) -> Result<(Client, Arc<Notify>), String> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| super::describe(&e))?;
    let heard = Arc::new(Notify::new());
    let h = heard.clone();
    tokio::spawn(async move {
        loop {
            match futures_util::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => h.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "realtime: the change-log tail's connection ended");
                    break;
                }
                None => break,
            }
        }
        // The follower notices the closed client at its next read.
        h.notify_one();
    });
    // LISTEN before the first read: a commit after that read wakes us.
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| super::describe(&e))?;
    Ok((client, heard))
}

/// Publishes every entry after `last`, then waits for a wake-up, until
/// the connection fails.
async fn follow(client: &Client, heard: &Notify, wake: &Notify, hub: &Hub, last: &mut u64) -> Lost {
    let read = match client
        .prepare("SELECT seq, entry::text FROM basalt.changes WHERE seq > $1 ORDER BY seq LIMIT $2")
        .await
    {
        Ok(s) => s,
        Err(e) => return super::describe(&e),
    };
    // The database may have gone back in time (a failover that lost
    // commits): its seqs after its head will be new changes, not ours.
    match read_head(client).await {
        Ok(head) if head < *last => {
            tracing::warn!(head, last = *last, "realtime: the database's head is behind what this node published; clients are told to resume with since");
            hub.reset();
            *last = head;
        }
        Ok(_) => {}
        Err(e) => return e,
    }
    loop {
        if let Err(e) = catch_up(client, &read, hub, last).await {
            return e;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = heard.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn read_head(client: &Client) -> Result<u64, Lost> {
    let row = tokio::time::timeout(READ_TIMEOUT, client.query_one("SELECT seq FROM basalt.head", &[]))
        .await
        .map_err(|_| "reading the head timed out".to_owned())?
        .map_err(|e| super::describe(&e))?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Publishes the entries after `last` in seq order, page by page.
async fn catch_up(client: &Client, read: &tokio_postgres::Statement, hub: &Hub, last: &mut u64) -> Result<(), Lost> {
    loop {
        let after = *last as i64;
        let rows = tokio::time::timeout(READ_TIMEOUT, client.query(read, &[&after, &BATCH]))
            .await
            .map_err(|_| "reading the change log timed out".to_owned())?
            .map_err(|e| super::describe(&e))?;
        for row in &rows {
            let seq = row.get::<_, i64>(0) as u64;
            if seq != *last + 1 {
                tracing::warn!(missing = *last + 1, next = seq, "realtime: the change log was trimmed before this node published it; clients are told to resume with since");
                hub.reset();
            }
            match decode_change(&text_of(row, 1)) {
                Ok(change) => hub.publish(Arc::new(change)),
                Err(e) => {
                    tracing::error!(seq, error = %e, "realtime: an unreadable change-log entry; clients are told to resume with since");
                    hub.reset();
                }
            }
            *last = seq;
        }
        if (rows.len() as i64) < BATCH {
            return Ok(());
        }
    }
}
