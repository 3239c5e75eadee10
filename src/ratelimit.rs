//! Rate limiting by the PocketBase-style rules in `settings.rateLimits`,
//! per client address, plus a per-account limit on failed logins. No actix
//! types: `api::ratelimit` calls [`RateLimiter::check_request`] for each
//! request; every check of a secret (`core::auth`: password and OTP logins,
//! the dashboard's login, `oldPassword` on a PATCH) first takes a
//! [`LoginAttempt`] from [`RateLimiter::check_login`].
//!
//! **Algorithm: fixed windows**, as in PocketBase: each (rule, key) counts
//! requests from the start of its window and restarts after `duration`
//! seconds, so `maxRequests` per `duration` means the same as there,
//! `Retry-After` is exact (rest of the window, rounded up) and a key costs
//! 16 bytes. No dependency: governor's GCRA refills one request every
//! duration/max, which is not the PocketBase meaning. The known cost: around
//! a window boundary a client can get 2×max through, harmless against brute
//! force and abuse, which span many windows.
//!
//! **Which rule applies**: one, the most specific that matches (PocketBase
//! order): `collection:tag` > `*:tag` > `METHOD /path` > `/path`, the
//! longest path first. Tags are PocketBase's per route (see [`classify`]):
//! a route may carry two (`authWithPassword` and `auth`), and then both
//! `collection:` labels come before both `*:` labels, as in PocketBase.
//! `{c}` may be a name or an id; it is resolved to the name only when a
//! `collection:tag` rule exists for one of the request's tags, so the hot
//! path never touches the registry. Addresses in `excludedIPs` pass every
//! per-address rule, but not the per-account limit on failed logins (a
//! shared NAT or a forged proxy header must not buy unlimited password
//! guesses). A path label matches
//! itself and what lies below it at a segment boundary (`/api/batch` matches
//! `/api/batch/x`, not `/api/batchx`). With duplicate labels the first rule
//! wins; a label of no known form never matches (logged when built).
//!
//! **Keys**: the peer address; IPv6 by /64, since one host usually owns a
//! whole /64 and could otherwise rotate through 2^64 keys.
//!
//! **Per-account limit, without lockout**: failed logins are also counted
//! under the same `collection:auth`/`*:auth` rule, in a separate table keyed
//! by a keyed 64-bit hash of (collection id, account, client address).
//! "Account" is the record id once the identity resolves to one (so every
//! spelling of the identity, and `oldPassword` checks, share one window),
//! else the lowercased identity. Only failures count: an attempt takes a
//! slot *before* the secret is checked (so concurrent guesses cannot slip
//! past the check) and gives it back when the secret proves right
//! ([`LoginAttempt::succeeded`]); a full window refuses the attempt without
//! checking the secret, so from there on it is no oracle.
//!
//! Why (account, address) and not the account alone: a window per account
//! lets anyone lock its owner out — a few wrong passwords from a stranger's
//! address would keep the owner's right password at 429 everywhere, which
//! the contract forbids. Keyed per address, one address's failures never
//! block another. What still bounds guessing: each address gets `max`
//! failures per window per account (also on paths the per-address rule
//! does not see, such as `oldPassword` on a PATCH, and for callers the
//! per-address rule lets through, such as superusers), the per-address rule
//! bounds each address across all accounts, IPv6 counts by /64, and every
//! guess costs an argon2id verification. A botnet with many addresses gets
//! `max` guesses per address and window: that is the price of no lockout,
//! the same trade PocketBase makes (it has no per-account limit at all).
//!
//! **Memory**: a table is swept of expired windows when it reaches
//! `sweep_at` keys, which then becomes twice what is left (amortised O(1)
//! per new key); sweeps run at most once a second, so a flood of new keys
//! cannot make every request pay for one. Past [`MAX_KEYS`], new keys share
//! one overflow window: a flood of fresh addresses is limited as a group
//! instead of growing memory or going unlimited.
//!
//! **Settings changes**: the rules are compiled once per settings snapshot
//! (the hot path compares `Arc` pointers). Equal rules in a new snapshot
//! keep the compiled table; changed rules build a new one that keeps the
//! counters of every rule left identical, so an edit resets only its rule.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::error::ApiError;
use crate::settings::{parse_subnet, RateLimitRule, Settings, RATE_LIMIT_TAGS};

/// Most keys one table (one rule, addresses or accounts) tracks.
pub const MAX_KEYS: usize = 100_000;
/// Tables smaller than this are never swept.
const MIN_SWEEP: usize = 1_024;
/// Least time between two sweeps of one table, in milliseconds.
const SWEEP_EVERY_MS: u64 = 1_000;

/// The 429 every limited request gets (the body is PocketBase's; the error
/// renders `Retry-After`).
pub fn too_many(retry_after: u64) -> ApiError {
    let mut e = ApiError::new(429, "Too many requests.");
    e.retry_after = Some(retry_after.max(1));
    e
}

