//! `GET /api/realtime/ws`: the WebSocket change feed (JSON text frames).
//!
//! One task per connection owns the connection's state and multiplexes
//! three inputs: client frames, committed changes from the store's
//! broadcast, and a 30 s ping timer. Backpressure: the session's send
//! queue is bounded (actix-ws), so a client that does not read stalls only
//! its own task; its broadcast receiver then lags, and every subscription
//! gets `resync` and is dropped — writers and other clients never wait.
//!
//! Resume: `subscribe` with `since` replays the retained change log after
//! that seq, then goes live. The receiver was created when the connection
//! opened, before the replay read the log, and every change is written to
//! the log before it is published; so live changes above the last replayed
//! seq are all in the receiver, and those at or below it are skipped: no gap,
//! no duplicate.

use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message, ProtocolError, Session};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use std::sync::Arc;

use crate::error::ApiError;
use crate::realtime::subscription::{parse_topic, Delivery, Shape, SubSpec, Subscriber};
use crate::rules::Caller;
use crate::state::AppState;
use crate::store::Change;

/// Frames larger than this close the connection with 1009.
const MAX_FRAME: usize = 64 * 1024;
/// How often the server pings; a peer silent for three intervals (90 s:
/// room for mobile clients and busy machines) is closed as dead.
const PING_EVERY: Duration = Duration::from_secs(30);
/// Subscriptions per connection.
const MAX_SUBS: usize = 1000;
/// Changes read per blocking step of a `since` replay.
const REPLAY_CHUNK: usize = 256;

fn event_frame(sub: &str, change: &Change, record: &str) -> String {
    let action = serde_json::to_string(&change.action).unwrap_or_default();
    format!(
        "{{\"type\":\"event\",\"sub\":{},\"seq\":{},\"action\":{},\"record\":{}}}",
        serde_json::to_string(sub).unwrap_or_default(),
        change.seq,
        action,
        record
    )
}

struct Sub {
    id: String,
    spec: Arc<SubSpec>,
    /// Highest seq already delivered (or skipped) for this subscription.
    last_seq: u64,
}

/// How a `since` replay ended.
enum Replay {
    Done,
    /// The connection is gone.
    Gone,
    /// Retention trimmed the log while it was read.
    Trimmed,
}

/// What the connection does after one input.
enum Next {
    Continue,
    /// End it, with this close reason (`None`: a close frame without one,
    /// as when the peer is gone).
    Close(Option<CloseReason>),
}

impl Next {
    /// `Continue` while the connection is alive, else close without a reason.
    fn alive(alive: bool) -> Next {
        if alive {
            Next::Continue
        } else {
            Next::Close(None)
        }
    }
}

struct Conn {
    state: AppState,
    session: Session,
    who: Subscriber,
    subs: Vec<Sub>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Frame {
    Auth {
        token: String,
    },
    Subscribe {
        id: String,
        topic: String,
        #[serde(default)]
        filter: Option<String>,
        #[serde(default)]
        fields: Option<String>,
        #[serde(default)]
        expand: Option<String>,
        #[serde(default)]
        since: Option<u64>,
    },
    Unsubscribe {
        id: String,
    },
    Ping,
}

/// Upgrades the request and spawns the connection task. At most
/// `limits.realtimePerAddress` realtime streams per client address (429
/// over it): the task holds its slot until it ends.
pub async fn handle(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let lease = crate::api::bounds::realtime_lease(&req, &state)?;
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let token = super::authorization(&req);
    // Subscribe to changes before anything else, so a later `since` replay
    // hands over to live changes without a gap.
    let rx = state.store.subscribe();
    let state = state.get_ref().clone();
    actix_web::rt::spawn(async move {
        let _lease = lease;
        let mut who = Subscriber::guest();
        who.set(&state, token);
        let mut conn = Conn {
            state,
            session,
            who,
            subs: Vec::new(),
        };
        conn.run(stream.max_frame_size(MAX_FRAME), rx).await;
    });
    Ok(response)
}

impl Conn {
    async fn send(&mut self, v: Value) -> bool {
        self.session.text(v.to_string()).await.is_ok()
    }

