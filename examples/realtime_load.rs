//! Realtime load generator: N subscribers on one server, a paced writer, and
//! the end-to-end delivery latency of every event.
//!
//! ```sh
//! cargo build --release --example realtime_load
//! realtime_load --url http://127.0.0.1:8090 --protocol ws --subscribers 1000 \
//!     --rate 200 --seconds 10 --collection posts
//! ```
//!
//! - `--protocol ws`: Basalt's WebSocket feed (`GET /api/realtime/ws`,
//!   `{"type":"subscribe","id":"s","topic":"posts/*"}`).
//! - `--protocol sse`: PocketBase's realtime protocol (`GET /api/realtime`,
//!   read `PB_CONNECT`'s `clientId`, `POST /api/realtime {clientId,
//!   subscriptions:["posts/*"]}`), so the same run works against Basalt and
//!   against PocketBase.
//!
//! Subscribers connect in batches (`--batch` connections in flight per
//! thread) so the server's accept queue is never flooded; once all are
//! subscribed, a writer thread creates `{"title":"x","sent_us":<µs since the
//! epoch>}` at `--rate` per second for `--seconds` (open loop: a slow
//! server does not lower the offered rate), over at most `--writers`
//! keep-alive connections. Every subscriber takes `receive time - sent_us`
//! (one machine, one clock) for each event. After the last write the run
//! reads the collection's record count until it settles (a create that
//! timed out on the client may still have been committed and published, so
//! `events expected` = committed writes × subscribers), and waits until
//! every expected event has arrived, or nothing arrived for
//! `--drain-idle` seconds, or `--drain-max` seconds passed; then it prints
//! one JSON line on stdout and a human summary on stderr.
//!
//! The client runs on the same machine as the server and takes CPU from it:
//! per-event work is kept to a substring search for `"sent_us":` (and
//! `"seq":` on WebSocket) plus a histogram increment — no JSON parsing of
//! events — and subscribers share `--threads` (default 1) single-threaded
//! runtimes, so the client never uses more than that many cores for reading.
//! Its CPU time is in the report (`client_cpu_s`) so a reader can tell when
//! the client, not the server, was the bottleneck.
//!
//! Falling behind: on WebSocket, a `resync` frame is counted and the
//! subscriber resumes with `since` = the last seq it saw (live, if that is
//! refused too), as a resuming client would; each event's `seq` is checked
//! for gaps and duplicates. On SSE a server may close a slow stream; the
//! subscriber counts a disconnect and does not reconnect (the SDKs would),
//! so what it missed shows as missing events.
//!
//! Nothing read from the network is unwrapped: failures are counted (connect
//! failures, disconnects, server error frames, unparsable events, write
//! errors) and the first few messages are kept for the report.

// The report is one large `json!` literal.
#![recursion_limit = "256"]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::rt;
use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;

/// Bound on one subscriber's connect + subscribe handshake.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Error messages kept per kind (the rest are only counted).
const KEEP_ERRORS: usize = 5;

const USAGE: &str = "usage: realtime_load --url http://127.0.0.1:PORT --protocol ws|sse --subscribers N \
--rate WRITES_PER_S --seconds S [--collection posts] [--token SUPERUSER_TOKEN] [--threads 1] \
[--writers 16] [--write-url http://OTHER-NODE] [--batch 100] [--ramp-timeout 300] [--drain-idle 5] [--drain-max 60] [--label TEXT]";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Protocol {
    Ws,
    Sse,
}

#[derive(Clone, Debug)]
struct Cfg {
    url: String,
    /// Where the writer creates records (default: `url`). Another node on
    /// the same database measures realtime across nodes.
    write_url: Option<String>,
    protocol: Protocol,
    subscribers: usize,
    rate: f64,
    seconds: f64,
    collection: String,
    /// Sent as `Authorization` on writes only: subscribers stay guests, as a
    /// public feed's readers would be.
    token: Option<String>,
    threads: usize,
    writers: usize,
    batch: usize,
    ramp_timeout: Duration,
    drain_idle: Duration,
    drain_max: Duration,
    label: String,
}