/// PocketBase's action tags for the collection routes, as its router binds
/// them (`apis/record_auth.go`, `record_crud.go`, `file.go`): each route
/// has its own tag, and only the three logins also carry `auth`. Token
/// refresh, the mail-sending `request*` routes and the `confirm*` routes
/// have their own tags, so a `*:auth` rule never limits them.
const AUTH_ROUTES: [(&str, &str, &[&str]); 12] = [
    ("POST", "auth-with-password", &["authWithPassword", "auth"]),
    ("POST", "auth-with-oauth2", &["authWithOAuth2", "auth"]),
    ("POST", "auth-with-otp", &["authWithOTP", "auth"]),
    ("POST", "auth-refresh", &["authRefresh"]),
    ("GET", "auth-methods", &["listAuthMethods"]),
    ("POST", "request-otp", &["requestOTP"]),
    ("POST", "request-password-reset", &["requestPasswordReset"]),
    ("POST", "confirm-password-reset", &["confirmPasswordReset"]),
    ("POST", "request-verification", &["requestVerification"]),
    ("POST", "confirm-verification", &["confirmVerification"]),
    ("POST", "request-email-change", &["requestEmailChange"]),
    ("POST", "confirm-email-change", &["confirmEmailChange"]),
];

/// The `{c}` path segment and the action tags (most specific first) of a
/// collection request; `None` for requests no `collection:tag` label
/// covers.
pub fn classify<'a>(method: &str, path: &'a str) -> Option<(&'a str, &'static [&'static str])> {
    if let Some(rest) = path.strip_prefix("/api/files/") {
        // `GET /api/files/{c}/{record}/{file}` (PocketBase's `file` tag).
        let mut parts = rest.split('/');
        let c = parts.next().filter(|c| !c.is_empty())?;
        let ok = method == "GET" && parts.clone().count() == 2 && parts.all(|p| !p.is_empty());
        return ok.then_some((c, &["file"][..]));
    }
    let mut parts = path.strip_prefix("/api/collections/")?.split('/');
    let c = parts.next().filter(|c| !c.is_empty())?;
    let tags: &'static [&'static str] = match (parts.next()?, parts.next(), parts.next()) {
        ("records", None, _) => match method {
            "GET" => &["list"],
            "POST" => &["create"],
            _ => return None,
        },
        ("records", Some(id), None) if !id.is_empty() => match method {
            "GET" => &["view"],
            "PATCH" => &["update"],
            "DELETE" => &["delete"],
            _ => return None,
        },
        (op, None, _) => AUTH_ROUTES
            .iter()
            .find(|(m, name, _)| *m == method && *name == op)
            .map(|(_, _, tags)| *tags)?,
        _ => return None,
    };
    Some((c, tags))
}

/// Whether `path` is `prefix` or lies below it (at a segment boundary).
fn path_matches(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'))
}

/// The bucket key of a peer address (IPv6 by /64, mapped IPv4 as IPv4);
/// the connection caps (`caps`) key on it too.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// One counter: requests seen since `start` (ms on the limiter's clock).
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start: u64,
    count: u32,
}

impl Window {
    /// Counts one request; `Err(seconds until the window ends)` when full.
    fn hit(&mut self, now: u64, max: u32, window_ms: u64) -> Result<(), u64> {
        if self.count == 0 || now.saturating_sub(self.start) >= window_ms {
            *self = Window { start: now, count: 0 };
        }
        if self.count >= max {
            let left = (self.start + window_ms).saturating_sub(now);
            return Err(left.div_ceil(1000).max(1));
        }
        self.count += 1;
        Ok(())
    }
}

/// The windows of one rule for one kind of key.
struct Windows<K> {
    map: HashMap<K, Window>,
    sweep_at: usize,
    next_sweep: u64,
    /// Shared by new keys while the table is full.
    overflow: Window,
}

impl<K: Hash + Eq> Windows<K> {
    fn new() -> Self {
        Windows {
            map: HashMap::new(),
            sweep_at: MIN_SWEEP,
            next_sweep: 0,
            overflow: Window::default(),
        }
    }

    fn hit(&mut self, key: K, now: u64, max: u32, window_ms: u64) -> Result<(), u64> {
        if let Some(w) = self.map.get_mut(&key) {
            return w.hit(now, max, window_ms);
        }
        if self.map.len() >= self.sweep_at && now >= self.next_sweep {
            self.map.retain(|_, w| now.saturating_sub(w.start) < window_ms);
            self.sweep_at = (self.map.len() * 2).clamp(MIN_SWEEP, MAX_KEYS);
            self.next_sweep = now + SWEEP_EVERY_MS;
        }
        if self.map.len() >= MAX_KEYS {
            return self.overflow.hit(now, max, window_ms);
        }
        let mut w = Window::default();
        let verdict = w.hit(now, max, window_ms);
        self.map.insert(key, w);
        verdict
    }

    /// The start of `key`'s window (`None` when it shares the overflow).
    fn start_of(&self, key: &K) -> Option<u64> {
        self.map.get(key).map(|w| w.start)
    }