    async fn error(&mut self, id: Option<&str>, e: ApiError) -> bool {
        let mut frame = json!({"type": "error", "status": e.status, "message": e.message});
        if let Some(id) = id {
            frame["id"] = json!(id);
        }
        if !e.data.is_empty() {
            frame["data"] = Value::Object(e.data);
        }
        self.send(frame).await
    }

    /// The connection's life: a welcome frame, then client frames, changes
    /// and pings until one of them ends it (or the server stops).
    async fn run(
        &mut self,
        mut stream: actix_ws::MessageStream,
        mut rx: tokio::sync::broadcast::Receiver<std::sync::Arc<Change>>,
    ) {
        let client_id = crate::ids::random_from(b"abcdefghijklmnopqrstuvwxyz0123456789", 20);
        let head = self.state.store.head_seq();
        if !self
            .send(json!({"type": "welcome", "clientId": client_id, "seq": head}))
            .await
        {
            return;
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut last_heard = Instant::now();
        let mut closing = self.state.realtime.closing();
        let close = loop {
            let next = tokio::select! {
                _ = closing.changed() => Next::Close(Some(CloseReason { code: CloseCode::Restart, description: Some("server shutting down".into()) })),
                msg = stream.recv() => {
                    last_heard = Instant::now();
                    self.on_message(msg).await
                }
                change = rx.recv() => self.on_change(change).await,
                _ = ping.tick() => self.on_ping(last_heard).await,
            };
            if let Next::Close(reason) = next {
                break reason;
            }
        };
        let _ = self.session.clone().close(close).await;
    }

    /// One message from the client (`None`: the stream ended).
    async fn on_message(&mut self, msg: Option<Result<Message, ProtocolError>>) -> Next {
        let alive = match msg {
            None => false,
            Some(Ok(Message::Text(text))) => self.on_frame(&text).await,
            Some(Ok(Message::Binary(_))) => self.error(None, ApiError::bad_request("Send JSON text frames.")).await,
            Some(Ok(Message::Ping(bytes))) => self.session.pong(&bytes).await.is_ok(),
            Some(Ok(Message::Pong(_))) | Some(Ok(Message::Nop)) => true,
            Some(Ok(Message::Continuation(_))) => {
                self.error(None, ApiError::bad_request("Fragmented frames are not supported."))
                    .await
            }
            Some(Ok(Message::Close(_))) => return Next::Close(Some(CloseReason::from(CloseCode::Normal))),
            Some(Err(ProtocolError::Overflow)) => {
                return Next::Close(Some(CloseReason {
                    code: CloseCode::Size,
                    description: Some(format!("frames are limited to {MAX_FRAME} bytes")),
                }))
            }
            Some(Err(_)) => return Next::Close(Some(CloseReason::from(CloseCode::Protocol))),
        };
        Next::alive(alive)
    }

    /// One committed change from the store's broadcast (or its lag).
    async fn on_change(&mut self, change: Result<Arc<Change>, RecvError>) -> Next {
        match change {
            Ok(change) => Next::alive(self.deliver(&change).await),
            Err(RecvError::Lagged(_)) => {
                // Fell behind: every subscription may have missed changes.
                let ids: Vec<String> = self.subs.drain(..).map(|s| s.id).collect();
                for id in ids {
                    if !self.send(json!({"type": "resync", "sub": id})).await {
                        break;
                    }
                }
                Next::Continue
            }
            // The node's feed was interrupted (on PostgreSQL: it lost its
            // place in the change log; see `store::Hub`).
            Err(RecvError::Closed) => Next::Close(Some(CloseReason {
                code: CloseCode::Restart,
                description: Some(
                    "the change feed was interrupted: reconnect and subscribe with since to resume".into(),
                ),
            })),
        }
    }

    /// The ping timer: re-checks the caller, closes a silent peer, pings.
    async fn on_ping(&mut self, last_heard: Instant) -> Next {
        if !self.refresh(None).await {
            return Next::Close(None);
        }
        if last_heard.elapsed() > PING_EVERY * 3 {
            return Next::Close(Some(CloseReason {
                code: CloseCode::Away,
                description: Some("no answer to pings".into()),
            }));
        }
        Next::alive(self.session.ping(b"").await.is_ok())
    }

    /// Handles one client frame; false when the connection is gone.
    async fn on_frame(&mut self, text: &str) -> bool {
        let frame: Frame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                return self
                    .error(
                        None,
                        ApiError::bad_request(format!(
                            "Invalid frame: {e}. Expected {{\"type\": \"auth\"|\"subscribe\"|\"unsubscribe\"|\"ping\", ...}}."
                        )),
                    )
                    .await
            }
        };
        match frame {
            Frame::Ping => self.send(json!({"type": "pong"})).await,
            Frame::Auth { token } => {
                self.who.set(&self.state, Some(token));
                if !matches!(self.who.req.caller, Caller::Guest) {
                    let who = self.who.request["auth"].clone();
                    self.send(
                        json!({"type": "authenticated", "id": who["id"], "collectionName": who["collectionName"]}),
                    )
                    .await
                } else {
                    self.error(
                        None,
                        ApiError::unauthorized("Invalid or expired token; the connection continues as a guest."),
                    )
                    .await
                }
            }
            Frame::Unsubscribe { id } => {
                self.subs.retain(|s| s.id != id);
                self.send(json!({"type": "unsubscribed", "id": id})).await
            }
            Frame::Subscribe {
                id,
                topic,
                filter,
                fields,
                expand,
                since,
            } => match self.subscribe(&id, &topic, filter, fields, expand, since).await {
                Ok(alive) => alive,
                Err(e) => self.error(Some(&id), e).await,
            },
        }
    }

