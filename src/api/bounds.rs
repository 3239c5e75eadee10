//! What one client may hold on the connection level: HTTP connections and
//! realtime streams per client address (`limits.connectionsPerAddress`,
//! `limits.realtimePerAddress`, counted by [`crate::caps`]), the time a
//! request body may take to arrive (`limits.bodyTimeout`), and the time a
//! connection may spend sending a later request's headers ([`watch`]). The
//! total connection cap, the keep-alive and the first request's header
//! timeout are actix's, set when the server binds (`--max-connections`,
//! `--keep-alive`, `--header-timeout`, see `app`).
//!
//! **Connections per address.** Without a trusted proxy, [`on_connect`]
//! counts each accepted connection under its peer address and closes one
//! over the cap at once (a `shutdown` of the fresh socket: no request is
//! read, no task lingers, the descriptor is freed as soon as actix sees the
//! end). Behind a trusted proxy every connection comes from the proxy, so
//! the count waits for the request: [`guard`] charges the connection to the
//! client address the proxy's header names (again whenever a later request
//! on it names another one) and answers 429 with `Connection: close` over
//! the cap. Either way the count is given back when the connection ends
//! (the lease lives in the connection's data).
//!
//! **Body read timeout.** [`guard`] wraps the body of every request that
//! has one in a deadline counted from the end of its headers; a body not
//! complete by then fails with an error the extractors answer as 408
//! ([`body_timeout`]). actix then closes the connection: a body left
//! unread closes it after the answer (after a short linger, so the client
//! reads the answer). To keep that true for chunked bodies too, which
//! actix drains instead for as long as the client trickles when the body
//! was dropped, an unfinished body is kept alive until the answer is sent.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{header, ConnectionType};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, ResponseError};
use futures_util::Stream;

use crate::caps::{Caps, Lease};
use crate::error::ApiError;
use crate::settings::SettingsStore;
use crate::state::AppState;

/// What the server knows of one connection, in its connection data (as
/// `Rc<ConnSlot>`; the watchdog holds a `Weak`).
pub struct ConnSlot {
    /// The address it counts for (none yet behind a proxy).
    lease: RefCell<Option<Lease>>,
    /// Over the cap when accepted: closed, answered 429 if a request came.
    refused: Cell<bool>,
    /// Requests taken in whose answers are not sent yet.
    busy: Cell<u32>,
    /// When the last answer was sent (or the connection accepted).
    idle_since: Cell<Instant>,
    /// A second handle on the socket (a duplicated descriptor, closed with
    /// the slot), so the watchdog can end the connection.
    socket: Option<WatchedSocket>,
}

impl ConnSlot {
    fn new(socket: Option<WatchedSocket>) -> ConnSlot {
        ConnSlot {
            lease: RefCell::new(None),
            refused: Cell::new(false),
            busy: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
            socket,
        }
    }

    /// Charges the connection to `ip` (keeping its slot if it already
    /// counts there); false when `ip` is at its cap.
    fn charge(&self, caps: &Caps, ip: IpAddr, cap: u32) -> bool {
        if self.refused.get() {
            return false;
        }
        let mut lease = self.lease.borrow_mut();
        if lease.as_ref().is_some_and(|l| l.is_for(ip)) {
            return true;
        }
        // Give the old address's slot back before taking one.
        *lease = None;
        *lease = caps.http.try_acquire(ip, cap);
        lease.is_some()
    }
}

/// A request in flight on a connection; dropped when its answer is sent.
struct Busy(Rc<ConnSlot>);

impl Busy {
    fn start(slot: Rc<ConnSlot>) -> Busy {
        slot.busy.set(slot.busy.get() + 1);
        Busy(slot)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let n = self.0.busy.get().saturating_sub(1);
        self.0.busy.set(n);
        if n == 0 {
            self.0.idle_since.set(Instant::now());
        }
    }
}

/// The connection watchdogs' settings and their share of descriptors.
#[derive(Clone)]
pub struct Watchdogs {
    /// Nothing in flight for this long ends a connection.
    idle_limit: Duration,
    /// Most duplicated sockets held at once (`app`'s descriptor budget).
    budget: usize,
    live: Arc<AtomicUsize>,
}

impl Watchdogs {
    pub fn new(idle_limit: Duration, budget: usize) -> Watchdogs {
        Watchdogs {
            idle_limit,
            budget,
            live: Default::default(),
        }
    }

