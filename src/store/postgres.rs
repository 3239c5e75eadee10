//! The PostgreSQL engine (`--store postgres://…`): the same trees and keys
//! as the embedded engine, in tables a person can read with `psql`:
//!
//! - `basalt.records (collection_id, id, rev, data jsonb)`: one row per
//!   record (`rec/<collection id>` trees);
//! - `basalt.index_entries (tree, key bytea, id)`: Basalt's own ordered
//!   index entries (`idx/...` trees), walked by key like sled's trees, so
//!   the planner, its key encoding and unique checks are the same on both
//!   engines (docs/scale-out.md has the measurement and the alternative);
//! - `basalt.changes (seq, bytes, entry jsonb)`: the change log;
//! - `basalt.meta (key, value bytea)`: everything else of `meta`;
//! - `basalt.head (seq, change_bytes)`: one row, the last seq and the
//!   change log's bytes; the writer's lock on it is the cluster's write turn.
//!
//! Each node's writer runs every group as one transaction that starts with
//! `SELECT … FROM basalt.head FOR UPDATE`: writers of all nodes take turns,
//! plan against the database as it is in their turn (ids, unique keys,
//! revisions: race-free across nodes), bump the head and commit. So `seq`
//! is one gapless order of commits, and a write is answered only after its
//! COMMIT returned (durable and replicated as the cluster is configured).
//!
//! The rest of Basalt reads synchronously (sled reads are memory-speed), so
//! reads here run on this engine's own small tokio runtime and the calling
//! thread waits on a channel for the answer (a loopback round trip).

use std::collections::HashSet;
use std::future::Future;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, SimpleQueryMessage, Statement};

use super::pg_sync::{self, NodeSync};
use super::pg_tls::{self, Tls};
use super::writer::{Backend, Durable, Overlay};
use super::{
    backup, meta, IndexDef, IndexEntries, Raw, RawRecord, StoreError, StoredRecord, WriteError, PRIMARY_INDEX,
};

mod tail;
pub(super) use tail::tail;

/// Connections for reads (each pipelines concurrent queries).
const READ_LINKS: usize = 4;
/// Rows fetched per page by scans, index walks and change-log replays.
const PAGE: i64 = 256;

/// The tables, created on first start (idempotent; under an advisory lock
/// so nodes starting together do not race on the catalog).
pub(super) const SCHEMA: &str = r#"
SELECT pg_advisory_xact_lock(7361696);
CREATE SCHEMA IF NOT EXISTS basalt;
CREATE TABLE IF NOT EXISTS basalt.meta (
    key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS basalt.records (
    collection_id text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    rev bigint NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (collection_id, id));
CREATE TABLE IF NOT EXISTS basalt.index_entries (
    tree text COLLATE "C" NOT NULL,
    key bytea NOT NULL,
    id text COLLATE "C" NOT NULL,
    PRIMARY KEY (tree, key));
CREATE TABLE IF NOT EXISTS basalt.changes (
    seq bigint PRIMARY KEY,
    bytes bigint NOT NULL,
    entry jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS basalt.head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq bigint NOT NULL,
    change_bytes bigint NOT NULL);
INSERT INTO basalt.head VALUES (true, 0, 0) ON CONFLICT DO NOTHING;
DO $$ BEGIN
    -- Checked first: ALTER TABLE would lock `head` exclusively (every
    -- writer and poll waits) on each reconnect, even with IF NOT EXISTS.
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = 'basalt' AND table_name = 'head' AND column_name = 'specs_version') THEN
        ALTER TABLE basalt.head ADD COLUMN specs_version bigint NOT NULL DEFAULT 0;
    END IF;
END $$;
INSERT INTO basalt.meta VALUES ('keyformat', '\x0000000000000002') ON CONFLICT DO NOTHING;
"#;

/// The statements reads and the writer use, prepared once per connection.
struct Stmts {
    get: Statement,
    index_get: Statement,
    meta_get: Statement,
    head: Statement,
}

/// A connection and its prepared statements.
pub(super) struct Session {
    pub(super) client: Client,
    stmts: Stmts,
}

/// One connection, opened again when it was lost.
pub(super) struct Link {
    config: tokio_postgres::Config,
    tls: Tls,
    session: Mutex<Option<Arc<Session>>>,
    /// Creates the tables (if needed) on connecting: the writer's link,
    /// which connects first.
    creates_schema: bool,
}

impl Link {
    fn new(config: tokio_postgres::Config, tls: Tls) -> Arc<Link> {
        Arc::new(Link {
            config,
            tls,
            session: Mutex::new(None),
            creates_schema: false,
        })
    }

    /// Whether a session is open (none was lost since the last use).
    pub(super) fn is_open(&self) -> bool {
        self.session
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|s| !s.client.is_closed()))
            .unwrap_or(false)
    }

    /// Drops the session (closing its connection once no query holds it);
    /// the next use opens a new one.
    pub(super) fn forget(&self) {
        if let Ok(mut g) = self.session.lock() {
            *g = None;
        }
    }

    /// The open session, or a new one.
    pub(super) async fn session(&self) -> Result<Arc<Session>, StoreError> {
        if let Some(s) = self.session.lock().ok().and_then(|g| g.clone()) {
            if !s.client.is_closed() {
                return Ok(s);
            }
        }
        let client = pg_tls::connect(&self.config, &self.tls).await.map_err(read_err)?;
        if self.creates_schema {
            client.batch_execute(SCHEMA).await.map_err(read_err)?;
        }
        let stmts = Stmts {
            get: client
                .prepare("SELECT rev, data::text FROM basalt.records WHERE collection_id = $1 AND id = $2")
                .await
                .map_err(read_err)?,
            index_get: client
                .prepare("SELECT id FROM basalt.index_entries WHERE tree = $1 AND key = $2")
                .await
                .map_err(read_err)?,
            meta_get: client
                .prepare("SELECT value FROM basalt.meta WHERE key = $1")
                .await
                .map_err(read_err)?,
            head: client
                .prepare("SELECT seq, change_bytes FROM basalt.head")
                .await
                .map_err(read_err)?,
        };
        let session = Arc::new(Session { client, stmts });
        if let Ok(mut g) = self.session.lock() {
            *g = Some(session.clone());
        }
        Ok(session)
    }
}

