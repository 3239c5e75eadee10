//! Listing records: parse `filter`/`sort`, combine with the listRule, plan
//! (index or scan), stream or sort, page, count, expand.

use std::collections::HashMap;
use std::ops::Bound;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::Mac;
use serde::Serialize;
use serde_json::Value;

use super::expand::{expand_records, ExpandTree};
use super::records::{raw, RawJson};
use crate::auth::HmacSha256;
use crate::clock::now_millis;
use crate::error::ApiError;
use crate::query::planner::{self, IndexInfo, Kind, Plan};
use crate::query::{encode_value, Filter, Identifier, JsonResolver, Resolved, Resolver, Root, TAG_NUMBER, TAG_STRING};
use crate::rules::{self, Access, Caller, ClientFilter, ClientSort, Data, RequestInfo};
use crate::schema::record::{export, export_raw};
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::{IndexDef, PRIMARY_INDEX};

/// PocketBase's paging limits.
pub const DEFAULT_PER_PAGE: usize = 30;
pub const MAX_PER_PAGE: usize = 1000;

/// Parsed list query parameters.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub page: usize,
    pub per_page: usize,
    pub sort: String,
    pub filter: String,
    pub skip_total: bool,
    pub expand: String,
    /// Keyset pagination: continue after this opaque position.
    pub cursor: Option<String>,
    /// Superusers only: include the chosen plan in the answer.
    pub explain: bool,
}

fn parse_positive(q: &HashMap<String, String>, key: &str, default: usize) -> Result<usize, ApiError> {
    match q.get(key).map(|s| s.trim()) {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(ApiError::bad_request(format!("'{key}' must be a positive integer."))),
        },
    }
}

fn flag(q: &HashMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(|s| s.trim()) {
        None | Some("0" | "false" | "False") => Ok(false),
        Some("1" | "true" | "True") => Ok(true),
        Some(_) => Err(ApiError::field(
            key,
            "validation_invalid_value",
            "Must be true, false, 1 or 0.",
        )),
    }
}

impl ListParams {
    pub fn from_query(q: &HashMap<String, String>) -> Result<ListParams, ApiError> {
        Ok(ListParams {
            page: parse_positive(q, "page", 1)?,
            // Like PocketBase: a perPage above the maximum is clamped, not refused.
            per_page: parse_positive(q, "perPage", DEFAULT_PER_PAGE)?.min(MAX_PER_PAGE),
            sort: q.get("sort").cloned().unwrap_or_default(),
            filter: q.get("filter").cloned().unwrap_or_default(),
            skip_total: flag(q, "skipTotal")?,
            expand: q.get("expand").cloned().unwrap_or_default(),
            cursor: q.get("cursor").filter(|c| !c.is_empty()).cloned(),
            explain: flag(q, "explain")?,
        })
    }
}

/// The list response shape (`totalItems`/`totalPages` are -1 with `skipTotal`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResult {
    pub page: usize,
    pub per_page: usize,
    pub total_items: i64,
    pub total_pages: i64,
    pub items: Vec<RawJson>,
    /// Present when the list is walked in index order and more items follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// Indexes the planner may use: the primary tree (as `_id`) and every
/// finished index.
fn index_defs(state: &AppState, coll: &CompiledCollection) -> Vec<IndexDef> {
    let mut defs = vec![IndexDef::primary()];
    defs.extend(
        coll.spec
            .indexes
            .iter()
            .filter(|i| !i.lowercase && state.index_builds.is_ready(&coll.def.id, &i.name))
            .cloned(),
    );
    defs
}