    /// A duplicate of `stream`'s socket, if the budget allows one.
    fn dup(&self, stream: &actix_web::rt::net::TcpStream) -> Option<WatchedSocket> {
        if self.live.fetch_add(1, Ordering::Relaxed) >= self.budget {
            self.live.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        match socket2::SockRef::from(stream).try_clone() {
            Ok(socket) => Some(WatchedSocket {
                socket,
                live: self.live.clone(),
            }),
            Err(_) => {
                self.live.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// A watchdog's duplicate of its connection's socket, counted in its budget.
struct WatchedSocket {
    socket: socket2::Socket,
    live: Arc<AtomicUsize>,
}

impl Drop for WatchedSocket {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// actix's `on_connect` hook: counts the new connection under its peer
/// address, or closes it at once when that address is at its cap (behind a
/// trusted proxy it leaves the slot empty for [`guard`] to fill), and puts
/// it under its [`watch`]dog (budget permitting).
pub fn on_connect(settings: &SettingsStore, caps: &Caps, dogs: &Watchdogs, io: &dyn Any, ext: &mut Extensions) {
    let Some(stream) = io.downcast_ref::<actix_web::rt::net::TcpStream>() else {
        ext.insert(Rc::new(ConnSlot::new(None)));
        return;
    };
    let s = settings.get();
    let peer = stream.peer_addr().ok().filter(|_| s.trusted_proxy.headers.is_empty());
    let lease = peer.map(|peer| caps.http.try_acquire(peer.ip(), s.limits.connections_per_address));
    if let (Some(peer), Some(None)) = (peer, &lease) {
        tracing::debug!(ip = %peer.ip(), "connection refused: too many from this address");
        // Ends the connection before a byte is read; actix sees
        // end-of-stream and drops it.
        let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Both);
        let slot = ConnSlot::new(None);
        slot.refused.set(true);
        ext.insert(Rc::new(slot));
        return;
    }
    let slot = Rc::new(ConnSlot::new(dogs.dup(stream)));
    *slot.lease.borrow_mut() = lease.flatten();
    if slot.socket.is_some() {
        watch(&slot, dogs.idle_limit);
    }
    ext.insert(slot);
}

/// The watchdog of one connection: ends it when no request is in flight
/// and none has come for `limit` (`--keep-alive` + `--header-timeout`).
///
/// actix's header timeout covers a connection's first request only, and
/// its keep-alive timer stops at the first byte of the next one: after one
/// quick request, a client could send the next request's headers a byte a
/// minute and hold the connection forever. Idle connections are closed by
/// actix after the keep-alive; so a connection with nothing in flight for
/// longer than keep-alive + header timeout is one whose headers are too
/// slow. A streaming answer (WebSocket, SSE, a large download) keeps its
/// connection busy for as long as it streams.
fn watch(slot: &Rc<ConnSlot>, limit: Duration) {
    let weak = Rc::downgrade(slot);
    actix_web::rt::spawn(async move {
        loop {
            let wait = {
                let Some(slot) = weak.upgrade() else { return };
                if slot.busy.get() > 0 {
                    limit
                } else {
                    let idle = slot.idle_since.get().elapsed();
                    if idle >= limit {
                        tracing::debug!(?limit, "closing a connection whose request headers are too slow");
                        if let Some(watched) = &slot.socket {
                            let _ = watched.socket.shutdown(std::net::Shutdown::Both);
                        }
                        return;
                    }
                    limit - idle
                }
            };
            tokio::time::sleep(wait).await;
        }
    });
}

fn too_many_connections() -> ApiError {
    ApiError::new(429, "Too many connections from your address.")
}

/// The request-side bounds: charges the connection to the client address
/// behind a trusted proxy (429 and close over the cap), and puts the body
/// under the read deadline.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let settings = state.settings.get();
    let slot = req.conn_data::<Rc<ConnSlot>>().cloned();
    if let Some(slot) = &slot {
        let ip = super::middleware::client_ip(req.request()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if !slot.charge(&state.caps, ip, settings.limits.connections_per_address) {
            let mut res = too_many_connections().error_response();
            res.head_mut().set_connection_type(ConnectionType::Close);
            return Ok(req.into_response(res).map_into_right_body());
        }
    }
    let busy = slot.map(Busy::start);
    let keeper = has_body(req.request()).then(|| {
        let keeper = Rc::new(RefCell::new(None));
        let (_, payload) = req.parts_mut();
        let timed = TimedBody {
            inner: Some(payload.take()),
            deadline: Box::pin(tokio::time::sleep(Duration::from_secs(
                settings.limits.body_timeout.into(),
            ))),
            secs: settings.limits.body_timeout,
            finished: false,
            keeper: keeper.clone(),
        };
        *payload = Payload::Stream {
            payload: Box::pin(timed),
        };
        keeper
    });
    drop(settings);
    let res = next.call(req).await?;
    let unread = keeper.and_then(|k| k.borrow_mut().take());
    // A small answer is sent at once (it fits the socket's buffer): the
    // connection counts as idle from now on. A larger or streaming one
    // keeps it busy until its body has been sent.
    let small = match res.response().body().size() {
        BodySize::None => true,
        BodySize::Sized(n) => n <= SMALL_ANSWER,
        BodySize::Stream => false,
    };
    let busy = busy.filter(|_| !small);
    if unread.is_none() && busy.is_none() {
        return Ok(res.map_into_left_body());
    }
    Ok(res
        .map_body(|_, body| {
            BoxBody::new(HeldBody {
                body: body.boxed(),
                _unread: unread,
                _busy: busy,
            })
        })
        .map_into_right_body())
}

/// Answers up to this size count as sent as soon as they are ready.
const SMALL_ANSWER: u64 = 64 * 1024;

/// Whether a request has a body to read (not a WebSocket upgrade, whose
/// "body" is the connection's frames for as long as it lives).
fn has_body(req: &HttpRequest) -> bool {
    if req.head().upgrade() {
        return false;
    }
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// An answer's body holding what must live until it has been sent: its
/// request's unread body (actix decides between closing and draining when
/// the answer's body ends, and drains, for as long as the client sends, when
/// the request body is gone by then), and the connection's busy mark.
struct HeldBody {
    body: BoxBody,
    _unread: Option<Payload>,
    _busy: Option<Busy>,
}

impl MessageBody for HeldBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// The error a body past its deadline ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the {0}-second limit")]
struct BodyTimedOut(u32);

/// A request body with a deadline for the whole of it.
struct TimedBody {
    inner: Option<Payload>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    secs: u32,
    /// Read to its end (or failed): nothing to keep.
    finished: bool,
    /// Where an unfinished body goes when dropped.
    keeper: Rc<RefCell<Option<Payload>>>,
}

impl Stream for TimedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(item) => {
                if !matches!(item, Some(Ok(_))) {
                    this.finished = true;
                }
                return Poll::Ready(item);
            }
            Poll::Pending => {}
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            // Not `finished`: the rest stays unread, so the connection closes.
            let err = io::Error::new(io::ErrorKind::TimedOut, BodyTimedOut(this.secs));
            let inner = this.inner.take();
            *this.keeper.borrow_mut() = inner;
            return Poll::Ready(Some(Err(PayloadError::Io(err))));
        }
        Poll::Pending
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        if !self.finished {
            if let Some(inner) = self.inner.take() {
                *self.keeper.borrow_mut() = Some(inner);
            }
        }
    }
}

/// The answer to a body that missed its deadline: 408 in the error shape.
pub fn body_timeout(e: &PayloadError) -> Option<ApiError> {
    let PayloadError::Io(io) = e else { return None };
    let timed_out = io.get_ref()?.downcast_ref::<BodyTimedOut>()?;
    Some(ApiError::new(
        408,
        format!(
            "The request body did not arrive within the {}-second limit.",
            timed_out.0
        ),
    ))
}

/// A realtime stream's slot under `limits.realtimePerAddress`, for the
/// client address of `req`; 429 when that address is at its cap. The
/// stream's task holds the lease until it ends.
pub fn realtime_lease(req: &HttpRequest, state: &AppState) -> Result<Lease, ApiError> {
    let ip = super::middleware::client_ip(req).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let cap = state.settings.get().limits.realtime_per_address;
    state
        .caps
        .realtime
        .try_acquire(ip, cap)
        .ok_or_else(|| ApiError::new(429, "Too many realtime connections from your address."))
}