    /// Re-checks the caller (token expiry, own record changed) and tells
    /// the client when it became a guest; false when the connection is gone.
    async fn refresh(&mut self, change: Option<&Change>) -> bool {
        if !self.who.refresh(&self.state, change) {
            return true;
        }
        self.error(
            None,
            ApiError::unauthorized("The token expired or was revoked; the connection continues as a guest."),
        )
        .await
    }

    async fn subscribe(
        &mut self,
        id: &str,
        topic: &str,
        filter: Option<String>,
        fields: Option<String>,
        expand: Option<String>,
        since: Option<u64>,
    ) -> Result<bool, ApiError> {
        if id.is_empty() || id.len() > 255 {
            return Err(ApiError::bad_request("A subscription needs an id of 1-255 characters."));
        }
        if !self.refresh(None).await {
            return Ok(false);
        }
        let caller = &self.who.req.caller;
        let (topic, coll) = parse_topic(&self.state, topic, caller)?;
        let shape = Shape::parse(
            &self.state,
            &coll,
            caller,
            filter.as_deref(),
            fields.as_deref(),
            expand.as_deref(),
        )?;
        self.subs.retain(|s| s.id != id);
        if self.subs.len() >= MAX_SUBS {
            return Err(ApiError::bad_request("Too many subscriptions on this connection."));
        }
        let head = self.state.store.head_seq();
        let mut sub = Sub {
            id: id.to_owned(),
            spec: Arc::new(SubSpec { topic, shape }),
            last_seq: head,
        };
        let Some(since) = since else {
            self.subs.push(sub);
            return Ok(self.send(json!({"type": "subscribed", "id": id, "seq": head})).await);
        };
        if since > head {
            return Err(ApiError::bad_request(format!(
                "since ({since}) is ahead of the latest change ({head})."
            )));
        }
        // The retained log must start right after `since`, or changes are lost.
        let first = self.state.store.first_change_seq();
        if since < head && first.is_none_or(|f| f > since + 1) {
            return Ok(self.send(json!({"type": "resync", "sub": id})).await);
        }
        if !self.send(json!({"type": "subscribed", "id": id, "seq": since})).await {
            return Ok(false);
        }
        sub.last_seq = since;
        match self.replay_since(&mut sub).await? {
            Replay::Done => self.subs.push(sub),
            Replay::Gone => return Ok(false),
            // Trimmed while it was read: the client refetches and resubscribes.
            Replay::Trimmed => return Ok(self.send(json!({"type": "resync", "sub": id})).await),
        }
        Ok(true)
    }