fn parse_args() -> Result<Cfg, String> {
    let mut cfg = Cfg {
        url: String::new(),
        write_url: None,
        protocol: Protocol::Ws,
        subscribers: 0,
        rate: 0.0,
        seconds: 0.0,
        collection: "posts".into(),
        token: None,
        threads: 1,
        writers: 16,
        batch: 100,
        ramp_timeout: Duration::from_secs(300),
        drain_idle: Duration::from_secs(5),
        drain_max: Duration::from_secs(60),
        label: String::new(),
    };
    let mut args = std::env::args().skip(1);
    fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
        v.parse().map_err(|_| format!("{name}: not a number: {v:?}"))
    }
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            return Err(String::new());
        }
        let v = args.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--url" => cfg.url = v.trim_end_matches('/').to_owned(),
            "--write-url" => cfg.write_url = Some(v.trim_end_matches('/').to_owned()),
            "--protocol" => {
                cfg.protocol = match v.as_str() {
                    "ws" => Protocol::Ws,
                    "sse" => Protocol::Sse,
                    _ => return Err(format!("--protocol must be ws or sse, not {v:?}")),
                }
            }
            "--subscribers" => cfg.subscribers = num(&a, &v)?,
            "--rate" => cfg.rate = num(&a, &v)?,
            "--seconds" => cfg.seconds = num(&a, &v)?,
            "--collection" => cfg.collection = v,
            "--token" => cfg.token = Some(v).filter(|t| !t.is_empty()),
            "--threads" => cfg.threads = num(&a, &v)?,
            "--writers" => cfg.writers = num(&a, &v)?,
            "--batch" => cfg.batch = num(&a, &v)?,
            "--ramp-timeout" => cfg.ramp_timeout = Duration::from_secs_f64(num(&a, &v)?),
            "--drain-idle" => cfg.drain_idle = Duration::from_secs_f64(num(&a, &v)?),
            "--drain-max" => cfg.drain_max = Duration::from_secs_f64(num(&a, &v)?),
            "--label" => cfg.label = v,
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    if !cfg.url.starts_with("http://") {
        return Err("--url http://HOST:PORT is required (plain HTTP)".into());
    }
    if cfg.subscribers == 0 || cfg.rate <= 0.0 || cfg.seconds <= 0.0 {
        return Err("--subscribers, --rate and --seconds must be > 0".into());
    }
    cfg.threads = cfg.threads.clamp(1, cfg.subscribers);
    cfg.writers = cfg.writers.max(1);
    cfg.batch = cfg.batch.max(1);
    Ok(cfg)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// User + system CPU time of this process (all threads), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// --- histogram ----------------------------------------------------------------

/// Log-linear histogram of microseconds: exact below 128 µs, then 64 buckets
/// per power of two (at most 1.6 % error), up to 2^40 µs. A fixed array, so
/// recording is an index computation and an increment, and merging the
/// per-thread histograms is an element-wise sum.
#[derive(Clone)]
struct Hist {
    buckets: Vec<u64>,
    count: u64,
    sum: u128,
    max: u64,
}

const HIST_MAX_BITS: u32 = 40;
const HIST_LEN: usize = ((HIST_MAX_BITS as usize - 6) + 1) * 64 + 64;

impl Hist {
    fn new() -> Hist {
        Hist {
            buckets: vec![0; HIST_LEN],
            count: 0,
            sum: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 128 {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - 6; // v >> shift is in [64, 128)
        ((shift as usize) << 6) + (v >> shift) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        if i < 128 {
            return i as u64;
        }
        let shift = (i >> 6) - 1;
        let mant = (i & 63) as u64 + 64;
        (mant << shift) + ((1u64 << shift) >> 1)
    }

    fn record(&mut self, v: u64) {
        let v = v.min((1u64 << HIST_MAX_BITS) - 1);
        self.buckets[Self::index(v)] += 1;
        self.count += 1;
        self.sum += v as u128;
        self.max = self.max.max(v);
    }

    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
    }

    /// The `q` quantile (0..=1) in µs; None when empty.
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::value(i).min(self.max));
            }
        }
        Some(self.max)
    }

    fn ms(&self, q: f64) -> Value {
        self.quantile(q)
            .map_or(Value::Null, |us| json!(round3(us as f64 / 1000.0)))
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// --- shared state ----------------------------------------------------------------

/// Counters shared by every thread. Per-event work touches only `received`
/// and `last_event_us` (relaxed atomics, uncontended with the default single
/// reader thread); the rest is per thread.
#[derive(Default)]
struct Global {
    subscribed: AtomicU64,
    setup_failed: AtomicU64,
    received: AtomicU64,
    last_event_us: AtomicU64,
    /// Set when the writes start: a subscriber that is only ready now is
    /// "late" and closes, so that `events expected` stays exact.
    measuring: AtomicBool,
    /// No new connection batches after this (ramp finished or timed out).
    ramp_closed: AtomicBool,
    late: AtomicU64,
}

/// Per-thread statistics, merged at the end.
struct Stats {
    hist: Hist,
    events: u64,
    negative: u64,
    parse_errors: u64,
    resyncs: u64,
    server_errors: u64,
    seq_gaps: u64,
    seq_dups: u64,
    disconnects: u64,
    /// Events received by each connection that was subscribed when the
    /// writes started.
    per_conn: Vec<u64>,
    setup_errors: Vec<String>,
    disconnect_errors: Vec<String>,
    other_errors: Vec<String>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            hist: Hist::new(),
            events: 0,
            negative: 0,
            parse_errors: 0,
            resyncs: 0,
            server_errors: 0,
            seq_gaps: 0,
            seq_dups: 0,
            disconnects: 0,
            per_conn: Vec::new(),
            setup_errors: Vec::new(),
            disconnect_errors: Vec::new(),
            other_errors: Vec::new(),
        }
    }

    fn merge(&mut self, o: Stats) {
        self.hist.merge(&o.hist);
        self.events += o.events;
        self.negative += o.negative;
        self.parse_errors += o.parse_errors;
        self.resyncs += o.resyncs;
        self.server_errors += o.server_errors;
        self.seq_gaps += o.seq_gaps;
        self.seq_dups += o.seq_dups;
        self.disconnects += o.disconnects;
        self.per_conn.extend(o.per_conn);
        for (mine, theirs) in [
            (&mut self.setup_errors, o.setup_errors),
            (&mut self.disconnect_errors, o.disconnect_errors),
            (&mut self.other_errors, o.other_errors),
        ] {
            for e in theirs {
                keep(mine, e);
            }
        }
    }
}

