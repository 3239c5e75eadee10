//! PocketBase's realtime protocol over Server-Sent Events, so the official
//! SDKs' `subscribe()` works unchanged (the endpoints are
//! `api::realtime::sse`; the clients, their subscriptions and the event
//! pump are here):
//!
//! - `GET /api/realtime` opens the stream and sends `PB_CONNECT` with a
//!   40-character `clientId` (also in the SSE `id:` field, where the JS SDK
//!   reads it);
//! - `POST /api/realtime {clientId, subscriptions}` replaces the client's
//!   subscription set; auth comes from that request's `Authorization`
//!   header (a client may go from guest to authenticated; once
//!   authenticated, a POST with any other auth, or none, gets 403 and
//!   changes nothing);
//! - each event is named by the exact subscription string (including any
//!   `?options=`) with data `{"action", "record"}`.
//!
//! A client that falls behind is disconnected (the SDK reconnects and
//! resubscribes); one idle for 5 minutes is closed, as PocketBase does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::subscription::{resolve_topic, Delivery, Shape, SubSpec, Subscriber};
use crate::core::auth;
use crate::error::ApiError;
use crate::rules::Caller;
use crate::state::AppState;

/// Closed after this long without delivering anything (PocketBase: 5 min).
const IDLE: Duration = Duration::from_secs(300);
/// Frames buffered per client before it counts as too slow.
const QUEUE: usize = 512;
/// PocketBase's limits on a subscription set.
const MAX_SUBS: usize = 1000;
const MAX_TOPIC_LEN: usize = 2500;

struct SseSub {
    /// The exact subscription string: the SSE event name.
    name: String,
    /// `None` for topics that name no collection (`PB_CONNECT`, custom
    /// topics, `@oauth2`): accepted, as PocketBase does, but never sent to.
    spec: Option<Arc<SubSpec>>,
}

/// One connected SSE client.
struct Client {
    /// Auth, subscriptions and the token they were set with. A std mutex:
    /// held only to swap or read, never across an await.
    inner: Mutex<ClientState>,
    /// The address the stream was opened from: subscriptions may only be
    /// set from it (as PocketBase: a leaked or guessed `clientId` is of no
    /// use from elsewhere).
    address: Option<std::net::IpAddr>,
    /// The client's frame queue (the pump's too), for `@oauth2` messages.
    tx: mpsc::Sender<String>,
}

struct ClientState {
    who: Subscriber,
    subs: Arc<Vec<SseSub>>,
}

/// The registry of SSE clients, by `clientId`.
#[derive(Clone, Default)]
pub struct SseClients {
    clients: Arc<Mutex<HashMap<String, Arc<Client>>>>,
}