/// Raw key bounds of a plan on one index.
fn bounds(def: &IndexDef, plan: &Plan) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let primary = def.name == PRIMARY_INDEX;
    let enc = |out: &mut Vec<u8>, v: &Value, desc: bool| {
        if primary {
            // The primary tree is keyed by the raw id.
            out.extend_from_slice(v.as_str().unwrap_or_default().as_bytes());
        } else {
            encode_value(out, v, desc);
        }
    };
    let mut prefix = Vec::new();
    for (v, f) in plan.eq.iter().zip(&def.fields) {
        enc(&mut prefix, v, f.desc);
    }
    if primary && !plan.eq.is_empty() {
        // Exactly one id.
        return (Bound::Included(prefix.clone()), Bound::Included(prefix));
    }
    let Some(range) = &plan.range else {
        return if prefix.is_empty() {
            (Bound::Unbounded, Bound::Unbounded)
        } else {
            (Bound::Included(prefix.clone()), successor(prefix))
        };
    };
    let at = |v: &Value| {
        let mut k = prefix.clone();
        enc(&mut k, v, false);
        k
    };
    let (type_start, type_end) = if primary {
        (Vec::new(), None)
    } else {
        let tag = if range.kind == Kind::Number {
            TAG_NUMBER
        } else {
            TAG_STRING
        };
        let mut s = prefix.clone();
        s.push(tag);
        let mut e = prefix.clone();
        e.push(tag + 1);
        (s, Some(e))
    };
    if primary && range.kind == Kind::Number {
        // Ids are strings: no number range matches.
        return (Bound::Excluded(Vec::new()), Bound::Excluded(Vec::new()));
    }
    let lower = match &range.lower {
        None => Bound::Included(type_start),
        Some((v, true)) => Bound::Included(at(v)),
        // Everything with the value as prefix is equal to it: skip past them.
        Some((v, false)) if primary => Bound::Excluded(at(v)),
        Some((v, false)) => successor(at(v)),
    };
    let upper = match &range.upper {
        None => type_end.map_or(Bound::Unbounded, Bound::Excluded),
        Some((v, true)) if primary => Bound::Included(at(v)),
        Some((v, true)) => successor(at(v)),
        Some((v, false)) => Bound::Excluded(at(v)),
    };
    (lower, upper)
}

/// The first key after every key that starts with `prefix`.
fn successor(mut prefix: Vec<u8>) -> Bound<Vec<u8>> {
    while let Some(last) = prefix.pop() {
        if last < 0xff {
            prefix.push(last + 1);
            return Bound::Excluded(prefix);
        }
    }
    Bound::Unbounded
}

/// Bytes of a cursor's MAC (truncated HMAC-SHA256).
const CURSOR_TAG: usize = 16;