/// Whether an error means the database is out of reach (connection lost,
/// server shutting down, read-only after a failover) rather than a bug.
fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if pg_tls::refused_certificate(e) {
        return false;
    }
    match e.code() {
        None => true,
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") || c == "25006"
        }
    }
}

/// The error's text: the server's message and SQLSTATE when it sent one
/// (tokio-postgres' own text is only "db error" then).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
        // tokio-postgres' text names the step only ("error performing TLS
        // handshake"); the cause says what went wrong.
        None => match std::error::Error::source(e) {
            Some(cause) => format!("PostgreSQL: {e}: {cause}"),
            None => format!("PostgreSQL: {e}"),
        },
    }
}

fn read_err(e: tokio_postgres::Error) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(describe(&e))
    } else {
        StoreError::Io(describe(&e))
    }
}

fn write_err(e: tokio_postgres::Error) -> WriteError {
    if is_unavailable(&e) {
        WriteError::Unavailable(describe(&e))
    } else {
        WriteError::Storage(describe(&e))
    }
}

fn store_to_write(e: StoreError) -> WriteError {
    match e {
        StoreError::Unavailable(m) => WriteError::Unavailable(m),
        other => WriteError::Storage(other.to_string()),
    }
}

/// The engine's runtime. Dropped without waiting (the last handle can go
/// on an async worker thread, where a blocking drop would panic).
pub(super) struct Rt(Option<tokio::runtime::Runtime>);

impl Rt {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("runtime until dropped")
    }
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, f: F) {
        self.get().spawn(f);
    }
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.get().block_on(f)
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The read side of the engine.
pub(super) struct Pg {
    rt: Arc<Rt>,
    links: Vec<Arc<Link>>,
    next: AtomicUsize,
    /// What this node hears of the others, and its leases (`pg_sync`).
    sync: Arc<NodeSync>,
}

/// Opens the database named by `url` (waiting up to `wait` for it, logging
/// why), creates the tables if needed, and returns the read side, the
/// writer's backend, the head seq and the change log's bytes.
pub(super) fn open(url: &str, wait: Duration) -> Result<(Pg, PgBackend, u64, u64), StoreError> {
    let (config, tls) = parse_url(url)?;
    let rt = Arc::new(Rt(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("basalt-pg")
            .enable_all()
            .build()?,
    )));
    let writer = Arc::new(Link {
        config: config.clone(),
        tls: tls.clone(),
        session: Mutex::new(None),
        creates_schema: true,
    });
    // On a thread of its own: the caller may be on an async runtime, where
    // blocking on this engine's runtime would panic.
    let head = std::thread::scope(|scope| {
        scope
            .spawn(|| first_contact(&rt, &writer, wait))
            .join()
            .unwrap_or_else(|_| Err(StoreError::Io("opening PostgreSQL panicked".into())))
    })?;
    let mut named = config.clone();
    named.application_name(pg_sync::node_name());
    let sync = pg_sync::start(rt.get(), Link::new(named, tls.clone()));
    let pg = Pg {
        rt: rt.clone(),
        links: (0..READ_LINKS)
            .map(|_| Link::new(config.clone(), tls.clone()))
            .collect(),
        next: AtomicUsize::new(0),
        sync,
    };
    let backend = PgBackend {
        rt,
        link: writer,
        wake: Arc::new(tokio::sync::Notify::new()),
        turn: None,
        pinned: None,
    };
    Ok((pg, backend, head.0, head.1))
}

/// The connection settings and TLS of a `--store` URL (see `pg_tls`),
/// with Basalt's defaults (a 5 s connect timeout, the application name).
pub(super) fn parse_url(url: &str) -> Result<(tokio_postgres::Config, Tls), StoreError> {
    let (mut config, tls) = pg_tls::parse(url).map_err(StoreError::Io)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.application_name("basalt");
    Ok((config, tls))
}