impl SseClients {
    fn get(&self, id: &str) -> Option<Arc<Client>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }
    fn insert(&self, id: String, c: Arc<Client>) {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).insert(id, c);
    }
    fn remove(&self, id: &str) {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
    /// Connected SSE clients (for the dashboard and tests).
    pub fn len(&self) -> usize {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn sse_frame(id: &str, event: &str, data: &str) -> String {
    format!("id:{id}\nevent:{event}\ndata:{data}\n\n")
}

/// A newly connected SSE client: the frames to stream to it, and
/// the task that feeds them (the caller spawns it and keeps the client's
/// connection slot until it ends).
pub struct Opened<P> {
    pub frames: mpsc::Receiver<String>,
    pub pump: P,
}

/// Registers a new client (`GET /api/realtime`): its `PB_CONNECT` frame is
/// queued first, then every change its subscriptions see, until it
/// disconnects, falls behind, idles for [`IDLE`] or the server stops.
pub fn open(
    state: &AppState,
    clients: &SseClients,
    address: Option<std::net::IpAddr>,
) -> Opened<impl std::future::Future<Output = ()>> {
    let state = state.clone();
    let client_id = crate::ids::random_from(b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 40);
    let (tx, frames) = mpsc::channel::<String>(QUEUE);
    let client = Arc::new(Client {
        inner: Mutex::new(ClientState {
            who: Subscriber::guest(),
            subs: Arc::new(Vec::new()),
        }),
        address,
        tx: tx.clone(),
    });
    let rx = state.store.subscribe();
    let connect = json!({"clientId": client_id}).to_string();
    let _ = tx.try_send(sse_frame(&client_id, "PB_CONNECT", &connect));
    clients.insert(client_id.clone(), client.clone());
    let pump = Pump {
        state,
        clients: clients.clone(),
        client_id,
        client,
        tx,
    };
    Opened {
        frames,
        pump: pump.run(rx),
    }
}

/// One client's event loop.
struct Pump {
    state: AppState,
    clients: SseClients,
    client_id: String,
    client: Arc<Client>,
    tx: mpsc::Sender<String>,
}

impl Pump {
    async fn run(self, mut rx: tokio::sync::broadcast::Receiver<Arc<crate::store::Change>>) {
        let mut closing = self.state.realtime.closing();
        loop {
            let change = tokio::select! {
                c = rx.recv() => c,
                _ = self.tx.closed() => break,
                _ = closing.changed() => break,
                _ = tokio::time::sleep(IDLE) => break,
            };
            let change = match change {
                Ok(c) => c,
                // Too slow: close; the SDK reconnects and resubscribes.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
            };
            if !self.deliver(&change).await {
                break;
            }
        }
        self.clients.remove(&self.client_id);
    }

    /// Sends one change to the subscriptions that see it; false when the
    /// client is to be dropped.
    async fn deliver(&self, change: &Arc<crate::store::Change>) -> bool {
        let (req, request, subs) = {
            let mut st = self.client.inner.lock().unwrap_or_else(|e| e.into_inner());
            // Token expired or own record changed: checked again first.
            st.who.refresh(&self.state, Some(change));
            (st.who.req.clone(), st.who.request.clone(), st.subs.clone())
        };
        let due: Vec<(&str, Arc<SubSpec>)> = subs
            .iter()
            .filter_map(|s| Some((s.name.as_str(), s.spec.clone()?)))
            .filter(|(_, spec)| spec.topic.collection_id == change.collection_id)
            .collect();
        if due.is_empty() {
            return true;
        }
        let specs = due.iter().map(|(_, spec)| spec.clone()).collect();
        let deliveries = super::render(&self.state, specs, &req, &request, change.clone()).await;
        for ((name, _), delivery) in due.iter().zip(deliveries) {
            let record = match delivery {
                Delivery::Send(record) => record,
                Delivery::Skip => continue,
                // Over the connection's budget for this change (SSE has
                // no per-subscription error): closed, as a lagging client.
                Delivery::OverBudget | Delivery::Resync => return false,
            };
            let action = serde_json::to_string(&change.action).unwrap_or_default();
            let data = format!("{{\"action\":{action},\"record\":{record}}}");
            if self.tx.try_send(sse_frame(&self.client_id, name, &data)).is_err() {
                // Queue full (a slow reader) or closed: drop the client.
                return false;
            }
        }
        true
    }
}

/// Splits `posts/*?options={...}` into the topic and its options. Rules are
/// checked per event (a locked topic is accepted and stays silent); the
/// filter is checked for `caller` as a REST list filter would be.
fn parse_subscription(state: &AppState, raw: &str, caller: &Caller) -> Result<SseSub, ApiError> {
    let (topic_text, options) = match raw.split_once("?options=") {
        Some((t, o)) => (t, Some(o)),
        None => (raw, None),
    };
    let mut query = serde_json::Map::new();
    if let Some(o) = options {
        let decoded = urlencoding_decode(o);
        let v: Value = serde_json::from_str(&decoded).map_err(|_| {
            ApiError::field(
                "subscriptions",
                "validation_invalid_options",
                "Invalid subscription options JSON.",
            )
        })?;
        if let Some(q) = v.get("query").and_then(Value::as_object) {
            query = q.clone();
        }
    }
    let text = |k: &str| query.get(k).and_then(Value::as_str);
    let spec = match resolve_topic(state, topic_text) {
        Some(topic) => {
            let coll = state
                .registry
                .get(&topic.collection_id)
                .ok_or_else(|| ApiError::not_found("Unknown collection."))?;
            let shape = Shape::parse(state, &coll, caller, text("filter"), text("fields"), text("expand"))?;
            Some(Arc::new(SubSpec { topic, shape }))
        }
        // Never delivered to (see `SseSub::spec`).
        None => None,
    };
    Ok(SseSub {
        name: raw.to_owned(),
        spec,
    })
}

/// Form-style percent-decoding (`+` is a space), as the SDK URL-encodes
/// the options JSON; invalid escapes stay as they are.
fn urlencoding_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// `POST /api/realtime {clientId, subscriptions}`: replaces the client's
/// subscription set, as `token` (the request's `Authorization`) may, from
/// the `address` the stream was opened from.
pub fn set_subscriptions(
    state: &AppState,
    clients: &SseClients,
    body: &serde_json::Map<String, Value>,
    token: Option<String>,
    address: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let client_id = match body.get("clientId") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        _ => {
            return Err(ApiError::field(
                "clientId",
                "validation_required",
                "Missing or invalid clientId.",
            ))
        }
    };
    let topics: Vec<String> = match body.get("subscriptions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::field(
                    "subscriptions",
                    "validation_invalid_value",
                    "Subscriptions must be strings.",
                )
            })?,
        Some(_) => {
            return Err(ApiError::field(
                "subscriptions",
                "validation_invalid_value",
                "Must be an array of strings.",
            ))
        }
    };
    if topics.len() > MAX_SUBS || topics.iter().any(|t| t.is_empty() || t.len() > MAX_TOPIC_LEN) {
        return Err(ApiError::field(
            "subscriptions",
            "validation_invalid_value",
            "At most 1000 subscriptions of 1-2500 characters each.",
        ));
    }
    let client = clients
        .get(&client_id)
        .ok_or_else(|| ApiError::not_found("Missing or invalid client id."))?;
    if client.address.is_some() && client.address != address {
        return Err(ApiError::bad_request("Invalid realtime client."));
    }
    let caller = auth::resolve(state, token.as_deref());
    let mut subs = Vec::with_capacity(topics.len());
    for t in &topics {
        subs.push(parse_subscription(state, t, &caller)?);
    }
    // Checked and changed under one lock, so no other POST slips between.
    let mut st = client.inner.lock().unwrap_or_else(|e| e.into_inner());
    if !may_change(&st.who.req.caller, &caller) {
        return Err(ApiError::forbidden(
            "The current and the previous request authorization don't match.",
        ));
    }
    if !matches!(caller, Caller::Guest) {
        st.who.set(state, token);
    }
    st.subs = Arc::new(subs);
    Ok(())
}