fn keep(list: &mut Vec<String>, e: String) {
    if list.len() < KEEP_ERRORS && !list.contains(&e) {
        list.push(e);
    }
}

/// What one connection task needs.
#[derive(Clone)]
struct Ctx {
    cfg: Arc<Cfg>,
    client: awc::Client,
    global: Arc<Global>,
    stats: Rc<RefCell<Stats>>,
    stop: watch::Receiver<bool>,
    /// Signalled once per task when its handshake finished (either way), so
    /// the thread can pace the ramp in batches.
    ready: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Ctx {
    fn setup_failed(&self, e: String) {
        self.global.setup_failed.fetch_add(1, Ordering::Relaxed);
        keep(&mut self.stats.borrow_mut().setup_errors, e);
        let _ = self.ready.send(());
    }

    /// Marks this subscriber ready; false if it came too late to count.
    fn subscribed(&self) -> bool {
        let ok = if self.global.measuring.load(Ordering::SeqCst) {
            self.global.late.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            self.global.subscribed.fetch_add(1, Ordering::SeqCst);
            true
        };
        let _ = self.ready.send(());
        ok
    }

    fn disconnected(&self, why: String) {
        let mut s = self.stats.borrow_mut();
        s.disconnects += 1;
        keep(&mut s.disconnect_errors, why);
    }

    /// Records one event; `after` is the payload right after `"sent_us":`.
    fn event(&self, after: &[u8]) -> bool {
        let now = now_us();
        let Some(sent) = parse_uint(after) else {
            self.stats.borrow_mut().parse_errors += 1;
            return false;
        };
        let mut s = self.stats.borrow_mut();
        s.events += 1;
        if now < sent {
            s.negative += 1;
        }
        s.hist.record(now.saturating_sub(sent));
        drop(s);
        self.global.received.fetch_add(1, Ordering::Relaxed);
        self.global.last_event_us.fetch_max(now, Ordering::Relaxed);
        true
    }
}

const SENT_US: &[u8] = b"\"sent_us\":";

/// Byte substring search (events are a few hundred bytes; the first-byte
/// check makes it cheap).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// The unsigned integer at the start of `s` (after spaces). A JSON number
/// written as a float (`1.7e15`, `123.0`) is accepted through f64, since a
/// server storing numbers as doubles may print them that way.
fn parse_uint(s: &[u8]) -> Option<u64> {
    let s = match s.iter().position(|b| *b != b' ') {
        Some(p) => &s[p..],
        None => return None,
    };
    let end = s
        .iter()
        .position(|b| !(b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')))
        .unwrap_or(s.len());
    let text = std::str::from_utf8(&s[..end]).ok()?;
    if let Ok(v) = text.parse::<u64>() {
        return Some(v);
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .map(|f| f as u64)
}

fn subscriber_client() -> awc::Client {
    awc::Client::builder()
        // No cap on open connections: every SSE stream holds one, and the
        // subscription POSTs need more beside them.
        .connector(awc::Connector::new().limit(0).timeout(SETUP_TIMEOUT))
        .timeout(SETUP_TIMEOUT)
        .finish()
}

// --- WebSocket subscribers ---------------------------------------------------------

type WsConn = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// The next text frame, answering pings on the way.
async fn ws_next_text(conn: &mut WsConn) -> Result<actix_web::web::Bytes, String> {
    loop {
        match conn.next().await {
            None => return Err("closed during the handshake".into()),
            Some(Err(e)) => return Err(format!("protocol error during the handshake: {e}")),
            Some(Ok(Frame::Text(b))) => return Ok(b),
            Some(Ok(Frame::Ping(p))) => conn
                .send(Message::Pong(p))
                .await
                .map_err(|e| format!("pong failed: {e}"))?,
            Some(Ok(Frame::Close(r))) => return Err(format!("closed during the handshake: {r:?}")),
            Some(Ok(_)) => {}
        }
    }
}

fn subscribe_frame(cfg: &Cfg, since: Option<u64>) -> String {
    let mut f = json!({"type": "subscribe", "id": "s", "topic": format!("{}/*", cfg.collection)});
    if let Some(s) = since {
        f["since"] = json!(s);
    }
    f.to_string()
}

/// Connects, reads `welcome`, subscribes; returns the connection and the
/// subscription's starting seq.
async fn ws_setup(ctx: &Ctx) -> Result<(WsConn, u64), String> {
    let (_, mut conn) = ctx
        .client
        .ws(format!("{}/api/realtime/ws", ctx.cfg.url))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let welcome = ws_next_text(&mut conn).await?;
    if find(&welcome, b"\"type\":\"welcome\"").is_none() {
        return Err(format!("expected welcome, got {}", String::from_utf8_lossy(&welcome)));
    }
    conn.send(Message::Text(subscribe_frame(&ctx.cfg, None).into()))
        .await
        .map_err(|e| format!("send subscribe: {e}"))?;
    loop {
        let text = ws_next_text(&mut conn).await?;
        let v: Value = serde_json::from_slice(&text).map_err(|e| format!("bad frame ({e})"))?;
        match v["type"].as_str() {
            Some("subscribed") => return Ok((conn, v["seq"].as_u64().unwrap_or(0))),
            Some("error") => return Err(format!("subscribe refused: {v}")),
            _ => {}
        }
    }
}

/// One WebSocket subscriber. Per event: the `seq` (to detect gaps and
/// duplicates: Basalt numbers every change, and only this run's writes
/// happen during it) and `sent_us`.
async fn ws_subscriber(ctx: Ctx) {
    let (mut conn, mut last_seq) = match rt::time::timeout(SETUP_TIMEOUT, ws_setup(&ctx)).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return ctx.setup_failed(e),
        Err(_) => return ctx.setup_failed(format!("no subscription after {SETUP_TIMEOUT:?}")),
    };
    if !ctx.subscribed() {
        return;
    }
    let mut stop = ctx.stop.clone();
    let mut count = 0u64;
    // A resume (`since`) was sent and no event has arrived since.
    let mut resumed_without_event = false;
    loop {
        let frame = tokio::select! {
            biased;
            _ = stop.changed() => break,
            f = conn.next() => f,
        };
        match frame {
            Some(Ok(Frame::Text(b))) => {
                if b.starts_with(b"{\"type\":\"event\"") {
                    resumed_without_event = false;
                    if let Some(seq) = find(&b, b"\"seq\":").and_then(|i| parse_uint(&b[i + 6..])) {
                        let mut s = ctx.stats.borrow_mut();
                        if seq <= last_seq {
                            s.seq_dups += 1;
                        } else {
                            s.seq_gaps += seq - last_seq - 1;
                            last_seq = seq;
                        }
                    }
                    match find(&b, SENT_US) {
                        Some(i) if ctx.event(&b[i + SENT_US.len()..]) => count += 1,
                        Some(_) => {}
                        None => ctx.stats.borrow_mut().parse_errors += 1,
                    }
                    continue;
                }
                // Control frames are rare: parse them properly.
                let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                match v["type"].as_str() {
                    Some("resync") => {
                        // The server dropped the subscription (this client fell
                        // behind). Resume from the last seq seen, as a client
                        // using the feed's resume would; replayed events count
                        // with their (late) latency. If that resume itself is
                        // refused with a resync (`since` older than the
                        // retained log), subscribe live: the lost events then
                        // show as missing and as seq gaps.
                        ctx.stats.borrow_mut().resyncs += 1;
                        let since = (!resumed_without_event).then_some(last_seq);
                        resumed_without_event = since.is_some();
                        let f = subscribe_frame(&ctx.cfg, since);
                        if let Err(e) = conn.send(Message::Text(f.into())).await {
                            ctx.disconnected(format!("resubscribe failed: {e}"));
                            break;
                        }
                    }
                    Some("subscribed") | Some("pong") => {}
                    Some("error") => {
                        let mut s = ctx.stats.borrow_mut();
                        s.server_errors += 1;
                        keep(&mut s.other_errors, format!("error frame: {v}"));
                    }
                    _ => {
                        let mut s = ctx.stats.borrow_mut();
                        s.parse_errors += 1;
                        keep(
                            &mut s.other_errors,
                            format!("unexpected frame: {}", String::from_utf8_lossy(&b[..b.len().min(200)])),
                        );
                    }
                }
            }
            Some(Ok(Frame::Ping(p))) => {
                if let Err(e) = conn.send(Message::Pong(p)).await {
                    ctx.disconnected(format!("pong failed: {e}"));
                    break;
                }
            }
            Some(Ok(Frame::Close(r))) => {
                ctx.disconnected(format!("close frame from the server: {r:?}"));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                ctx.disconnected(format!("protocol error: {e}"));
                break;
            }
            None => {
                ctx.disconnected("connection closed by the server".into());
                break;
            }
        }
    }
    ctx.stats.borrow_mut().per_conn.push(count);
}

// --- SSE subscribers (PocketBase's protocol) -------------------------------------------

/// Calls `f` on each complete SSE message (up to the blank line) in `buf` and
/// removes them, keeping a trailing partial message for the next chunk.
fn sse_messages(buf: &mut Vec<u8>, mut f: impl FnMut(&[u8])) {
    let mut pos = 0;
    while let Some(i) = find(&buf[pos..], b"\n\n") {
        f(&buf[pos..pos + i]);
        pos += i + 2;
    }
    if pos > 0 {
        buf.drain(..pos);
    }
}

/// One SSE subscriber: open the stream, read `PB_CONNECT`, POST the
/// subscription, then count events.
async fn sse_subscriber(ctx: Ctx) {
    let setup = rt::time::timeout(SETUP_TIMEOUT, async {
        let mut res = ctx
            .client
            .get(format!("{}/api/realtime", ctx.cfg.url))
            .insert_header(("Accept", "text/event-stream"))
            .send()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("GET /api/realtime: HTTP {}", res.status()));
        }
        let mut buf = Vec::with_capacity(4096);
        let mut client_id = None;
        while client_id.is_none() {
            match res.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(format!("reading PB_CONNECT: {e}")),
                None => return Err("stream closed before PB_CONNECT".into()),
            }
            sse_messages(&mut buf, |msg| {
                if client_id.is_none() && find(msg, b"PB_CONNECT").is_some() {
                    if let Some(i) = find(msg, b"\"clientId\":\"") {
                        let rest = &msg[i + 12..];
                        let end = rest.iter().position(|b| *b == b'"').unwrap_or(rest.len());
                        client_id = Some(String::from_utf8_lossy(&rest[..end]).into_owned());
                    }
                }
            });
        }
        let client_id = client_id.unwrap_or_default();
        let body = json!({"clientId": client_id, "subscriptions": [format!("{}/*", ctx.cfg.collection)]});
        let mut sub = ctx
            .client
            .post(format!("{}/api/realtime", ctx.cfg.url))
            .send_json(&body)
            .await
            .map_err(|e| format!("POST /api/realtime: {e}"))?;
        if !sub.status().is_success() {
            let text = sub.body().await.unwrap_or_default();
            return Err(format!(
                "POST /api/realtime: HTTP {}: {}",
                sub.status(),
                String::from_utf8_lossy(&text[..text.len().min(300)])
            ));
        }
        // Drain the (empty) body so the keep-alive connection is reused.
        let _ = sub.body().await;
        Ok((res, buf))
    })
    .await;
    let (mut res, mut buf) = match setup {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return ctx.setup_failed(e),
        Err(_) => return ctx.setup_failed(format!("no subscription after {SETUP_TIMEOUT:?}")),
    };
    if !ctx.subscribed() {
        return;
    }
    let mut stop = ctx.stop.clone();
    let mut count = 0u64;
    loop {
        let chunk = tokio::select! {
            biased;
            _ = stop.changed() => break,
            c = res.next() => c,
        };
        match chunk {
            Some(Ok(chunk)) => {
                buf.extend_from_slice(&chunk);
                sse_messages(&mut buf, |msg| {
                    if let Some(i) = find(msg, SENT_US) {
                        if ctx.event(&msg[i + SENT_US.len()..]) {
                            count += 1;
                        }
                    } else if !msg.starts_with(b":") && find(msg, b"PB_CONNECT").is_none() {
                        let mut s = ctx.stats.borrow_mut();
                        s.parse_errors += 1;
                        keep(
                            &mut s.other_errors,
                            format!(
                                "unexpected SSE message: {}",
                                String::from_utf8_lossy(&msg[..msg.len().min(200)])
                            ),
                        );
                    }
                });
            }
            Some(Err(e)) => {
                ctx.disconnected(format!("stream error: {e}"));
                break;
            }
            None => {
                ctx.disconnected("stream closed by the server".into());
                break;
            }
        }
    }
    ctx.stats.borrow_mut().per_conn.push(count);
}