    /// Gives back one request counted in `key`'s window, if that window
    /// (the one starting at `start`) is still current.
    fn refund(&mut self, key: &K, start: u64) {
        if let Some(w) = self.map.get_mut(key).filter(|w| w.start == start) {
            w.count = w.count.saturating_sub(1);
        }
    }
}

/// The counters of one rule.
struct Bucket {
    rule: RateLimitRule,
    window_ms: u64,
    ips: Mutex<Windows<IpAddr>>,
    /// Failed logins by (collection, account, address) hash.
    accounts: Mutex<Windows<u64>>,
}

impl Bucket {
    fn hit<K: Hash + Eq>(&self, table: &Mutex<Windows<K>>, key: K, now: u64) -> Result<(), u64> {
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        t.hit(key, now, self.rule.max_requests.max(1), self.window_ms)
    }
}

/// Who a rule applies to (PocketBase's `audience`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Everyone,
    /// `@guest`: requests without a valid token.
    Guests,
    /// `@auth`: requests with a valid token (any auth collection).
    Authenticated,
}

impl Audience {
    fn parse(s: &str) -> Audience {
        match s.trim() {
            "@guest" => Audience::Guests,
            "@auth" => Audience::Authenticated,
            _ => Audience::Everyone,
        }
    }
}

/// Whether the request is authenticated, asked at most once and only when
/// a rule with an audience is a candidate (resolving a token costs).
struct Who<F: FnOnce() -> bool> {
    ask: Option<F>,
    known: Option<bool>,
}

impl<F: FnOnce() -> bool> Who<F> {
    fn new(ask: F) -> Self {
        Who {
            ask: Some(ask),
            known: None,
        }
    }

    fn is_auth(&mut self) -> bool {
        if let Some(k) = self.known {
            return k;
        }
        let k = self.ask.take().is_some_and(|f| f());
        self.known = Some(k);
        k
    }

    fn fits(&mut self, audience: Audience) -> bool {
        match audience {
            Audience::Everyone => true,
            Audience::Guests => !self.is_auth(),
            Audience::Authenticated => self.is_auth(),
        }
    }
}

/// Rules compiled for matching, with their counters.
struct Table {
    rules: Vec<RateLimitRule>,
    /// Each rule's audience, by rule index.
    audience: Vec<Audience>,
    /// `collection:tag` → bucket index.
    named: Vec<(String, String, usize)>,
    /// `*:tag` → bucket index, in rule order.
    any: Vec<(String, usize)>,
    /// `rateLimits.excludedIPs`, parsed: requests from these addresses or
    /// subnets are never limited (PocketBase's meaning).
    excluded: Vec<(IpAddr, u8)>,
    /// `excludedIPs` as written, to tell whether a new snapshot changed it.
    excluded_src: Vec<String>,
    /// `METHOD /path`, longest path first.
    method_paths: Vec<(String, String, usize)>,
    /// `/path`, longest first.
    paths: Vec<(String, usize)>,
    buckets: Vec<Arc<Bucket>>,
}

impl Table {
    /// Compiles `rules`, reusing `previous` counters of identical rules.
    fn build(rules: &[RateLimitRule], excluded: &[String], previous: Option<&Table>) -> Table {
        let mut t = Table {
            rules: rules.to_vec(),
            excluded: excluded.iter().filter_map(|s| parse_subnet(s)).collect(),
            excluded_src: excluded.to_vec(),
            audience: rules.iter().map(|r| Audience::parse(&r.audience)).collect(),
            named: Vec::new(),
            any: Default::default(),
            method_paths: Vec::new(),
            paths: Vec::new(),
            buckets: Vec::with_capacity(rules.len()),
        };
        for (i, rule) in rules.iter().enumerate() {
            let reused = previous.and_then(|p| p.buckets.iter().find(|b| b.rule == *rule));
            t.buckets.push(reused.cloned().unwrap_or_else(|| {
                Arc::new(Bucket {
                    rule: rule.clone(),
                    window_ms: u64::from(rule.duration.max(1)) * 1000,
                    ips: Mutex::new(Windows::new()),
                    accounts: Mutex::new(Windows::new()),
                })
            }));
            let label = rule.label.trim();
            if label.starts_with('/') {
                t.paths.push((label.to_owned(), i));
            } else if let Some((method, path)) = label.split_once(' ').filter(|(_, p)| p.trim().starts_with('/')) {
                t.method_paths
                    .push((method.trim().to_ascii_uppercase(), path.trim().to_owned(), i));
            } else if let Some((c, tag)) = label.split_once(':').filter(|(_, tag)| RATE_LIMIT_TAGS.contains(tag)) {
                match c {
                    "*" => t.any.push((tag.to_owned(), i)),
                    name => t.named.push((name.to_owned(), tag.to_owned(), i)),
                }
            } else {
                tracing::warn!(label, "rate-limit rule label matches nothing; it is ignored");
            }
        }
        // Stable sorts: among equal lengths the first rule still wins.
        t.method_paths.sort_by_key(|(_, p, _)| std::cmp::Reverse(p.len()));
        t.paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        t
    }