/// Connects (retrying until `wait` has passed, logging why), creates the
/// tables if needed and reads the head: `(seq, change-log bytes)`.
fn first_contact(rt: &Rt, writer: &Link, wait: Duration) -> Result<(u64, u64), StoreError> {
    let deadline = Instant::now() + wait;
    loop {
        let attempt = rt.block_on(async {
            let s = writer.session().await?;
            let row = s.client.query_one(&s.stmts.head, &[]).await.map_err(read_err)?;
            Ok::<_, StoreError>((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
        });
        match attempt {
            Ok(head) => return Ok(head),
            Err(StoreError::Unavailable(why)) if Instant::now() < deadline => {
                tracing::warn!(error = %why, "waiting for PostgreSQL");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(StoreError::Unavailable(why)) => {
                return Err(StoreError::Unavailable(format!(
                    "PostgreSQL did not answer within {} s: {why}",
                    wait.as_secs()
                )))
            }
            Err(e) => return Err(e),
        }
    }
}

fn rev_of(row: &Row) -> u64 {
    row.get::<_, i64>(0) as u64
}

/// A JSONB column read as text, compact: JSONB prints `": "` and `", "`
/// between members, serde_json (and PocketBase) print no spaces, and
/// answers splice the stored text verbatim.
fn text_of(row: &Row, i: usize) -> Vec<u8> {
    compact(row.get::<_, &str>(i))
}

/// Drops the space JSONB's output puts after each `:` and `,` outside
/// strings (its only whitespace).
fn compact(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        out.push(b);
        i += 1;
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if (b == b':' || b == b',') && bytes.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    out
}

/// `rev ++ JSON`, the embedded layout's record value.
fn record_value(rev: u64, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&rev.to_be_bytes());
    out.extend_from_slice(json);
    out
}

/// A paged walk: `fetch(after)` returns the next page after the last
/// position, or an empty page at the end.
struct Pages<T, P, F> {
    fetch: F,
    after: Option<P>,
    page: std::vec::IntoIter<(P, T)>,
    done: bool,
}

impl<T, P: Clone, F: FnMut(Option<&P>) -> Result<Vec<(P, T)>, StoreError>> Iterator for Pages<T, P, F> {
    type Item = Result<T, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((p, t)) = self.page.next() {
                self.after = Some(p);
                return Some(Ok(t));
            }
            if self.done {
                return None;
            }
            match (self.fetch)(self.after.as_ref()) {
                Ok(rows) => {
                    self.done = (rows.len() as i64) < PAGE;
                    if rows.is_empty() {
                        return None;
                    }
                    self.page = rows.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

fn pages<T, P: Clone, F: FnMut(Option<&P>) -> Result<Vec<(P, T)>, StoreError>>(fetch: F) -> Pages<T, P, F> {
    Pages {
        fetch,
        after: None,
        page: Vec::new().into_iter(),
        done: false,
    }
}

impl Pg {
    /// Runs `f` with a read session on the engine's runtime and waits for
    /// its answer (callable from any thread, async workers included).
    fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Session>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        let link = self.links[self.next.fetch_add(1, Ordering::Relaxed) % self.links.len()].clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let result = match link.session().await {
                Ok(s) => f(s).await.map_err(read_err),
                Err(e) => Err(e),
            };
            let _ = tx.send(result);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the PostgreSQL runtime stopped".into())))
    }

    /// Rows of an ad-hoc query (prepared on the fly: for the rarer reads).
    fn rows(&self, sql: &'static str, params: Vec<Box<dyn ToSql + Send + Sync>>) -> Result<Vec<Row>, StoreError> {
        self.run(move |s| async move {
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            s.client.query(sql, &refs).await
        })
    }

    pub(super) fn get(&self, collection_id: &str, id: &str) -> Result<Option<StoredRecord>, StoreError> {
        self.get_row(collection_id, id)?
            .map(|(rev, json)| parse_record(rev, &json))
            .transpose()
    }

    fn get_row(&self, collection_id: &str, id: &str) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        // PostgreSQL text cannot hold U+0000, so no stored id does.
        if id.contains('\0') {
            return Ok(None);
        }
        let (c, i) = (collection_id.to_owned(), id.to_owned());
        let row = self.run(move |s| async move { s.client.query_opt(&s.stmts.get, &[&c, &i]).await })?;
        Ok(row.map(|r| (rev_of(&r), text_of(&r, 1))))
    }

    pub(super) fn get_raw(&self, collection_id: &str, id: &str) -> Result<Option<RawRecord>, StoreError> {
        Ok(self
            .get_row(collection_id, id)?
            .map(|(_, json)| RawRecord(Raw::Json(json))))
    }

    /// A collection's records in id order, a page per query.
    pub(super) fn scan(
        &self,
        collection_id: &str,
        reverse: bool,
    ) -> Result<Box<dyn Iterator<Item = Result<StoredRecord, StoreError>> + Send>, StoreError> {
        let (pg, cid) = (self.handle(), collection_id.to_owned());
        let sql = if reverse {
            "SELECT id, rev, data::text FROM basalt.records WHERE collection_id = $1 AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        } else {
            "SELECT id, rev, data::text FROM basalt.records WHERE collection_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3"
        };
        Ok(Box::new(pages(move |after: Option<&String>| {
            let rows = pg.rows(
                sql,
                vec![Box::new(cid.clone()), Box::new(after.cloned()), Box::new(PAGE)],
            )?;
            rows.iter()
                .map(|r| {
                    let id: String = r.get(0);
                    Ok((id, parse_record(r.get::<_, i64>(1) as u64, &text_of(r, 2))?))
                })
                .collect()
        })))
    }

    /// A second handle on the same runtime and connections (for iterators
    /// that outlive the borrow).
    fn handle(&self) -> Pg {
        Pg {
            rt: self.rt.clone(),
            links: self.links.clone(),
            next: AtomicUsize::new(self.next.load(Ordering::Relaxed)),
            sync: self.sync.clone(),
        }
    }

    pub(super) fn index_range(
        &self,
        collection_id: &str,
        index: &IndexDef,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        reverse: bool,
    ) -> Result<IndexEntries, StoreError> {
        let pg = self.handle();
        let primary = index.name == PRIMARY_INDEX;
        let tree = if primary {
            collection_id.to_owned()
        } else {
            index.tree(collection_id)
        };
        let fetch = move |after: Option<&Vec<u8>>| -> Result<Vec<(Vec<u8>, IndexEntry)>, StoreError> {
            // Past the last row seen, the bound moves inward, exclusive.
            let (mut lo, mut hi) = (lower.clone(), upper.clone());
            if let Some(a) = after {
                if reverse {
                    hi = Bound::Excluded(a.clone());
                } else {
                    lo = Bound::Excluded(a.clone());
                }
            }
            if primary {
                (lo, hi) = (id_bound(lo, true), id_bound(hi, false));
            }
            let sql = range_sql(primary, reverse, &lo, &hi);
            let tree = tree.clone();
            let rows = pg.run(move |s| async move {
                let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(tree), Box::new(PAGE)];
                for b in [lo, hi] {
                    if let Bound::Included(v) | Bound::Excluded(v) = b {
                        if primary {
                            params.push(Box::new(String::from_utf8_lossy(&v).into_owned()));
                        } else {
                            params.push(Box::new(v));
                        }
                    }
                }
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                s.client.query(sql.as_str(), &refs).await
            })?;
            Ok(rows
                .iter()
                .map(|r| {
                    let (key, id) = if primary {
                        let id: String = r.get(0);
                        (id.clone().into_bytes(), id)
                    } else {
                        (r.get::<_, Vec<u8>>(0), r.get::<_, String>(1))
                    };
                    (key.clone(), (key, id))
                })
                .collect())
        };
        Ok(Box::new(pages(fetch)))
    }

    pub(super) fn unique_lookup(&self, tree: &str, key: Vec<u8>) -> Result<Option<String>, StoreError> {
        let tree = tree.to_owned();
        let row = self.run(move |s| async move { s.client.query_opt(&s.stmts.index_get, &[&tree, &key]).await })?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Changes with `seq >= from` in seq order, undecoded.
    pub(super) fn changes_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + Send + 'static {
        let pg = self.handle();
        let start = from as i64;
        pages(move |after: Option<&i64>| {
            let after = after.map_or(start - 1, |a| *a);
            let rows = pg.rows(
                "SELECT seq, entry::text FROM basalt.changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                vec![Box::new(after), Box::new(PAGE)],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let seq: i64 = r.get(0);
                    (seq, (seq as u64, text_of(r, 1)))
                })
                .collect())
        })
    }

    pub(super) fn recent_changes(&self, scan: usize) -> Vec<Vec<u8>> {
        self.rows(
            "SELECT entry::text FROM basalt.changes ORDER BY seq DESC LIMIT $1",
            vec![Box::new(scan as i64)],
        )
        .map(|rows| rows.iter().map(|r| text_of(r, 0)).collect())
        .unwrap_or_default()
    }

    pub(super) fn first_change_seq(&self) -> Option<u64> {
        let rows = self.rows("SELECT min(seq) FROM basalt.changes", Vec::new()).ok()?;
        rows.first()?.get::<_, Option<i64>>(0).map(|s| s as u64)
    }

    pub(super) fn each_change(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        for item in self.changes_from(0) {
            let (seq, v) = item?;
            if !f(seq, &v) {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn recount_change_log_bytes(&self) -> Result<u64, StoreError> {
        let rows = self.rows("SELECT coalesce(sum(bytes), 0)::bigint FROM basalt.changes", Vec::new())?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    pub(super) fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if key == meta::SEQ || key == meta::CHANGE_BYTES {
            let rows = self.run(|s| async move { s.client.query(&s.stmts.head, &[]).await })?;
            let col = usize::from(key == meta::CHANGE_BYTES);
            return Ok(rows
                .first()
                .map(|r| (r.get::<_, i64>(col) as u64).to_be_bytes().to_vec()));
        }
        let key = key.to_owned();
        let row = self.run(move |s| async move { s.client.query_opt(&s.stmts.meta_get, &[&key]).await })?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(super) fn holds_lease(&self, job: super::Lease) -> bool {
        self.sync.holds(job)
    }

    /// Stops following the other nodes and gives up the leases (shutdown).
    pub(super) fn stop_sync(&self) {
        self.sync.stop();
    }

    pub(super) fn shared_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sync.changes()
    }

    pub(super) fn meta_u64(&self, key: &str) -> u64 {
        self.meta_get(key)
            .ok()
            .flatten()
            .and_then(|b| b.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0)
    }

    pub(super) fn meta_init(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.rows(
            "INSERT INTO basalt.meta VALUES ($1, $2) ON CONFLICT DO NOTHING",
            vec![Box::new(key.to_owned()), Box::new(value.to_vec())],
        )?;
        Ok(self.meta_get(key)?.unwrap_or_default())
    }

    pub(super) fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        // Not LIKE: prefixes hold `_` literally.
        let rows = self.rows(
            "SELECT key, value FROM basalt.meta WHERE key >= $1 AND starts_with(key, $1) ORDER BY key",
            vec![Box::new(prefix.to_owned())],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(super) fn size_on_disk(&self) -> u64 {
        self.rows("SELECT pg_database_size(current_database())", Vec::new())
            .ok()
            .and_then(|rows| rows.first().map(|r| r.get::<_, i64>(0) as u64))
            .unwrap_or(0)
    }
}

/// `(raw key, record id)`, an index walk's item.
type IndexEntry = (Vec<u8>, String);

fn parse_record(rev: u64, json: &[u8]) -> Result<StoredRecord, StoreError> {
    let data = serde_json::from_slice(json).map_err(|e| StoreError::Corrupt(format!("record JSON: {e}")))?;
    Ok(StoredRecord { rev, data })
}

/// An id bound without U+0000 (PostgreSQL text cannot hold it) that
/// selects the same ids: no id holds U+0000, so `>= s\0…` is `> s` and
/// `<= s\0…` is `<= s`.
fn id_bound(b: Bound<Vec<u8>>, lower: bool) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(mut v) | Bound::Excluded(mut v) if v.contains(&0) => {
            v.truncate(v.iter().position(|c| *c == 0).unwrap_or(v.len()));
            if lower {
                Bound::Excluded(v)
            } else {
                Bound::Included(v)
            }
        }
        other => other,
    }
}

/// The range query of an index walk: `$1` the tree (or collection id),
/// `$2` the page size, then the bounds that are set, in order.
fn range_sql(primary: bool, reverse: bool, lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> String {
    let (select, table, owner, key) = if primary {
        ("SELECT id", "basalt.records", "collection_id", "id")
    } else {
        ("SELECT key, id", "basalt.index_entries", "tree", "key")
    };
    let mut sql = format!("{select} FROM {table} WHERE {owner} = $1");
    let mut n = 2;
    for (b, incl, excl) in [(lower, ">=", ">"), (upper, "<=", "<")] {
        let op = match b {
            Bound::Included(_) => incl,
            Bound::Excluded(_) => excl,
            Bound::Unbounded => continue,
        };
        n += 1;
        sql.push_str(&format!(" AND {key} {op} ${n}"));
    }
    let order = if reverse { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY {key} {order} LIMIT $2"));
    sql
}

/// The writer's side: one connection, one transaction per group.
pub(super) struct PgBackend {
    rt: Arc<Rt>,
    link: Arc<Link>,
    /// Wakes this node's tail of the change log after each commit (see
    /// `tail.rs`; other nodes' commits wake it by NOTIFY).
    wake: Arc<tokio::sync::Notify>,
    /// The group in progress, from `begin`.
    turn: Option<Turn>,
    /// The session of the transaction in progress (a group's or a
    /// snapshot's): everything in it runs there, never on a session
    /// reopened meanwhile, where it would run outside the transaction.
    pinned: Option<Arc<Session>>,
}

/// What `begin` learnt of the group's transaction.
#[derive(Clone, Copy)]
struct Turn {
    /// `head.specs_version` as the group found it.
    specs_version: u64,
    /// The transaction's id (`txid_current()`, epoch-qualified) and its
    /// backend's pid: how a COMMIT whose answer was lost is looked up.
    xid: i64,
    pid: i32,
}

/// How long the writer tries to find out whether a COMMIT whose answer
/// was lost committed, before it answers 503 saying it does not know.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(10);

/// Commits are durable when COMMIT returns: nothing to sync.
pub(super) struct PgDurable;

impl Durable for PgDurable {
    fn sync(&self) -> Result<(), WriteError> {
        Ok(())
    }
}

/// The group's writes by table (also what `pg_import` loads a snapshot
/// with, a batch at a time).
#[derive(Default)]
pub(super) struct Writes {
    rec_put: (Vec<String>, Vec<String>, Vec<i64>, Vec<String>),
    rec_del: (Vec<String>, Vec<String>),
    idx_put: (Vec<String>, Vec<Vec<u8>>, Vec<String>),
    idx_del: (Vec<String>, Vec<Vec<u8>>),
    meta_put: (Vec<String>, Vec<Vec<u8>>),
    meta_del: Vec<String>,
    change_put: (Vec<i64>, Vec<i64>, Vec<String>),
    change_del: Vec<i64>,
    head: (Option<i64>, Option<i64>),
    specs_version: Option<i64>,
}

/// One row a group writes that no other group can write the same: how a
/// writer whose COMMIT answer was lost tells its own commit from another
/// transaction's. `txid_status` alone cannot: after a failover that lost
/// the commit, the new leader hands the same transaction id to another
/// transaction, whose commit it then reports (the cluster test saw an
/// acknowledged write missing that way). Compared as JSONB in the
/// database, so its normalisation is the same on both sides.
#[derive(Debug, Clone)]
enum Proof {
    /// The group's last change-log entry (its seq and JSON): it names the
    /// record, its data and the time.
    Change(i64, String),
    /// A record the group wrote, at the group's revision.
    Record(String, String, i64, String),
    /// A `meta` value (collections, settings).
    Meta(String, Vec<u8>),
}

impl Proof {
    fn of(w: &Writes) -> Option<Proof> {
        if let (Some(seq), Some(entry)) = (w.change_put.0.last(), w.change_put.2.last()) {
            return Some(Proof::Change(*seq, entry.clone()));
        }
        if let Some(cid) = w.rec_put.0.first() {
            return Some(Proof::Record(
                cid.clone(),
                w.rec_put.1[0].clone(),
                w.rec_put.2[0],
                w.rec_put.3[0].clone(),
            ));
        }
        let (keys, values) = &w.meta_put;
        keys.first().map(|k| Proof::Meta(k.clone(), values[0].clone()))
    }

    /// Whether the row is there as the group wrote it.
    async fn holds(&self, c: &Client) -> Result<bool, tokio_postgres::Error> {
        let row = match self {
            Proof::Change(seq, entry) => {
                c.query_opt("SELECT entry = $2::text::jsonb FROM basalt.changes WHERE seq = $1", &[seq, entry])
                    .await?
            }
            Proof::Record(cid, id, rev, data) => {
                c.query_opt(
                    "SELECT rev = $3 AND data = $4::text::jsonb FROM basalt.records WHERE collection_id = $1 AND id = $2",
                    &[cid, id, rev, data],
                )
                .await?
            }
            Proof::Meta(key, value) => {
                c.query_opt("SELECT value = $2 FROM basalt.meta WHERE key = $1", &[key, value])
                    .await?
            }
        };
        Ok(row.is_some_and(|r| r.get::<_, Option<bool>>(0) == Some(true)))
    }
}

fn utf8(b: Vec<u8>) -> Result<String, WriteError> {
    String::from_utf8(b).map_err(|_| WriteError::Storage("a key or record that is not UTF-8".into()))
}

impl Writes {
    fn from_overlay(overlay: Overlay) -> Result<Writes, WriteError> {
        let mut w = Writes::default();
        for (tree, entries) in overlay {
            for (k, v) in entries {
                w.add(&tree, k, v)?;
            }
        }
        Ok(w)
    }

    pub(super) fn add(&mut self, tree: &str, k: Vec<u8>, v: Option<Vec<u8>>) -> Result<(), WriteError> {
        if let Some(cid) = tree.strip_prefix("rec/") {
            let id = utf8(k)?;
            match v {
                Some(v) if v.len() >= 8 => {
                    let rev = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                    self.rec_put.0.push(cid.to_owned());
                    self.rec_put.1.push(id);
                    self.rec_put.2.push(rev as i64);
                    self.rec_put.3.push(utf8(v[8..].to_vec())?);
                }
                Some(_) => return Err(WriteError::Storage("record shorter than its header".into())),
                None => {
                    self.rec_del.0.push(cid.to_owned());
                    self.rec_del.1.push(id);
                }
            }
        } else if tree.starts_with("idx/") {
            match v {
                Some(id) => {
                    self.idx_put.0.push(tree.to_owned());
                    self.idx_put.1.push(k);
                    self.idx_put.2.push(utf8(id)?);
                }
                None => {
                    self.idx_del.0.push(tree.to_owned());
                    self.idx_del.1.push(k);
                }
            }
        } else if tree == "meta" {
            let key = utf8(k)?;
            let num = |v: &Option<Vec<u8>>| {
                v.as_deref()
                    .and_then(|b| b.try_into().ok().map(u64::from_be_bytes))
                    .map(|n| n as i64)
            };
            if key == meta::SEQ {
                self.head.0 = num(&v);
            } else if key == meta::CHANGE_BYTES {
                self.head.1 = num(&v);
            } else if key == meta::SPECS_VERSION {
                self.specs_version = num(&v);
            } else {
                match v {
                    Some(v) => {
                        self.meta_put.0.push(key);
                        self.meta_put.1.push(v);
                    }
                    None => self.meta_del.push(key),
                }
            }
        } else if tree == "changes" {
            let seq = k
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| WriteError::Storage("change key".into()))? as i64;
            match v {
                Some(v) => {
                    self.change_put.0.push(seq);
                    self.change_put.1.push((k.len() + v.len()) as i64);
                    self.change_put.2.push(utf8(v)?);
                }
                None => self.change_del.push(seq),
            }
        } else {
            return Err(WriteError::Storage(format!("no table for tree {tree}")));
        }
        Ok(())
    }
}

impl PgBackend {
    fn block<T>(&self, fut: impl Future<Output = Result<T, WriteError>>) -> Result<T, WriteError> {
        self.rt.block_on(fut)
    }

    async fn session(&self) -> Result<Arc<Session>, WriteError> {
        self.link.session().await.map_err(store_to_write)
    }

    /// The session of the transaction in progress, or (outside one) the
    /// writer's session.
    async fn group_session(&self) -> Result<Arc<Session>, WriteError> {
        match &self.pinned {
            Some(s) if s.client.is_closed() => Err(WriteError::Unavailable(
                "PostgreSQL: the connection was lost during the transaction".into(),
            )),
            Some(s) => Ok(s.clone()),
            None => self.session().await,
        }
    }

    /// Ends the transaction in progress without writing (best effort: a
    /// lost connection has ended it already).
    fn rollback(&mut self) {
        self.turn = None;
        if let Some(s) = self.pinned.take() {
            if !s.client.is_closed() {
                let _ = self.block(async { s.client.batch_execute("ROLLBACK").await.map_err(write_err) });
            }
        }
    }

    /// The COMMIT of `turn`'s transaction was sent but its answer was lost
    /// (`lost`): finds out from the server whether it committed, on a new
    /// session. `txid_status` knows every recent transaction's fate; one
    /// still in progress (its backend has not noticed the connection is
    /// gone, or waits for a replica) is ended, which settles it, and asked
    /// again. Committed: the group stands and its writes are answered as
    /// such. Otherwise a 503 that says what happened.
    fn resolve_lost_commit(
        &mut self,
        turn: Option<Turn>,
        proof: Option<Proof>,
        lost: &tokio_postgres::Error,
    ) -> Result<(), WriteError> {
        self.link.forget();
        let what = describe(lost);
        let Some(turn) = turn else {
            return Err(WriteError::Unavailable(what));
        };
        tracing::warn!(error = %what, xid = turn.xid, "the answer to a COMMIT was lost; asking PostgreSQL whether it committed");
        let deadline = Instant::now() + RESOLVE_DEADLINE;
        loop {
            let status = self.block(async {
                let s = self.session().await?;
                let row = s
                    .client
                    .query_one("SELECT txid_status($1)", &[&turn.xid])
                    .await
                    .map_err(write_err)?;
                let status: Option<String> = row.get(0);
                if status.as_deref() == Some("in progress") {
                    s.client
                        .execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                             WHERE pid = $1 AND backend_xid::text::bigint = $2",
                            &[&turn.pid, &(turn.xid & 0xffff_ffff)],
                        )
                        .await
                        .map_err(write_err)?;
                }
                // Settled (not in progress): the group's own row tells
                // whether this xid was the group's.
                let held = match (&proof, status.as_deref()) {
                    (Some(p), Some("committed") | None) => Some(p.holds(&s.client).await.map_err(write_err)?),
                    _ => None,
                };
                Ok((status, held))
            });
            match status.as_ref().map(|(s, held)| (s.as_deref(), *held)) {
                Ok((Some("committed"), Some(true) | None)) | Ok((None, Some(true))) => {
                    tracing::info!(xid = turn.xid, "the COMMIT whose answer was lost had committed");
                    return Ok(());
                }
                Ok((Some("committed"), Some(false))) => {
                    tracing::warn!(xid = turn.xid, "the lost COMMIT's transaction id belongs to another transaction now (a failover lost the commit)");
                    return Err(WriteError::Unavailable(format!(
                        "{what}; the connection was lost during COMMIT and nothing was committed (the database failed over)"
                    )));
                }
                Ok((Some("aborted"), _)) | Ok((None, Some(false))) => {
                    return Err(WriteError::Unavailable(format!(
                        "{what}; the connection was lost during COMMIT and nothing was committed"
                    )))
                }
                Ok((None, None)) => {
                    return Err(WriteError::Unavailable(format!(
                        "{what}; the connection was lost during COMMIT and PostgreSQL no longer knows whether it committed"
                    )))
                }
                _ if Instant::now() >= deadline => {
                    return Err(WriteError::Unavailable(format!(
                        "{what}; the connection was lost during COMMIT and whether it committed could not be found out within {} s",
                        RESOLVE_DEADLINE.as_secs()
                    )))
                }
                // Still in progress, or the database is not back yet.
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends a group's writes in its transaction (the caller commits).
    async fn write(s: &Session, w: Writes) -> Result<(), tokio_postgres::Error> {
        write_rows(&s.client, &w).await
    }
}

/// Sends `w`'s statements (in the caller's transaction), pipelined on the
/// one connection (each key is in one of them only: the overlay, or a
/// snapshot, holds a key's final state).
pub(super) async fn write_rows(c: &Client, w: &Writes) -> Result<(), tokio_postgres::Error> {
    type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;
    let mut stmts: Vec<(&str, Params)> = Vec::new();
    if !w.rec_put.0.is_empty() {
        let (a, b, r, d) = &w.rec_put;
        stmts.push((
                "INSERT INTO basalt.records SELECT c, i, r, d::jsonb FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[]) AS t(c, i, r, d) \
                 ON CONFLICT (collection_id, id) DO UPDATE SET rev = excluded.rev, data = excluded.data",
                vec![a, b, r, d],
            ));
    }
    if !w.rec_del.0.is_empty() {
        let (a, b) = &w.rec_del;
        stmts.push((
                "DELETE FROM basalt.records r USING unnest($1::text[], $2::text[]) AS t(c, i) WHERE r.collection_id = t.c AND r.id = t.i",
                vec![a, b],
            ));
    }
    if !w.idx_put.0.is_empty() {
        let (a, b, i) = &w.idx_put;
        stmts.push((
            "INSERT INTO basalt.index_entries SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[]) \
                 ON CONFLICT (tree, key) DO UPDATE SET id = excluded.id",
            vec![a, b, i],
        ));
    }
    if !w.idx_del.0.is_empty() {
        let (a, b) = &w.idx_del;
        stmts.push((
                "DELETE FROM basalt.index_entries e USING unnest($1::text[], $2::bytea[]) AS t(tr, k) WHERE e.tree = t.tr AND e.key = t.k",
                vec![a, b],
            ));
    }
    if !w.meta_put.0.is_empty() {
        let (a, b) = &w.meta_put;
        stmts.push((
                "INSERT INTO basalt.meta SELECT * FROM unnest($1::text[], $2::bytea[]) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                vec![a, b],
            ));
    }
    if !w.meta_del.is_empty() {
        stmts.push(("DELETE FROM basalt.meta WHERE key = ANY($1)", vec![&w.meta_del]));
    }
    if !w.change_del.is_empty() {
        stmts.push(("DELETE FROM basalt.changes WHERE seq = ANY($1)", vec![&w.change_del]));
    }
    if !w.change_put.0.is_empty() {
        let (a, b, d) = &w.change_put;
        stmts.push((
                "INSERT INTO basalt.changes SELECT s, b, d::jsonb FROM unnest($1::int8[], $2::int8[], $3::text[]) AS t(s, b, d)",
                vec![a, b, d],
            ));
        // Delivered at COMMIT to every node's tail: a wake-up only, the
        // table is the truth (see `tail.rs`).
        stmts.push((tail::NOTIFY, Vec::new()));
    }
    if w.head.0.is_some() || w.head.1.is_some() || w.specs_version.is_some() {
        stmts.push((
            "UPDATE basalt.head SET seq = coalesce($1, seq), change_bytes = coalesce($2, change_bytes), \
             specs_version = coalesce($3, specs_version)",
            vec![&w.head.0, &w.head.1, &w.specs_version],
        ));
    }
    futures_util::future::try_join_all(stmts.iter().map(|(sql, p)| c.execute(*sql, p))).await?;
    Ok(())
}

impl Backend for PgBackend {
    type Durable = PgDurable;
    const ACCEPTS_NUL: bool = false;
    const TAILED: bool = true;

    fn durable(&self) -> PgDurable {
        PgDurable
    }

    /// Takes the cluster's write turn: a transaction holding the head row
    /// (also reading the specs version, the transaction's id and its
    /// backend's pid: see [`Turn`]).
    fn begin(&mut self) -> Result<Option<(u64, u64)>, WriteError> {
        self.turn = None;
        let begun = self.block(async {
            let s = self.session().await?;
            let msgs = s
                .client
                .simple_query(
                    "BEGIN; SELECT seq, change_bytes, specs_version, txid_current(), pg_backend_pid() \
                     FROM basalt.head FOR UPDATE",
                )
                .await
                .map_err(write_err)?;
            for m in msgs {
                if let SimpleQueryMessage::Row(row) = m {
                    let num = |i: usize| row.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                    let turn = Turn {
                        specs_version: num(2) as u64,
                        xid: num(3),
                        pid: num(4) as i32,
                    };
                    return Ok((s, num(0) as u64, num(1) as u64, turn));
                }
            }
            Err(WriteError::Storage("basalt.head has no row".into()))
        });
        match begun {
            Ok((s, seq, bytes, turn)) => {
                self.pinned = Some(s);
                self.turn = Some(turn);
                Ok(Some((seq, bytes)))
            }
            Err(e) => {
                // Ends a transaction the BEGIN may have opened.
                let _ = self.block(async {
                    let s = self.session().await?;
                    s.client.batch_execute("ROLLBACK").await.map_err(write_err)
                });
                Err(e)
            }
        }
    }

    fn specs_version(&self) -> Option<u64> {
        self.turn.map(|t| t.specs_version)
    }

    fn meta_scan(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, WriteError> {
        self.block(async {
            let s = self.group_session().await?;
            let rows = s
                .client
                .query(
                    "SELECT key, value FROM basalt.meta WHERE key >= $1 AND starts_with(key, $1) ORDER BY key",
                    &[&prefix],
                )
                .await
                .map_err(write_err)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn read(&mut self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, WriteError> {
        self.block(async {
            let s = self.group_session().await?;
            let c = &s.client;
            if let Some(cid) = tree.strip_prefix("rec/") {
                let id = String::from_utf8_lossy(key).into_owned();
                let row = c.query_opt(&s.stmts.get, &[&cid, &id]).await.map_err(write_err)?;
                Ok(row.map(|r| record_value(rev_of(&r), &text_of(&r, 1))))
            } else if tree.starts_with("idx/") {
                let row = c
                    .query_opt(&s.stmts.index_get, &[&tree, &key])
                    .await
                    .map_err(write_err)?;
                Ok(row.map(|r| r.get::<_, String>(0).into_bytes()))
            } else if tree == "meta" {
                let key = String::from_utf8_lossy(key).into_owned();
                let row = c.query_opt(&s.stmts.meta_get, &[&key]).await.map_err(write_err)?;
                Ok(row.map(|r| r.get(0)))
            } else {
                Err(WriteError::Storage(format!("no table for tree {tree}")))
            }
        })
    }

    fn oldest_changes(&mut self, f: &mut dyn FnMut(&[u8], u64) -> bool) -> Result<(), WriteError> {
        let mut after = -1i64;
        loop {
            let rows = self.block(async {
                let s = self.group_session().await?;
                s.client
                    .query(
                        "SELECT seq, bytes FROM basalt.changes WHERE seq > $1 ORDER BY seq LIMIT 1024",
                        &[&after],
                    )
                    .await
                    .map_err(write_err)
            })?;
            for r in &rows {
                let seq: i64 = r.get(0);
                after = seq;
                if !f(&(seq as u64).to_be_bytes(), r.get::<_, i64>(1) as u64) {
                    return Ok(());
                }
            }
            if rows.len() < 1024 {
                return Ok(());
            }
        }
    }

    fn apply(&mut self, overlay: Overlay) -> Result<(), WriteError> {
        let turn = self.turn;
        let writes = match Writes::from_overlay(overlay) {
            Ok(w) => w,
            Err(e) => {
                self.rollback();
                return Err(e);
            }
        };
        let proof = Proof::of(&writes);
        let sent = self.block(async {
            let s = self.group_session().await?;
            PgBackend::write(&s, writes).await.map_err(write_err)?;
            // Only now can the group commit: until the COMMIT is sent,
            // any failure leaves nothing committed.
            Ok(s.client.batch_execute("COMMIT").await)
        });
        let result = match sent {
            Err(e) => {
                self.rollback();
                Err(e)
            }
            Ok(Ok(())) => {
                self.turn = None;
                self.pinned = None;
                Ok(())
            }
            // The connection went while the COMMIT was on its way or being
            // answered: it may have committed.
            Ok(Err(e)) if is_unavailable(&e) => {
                self.turn = None;
                self.pinned = None;
                self.resolve_lost_commit(turn, proof, &e)
            }
            Ok(Err(e)) => {
                self.rollback();
                Err(write_err(e))
            }
        };
        // Also after a failure: a COMMIT whose answer was lost may have
        // committed (the tail reads the table, so a spare wake costs a query).
        self.wake.notify_one();
        result
    }

    fn drop_unreferenced(&mut self, live: &HashSet<String>, only: Option<&HashSet<String>>) {
        // Records and entries of collections that no longer exist (their
        // definition row is gone: committed before, so no race with a
        // collection another node creates), and, for the collections just
        // changed, index trees their definition no longer names.
        let live: Vec<String> = live.iter().filter(|t| t.starts_with("idx/")).cloned().collect();
        let only: Option<Vec<String>> = only.map(|o| o.iter().cloned().collect());
        let result = self.block(async {
            let s = self.session().await?;
            let c = &s.client;
            // Of the collections just changed, or (at start) of all.
            c.execute(
                "DELETE FROM basalt.records r WHERE ($1::text[] IS NULL OR r.collection_id = ANY($1)) \
                 AND NOT EXISTS (SELECT 1 FROM basalt.meta m WHERE m.key = 'coll/' || r.collection_id)",
                &[&only],
            )
            .await
            .map_err(write_err)?;
            if let Some(only) = &only {
                c.execute(
                    "DELETE FROM basalt.index_entries WHERE split_part(tree, '/', 2) = ANY($1) AND NOT (tree = ANY($2))",
                    &[only, &live],
                )
                .await
                .map_err(write_err)?;
            } else {
                c.execute(
                    "DELETE FROM basalt.index_entries e WHERE NOT EXISTS (SELECT 1 FROM basalt.meta m WHERE m.key = 'coll/' || split_part(e.tree, '/', 2))",
                    &[],
                )
                .await
                .map_err(write_err)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "dropping unused records and index entries failed; retried at next start");
        }
    }

    fn snapshot(&mut self, job: backup::SnapshotJob) {
        let begun = self.block(async {
            let s = self.session().await?;
            s.client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(write_err)?;
            Ok(s)
        });
        match begun {
            Ok(s) => self.pinned = Some(s),
            Err(e) => tracing::warn!(error = %e, "cannot start a snapshot"),
        }
        job(&mut PgSource { backend: self });
        self.rollback();
    }

    fn close(&mut self) {}
}

/// The committed state in the embedded layout's trees, read inside the
/// snapshot's repeatable-read transaction (one consistent view, whatever
/// other nodes commit meanwhile).
struct PgSource<'a> {
    backend: &'a PgBackend,
}

fn io_err(e: WriteError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl PgSource<'_> {
    fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> std::io::Result<Vec<Row>> {
        self.backend
            .block(async {
                let s = self.backend.group_session().await?;
                s.client.query(sql, params).await.map_err(write_err)
            })
            .map_err(io_err)
    }
}

impl backup::Source for PgSource<'_> {
    fn tree_names(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut names = vec![b"meta".to_vec(), b"changes".to_vec()];
        for r in self.query(
            "SELECT DISTINCT 'rec/' || collection_id FROM basalt.records UNION SELECT DISTINCT tree FROM basalt.index_entries",
            &[],
        )? {
            names.push(r.get::<_, String>(0).into_bytes());
        }
        Ok(names)
    }

    fn entries(&mut self, tree: &[u8], f: &mut backup::Sink) -> std::io::Result<()> {
        let tree = String::from_utf8_lossy(tree).into_owned();
        if tree == "meta" {
            let head = self.query("SELECT seq, change_bytes FROM basalt.head", &[])?;
            if let Some(h) = head.first() {
                f(meta::SEQ.as_bytes(), &(h.get::<_, i64>(0) as u64).to_be_bytes())?;
                f(
                    meta::CHANGE_BYTES.as_bytes(),
                    &(h.get::<_, i64>(1) as u64).to_be_bytes(),
                )?;
            }
            for r in self.query("SELECT key, value FROM basalt.meta ORDER BY key", &[])? {
                f(r.get::<_, String>(0).as_bytes(), &r.get::<_, Vec<u8>>(1))?;
            }
        } else if tree == "changes" {
            let mut after = -1i64;
            loop {
                let rows = self.query(
                    "SELECT seq, entry::text FROM basalt.changes WHERE seq > $1 ORDER BY seq LIMIT 1024",
                    &[&after],
                )?;
                for r in &rows {
                    after = r.get(0);
                    f(&(after as u64).to_be_bytes(), &text_of(r, 1))?;
                }
                if rows.len() < 1024 {
                    break;
                }
            }
        } else if let Some(cid) = tree.strip_prefix("rec/") {
            let mut after = String::new();
            loop {
                let rows = self.query(
                    "SELECT id, rev, data::text FROM basalt.records WHERE collection_id = $1 AND id > $2 ORDER BY id LIMIT 1024",
                    &[&cid, &after],
                )?;
                for r in &rows {
                    after = r.get(0);
                    let value = record_value(r.get::<_, i64>(1) as u64, &text_of(r, 2));
                    f(after.as_bytes(), &value)?;
                }
                if rows.len() < 1024 {
                    break;
                }
            }
        } else {
            let mut after: Vec<u8> = Vec::new();
            loop {
                let rows = self.query(
                    "SELECT key, id FROM basalt.index_entries WHERE tree = $1 AND key > $2 ORDER BY key LIMIT 1024",
                    &[&tree, &after],
                )?;
                for r in &rows {
                    after = r.get(0);
                    f(&after, r.get::<_, String>(1).as_bytes())?;
                }
                if rows.len() < 1024 {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonb_text_is_made_compact_outside_strings_only() {
        let jsonb = r#"{"a": 1, "b": [1, 2, {"c": "x, y: \"z\", w"}], "d": "\\", "e": null}"#;
        let out = String::from_utf8(compact(jsonb)).unwrap();
        assert_eq!(out, r#"{"a":1,"b":[1,2,{"c":"x, y: \"z\", w"}],"d":"\\","e":null}"#);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::from_str::<serde_json::Value>(jsonb).unwrap());
    }

    #[test]
    fn id_bounds_with_u0000_select_the_same_ids() {
        let b = |s: &[u8]| s.to_vec();
        assert_eq!(id_bound(Bound::Included(b(b"ab\0c")), true), Bound::Excluded(b(b"ab")));
        assert_eq!(id_bound(Bound::Excluded(b(b"ab\0")), false), Bound::Included(b(b"ab")));
        assert_eq!(id_bound(Bound::Included(b(b"ab")), true), Bound::Included(b(b"ab")));
        assert_eq!(id_bound(Bound::Unbounded, false), Bound::Unbounded);
    }
}