// --- subscriber threads --------------------------------------------------------

/// Runs `n` subscribers on one single-threaded actix runtime: opens them in
/// batches (the next batch starts when every handshake of this one ended),
/// then waits for the stop signal and returns the thread's statistics.
fn subscriber_thread(cfg: Arc<Cfg>, n: usize, global: Arc<Global>, stop: watch::Receiver<bool>) -> Stats {
    rt::System::new().block_on(async move {
        let client = subscriber_client();
        let stats = Rc::new(RefCell::new(Stats::new()));
        let (ready, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        let ctx = Ctx {
            cfg: cfg.clone(),
            client,
            global: global.clone(),
            stats: stats.clone(),
            stop,
            ready,
        };
        let mut handles = Vec::with_capacity(n);
        let mut opened = 0;
        while opened < n && !global.ramp_closed.load(Ordering::SeqCst) {
            let b = cfg.batch.min(n - opened);
            for _ in 0..b {
                let ctx = ctx.clone();
                handles.push(match cfg.protocol {
                    Protocol::Ws => rt::spawn(ws_subscriber(ctx)),
                    Protocol::Sse => rt::spawn(sse_subscriber(ctx)),
                });
            }
            for _ in 0..b {
                if ready_rx.recv().await.is_none() {
                    break;
                }
            }
            opened += b;
        }
        drop(ctx);
        for h in handles {
            if h.await.is_err() {
                keep(
                    &mut stats.borrow_mut().other_errors,
                    "a subscriber task panicked".into(),
                );
            }
        }
        match Rc::try_unwrap(stats) {
            Ok(s) => s.into_inner(),
            Err(rc) => std::mem::replace(&mut *rc.borrow_mut(), Stats::new()),
        }
    })
}

// --- writer -------------------------------------------------------------------

struct WriterResult {
    planned: u64,
    ok: u64,
    errors: u64,
    not_sent: u64,
    first_errors: Vec<String>,
    /// Create request latency (send to full response), µs.
    hist: Hist,
    first_sent_us: u64,
    last_sent_us: u64,
    /// Records the server holds after the writes minus before them (None
    /// if the count could not be read). A request that timed out on the
    /// client may still have been committed, and its event delivered, so
    /// this, not `ok`, is what subscribers should receive.
    committed: Option<u64>,
}

impl WriterResult {
    fn new(planned: u64) -> WriterResult {
        WriterResult {
            planned,
            ok: 0,
            errors: 0,
            not_sent: 0,
            first_errors: Vec::new(),
            hist: Hist::new(),
            first_sent_us: u64::MAX,
            last_sent_us: 0,
            committed: None,
        }
    }
}

/// `totalItems` of the collection (one small list request), or None.
async fn record_count(client: &awc::Client, cfg: &Cfg) -> Option<u64> {
    let mut req = client.get(format!(
        "{}/api/collections/{}/records?page=1&perPage=1",
        cfg.url, cfg.collection
    ));
    if let Some(t) = &cfg.token {
        req = req.insert_header(("Authorization", t.as_str()));
    }
    let mut res = req.send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    let body = res.body().await.ok()?;
    serde_json::from_slice::<Value>(&body).ok()?["totalItems"].as_u64()
}

/// Creates `rate × seconds` records, open loop: a tokio interval fires every
/// `1/rate` s and each tick spawns one create request, whatever the previous
/// ones are doing, so a slow server does not lower the offered rate (a closed
/// loop over a few connections would, and would hide the slowdown). Requests
/// share at most `writers` keep-alive connections; when all are busy a
/// request waits for one. `sent_us` is stamped when the write is due, so any
/// such wait counts in the event latency. The interval bursts to catch up if
/// this thread was held up; ticks later than 10 s after the planned end are
/// dropped (`not_sent`), and every request has a 30 s timeout, which bounds
/// the run.
fn writer_thread(cfg: Arc<Cfg>) -> WriterResult {
    rt::System::new().block_on(async move {
        let total = (cfg.rate * cfg.seconds).round() as u64;
        let period = Duration::from_secs_f64(1.0 / cfg.rate);
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let deadline = start + Duration::from_secs_f64(cfg.seconds) + Duration::from_secs(10);
        let base = cfg.write_url.as_deref().unwrap_or(&cfg.url);
        let url: Rc<str> = format!("{base}/api/collections/{}/records", cfg.collection).into();
        let token: Option<Rc<str>> = cfg.token.as_deref().map(Rc::from);
        let client = awc::Client::builder()
            .connector(awc::Connector::new().limit(cfg.writers))
            .timeout(Duration::from_secs(30))
            .finish();
        let count_before = record_count(&client, &cfg).await;
        let result = Rc::new(RefCell::new(WriterResult::new(total)));
        let mut handles = Vec::with_capacity(total as usize);
        let mut tick = tokio::time::interval_at(start, period);
        for k in 0..total {
            tick.tick().await;
            if tokio::time::Instant::now() > deadline {
                result.borrow_mut().not_sent += total - k;
                break;
            }
            let (client, url, token, result) = (client.clone(), url.clone(), token.clone(), result.clone());
            handles.push(rt::spawn(async move {
                let sent = now_us();
                let body = format!("{{\"title\":\"x\",\"sent_us\":{sent}}}");
                let mut req = client.post(&*url).insert_header(("Content-Type", "application/json"));
                if let Some(t) = &token {
                    req = req.insert_header(("Authorization", &**t));
                }
                let t0 = Instant::now();
                let outcome = match req.send_body(body).await {
                    Ok(mut res) => {
                        let status = res.status();
                        match res.body().await {
                            Ok(_) if status.is_success() => Ok(()),
                            Ok(b) => Err(format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&b[..b.len().min(300)])
                            )),
                            Err(e) => Err(format!("reading the response: {e}")),
                        }
                    }
                    Err(e) => Err(format!("request failed: {e}")),
                };
                let took = t0.elapsed().as_micros() as u64;
                let mut r = result.borrow_mut();
                r.first_sent_us = r.first_sent_us.min(sent);
                r.last_sent_us = r.last_sent_us.max(sent);
                match outcome {
                    Ok(()) => {
                        r.ok += 1;
                        r.hist.record(took);
                    }
                    Err(e) => {
                        r.errors += 1;
                        keep(&mut r.first_errors, e);
                    }
                }
            }));
        }
        for h in handles {
            if h.await.is_err() {
                keep(&mut result.borrow_mut().first_errors, "a writer task panicked".into());
            }
        }
        // The count once it stops changing (a request abandoned by its
        // timeout may still be on its way through the server): two equal
        // reads 1 s apart, for at most 30 s.
        if let Some(before) = count_before {
            let mut last = record_count(&client, &cfg).await;
            for _ in 0..30 {
                rt::time::sleep(Duration::from_secs(1)).await;
                let now = record_count(&client, &cfg).await;
                let settled = now.is_some() && now == last;
                last = now;
                if settled {
                    break;
                }
            }
            result.borrow_mut().committed = last.map(|n| n.saturating_sub(before));
        }
        // Every task has finished, so this is the last reference; the
        // fallback only avoids a panic path.
        match Rc::try_unwrap(result) {
            Ok(r) => r.into_inner(),
            Err(rc) => std::mem::replace(&mut *rc.borrow_mut(), WriterResult::new(total)),
        }
    })
}