    /// The bucket of the most specific rule matching the request whose
    /// audience includes the caller (a rule for another audience is passed
    /// over, so the next most specific one applies, as in PocketBase).
    fn find<F: FnOnce() -> bool>(
        &self,
        method: &str,
        path: &str,
        resolve: impl FnOnce(&str) -> Option<String>,
        who: &mut Who<F>,
    ) -> Option<usize> {
        let mut fits = |i: usize| who.fits(self.audience[i]);
        if let Some((c, tags)) = classify(method, path) {
            // PocketBase's order: `collection:tag` for every tag of the
            // route, then `*:tag` for every tag.
            if self.named.iter().any(|(_, t, _)| tags.contains(&t.as_str())) {
                if let Some(name) = resolve(c) {
                    for tag in tags {
                        let hit = (self.named.iter())
                            .filter(|(n, t, _)| t == tag && *n == name)
                            .map(|(_, _, i)| *i)
                            .find(|i| fits(*i));
                        if hit.is_some() {
                            return hit;
                        }
                    }
                }
            }
            for tag in tags {
                let hit = (self.any.iter())
                    .filter(|(t, _)| t == tag)
                    .map(|(_, i)| *i)
                    .find(|i| fits(*i));
                if hit.is_some() {
                    return hit;
                }
            }
        }
        self.method_paths
            .iter()
            .filter(|(m, p, _)| m == method && path_matches(path, p))
            .map(|(_, _, i)| *i)
            .find(|i| fits(*i))
            .or_else(|| {
                self.paths
                    .iter()
                    .filter(|(p, _)| path_matches(path, p))
                    .map(|(_, i)| *i)
                    .find(|i| fits(*i))
            })
    }

    /// The bucket of the `collection:auth` or `*:auth` rule for password
    /// logins (made as guests, so `@auth` rules do not apply).
    fn auth_rule(&self, collection_name: &str) -> Option<usize> {
        let guest = |i: &usize| self.audience[*i] != Audience::Authenticated;
        (self.named.iter())
            .filter(|(n, t, _)| t == "auth" && n == collection_name)
            .map(|(_, _, i)| *i)
            .find(guest)
            .or_else(|| {
                (self.any.iter())
                    .filter(|(t, _)| t == "auth")
                    .map(|(_, i)| *i)
                    .find(guest)
            })
    }
}

impl Table {
    fn is_excluded(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.excluded.iter().any(|&(net, bits)| in_subnet(ip, net, bits))
    }
}

/// Whether `ip` lies in `net/bits` (families must agree; mapped IPv4 was
/// made plain IPv4 by the caller).
fn in_subnet(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The compiled rules and the snapshot they were built from.
struct Current {
    source: Arc<Settings>,
    table: Arc<Table>,
}

struct Inner {
    epoch: Instant,
    /// Unit tests set the time by hand (`None`: the real clock).
    manual_clock: Option<std::sync::atomic::AtomicU64>,
    /// Keys the identity hash, so nobody can aim for collisions.
    hasher: RandomState,
    current: RwLock<Option<Current>>,
}

/// Cheap-clone handle; one per server (in `AppState`).
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                manual_clock: None,
                hasher: RandomState::new(),
                current: RwLock::new(None),
            }),
        }
    }
}