/// Whether a POST by `caller` may change a client that holds `held` (as
/// PocketBase): a guest client may be taken by anyone (guest → auth is how
/// the SDK signs in); an authenticated one only by the same record of the
/// same collection, so knowing a `clientId` is not enough to silence or
/// redirect someone else's subscriptions.
fn may_change(held: &Caller, caller: &Caller) -> bool {
    match (held, caller) {
        (Caller::Guest, _) => true,
        (Caller::Auth { collection: a, .. }, Caller::Auth { collection: b, .. }) => {
            a.def.id == b.def.id && held.id() == caller.id()
        }
        (Caller::Auth { .. }, Caller::Guest) => false,
    }
}

/// The topic the SDK's one-call OAuth2 flow listens on.
pub const OAUTH2_TOPIC: &str = "@oauth2";

/// Hands an OAuth2 redirect's `{state, code, error}` to the client whose id
/// is `state` (`/api/oauth2-redirect`), as PocketBase: only to a live
/// client subscribed to [`OAUTH2_TOPIC`], only when the redirect comes from
/// the address that opened the stream, and once: the subscription is
/// dropped, so a replayed or forged redirect finds nobody to talk to.
/// False when nothing was sent.
pub fn send_oauth2(clients: &SseClients, state: &str, data: &Value, address: Option<std::net::IpAddr>) -> bool {
    let Some(client) = clients.get(state) else {
        return false;
    };
    if client.address.is_some() && client.address != address {
        return false;
    }
    {
        let mut st = client.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !st.subs.iter().any(|s| s.name == OAUTH2_TOPIC) {
            return false;
        }
        let kept: Vec<SseSub> = st
            .subs
            .iter()
            .filter(|s| s.name != OAUTH2_TOPIC)
            .map(|s| SseSub {
                name: s.name.clone(),
                spec: s.spec.clone(),
            })
            .collect();
        st.subs = Arc::new(kept);
    }
    client
        .tx
        .try_send(sse_frame(state, OAUTH2_TOPIC, &data.to_string()))
        .is_ok()
}