// --- main -----------------------------------------------------------------------

fn main() {
    let cfg = match parse_args() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            if !e.is_empty() {
                eprintln!("realtime_load: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let proto = match cfg.protocol {
        Protocol::Ws => "ws",
        Protocol::Sse => "sse",
    };
    let global = Arc::new(Global::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    // Subscribers, spread over the reader threads.
    let ramp_start = Instant::now();
    let mut threads = Vec::new();
    for t in 0..cfg.threads {
        let n = (cfg.subscribers - t).div_ceil(cfg.threads);
        let (cfg, global, stop) = (cfg.clone(), global.clone(), stop_rx.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("subscribers-{t}"))
                .spawn(move || subscriber_thread(cfg, n, global, stop))
                .unwrap_or_else(|e| {
                    eprintln!("realtime_load: cannot start a thread: {e}");
                    std::process::exit(1)
                }),
        );
    }
    drop(stop_rx);
    let mut last_print = Instant::now();
    loop {
        let ok = global.subscribed.load(Ordering::SeqCst);
        let failed = global.setup_failed.load(Ordering::SeqCst);
        if ok + failed >= cfg.subscribers as u64 {
            break;
        }
        if ramp_start.elapsed() > cfg.ramp_timeout {
            eprintln!("realtime_load: ramp timed out after {:?}", cfg.ramp_timeout);
            break;
        }
        if last_print.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "realtime_load: {ok} subscribed, {failed} failed of {} ({:.1} s)",
                cfg.subscribers,
                ramp_start.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    global.ramp_closed.store(true, Ordering::SeqCst);
    global.measuring.store(true, Ordering::SeqCst);
    let ramp_s = ramp_start.elapsed().as_secs_f64();
    let subscribed = global.subscribed.load(Ordering::SeqCst);
    eprintln!(
        "realtime_load: {subscribed} of {} subscribed in {ramp_s:.1} s ({} failed); writing {} records/s for {} s",
        cfg.subscribers,
        global.setup_failed.load(Ordering::SeqCst),
        cfg.rate,
        cfg.seconds
    );

    // Writes.
    let cpu0 = cpu_seconds();
    let writes_start = Instant::now();
    let writes_start_us = now_us();
    let writer = {
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer_thread(cfg))
            .unwrap_or_else(|e| {
                eprintln!("realtime_load: cannot start the writer: {e}");
                std::process::exit(1)
            })
    };
    while !writer.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if last_print.elapsed() >= Duration::from_secs(2) {
            eprintln!(
                "realtime_load: {:.1} s, {} events received",
                writes_start.elapsed().as_secs_f64(),
                global.received.load(Ordering::Relaxed)
            );
            last_print = Instant::now();
        }
    }
    let w = writer.join().unwrap_or_else(|_| {
        eprintln!("realtime_load: the writer thread panicked");
        std::process::exit(1)
    });
    let writes_done = Instant::now();

    // Drain: wait for what is still on its way.
    let delivered_writes = w.committed.unwrap_or(w.ok);
    let expected = delivered_writes * subscribed;
    let mut last_count = global.received.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while global.received.load(Ordering::Relaxed) < expected {
        std::thread::sleep(Duration::from_millis(50));
        let now = global.received.load(Ordering::Relaxed);
        if now != last_count {
            last_count = now;
            last_change = Instant::now();
        }
        if last_change.elapsed() > cfg.drain_idle || writes_done.elapsed() > cfg.drain_max {
            eprintln!(
                "realtime_load: stopped waiting with {now} of {expected} events ({:.1} s after the last write)",
                writes_done.elapsed().as_secs_f64()
            );
            break;
        }
    }
    let cpu1 = cpu_seconds();
    let measured_s = writes_start.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let mut stats = Stats::new();
    for t in threads {
        match t.join() {
            Ok(s) => stats.merge(s),
            Err(_) => keep(&mut stats.other_errors, "a subscriber thread panicked".into()),
        }
    }

    // Report.
    let received = stats.events;
    let last_event_us = global.last_event_us.load(Ordering::Relaxed);
    let window_s = if last_event_us > writes_start_us {
        (last_event_us - writes_start_us) as f64 / 1e6
    } else {
        0.0
    };
    let delivered_per_s = if window_s > 0.0 {
        received as f64 / window_s
    } else {
        0.0
    };
    let complete = stats.per_conn.iter().filter(|c| **c >= delivered_writes).count();
    let short = stats.per_conn.iter().filter(|c| **c < delivered_writes).count();
    let write_span_s = if w.last_sent_us > w.first_sent_us {
        (w.last_sent_us - w.first_sent_us) as f64 / 1e6
    } else {
        0.0
    };
    let report = json!({
        "label": cfg.label,
        "protocol": proto,
        "url": cfg.url,
        "write_url": cfg.write_url.as_deref().unwrap_or(&cfg.url),
        "collection": cfg.collection,
        "subscribers_requested": cfg.subscribers,
        "subscribers_connected": subscribed,
        "connect_failures": global.setup_failed.load(Ordering::SeqCst),
        "late_subscribers": global.late.load(Ordering::SeqCst),
        "ramp_s": round3(ramp_s),
        "rate": cfg.rate,
        "seconds": cfg.seconds,
        "writers": cfg.writers,
        "threads": cfg.threads,
        "writes_planned": w.planned,
        "writes_ok": w.ok,
        "writes_committed": w.committed,
        "write_errors": w.errors,
        "writes_not_sent": w.not_sent,
        // Writes sent per second (successful or not): the offered rate.
        "write_rate": if write_span_s > 0.0 { round3((w.ok + w.errors).saturating_sub(1) as f64 / write_span_s) } else { 0.0 },
        "create_p50_ms": w.hist.ms(0.5),
        "create_p99_ms": w.hist.ms(0.99),
        "events_expected": expected,
        "events_received": received,
        "events_missing": expected.saturating_sub(received),
        "delivered_per_s": round3(delivered_per_s),
        "delivery_window_s": round3(window_s),
        "drain_s": round3(if last_event_us > w.last_sent_us { (last_event_us - w.last_sent_us) as f64 / 1e6 } else { 0.0 }),
        "latency_ms": {
            "p50": stats.hist.ms(0.5),
            "p90": stats.hist.ms(0.9),
            "p99": stats.hist.ms(0.99),
            "p999": stats.hist.ms(0.999),
            "max": if stats.hist.count > 0 { json!(round3(stats.hist.max as f64 / 1000.0)) } else { Value::Null },
            "mean": if stats.hist.count > 0 { json!(round3(stats.hist.sum as f64 / stats.hist.count as f64 / 1000.0)) } else { Value::Null },
        },
        "negative_latencies": stats.negative,
        "conns_complete": complete,
        "conns_short": short,
        "min_per_conn": stats.per_conn.iter().min(),
        "max_per_conn": stats.per_conn.iter().max(),
        "disconnects": stats.disconnects,
        "resyncs": stats.resyncs,
        "server_error_frames": stats.server_errors,
        "parse_errors": stats.parse_errors,
        "seq_gaps": stats.seq_gaps,
        "seq_dups": stats.seq_dups,
        "client_cpu_s": round3(cpu1 - cpu0),
        "client_cpu_window_s": round3(measured_s),
        // The whole process, ramp and shutdown included (for telling the
        // machine's other load apart from client and server).
        "client_cpu_total_s": round3(cpu_seconds()),
        "errors": {
            "setup": stats.setup_errors,
            "disconnect": stats.disconnect_errors,
            "write": w.first_errors,
            "other": stats.other_errors,
        },
        "note": "the load generator runs on the same machine as the server and shares its CPU cores",
    });
    println!("{report}");

    let l = &report["latency_ms"];
    eprintln!(
        "\n== realtime_load {proto} {}: {} of {} subscribers, {} writes ok ({} errors, {} not sent, {} committed) at {:.1}/s",
        cfg.url,
        subscribed,
        cfg.subscribers,
        w.ok,
        w.errors,
        w.not_sent,
        w.committed.map_or("?".to_string(), |c| c.to_string()),
        report["write_rate"].as_f64().unwrap_or(0.0)
    );
    eprintln!(
        "   events: {received} of {expected} expected ({} missing), {delivered_per_s:.0} delivered/s over {window_s:.2} s",
        expected.saturating_sub(received)
    );
    eprintln!(
        "   latency ms: p50 {} p90 {} p99 {} max {} (create request p50 {} ms)",
        l["p50"], l["p90"], l["p99"], l["max"], report["create_p50_ms"]
    );
    eprintln!(
        "   connections complete {complete}, short {short}; disconnects {}, resyncs {}, error frames {}, parse errors {}, seq gaps {}, seq dups {}",
        stats.disconnects, stats.resyncs, stats.server_errors, stats.parse_errors, stats.seq_gaps, stats.seq_dups
    );
    eprintln!(
        "   client CPU {:.2} s over {:.2} s (the client shares the machine with the server)",
        cpu1 - cpu0,
        measured_s
    );
    for (kind, list) in [
        ("setup", &report["errors"]["setup"]),
        ("disconnect", &report["errors"]["disconnect"]),
        ("write", &report["errors"]["write"]),
        ("other", &report["errors"]["other"]),
    ] {
        if let Some(items) = list.as_array() {
            for e in items {
                eprintln!("   {kind} error: {}", e.as_str().unwrap_or_default());
            }
        }
    }
    if subscribed == 0 || w.ok == 0 {
        std::process::exit(1);
    }
}
