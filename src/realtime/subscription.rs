//! Subscriptions and what one subscriber may see of one change.
//!
//! Delivery of a change to a subscription checks, in order: the topic
//! (`coll/*` or `coll/ID`), the collection's rule for that topic kind
//! (`listRule` for `*`, `viewRule` for one record) with the subscriber's auth
//! and `@request.context = "realtime"`, the subscription's own filter, then
//! shapes the record (`expand`, `fields`) exactly like the REST API would
//! for that caller — so hidden fields and other users' emails never leak.

use std::sync::Arc;

use serde_json::Value;

use crate::core::expand::{expand_records, ExpandTree};
use crate::error::ApiError;
use crate::rules::{self, Access, Budget, Caller, ClientFilter, RequestInfo};
use crate::schema::fields::FieldsTree;
use crate::schema::record::{export, export_raw};
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::Change;

/// What a subscription listens to.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    /// The collection id (resolved when subscribing, so renames don't matter).
    pub collection_id: String,
    /// `None` for `coll/*`.
    pub record_id: Option<String>,
}

/// Options shaping a subscription's events.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// Checked for the subscriber when subscribing (`rules::client`): a
    /// filter may only touch what the caller could filter a REST list by.
    pub filter: Option<ClientFilter>,
    pub fields: Option<FieldsTree>,
    pub expand: ExpandTree,
}

impl Shape {
    /// Parses the optional `filter`, `fields`, `expand` strings of a
    /// subscription to `coll` by `caller`.
    pub fn parse(
        state: &AppState,
        coll: &CompiledCollection,
        caller: &Caller,
        filter: Option<&str>,
        fields: Option<&str>,
        expand: Option<&str>,
    ) -> Result<Shape, ApiError> {
        let filter = match filter.map(str::trim).filter(|f| !f.is_empty()) {
            None => None,
            Some(f) => Some(ClientFilter::parse(&state.registry, coll, f, caller)?),
        };
        let fields = match fields.map(str::trim).filter(|f| !f.is_empty()) {
            None => None,
            Some(f) => Some(FieldsTree::parse(f)?),
        };
        let expand = ExpandTree::parse(expand.unwrap_or_default())?;
        Ok(Shape { filter, fields, expand })
    }

    fn is_plain(&self) -> bool {
        self.filter.is_none() && self.fields.is_none() && self.expand.is_empty()
    }
}

/// Resolves `collection/*`, `collection/ID` or a bare `collection` (treated
/// as `/*`, PocketBase's deprecated form) without checking rules: `None` for
/// anything else (SSE accepts any topic string, as PocketBase does, and
/// simply never sends events for it).
pub fn resolve_topic(state: &AppState, topic: &str) -> Option<Topic> {
    let (name, rest) = match topic.split_once('/') {
        Some((n, r)) => (n, Some(r)),
        None => (topic, None),
    };
    let coll = state.registry.get(name)?;
    let record_id = match rest {
        None | Some("*") => None,
        Some(id) if crate::ids::is_valid_record_id(id) => Some(id.to_owned()),
        Some(_) => return None,
    };
    Some(Topic {
        collection_id: coll.def.id.clone(),
        record_id,
    })
}

/// Parses `collection/*`, `collection/ID` or a bare `collection` (treated as
/// `/*`, as PocketBase's deprecated form), resolving the collection, and
/// refuses topics whose rule is locked for `caller` (403).
pub fn parse_topic(
    state: &AppState,
    topic: &str,
    caller: &Caller,
) -> Result<(Topic, Arc<CompiledCollection>), ApiError> {
    let (name, rest) = match topic.split_once('/') {
        Some((n, r)) => (n, Some(r)),
        None => (topic, None),
    };
    let coll = state
        .registry
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("Unknown collection '{name}'.")))?;
    let record_id = match rest {
        None | Some("*") => None,
        Some(id) if !id.is_empty() && crate::ids::is_valid_record_id(id) => Some(id.to_owned()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "A topic is COLLECTION/* or COLLECTION/RECORD_ID.",
            ))
        }
    };
    let rule = if record_id.is_some() {
        &coll.rules.view
    } else {
        &coll.rules.list
    };
    if rules::access(rule, caller) == Access::Locked {
        return Err(ApiError::forbidden("Only superusers can subscribe to this topic."));
    }
    Ok((
        Topic {
            collection_id: coll.def.id.clone(),
            record_id,
        },
        coll,
    ))
}

/// The rule a topic answers to: listRule for `coll/*`, viewRule for `coll/ID`.
fn topic_rule<'c>(coll: &'c CompiledCollection, topic: &Topic) -> &'c Option<crate::query::Filter> {
    if topic.record_id.is_some() {
        &coll.rules.view
    } else {
        &coll.rules.list
    }
}