    /// Replays the retained log after `sub.last_seq` to a subscription being
    /// set up, advancing `last_seq`. The log is read in chunks on the
    /// blocking pool and rendered like live changes, so a long replay never
    /// holds an HTTP worker.
    async fn replay_since(&mut self, sub: &mut Sub) -> Result<Replay, ApiError> {
        loop {
            let (state, after) = (self.state.clone(), sub.last_seq);
            let chunk = web::block(move || {
                state
                    .store
                    .changes_since(after)
                    .take(REPLAY_CHUNK)
                    .collect::<Result<Vec<Change>, _>>()
            })
            .await
            .map_err(|_| ApiError::internal("replay failed"))?;
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(crate::store::StoreError::Trimmed(_)) => return Ok(Replay::Trimmed),
                Err(e) => return Err(e.into()),
            };
            if chunk.is_empty() {
                break;
            }
            for change in chunk {
                let seq = change.seq;
                if change.collection_id == sub.spec.topic.collection_id && !self.replay(sub, Arc::new(change)).await? {
                    return Ok(Replay::Gone);
                }
                sub.last_seq = seq;
            }
        }
        Ok(Replay::Done)
    }

    /// Offers one live change to every subscription (skipping those that
    /// already saw it during a replay).
    async fn deliver(&mut self, change: &Arc<Change>) -> bool {
        // A password change takes effect on this very event; an expired
        // token before it.
        if !self.refresh(Some(change)).await {
            return false;
        }
        // Subscriptions that have not seen this change yet (a replay may have).
        let mut due = Vec::new();
        for (i, sub) in self.subs.iter_mut().enumerate() {
            if change.seq > sub.last_seq {
                sub.last_seq = change.seq;
                if sub.spec.topic.collection_id == change.collection_id {
                    due.push(i);
                }
            }
        }
        if due.is_empty() {
            return true;
        }
        let specs = due.iter().map(|&i| self.subs[i].spec.clone()).collect();
        let deliveries =
            crate::realtime::render(&self.state, specs, &self.who.req, &self.who.request, change.clone()).await;
        let ids: Vec<String> = due.iter().map(|&i| self.subs[i].id.clone()).collect();
        let mut dropped = Vec::new();
        for (id, delivery) in ids.into_iter().zip(deliveries) {
            let (alive, keep) = self.send_delivery(&id, change, delivery).await;
            if !alive {
                return false;
            }
            if !keep {
                dropped.push(id);
            }
        }
        self.subs.retain(|s| !dropped.contains(&s.id));
        true
    }

    /// Replays one change to a subscription being set up: `Ok(false)` when
    /// the connection is gone, an error (and no subscription) when its
    /// checks ran over the budget.
    async fn replay(&mut self, sub: &Sub, change: Arc<Change>) -> Result<bool, ApiError> {
        let specs = vec![sub.spec.clone()];
        let mut out =
            crate::realtime::render(&self.state, specs, &self.who.req, &self.who.request, change.clone()).await;
        match out.pop() {
            Some(Delivery::Send(record)) => Ok(self.session.text(event_frame(&sub.id, &change, &record)).await.is_ok()),
            Some(Delivery::OverBudget | Delivery::Resync) => Err(self.over_budget()),
            _ => Ok(true),
        }
    }

    fn over_budget(&self) -> ApiError {
        self.state.settings.get().budget.realtime_limits().records_error()
    }

    /// Sends what one subscription gets: (connection alive, subscription kept).
    async fn send_delivery(&mut self, id: &str, change: &Change, delivery: Delivery) -> (bool, bool) {
        match delivery {
            Delivery::Skip => (true, true),
            Delivery::Send(record) => (self.session.text(event_frame(id, change, &record)).await.is_ok(), true),
            Delivery::OverBudget => {
                let e = self.over_budget();
                (self.error(Some(id), e).await, false)
            }
            Delivery::Resync => (self.send(json!({"type": "resync", "sub": id})).await, false),
        }
    }
}