/// What a cursor is valid for: the MAC key state after absorbing the
/// collection (and its current definition, so a rule change voids cursors),
/// the index, the bounds of the plan (which hold the rule's constants, e.g.
/// the caller's id), the filter, the sort and the caller. A cursor made for
/// one of these can never be replayed against another.
fn cursor_scope(q: &Query, def: &IndexDef, bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> HmacSha256 {
    let mut mac = q.state.tokens.list_cursor_mac();
    let caller = match &q.req.caller {
        Caller::Guest => String::new(),
        Caller::Auth { collection, .. } => format!("{}/{}", collection.def.id, q.req.caller.id().unwrap_or_default()),
    };
    let bound_bytes = |b: &Bound<Vec<u8>>| match b {
        Bound::Included(k) => [b"i".as_slice(), k].concat(),
        Bound::Excluded(k) => [b"e".as_slice(), k].concat(),
        Bound::Unbounded => b"u".to_vec(),
    };
    let parts: [&[u8]; 9] = [
        q.coll.def.id.as_bytes(),
        q.coll.def.updated.as_bytes(),
        def.name.as_bytes(),
        &bound_bytes(&bounds.0),
        &bound_bytes(&bounds.1),
        q.params.filter.as_bytes(),
        q.params.sort.as_bytes(),
        caller.as_bytes(),
        if q.plan.reverse { b"r" } else { b"f" },
    ];
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

fn encode_cursor(scope: &HmacSha256, key: &[u8]) -> String {
    let mut mac = scope.clone();
    mac.update(key);
    let mut raw = mac.finalize().into_bytes()[..CURSOR_TAG].to_vec();
    raw.extend_from_slice(key);
    B64.encode(raw)
}

/// The index key a cursor continues after, if this server made it for this
/// very query (see [`cursor_scope`]) and it lies inside the plan's bounds.
fn decode_cursor(
    scope: &HmacSha256,
    cursor: &str,
    bounds: &(Bound<Vec<u8>>, Bound<Vec<u8>>),
) -> Result<Vec<u8>, ApiError> {
    let bad = || {
        ApiError::field(
            "cursor",
            "validation_invalid_cursor",
            "Invalid cursor: pass the nextCursor of a previous answer to the same query.",
        )
    };
    let raw = B64.decode(cursor).map_err(|_| bad())?;
    if raw.len() < CURSOR_TAG {
        return Err(bad());
    }
    let (tag, key) = raw.split_at(CURSOR_TAG);
    let mut mac = scope.clone();
    mac.update(key);
    mac.verify_truncated_left(tag).map_err(|_| bad())?;
    // Defence in depth: a cursor only ever narrows the plan's own range.
    let key = key.to_vec();
    let above = match &bounds.0 {
        Bound::Included(l) => key >= *l,
        Bound::Excluded(l) => key > *l,
        Bound::Unbounded => true,
    };
    let below = match &bounds.1 {
        Bound::Included(u) => key <= *u,
        Bound::Excluded(u) => key < *u,
        Bound::Unbounded => true,
    };
    if above && below {
        Ok(key)
    } else {
        Err(bad())
    }
}

/// Resolves `@request.*` and date macros to constants for the planner.
fn constant<'r>(request: &'r LazyRequest<'r>) -> impl Fn(&Identifier) -> Option<Value> + 'r {
    move |id: &Identifier| match (&id.root, &id.modifier) {
        (Root::Record | Root::Collection { .. }, _) | (_, Some(_)) => None,
        (root, None) => {
            let r = JsonResolver {
                record: &Value::Null,
                request: if root.is_request() { request.get() } else { &Value::Null },
                now_millis: now_millis(),
            };
            match r.resolve(id) {
                Resolved::One(v) => Some(v),
                _ => None,
            }
        }
    }
}

/// The `@request` object, built on first use: most lists (a public rule,
/// a filter on plain fields walked exactly by an index) never read it, and
/// building it copies the caller's record, query and headers (profiled at
/// ~2% of a list's instructions).
struct LazyRequest<'a> {
    req: &'a RequestInfo,
    value: std::sync::OnceLock<Value>,
}

impl<'a> LazyRequest<'a> {
    fn new(req: &'a RequestInfo) -> Self {
        LazyRequest {
            req,
            value: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> &Value {
        self.value.get_or_init(|| self.req.to_json(&Value::Null))
    }
}

/// One list request, prepared: what the caller may see (the rule, trusted)
/// and asked for (their filter and sort, checked by `rules::client`), and
/// the access path the planner chose.
struct Query<'a> {
    state: &'a AppState,
    coll: &'a CompiledCollection,
    params: &'a ListParams,
    req: &'a RequestInfo,
    rule: Filter,
    client: ClientFilter,
    sort: ClientSort,
    expand: ExpandTree,
    request: LazyRequest<'a>,
    defs: Vec<IndexDef>,
    plan: Plan,
}

/// What a walk or scan found for the page.
#[derive(Default)]
struct Found {
    /// Parsed records of the page (`Null` placeholders when spliced).
    page: Vec<Value>,
    /// Items spliced from stored bytes (the verbatim path).
    raw_items: Vec<RawJson>,
    total: Option<u64>,
    next_cursor: Option<String>,
}

impl<'a> Query<'a> {
    fn prepare(
        state: &'a AppState,
        coll: &'a CompiledCollection,
        params: &'a ListParams,
        req: &'a RequestInfo,
    ) -> Result<Query<'a>, ApiError> {
        let access = rules::access(&coll.rules.list, &req.caller);
        if access == Access::Locked {
            return Err(ApiError::forbidden("Only superusers can perform this action."));
        }
        let client = ClientFilter::parse(&state.registry, coll, &params.filter, &req.caller)?;
        let sort = ClientSort::parse(&state.registry, coll, &params.sort, &req.caller)?.or_default();
        let expand = ExpandTree::parse(&params.expand)?;
        let rule = match access {
            Access::Conditional => coll.rules.list.clone().unwrap_or_default(),
            _ => Filter::everything(),
        };
        let request = LazyRequest::new(req);
        let defs = index_defs(state, coll);
        let infos: Vec<IndexInfo> = defs
            .iter()
            .map(|d| IndexInfo {
                name: d.name.clone(),
                fields: d.fields.iter().map(|f| (f.path.clone(), f.desc)).collect(),
            })
            .collect();
        let planned = rule.clone().and(client.for_planning().clone());
        let mut plan = planner::plan(
            &planned,
            sort.keys(),
            &infos,
            &|p| coll.is_scalar_path(p),
            &constant(&request),
        );
        // Relation hops and guarded emails are decided record by record.
        plan.exact &= !client.per_record();
        plan.sorted &= !sort.through_relations();
        Ok(Query {
            state,
            coll,
            params,
            req,
            rule,
            client,
            sort,
            expand,
            request,
            defs,
            plan,
        })
    }

    fn data(&self) -> Data<'a> {
        Data::new(&self.state.store, &self.state.registry, &self.req.budget)
    }

    /// Walked in index order with nothing to check or embed per record:
    /// reads about one page of records.
    fn cheap(&self) -> bool {
        self.plan.index.is_some()
            && self.plan.sorted
            && (self.unfiltered() || self.plan.exact)
            && self.expand.is_empty()
    }

    /// No record needs checking at all.
    fn unfiltered(&self) -> bool {
        self.rule.is_empty() && self.client.is_empty()
    }

    /// The rule (trusted) and the client's filter (guarded) both hold.
    fn matches(&self, rec: &Value) -> bool {
        (self.rule.is_empty() || rules::holds(self.data(), self.coll, &self.rule, rec, self.request.get()))
            && self.client.matches(self.data(), self.coll, rec, self.request.get())
    }

    /// One candidate, drawn from the request's budget (`None` once spent).
    fn fetch(&self, id: &str) -> Result<Option<Value>, ApiError> {
        if !self.req.budget.read(1) {
            return Ok(None);
        }
        Ok(self.state.store.get(&self.coll.def.id, id)?.map(|r| r.data))
    }

    fn offset(&self) -> usize {
        if self.params.cursor.is_some() {
            0
        } else {
            (self.params.page - 1).saturating_mul(self.params.per_page)
        }
    }

    /// Records can be spliced from their stored bytes without parsing.
    fn verbatim(&self) -> bool {
        (self.unfiltered() || self.plan.exact) && self.expand.is_empty() && self.coll.exports_verbatim()
    }

    /// Streams the page in index order (the index serves the sort).
    fn walk_index(&self, ix: usize) -> Result<Found, ApiError> {
        let (store, cid, params) = (&self.state.store, &self.coll.def.id, self.params);
        let def = &self.defs[ix];
        let plan_bounds = bounds(def, &self.plan);
        let scope = || cursor_scope(self, def, &plan_bounds);
        let (mut lower, mut upper) = plan_bounds.clone();
        if let Some(c) = &params.cursor {
            let key = decode_cursor(&scope(), c, &plan_bounds)?;
            if self.plan.reverse {
                upper = Bound::Excluded(key);
            } else {
                lower = Bound::Excluded(key);
            }
        }
        let (offset, want_total, verbatim) = (self.offset(), !params.skip_total, self.verbatim());
        let cheap_total = self.unfiltered() || self.plan.exact;
        let mut found = Found::default();
        let (mut seen, mut last_key, mut more) = (0u64, None, false);
        for entry in store.index_range(cid, def, lower, upper, self.plan.reverse)? {
            let (key, id) = entry?;
            if found.page.len() == params.per_page {
                more = true;
                if !want_total || cheap_total || params.cursor.is_some() {
                    break;
                }
                if self.fetch(&id)?.is_some_and(|rec| self.matches(&rec)) {
                    seen += 1;
                }
                continue;
            }
            if self.plan.exact && (seen as usize) < offset {
                seen += 1;
                continue;
            }
            if verbatim {
                let spliced = store.get_raw(cid, &id)?.and_then(|r| export_raw(self.coll, r.json()));
                if let Some(item) = spliced {
                    seen += 1;
                    if seen as usize > offset {
                        if !self.req.budget.output(item.get().len() as u64) {
                            break;
                        }
                        found.raw_items.push(item);
                        found.page.push(Value::Null);
                        last_key = Some(key);
                    }
                }
                continue;
            }
            let Some(rec) = self.fetch(&id)? else { continue };
            if !self.matches(&rec) {
                continue;
            }
            seen += 1;
            if seen as usize > offset {
                if !self.req.budget.output(rules::json_size(&rec)) {
                    break;
                }
                found.page.push(rec);
                last_key = Some(key);
            }
        }
        if more {
            found.next_cursor = last_key.map(|k| encode_cursor(&scope(), &k));
        }
        if want_total {
            found.total = Some(if self.unfiltered() {
                store.count(cid)
            } else if self.plan.exact {
                store
                    .index_range(cid, def, plan_bounds.0, plan_bounds.1, false)?
                    .count() as u64
            } else if params.cursor.is_some() {
                self.count_all()?
            } else {
                seen
            });
        }
        Ok(found)
    }

    /// Collects every match (from an index range or a full scan), sorts in
    /// memory and cuts the page.
    fn scan_and_sort(&self) -> Result<Found, ApiError> {
        if self.params.cursor.is_some() {
            return Err(ApiError::field(
                "cursor",
                "validation_invalid_cursor",
                "Cursor paging needs a sort that an index serves (e.g. created, id, or a declared index).",
            ));
        }
        let (store, cid) = (&self.state.store, &self.coll.def.id);
        let mut all = Vec::new();
        let candidates: Box<dyn Iterator<Item = Result<Value, ApiError>>> = match self.plan.index {
            Some(ix) => {
                let def = &self.defs[ix];
                let (lower, upper) = bounds(def, &self.plan);
                Box::new(
                    store
                        .index_range(cid, def, lower, upper, false)?
                        .filter_map(move |e| match e {
                            Ok((_, id)) => self.fetch(&id).transpose(),
                            Err(e) => Some(Err(e.into())),
                        }),
                )
            }
            None => Box::new(
                store
                    .scan(cid, false)?
                    .take_while(|_| self.req.budget.read(1))
                    .map(|r| r.map(|r| r.data).map_err(ApiError::from)),
            ),
        };
        for rec in candidates {
            let rec = rec?;
            if self.matches(&rec) {
                all.push(rec);
            }
        }
        self.sort.sort(self.data(), self.coll, &mut all, self.request.get());
        let total = Some(all.len() as u64);
        let budget = &self.req.budget;
        let page = all
            .into_iter()
            .skip(self.offset())
            .take(self.params.per_page)
            .take_while(|rec| budget.output(rules::json_size(rec)))
            .collect();
        Ok(Found {
            total,
            page,
            ..Found::default()
        })
    }

    /// Counts matches with a full pass (no index answers the filter exactly).
    fn count_all(&self) -> Result<u64, ApiError> {
        let mut n = 0;
        for r in self.state.store.scan(&self.coll.def.id, false)? {
            if !self.req.budget.read(1) {
                break;
            }
            if self.matches(&r?.data) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Walks the index or scans and sorts, then shapes the answer.
    fn run(self) -> Result<ListResult, ApiError> {
        let found = match self.plan.index {
            Some(ix) if self.plan.sorted => self.walk_index(ix)?,
            _ => self.scan_and_sort()?,
        };
        self.shape(found)
    }

    /// The answer: items exported for the caller (and expanded), totals, plan.
    fn shape(self, found: Found) -> Result<ListResult, ApiError> {
        // Nothing partial: a spent budget fails the whole list.
        self.req.budget.check()?;
        let (params, caller) = (self.params, &self.req.caller);
        let items = if self.verbatim() && !found.raw_items.is_empty() {
            found.raw_items
        } else {
            let viewer = caller.viewer();
            let mut items: Vec<Value> = found.page.iter().map(|r| export(self.coll, r, &viewer)).collect();
            if !self.expand.is_empty() {
                expand_records(self.data(), self.coll, &found.page, &mut items, &self.expand, self.req);
                self.req.budget.check()?;
            }
            items.into_iter().map(raw).collect::<Result<Vec<_>, _>>()?
        };
        let (total_items, total_pages) = match (params.skip_total, found.total) {
            (false, Some(t)) => (t as i64, t.div_ceil(params.per_page as u64) as i64),
            _ => (-1, -1),
        };
        Ok(ListResult {
            page: if params.cursor.is_some() { 1 } else { params.page },
            per_page: params.per_page,
            total_items,
            total_pages,
            items,
            next_cursor: found.next_cursor,
            plan: (params.explain && caller.is_superuser()).then(|| self.plan.explain.clone()),
        })
    }
}

/// [`list`] for the HTTP handlers: a cheap list runs inline; any other
/// (scans, per-record checks, relation paths, expand) runs as heavy work
/// off the HTTP workers (`state::work`), within the request's budget.
pub async fn list_async(
    state: &AppState,
    coll: std::sync::Arc<CompiledCollection>,
    params: ListParams,
    req: RequestInfo,
) -> Result<ListResult, ApiError> {
    {
        // Prepared once: a cheap list (the common case) runs right here.
        let q = Query::prepare(state, &coll, &params, &req)?;
        if q.cheap() {
            return q.run();
        }
    }
    let state2 = state.clone();
    state.work.run(move || list(&state2, &coll, &params, &req)).await?
}

/// Lists records: `(listRule) && (filter)` through the planner, walked in
/// index order or scanned and sorted, then shaped for the caller.
pub fn list(
    state: &AppState,
    coll: &CompiledCollection,
    params: &ListParams,
    req: &RequestInfo,
) -> Result<ListResult, ApiError> {
    Query::prepare(state, coll, params, req)?.run()
}