/// The record JSON this subscriber gets for `change`, or `None` if the
/// topic, the rule or the filter says no. `request` is the subscriber's
/// `@request` object (`RequestInfo::to_json`). Every record read draws from
/// `budget`; when it runs out the answer is `None` and the caller must
/// treat the subscription as over budget (`budget.is_exhausted()`).
pub fn render(
    state: &AppState,
    topic: &Topic,
    shape: &Shape,
    req: &RequestInfo,
    request: &Value,
    change: &Change,
    budget: &Budget,
) -> Option<String> {
    if change.collection_id != topic.collection_id {
        return None;
    }
    let record = &change.record;
    if let Some(rid) = &topic.record_id {
        if record.get("id").and_then(Value::as_str) != Some(rid.as_str()) {
            return None;
        }
    }
    let coll = state.registry.get(&change.collection_id)?;
    let data = crate::core::rule_data(state, budget);
    let rule = topic_rule(&coll, topic);
    match rules::access(rule, &req.caller) {
        Access::Locked => return None,
        Access::Allow => {}
        Access::Conditional => {
            if !rule
                .as_ref()
                .is_some_and(|r| rules::holds(data, &coll, r, record, request))
            {
                return None;
            }
        }
    }
    if let Some(f) = &shape.filter {
        if !f.matches_for(data, &coll, record, request, &req.caller) {
            return None;
        }
    }
    if shape.is_plain() {
        // Shared fast path: the same bytes for every subscriber.
        if let Some(raw) = export_raw(&coll, change.record_bytes()) {
            return Some(raw.get().to_owned());
        }
    }
    let mut items = vec![export(&coll, record, &req.caller.viewer())];
    if !shape.expand.is_empty() {
        expand_records(
            data,
            &coll,
            std::slice::from_ref(record),
            &mut items,
            &shape.expand,
            req,
        );
    }
    if budget.is_exhausted() {
        return None;
    }
    let mut item = items.pop()?;
    if let Some(fields) = &shape.fields {
        fields.apply_response(&mut item);
    }
    serde_json::to_string(&item).ok()
}

/// A subscription as delivery needs it; shared (`Arc`) so a batch of them
/// moves into a blocking task without copying filters.
#[derive(Debug)]
pub struct SubSpec {
    pub topic: Topic,
    pub shape: Shape,
}

/// What one subscription gets for one change.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// This record JSON.
    Send(String),
    /// Nothing (topic, rule or filter said no).
    Skip,
    /// Its checks ran out of the connection's budget for this change: it is
    /// dropped with an error.
    OverBudget,
    /// The budget ran out before its turn: it may have missed the change,
    /// so it is dropped with `resync`.
    Resync,
}

/// Renders one change for a connection's subscriptions, all drawing from
/// one budget (settings `budget.realtimeMaxRecords`), so delivering a
/// change costs a connection a bounded amount of work however many
/// subscriptions, filters and expands it has.
pub fn render_all(
    state: &AppState,
    specs: &[Arc<SubSpec>],
    req: &RequestInfo,
    request: &Value,
    change: &Change,
) -> Vec<Delivery> {
    let budget = Budget::new(state.settings.realtime_limits());
    specs
        .iter()
        .map(|spec| {
            if budget.is_exhausted() {
                return Delivery::Resync;
            }
            match render(state, &spec.topic, &spec.shape, req, request, change, &budget) {
                _ if budget.is_exhausted() => Delivery::OverBudget,
                Some(json) => Delivery::Send(json),
                None => Delivery::Skip,
            }
        })
        .collect()
}

/// Whether rendering `change` for `specs` may read other records (a rule
/// or filter that is an expression, or an expand): then delivery runs on
/// the blocking pool, never on the HTTP workers. Plain subscriptions to
/// open topics render inline (one shared splice of the stored bytes).
pub fn needs_reads(state: &AppState, specs: &[Arc<SubSpec>], caller: &Caller, change: &Change) -> bool {
    let Some(coll) = state.registry.get(&change.collection_id) else {
        return false;
    };
    specs.iter().any(|spec| {
        spec.topic.collection_id == change.collection_id
            && (!spec.shape.is_plain() || rules::access(topic_rule(&coll, &spec.topic), caller) == Access::Conditional)
    })
}

/// Whether `change` updates or deletes the caller's own auth record (then
/// its token must be checked again: a password change rotates `tokenKey`).
fn touches_caller(caller: &Caller, change: &Change) -> bool {
    match caller {
        Caller::Auth { collection, record, .. } => {
            collection.def.id == change.collection_id && record.get("id") == change.record.get("id")
        }
        Caller::Guest => false,
    }
}

/// A realtime connection's caller (WebSocket or SSE): who they are, the
/// token that says so and until when it does. Events are rendered for
/// [`Subscriber::req`]; [`Subscriber::refresh`] keeps it true.
pub struct Subscriber {
    pub req: RequestInfo,
    /// `req.to_json(null)`, rebuilt whenever the caller changes.
    pub request: Value,
    token: Option<String>,
    /// The token's `exp` (seconds since the epoch).
    expires: Option<i64>,
}

impl Subscriber {
    pub fn guest() -> Subscriber {
        let req = RequestInfo::internal(Caller::Guest, "GET", "realtime");
        Subscriber {
            request: req.to_json(&Value::Null),
            req,
            token: None,
            expires: None,
        }
    }

    /// Becomes whoever `token` (an `Authorization` value) names, or a guest.
    pub fn set(&mut self, state: &AppState, token: Option<String>) {
        let (caller, expires) = crate::core::auth::resolve_until(state, token.as_deref());
        self.expires = expires;
        self.req.caller = caller;
        self.request = self.req.to_json(&Value::Null);
        self.token = token;
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Checks the caller again before `change` is rendered: when its token
    /// has expired (SPEC §5: from then on a guest), or when the change is
    /// to the caller's own auth record (a password change revokes tokens).
    /// True when an authenticated caller became a guest.
    pub fn refresh(&mut self, state: &AppState, change: Option<&Change>) -> bool {
        let expired = self.expires.is_some_and(|exp| crate::clock::now_millis() / 1000 >= exp);
        let touched = change.is_some_and(|c| touches_caller(&self.req.caller, c));
        if !expired && !touched {
            return false;
        }
        let was_auth = !matches!(self.req.caller, Caller::Guest);
        let token = if expired { None } else { self.token.take() };
        self.set(state, token);
        was_auth && matches!(self.req.caller, Caller::Guest)
    }
}