impl RateLimiter {
    fn now_ms(&self) -> u64 {
        match &self.inner.manual_clock {
            Some(t) => t.load(std::sync::atomic::Ordering::Relaxed),
            None => u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The rules in force (`None`: limiting is off or there are no rules).
    fn active(&self, settings: &Arc<Settings>) -> Option<Arc<Table>> {
        let limits = &settings.rate_limits;
        (limits.enabled && !limits.rules.is_empty()).then(|| self.table(settings))
    }

    /// The compiled rules of `settings` (built once per changed snapshot).
    fn table(&self, settings: &Arc<Settings>) -> Arc<Table> {
        {
            let current = self.inner.current.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = current.as_ref().filter(|c| Arc::ptr_eq(&c.source, settings)) {
                return c.table.clone();
            }
        }
        let mut current = self.inner.current.write().unwrap_or_else(|e| e.into_inner());
        let rules = &settings.rate_limits.rules;
        let table = match current.as_ref() {
            Some(c) if Arc::ptr_eq(&c.source, settings) => return c.table.clone(),
            Some(c) if c.table.rules == *rules && c.table.excluded_src == settings.rate_limits.excluded_ips => {
                c.table.clone()
            }
            previous => Arc::new(Table::build(
                rules,
                &settings.rate_limits.excluded_ips,
                previous.map(|c| &*c.table),
            )),
        };
        *current = Some(Current {
            source: settings.clone(),
            table: table.clone(),
        });
        table
    }

    /// Counts a request from `ip` against the rule that applies to it.
    /// `Err(retry after, seconds)` when that rule's window is full.
    /// `collection_name` turns the `{c}` segment (a name or an id) into the
    /// collection's name; it is only called when a `collection:action` rule
    /// could match. `is_auth` tells whether the request carries a valid
    /// token; it is only called when a candidate rule has an audience.
    pub fn check_request(
        &self,
        settings: &Arc<Settings>,
        method: &str,
        path: &str,
        ip: IpAddr,
        collection_name: impl FnOnce(&str) -> Option<String>,
        is_auth: impl FnOnce() -> bool,
    ) -> Result<(), u64> {
        let Some(table) = self.active(settings).filter(|t| !t.is_excluded(ip)) else {
            return Ok(());
        };
        let mut who = Who::new(is_auth);
        let Some(b) = table
            .find(method, path, collection_name, &mut who)
            .map(|i| &table.buckets[i])
        else {
            return Ok(());
        };
        b.hit(&b.ips, ip_key(ip), self.now_ms())
    }

    /// Takes a slot for one login attempt at `account` of a collection,
    /// from `ip`, under its `collection:auth` (else `*:auth`) rule: `account`
    /// is the record id when the identity resolved to one, else the
    /// lowercased identity (see the module docs for why the key includes the
    /// address). `Err(retry after, seconds)` when this address's window for
    /// this account is full; then the secret must not be checked at all.
    /// The slot counts as a failure unless [`LoginAttempt::succeeded`].
    pub fn check_login(
        &self,
        settings: &Arc<Settings>,
        collection_name: &str,
        collection_id: &str,
        account: &str,
        ip: IpAddr,
    ) -> Result<LoginAttempt, u64> {
        // `excludedIPs` lifts the per-address rules, not this one: an
        // excluded address (a shared NAT, or one a proxy header claims) must
        // not get unlimited guesses at a password.
        let Some(table) = self.active(settings) else {
            return Ok(LoginAttempt { slot: None });
        };
        let Some(b) = table.auth_rule(collection_name).map(|i| table.buckets[i].clone()) else {
            return Ok(LoginAttempt { slot: None });
        };
        let key = self.inner.hasher.hash_one((collection_id, account, ip_key(ip)));
        let start = {
            let mut t = b.accounts.lock().unwrap_or_else(|e| e.into_inner());
            t.hit(key, self.now_ms(), b.rule.max_requests.max(1), b.window_ms)?;
            t.start_of(&key)
        };
        Ok(LoginAttempt {
            slot: start.map(|start| (b, key, start)),
        })
    }
}

/// One login attempt's slot in its (account, address) window: dropped, it
/// stays counted (a failure); [`LoginAttempt::succeeded`] gives it back.
#[must_use = "a login attempt counts as failed unless `succeeded` is called"]
pub struct LoginAttempt {
    slot: Option<(Arc<Bucket>, u64, u64)>,
}

impl LoginAttempt {
    /// The secret was right: this attempt does not count.
    pub fn succeeded(self) {
        if let Some((b, key, start)) = self.slot {
            b.accounts.lock().unwrap_or_else(|e| e.into_inner()).refund(&key, start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::RateLimitSettings;
    use std::net::Ipv4Addr;

    const LOGIN: &str = "/api/collections/users/auth-with-password";

    fn settings(enabled: bool, rules: &[(&str, u32, u32)]) -> Arc<Settings> {
        let mut s = Settings::default();
        s.rate_limits.enabled = enabled;
        s.rate_limits.rules = (rules.iter())
            .map(|&(label, max_requests, duration)| RateLimitRule {
                label: label.into(),
                max_requests,
                duration,
                audience: String::new(),
            })
            .collect();
        Arc::new(s)
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    /// Resolves `posts` and its id `p1` to `posts`; nothing else exists.
    fn registry(c: &str) -> Option<String> {
        matches!(c, "posts" | "p1").then(|| "posts".to_owned())
    }

    /// Knows only the `users` collection.
    fn registry_users(c: &str) -> Option<String> {
        (c == "users").then(|| "users".to_owned())
    }

    /// A limiter whose clock only moves by `at`.
    fn limiter() -> RateLimiter {
        let mut rl = RateLimiter::default();
        if let Some(inner) = Arc::get_mut(&mut rl.inner) {
            inner.manual_clock = Some(0.into());
        }
        rl
    }

    fn at(rl: &RateLimiter, now: u64) -> &RateLimiter {
        if let Some(t) = &rl.inner.manual_clock {
            t.store(now, std::sync::atomic::Ordering::Relaxed);
        }
        rl
    }

    /// One request from `who` at `now` ms.
    fn req(rl: &RateLimiter, s: &Arc<Settings>, method: &str, path: &str, who: IpAddr, now: u64) -> Result<(), u64> {
        at(rl, now).check_request(s, method, path, who, registry, || false)
    }

    /// A failed login at account `who` of collection `c` from `from`.
    fn login(rl: &RateLimiter, s: &Arc<Settings>, c: &str, who: &str, from: IpAddr, now: u64) -> Result<(), u64> {
        at(rl, now).check_login(s, c, &format!("{c}_id"), who, from).map(drop)
    }

    #[test]
    fn ratelimit_classifies_requests_with_pocketbase_tags() {
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a [&'a str])>);
        let cases: [Case; 22] = [
            ("GET", "posts/records", Some(("posts", &["list"]))),
            ("POST", "posts/records", Some(("posts", &["create"]))),
            ("GET", "posts/records/abc", Some(("posts", &["view"]))),
            ("PATCH", "p1/records/abc", Some(("p1", &["update"]))),
            ("DELETE", "posts/records/abc", Some(("posts", &["delete"]))),
            ("PUT", "posts/records", None),
            ("GET", "posts/records/", None),
            ("GET", "/records", None),
            ("POST", "users/auth-methods", None),
            ("GET", "users/auth-methods", Some(("users", &["listAuthMethods"]))),
            (
                "POST",
                "users/auth-with-password",
                Some(("users", &["authWithPassword", "auth"])),
            ),
            (
                "POST",
                "users/auth-with-oauth2",
                Some(("users", &["authWithOAuth2", "auth"])),
            ),
            ("POST", "users/auth-with-otp", Some(("users", &["authWithOTP", "auth"]))),
            ("POST", "users/auth-refresh", Some(("users", &["authRefresh"]))),
            ("POST", "users/request-otp", Some(("users", &["requestOTP"]))),
            (
                "POST",
                "users/request-password-reset",
                Some(("users", &["requestPasswordReset"])),
            ),
            (
                "POST",
                "users/confirm-password-reset",
                Some(("users", &["confirmPasswordReset"])),
            ),
            (
                "POST",
                "users/request-verification",
                Some(("users", &["requestVerification"])),
            ),
            (
                "POST",
                "users/confirm-verification",
                Some(("users", &["confirmVerification"])),
            ),
            (
                "POST",
                "users/request-email-change",
                Some(("users", &["requestEmailChange"])),
            ),
            (
                "POST",
                "users/confirm-email-change",
                Some(("users", &["confirmEmailChange"])),
            ),
            ("POST", "users/impersonate/abc", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(
                classify(method, &format!("/api/collections/{path}")),
                want,
                "{method} {path}"
            );
        }
        assert_eq!(
            classify("GET", "/api/files/posts/r1/a.png"),
            Some(("posts", &["file"][..]))
        );
        assert_eq!(classify("GET", "/api/files/posts/r1"), None);
        assert_eq!(classify("POST", "/api/files/token"), None);
        for (_, _, tags) in AUTH_ROUTES {
            assert!(tags.iter().all(|t| RATE_LIMIT_TAGS.contains(t)), "{tags:?}");
        }
    }

    #[test]
    fn ratelimit_auth_label_covers_only_logins() {
        let rl = limiter();
        let s = settings(
            true,
            &[("*:auth", 1, 60), ("users:authRefresh", 1, 60), ("*:requestOTP", 1, 60)],
        );
        let t = rl.table(&s);
        let label = |method: &str, op: &str| {
            let path = format!("/api/collections/users/{op}");
            t.find(method, &path, registry_users, &mut Who::new(|| false))
                .map(|i| t.rules[i].label.clone())
        };
        for op in ["auth-with-password", "auth-with-oauth2", "auth-with-otp"] {
            assert_eq!(label("POST", op).as_deref(), Some("*:auth"), "{op}");
        }
        assert_eq!(label("POST", "auth-refresh").as_deref(), Some("users:authRefresh"));
        assert_eq!(label("POST", "request-otp").as_deref(), Some("*:requestOTP"));
        for op in [
            "request-password-reset",
            "confirm-password-reset",
            "request-verification",
            "confirm-verification",
            "request-email-change",
            "confirm-email-change",
        ] {
            assert_eq!(label("POST", op), None, "{op}");
        }
        // A collection's `auth` rule beats `*:authWithPassword` (PocketBase's order).
        let s = settings(true, &[("*:authWithPassword", 1, 60), ("users:auth", 1, 60)]);
        let t = rl.table(&s);
        let got = t.find("POST", LOGIN, registry_users, &mut Who::new(|| false));
        assert_eq!(got.map(|i| t.rules[i].label.as_str()), Some("users:auth"));
    }

    #[test]
    fn ratelimit_default_rules_leave_refresh_alone() {
        let (rl, s) = (limiter(), Arc::new(Settings::default()));
        let refresh = "/api/collections/users/auth-refresh";
        for _ in 0..100 {
            assert_eq!(req(&rl, &s, "POST", refresh, ip(1), 0), Ok(()));
        }
        for path in [
            LOGIN,
            "/api/collections/users/request-password-reset",
            "/api/collections/users/request-otp",
        ] {
            let hits: Vec<_> = (0..6).map(|_| req(&rl, &s, "POST", path, ip(1), 0)).collect();
            assert!(
                hits[..5].iter().all(Result::is_ok) && hits[5].is_err(),
                "{path}: {hits:?}"
            );
        }
    }

    #[test]
    fn ratelimit_excluded_ips_are_never_limited() {
        let rl = limiter();
        let mut s = (*settings(true, &[("/api/", 1, 60)])).clone();
        s.rate_limits.excluded_ips = vec!["10.0.0.0/24".into(), "2001:db8::/32".into()];
        let s = Arc::new(s);
        for _ in 0..3 {
            assert_eq!(req(&rl, &s, "GET", "/api/health", ip(7), 0), Ok(()));
            assert_eq!(login(&rl, &s, "users", "ann", ip(7), 0), Ok(()));
            let v6: IpAddr = "2001:db8:5::1".parse().unwrap();
            assert_eq!(req(&rl, &s, "GET", "/api/health", v6, 0), Ok(()));
        }
        let outside = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(req(&rl, &s, "GET", "/api/health", outside, 0), Ok(()));
        assert!(req(&rl, &s, "GET", "/api/health", outside, 0).is_err());
        assert_eq!(parse_subnet("10.0.0.0/33"), None);
        assert_eq!(parse_subnet("nope"), None);
        assert!(in_subnet(ip(5), ip(0), 0), "/0 holds everything");
    }

    #[test]
    fn ratelimit_most_specific_rule_wins() {
        let rl = limiter();
        let rules = [
            "/api/",
            "/api/collections/",
            "POST /api/collections/",
            "*:create",
            "posts:create",
            "/api/batch",
            "bogus",
            "*:frobnicate",
        ];
        let s = settings(true, &rules.map(|l| (l, 1, 1)));
        let t = rl.table(&s);
        let cases = [
            ("POST", "/api/collections/posts/records", Some("posts:create")),
            ("POST", "/api/collections/p1/records", Some("posts:create")),
            ("POST", "/api/collections/notes/records", Some("*:create")),
            ("POST", "/api/collections/notes/dry-run", Some("POST /api/collections/")),
            ("GET", "/api/collections/posts/records", Some("/api/collections/")),
            ("GET", "/api/health", Some("/api/")),
            ("POST", "/api/batch", Some("/api/batch")),
            ("POST", "/api/batch/x", Some("/api/batch")),
            ("POST", "/api/batchx", Some("/api/")),
            ("GET", "/_/", None),
        ];
        for (method, path, want) in cases {
            let got = t
                .find(method, path, registry, &mut Who::new(|| false))
                .map(|i| t.rules[i].label.as_str());
            assert_eq!(got, want, "{method} {path}");
        }
    }

    #[test]
    fn ratelimit_audience_passes_over_rules_for_others() {
        let rl = limiter();
        let mut rules: Vec<RateLimitRule> = [("*:create", "@auth"), ("*:create", "@guest"), ("/api/", "")]
            .iter()
            .map(|(label, audience)| RateLimitRule {
                label: (*label).into(),
                max_requests: 1,
                duration: 1,
                audience: (*audience).into(),
            })
            .collect();
        let s = Arc::new(Settings {
            rate_limits: RateLimitSettings {
                enabled: true,
                rules: rules.clone(),
                excluded_ips: Vec::new(),
            },
            ..Settings::default()
        });
        let t = rl.table(&s);
        let pick = |auth: bool, method: &str, path: &str| t.find(method, path, registry, &mut Who::new(move || auth));
        assert_eq!(pick(true, "POST", "/api/collections/notes/records"), Some(0));
        assert_eq!(pick(false, "POST", "/api/collections/notes/records"), Some(1));
        // Rules without an audience never ask who is calling.
        let asked = std::cell::Cell::new(false);
        let got = t.find(
            "GET",
            "/api/health",
            registry,
            &mut Who::new(|| {
                asked.set(true);
                true
            }),
        );
        assert_eq!((got, asked.get()), (Some(2), false));
        // With only an `@auth` rule for creates, a guest falls through to `/api/`.
        rules.remove(1);
        let s = Arc::new(Settings {
            rate_limits: RateLimitSettings {
                enabled: true,
                rules,
                excluded_ips: Vec::new(),
            },
            ..Settings::default()
        });
        let t = rl.table(&s);
        let got = t.find(
            "POST",
            "/api/collections/notes/records",
            registry,
            &mut Who::new(|| false),
        );
        assert_eq!(got.map(|i| t.rules[i].label.as_str()), Some("/api/"));
    }

    #[test]
    fn ratelimit_fixed_window_counts_resets_and_can_be_off() {
        let (rl, s) = (limiter(), settings(true, &[("*:auth", 3, 10)]));
        for now in [0, 100, 200] {
            assert_eq!(req(&rl, &s, "POST", LOGIN, ip(1), now), Ok(()));
        }
        assert_eq!(req(&rl, &s, "POST", LOGIN, ip(1), 300), Err(10));
        assert_eq!(req(&rl, &s, "POST", LOGIN, ip(1), 9_001), Err(1));
        assert_eq!(req(&rl, &s, "POST", LOGIN, ip(2), 9_001), Ok(()), "per address");
        assert_eq!(req(&rl, &s, "POST", LOGIN, ip(1), 10_000), Ok(()), "a new window");
        assert_eq!(req(&rl, &s, "GET", "/api/health", ip(1), 10_000), Ok(()), "no rule");
        assert_eq!(
            login(&rl, &settings(true, &[("/api/", 1, 9)]), "users", "ann", ip(1), 0),
            Ok(())
        );
        let off = settings(false, &[("/api/", 1, 60), ("*:auth", 1, 60)]);
        for _ in 0..3 {
            assert_eq!(req(&rl, &off, "GET", "/api/health", ip(1), 0), Ok(()), "disabled");
            assert_eq!(login(&rl, &off, "users", "ann", ip(1), 0), Ok(()), "disabled");
        }
    }

    #[test]
    fn ratelimit_ipv6_is_keyed_by_slash_64() {
        let key = |s: &str| s.parse().map(ip_key).ok();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), Some(ip(1)));
    }

    #[test]
    fn ratelimit_account_limit_counts_failures_per_address() {
        let rl = limiter();
        let s = settings(true, &[("*:auth", 5, 60), ("admins:auth", 2, 60)]);
        // Five failures from one address fill that address's window for
        // the account…
        for n in 0..5 {
            assert_eq!(login(&rl, &s, "users", "ann", ip(1), 0), Ok(()), "{n}");
        }
        assert_eq!(login(&rl, &s, "users", "ann", ip(1), 0), Err(60));
        // …and no other address's: nobody can lock the owner out.
        assert_eq!(login(&rl, &s, "users", "ann", ip(2), 0), Ok(()));
        assert_eq!(login(&rl, &s, "users", "bob", ip(1), 0), Ok(()), "another account");
        assert_eq!(login(&rl, &s, "users2", "ann", ip(1), 0), Ok(()), "another collection");
        // Attempts that succeed give their slot back: only failures count.
        for _ in 0..20 {
            let attempt = at(&rl, 0).check_login(&s, "users", "users_id", "cy", ip(3));
            attempt.expect("a right password is never limited").succeeded();
        }
        assert_eq!(login(&rl, &s, "users", "cy", ip(3), 0), Ok(()));
        // A collection rule replaces `*:auth` for its collection.
        let admin = |now| login(&rl, &s, "admins", "x", ip(1), now);
        assert_eq!([admin(0), admin(0), admin(0)], [Ok(()), Ok(()), Err(60)]);
        // A new window starts over; a refund never reaches into it.
        let stale = at(&rl, 59_000)
            .check_login(&s, "users", "users_id", "dee", ip(4))
            .unwrap();
        assert_eq!(login(&rl, &s, "users", "ann", ip(1), 60_000), Ok(()));
        for _ in 0..5 {
            assert_eq!(login(&rl, &s, "users", "dee", ip(4), 120_000), Ok(()));
        }
        stale.succeeded();
        assert!(login(&rl, &s, "users", "dee", ip(4), 120_000).is_err());
    }

    #[test]
    fn ratelimit_settings_changes_rebuild_only_changed_rules() {
        let rl = limiter();
        let s1 = settings(true, &[("/api/", 1, 60), ("*:auth", 1, 60)]);
        assert_eq!(req(&rl, &s1, "GET", "/api/health", ip(1), 0), Ok(()));
        assert_eq!(req(&rl, &s1, "POST", LOGIN, ip(1), 0), Ok(()));
        // Same rules in a new snapshot: same table, counters kept.
        let s2 = settings(true, &[("/api/", 1, 60), ("*:auth", 1, 60)]);
        assert!(Arc::ptr_eq(&rl.table(&s1), &rl.table(&s2)));
        assert!(req(&rl, &s2, "GET", "/api/health", ip(1), 0).is_err());
        // `/api/` changed: its counter starts over; `*:auth` keeps its own.
        let s3 = settings(true, &[("/api/", 2, 60), ("*:auth", 1, 60)]);
        assert_eq!(req(&rl, &s3, "GET", "/api/health", ip(1), 0), Ok(()));
        assert!(req(&rl, &s3, "POST", LOGIN, ip(1), 0).is_err());
    }

    #[test]
    fn ratelimit_tables_are_swept_and_capped() {
        let mut w: Windows<u32> = Windows::new();
        for k in 0..MIN_SWEEP as u32 {
            assert_eq!(w.hit(k, 0, 1, 1_000), Ok(()));
        }
        // The next new key, once the old windows expired, sweeps them.
        assert_eq!(w.hit(u32::MAX, 5_000, 1, 1_000), Ok(()));
        assert_eq!(w.map.len(), 1);
        // Full of live keys: newcomers share the overflow window.
        let mut k = 0;
        while w.map.len() < MAX_KEYS {
            assert_eq!(w.hit(k, 6_000, 1, 1_000), Ok(()));
            k += 1;
        }
        assert_eq!(w.hit(u32::MAX - 1, 6_000, 1, 1_000), Ok(()));
        assert_eq!(w.hit(u32::MAX - 2, 6_000, 1, 1_000), Err(1));
        assert_eq!(w.map.len(), MAX_KEYS);
    }
}
