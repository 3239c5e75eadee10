//! Server settings editable by superusers (`GET/PATCH /api/settings`),
//! stored in the `meta` tree under `settings`, cached in memory.
//!
//! Each section has sane defaults, so a fresh install works without any
//! configuration (mail then goes to the dev outbox, see `mail`).

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::store::{Store, StoreError, WriteOp};

/// The `meta` key of the settings document.
const KEY: &str = "settings";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MetaSettings {
    /// Shown in mails and the dashboard.
    pub app_name: String,
    /// Public URL of the app, used to build links in mails.
    #[serde(rename = "appURL")]
    pub app_url: String,
    pub sender_name: String,
    pub sender_address: String,
}

impl Default for MetaSettings {
    fn default() -> Self {
        MetaSettings {
            app_name: "Basalt".into(),
            app_url: "http://127.0.0.1:8090".into(),
            sender_name: "Basalt".into(),
            sender_address: "noreply@example.com".into(),
        }
    }
}

/// SMTP delivery. When disabled, mails go to the dev outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SmtpSettings {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Write-only: never returned by the API (shown as empty).
    pub password: String,
    /// `starttls` (default), `tls` (implicit TLS, usually port 465) or `none`.
    pub tls: String,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            enabled: false,
            host: String::new(),
            port: 587,
            username: String::new(),
            password: String::new(),
            tls: "starttls".into(),
        }
    }
}

/// One rate-limit rule, PocketBase style: `label` is a path prefix
/// (`/api/`), `METHOD /path`, `collection:action` or `*:action`
/// (actions: `list`, `view`, `create`, `update`, `delete`, `auth`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitRule {
    pub label: String,
    pub max_requests: u32,
    /// Window in seconds.
    pub duration: u32,
    /// PocketBase's audience filter: `""` (everyone), `@guest` (requests
    /// without a valid token) or `@auth` (with one). A rule for another
    /// audience is passed over and the next matching rule applies.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub audience: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub rules: Vec<RateLimitRule>,
}

impl Default for RateLimitSettings {
    /// On by default (unlike PocketBase), for auth only: auth endpoints are
    /// brute-force targets from the first minute a server is on the
    /// internet, while a fitting general API limit depends on the app (add
    /// `/api/`, `*:create`, `POST /api/batch`… rules as needed).
    fn default() -> Self {
        let rule = |label: &str, max_requests, duration| RateLimitRule {
            label: label.into(),
            max_requests,
            duration,
            audience: String::new(),
        };
        RateLimitSettings {
            enabled: true,
            rules: vec![rule("*:auth", 5, 10)],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct BatchSettings {
    pub enabled: bool,
    pub max_requests: u32,
    /// PocketBase's batch timeout (seconds). Accepted for compatibility; a
    /// Basalt batch is one transaction and never runs long.
    pub timeout: u32,
    /// PocketBase's batch body limit; Basalt applies `--max-body` (0 = that).
    pub max_body_size: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            enabled: true,
            max_requests: 100,
            timeout: 3,
            max_body_size: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RealtimeSettings {
    /// Change-log retention: the last this-many hours...
    pub retention_hours: u32,
    /// ...and at most this many events...
    pub retention_events: u64,
    /// ...taking at most this many bytes (keys + stored JSON). Every change
    /// keeps a copy of its record (replays carry the record as it was), so
    /// without this a few clients rewriting large records fill the disk
    /// long before the age or count limits apply.
    pub max_bytes: u64,
}

/// The smallest byte budget accepted for the change log and the request
/// log (1 MiB: below that a single large record would not fit).
pub const MIN_BYTES: u64 = 1024 * 1024;

/// The largest byte budget accepted (1 TiB): a number no disk it runs on
/// would be asked to hold, not a limit of the store.
pub const MAX_BYTES: u64 = 1 << 40;

impl Default for RealtimeSettings {
    /// 128 MiB: about a quarter million changes of typical (~500-byte)
    /// records, hours of busy traffic to resume from, while the data dir
    /// stays well under a few hundred MB on a small VPS (measured: 390 MiB
    /// of 200 KiB PATCHes left 158 MiB, at most 168 MiB seen; see
    /// BENCHMARKS.md).
    fn default() -> Self {
        RealtimeSettings {
            retention_hours: 24,
            retention_events: 1_000_000,
            max_bytes: crate::store::DEFAULT_CHANGE_BUDGET,
        }
    }
}

/// How much work one request may do (SPEC §7; see `rules::Budget`):
/// records read (lists, filters and rules through relations, expand) and
/// records embedded by `expand`, answer bytes and seconds; realtime delivery has its own, per event
/// and connection. Over it, a request gets a 400 naming what to narrow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct BudgetSettings {
    pub max_records: u64,
    pub max_expand: u64,
    /// Bytes (as JSON) one request may embed through expand.
    pub max_output_bytes: u64,
    /// Records one change may cost one realtime connection to deliver.
    pub realtime_max_records: u64,
    /// Seconds one request (or one change's delivery to one realtime
    /// connection) may run, waiting for a work slot included.
    pub max_seconds: u64,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        let d = crate::rules::BudgetLimits::default();
        BudgetSettings {
            max_records: d.records,
            max_expand: d.expand,
            max_output_bytes: d.output_bytes,
            realtime_max_records: 20_000,
            max_seconds: d.time.as_secs(),
        }
    }
}

impl BudgetSettings {
    pub fn limits(&self) -> crate::rules::BudgetLimits {
        crate::rules::BudgetLimits {
            records: self.max_records,
            expand: self.max_expand,
            output_bytes: self.max_output_bytes,
            time: std::time::Duration::from_secs(self.max_seconds),
        }
    }

    /// A realtime connection's allowance for delivering one change: its
    /// own record budget, and a sixteenth of the expand bytes (every
    /// write may reach every connection).
    pub fn realtime_limits(&self) -> crate::rules::BudgetLimits {
        crate::rules::BudgetLimits {
            records: self.realtime_max_records,
            expand: self.max_expand,
            output_bytes: (self.max_output_bytes / 16).max(1),
            time: std::time::Duration::from_secs(self.max_seconds),
        }
    }

    fn validate(&self) -> Result<(), ApiError> {
        for (key, v, max) in [
            ("budget.maxRecords", self.max_records, 100_000_000),
            ("budget.maxExpand", self.max_expand, 1_000_000),
            ("budget.maxOutputBytes", self.max_output_bytes, 1 << 34),
            ("budget.realtimeMaxRecords", self.realtime_max_records, 100_000_000),
            ("budget.maxSeconds", self.max_seconds, 3_600),
        ] {
            if !(1..=max).contains(&v) {
                return Err(ApiError::field(
                    key,
                    "validation_invalid_value",
                    &format!("Must be 1..{max}."),
                ));
            }
        }
        Ok(())
    }
}

/// Which browser origins may call the API (CORS), editable at runtime.
///
/// `origins`: `null` (never saved, or reset) = the `--origins` flag applies;
/// otherwise a list whose entries are each `*` (any origin, alone) or
/// `scheme://host[:port]` (no path). An empty list allows no other origin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct CorsSettings {
    pub origins: Option<Vec<String>>,
}

/// The request log shown on the dashboard's Logs page: every request's
/// method, path, status, duration, ip and caller, kept for `maxDays` days,
/// at most `maxEntries` entries and `maxBytes` bytes (whichever is reached
/// first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LogsSettings {
    pub enabled: bool,
    pub max_days: u32,
    pub max_entries: u64,
    /// ...and at most this many bytes (whichever limit is reached first).
    pub max_bytes: u64,
    /// Keep the client's address (PocketBase's `logIP`); off for privacy.
    #[serde(rename = "logIP")]
    pub log_ip: bool,
    /// Keep who made the request (PocketBase's `logAuthId`).
    #[serde(rename = "logAuthId")]
    pub log_auth_id: bool,
    /// PocketBase's `minLevel`, accepted so its settings round-trip: every
    /// request is logged at level 0 (info).
    pub min_level: i32,
}

impl Default for LogsSettings {
    fn default() -> Self {
        LogsSettings {
            enabled: true,
            max_days: 7,
            max_entries: 100_000,
            max_bytes: crate::store::logs::DEFAULT_MAX_BYTES,
            log_ip: true,
            log_auth_id: true,
            min_level: 0,
        }
    }
}

impl LogsSettings {
    /// The limits as the store's request log applies them.
    pub fn limits(&self) -> crate::store::logs::LogLimits {
        crate::store::logs::LogLimits {
            enabled: self.enabled,
            max_age_us: u64::from(self.max_days) * 24 * 3600 * 1_000_000,
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            log_ip: self.log_ip,
            log_auth: self.log_auth_id,
        }
    }
}

/// A reverse proxy in front of the server (PocketBase's `trustedProxy`).
/// Behind one, every request comes from the proxy's address, so rate
/// limits and the request log would lump all clients together; these
/// headers then name the client instead. Only set them when a proxy is in
/// front and overwrites them: otherwise any client can pick its address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TrustedProxySettings {
    /// Headers to read, first present wins (e.g. `X-Forwarded-For`,
    /// `X-Real-IP`, `CF-Connecting-IP`).
    pub headers: Vec<String>,
    /// In a list (`X-Forwarded-For: client, proxy1, proxy2`) take the
    /// leftmost address (the original client, but client-supplied) instead
    /// of the rightmost (the one the nearest proxy added; the safe default).
    #[serde(rename = "useLeftmostIP")]
    pub use_leftmost_ip: bool,
}

impl TrustedProxySettings {
    /// The client's address: from the first configured header that holds a
    /// valid one, else the peer's.
    pub fn client_ip<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        peer: Option<std::net::IpAddr>,
    ) -> Option<std::net::IpAddr> {
        for name in &self.headers {
            let Some(value) = header(name) else { continue };
            let mut parts = value.split(',').map(str::trim).filter(|p| !p.is_empty());
            let pick = if self.use_leftmost_ip {
                parts.next()
            } else {
                parts.next_back()
            };
            if let Some(ip) = pick.and_then(parse_ip) {
                return Some(ip);
            }
        }
        peer
    }

    fn validate(&self) -> Result<(), ApiError> {
        if self.headers.len() > 10 {
            return Err(ApiError::field(
                "trustedProxy.headers",
                "validation_invalid_value",
                "At most 10 headers.",
            ));
        }
        for (i, h) in self.headers.iter().enumerate() {
            let token = !h.is_empty()
                && h.len() <= 64
                && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !token {
                return Err(ApiError::field(
                    &format!("trustedProxy.headers.{i}"),
                    "validation_invalid_value",
                    "Must be a header name (letters, digits and dashes).",
                ));
            }
        }
        Ok(())
    }
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`
/// or `[2001:db8::1]:443`.
fn parse_ip(s: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sock) = s.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    s.strip_prefix('[')?.split(']').next()?.parse().ok()
}

/// Resource caps that keep one client from tying the server up, with safe
/// defaults; a change applies to the next connection, request or mail (no
/// restart). What actix needs when it binds (total connections, header
/// read timeout) are command-line flags instead (`--max-connections`,
/// `--header-timeout`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LimitsSettings {
    /// Open HTTP connections per client address (IPv6 by /64). Browsers
    /// open at most 6 per host; many users behind one NAT or proxy share
    /// an address, hence the headroom. At least 16, so an admin cannot
    /// lock the dashboard out.
    pub connections_per_address: u32,
    /// Open realtime connections (WebSocket and SSE) per client address.
    pub realtime_per_address: u32,
    /// Seconds a request body may take to arrive, counted from the end of
    /// its headers; a slower one gets 408 and its connection is closed.
    pub body_timeout: u32,
    /// Auth mails of one kind (verification, password reset, email change,
    /// one-time code) sent to one address…
    pub mails_per_address: u32,
    /// …per this many seconds. Requests over it are answered as if the mail
    /// was sent (no account enumeration), and send nothing.
    pub mail_window: u32,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        LimitsSettings {
            connections_per_address: 256,
            realtime_per_address: 64,
            body_timeout: 30,
            mails_per_address: 3,
            mail_window: 600,
        }
    }
}

impl LimitsSettings {
    fn validate(&self) -> Result<(), ApiError> {
        let checks: [(&str, u32, std::ops::RangeInclusive<u32>); 5] = [
            ("connectionsPerAddress", self.connections_per_address, 16..=1_000_000),
            ("realtimePerAddress", self.realtime_per_address, 1..=1_000_000),
            ("bodyTimeout", self.body_timeout, 1..=3600),
            ("mailsPerAddress", self.mails_per_address, 1..=1000),
            ("mailWindow", self.mail_window, 1..=86_400),
        ];
        for (name, value, range) in checks {
            if !range.contains(&value) {
                return Err(ApiError::field(
                    &format!("limits.{name}"),
                    "validation_invalid_value",
                    &format!("Must be {}..{}.", range.start(), range.end()),
                ));
            }
        }
        Ok(())
    }
}

/// All settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Settings {
    pub meta: MetaSettings,
    pub smtp: SmtpSettings,
    pub rate_limits: RateLimitSettings,
    pub batch: BatchSettings,
    pub realtime: RealtimeSettings,
    pub cors: CorsSettings,
    pub logs: LogsSettings,
    pub trusted_proxy: TrustedProxySettings,
    pub budget: BudgetSettings,
    pub limits: LimitsSettings,
}

impl Settings {
    /// The settings as the API shows them: secrets blanked.
    pub fn redacted(&self) -> Value {
        let mut s = self.clone();
        s.smtp.password = String::new();
        serde_json::to_value(s).expect("serialize settings")
    }
}

/// Cheap-clone handle to the current settings.
#[derive(Clone, Default)]
pub struct SettingsStore {
    current: Arc<RwLock<Arc<Settings>>>,
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, p) => *b = p,
    }
}

impl SettingsStore {
    /// Loads the stored settings (defaults for anything missing).
    pub fn load(store: &Store) -> Result<SettingsStore, StoreError> {
        let settings = match store.meta_get(KEY)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("settings: {e}")))?,
            None => Settings::default(),
        };
        store.logs().set_limits(settings.logs.limits());
        store.set_change_budget(settings.realtime.max_bytes);
        Ok(SettingsStore {
            current: Arc::new(RwLock::new(Arc::new(settings))),
        })
    }

    /// A snapshot of the current settings.
    pub fn get(&self) -> Arc<Settings> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Applies a partial update (objects merge; an empty SMTP password keeps
    /// the stored one), validates, stores durably, and swaps it in.
    pub async fn patch(&self, store: &Store, patch: Map<String, Value>) -> Result<Arc<Settings>, ApiError> {
        let current = self.get();
        let mut value = serde_json::to_value(&*current).expect("serialize settings");
        let keep_password = patch
            .get("smtp")
            .and_then(|s| s.get("password"))
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        merge(&mut value, Value::Object(patch));
        let mut next: Settings = serde_json::from_value(value)
            .map_err(|e| ApiError::field("", "validation_invalid_settings", &format!("Invalid settings: {e}")))?;
        if keep_password {
            next.smtp.password = current.smtp.password.clone();
        }
        next.validate()?;
        store
            .write(vec![WriteOp::PutMeta {
                key: KEY.into(),
                value: Some(serde_json::to_vec(&next).expect("serialize settings")),
            }])
            .await?;
        store.logs().set_limits(next.logs.limits());
        store.set_change_budget(next.realtime.max_bytes);
        let next = Arc::new(next);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next.clone();
        Ok(next)
    }
}

impl Settings {
    fn validate(&self) -> Result<(), ApiError> {
        self.cors.validate()?;
        self.trusted_proxy.validate()?;
        self.budget.validate()?;
        self.limits.validate()?;
        if self.smtp.enabled && (self.smtp.host.is_empty() || self.smtp.port == 0) {
            return Err(ApiError::field(
                "smtp.host",
                "validation_required",
                "SMTP needs a host and a port.",
            ));
        }
        if !["starttls", "tls", "none"].contains(&self.smtp.tls.as_str()) {
            return Err(ApiError::field(
                "smtp.tls",
                "validation_invalid_value",
                "Must be starttls, tls or none.",
            ));
        }
        for (i, r) in self.rate_limits.rules.iter().enumerate() {
            if !["", "@guest", "@auth"].contains(&r.audience.trim()) {
                return Err(ApiError::field(
                    &format!("rateLimits.rules.{i}.audience"),
                    "validation_invalid_value",
                    "Must be empty (everyone), @guest or @auth.",
                ));
            }
            if r.label.trim().is_empty() || r.max_requests == 0 || r.duration == 0 {
                return Err(ApiError::field(
                    &format!("rateLimits.rules.{i}"),
                    "validation_invalid_value",
                    "A rule needs a label, maxRequests >= 1 and duration >= 1.",
                ));
            }
        }
        if self.batch.max_requests == 0 || self.batch.max_requests > 1000 {
            return Err(ApiError::field(
                "batch.maxRequests",
                "validation_invalid_value",
                "Must be 1..1000.",
            ));
        }
        if self.realtime.retention_events == 0 {
            return Err(ApiError::field(
                "realtime.retentionEvents",
                "validation_invalid_value",
                "Must be at least 1.",
            ));
        }
        let bytes_message = "Must be a number of bytes from 1048576 (1 MiB) to 1099511627776 (1 TiB).";
        if !(MIN_BYTES..=MAX_BYTES).contains(&self.realtime.max_bytes) {
            return Err(ApiError::field(
                "realtime.maxBytes",
                "validation_invalid_value",
                bytes_message,
            ));
        }
        if !(MIN_BYTES..=MAX_BYTES).contains(&self.logs.max_bytes) {
            return Err(ApiError::field(
                "logs.maxBytes",
                "validation_invalid_value",
                bytes_message,
            ));
        }
        if !(1..=3650).contains(&self.logs.max_days) {
            return Err(ApiError::field(
                "logs.maxDays",
                "validation_invalid_value",
                "Must be 1..3650.",
            ));
        }
        if !(1..=10_000_000).contains(&self.logs.max_entries) {
            return Err(ApiError::field(
                "logs.maxEntries",
                "validation_invalid_value",
                "Must be 1..10000000.",
            ));
        }
        Ok(())
    }
}

impl CorsSettings {
    /// Every bad entry gets its own error (`cors.origins.<i>`), so a form
    /// can show them all at once.
    fn validate(&self) -> Result<(), ApiError> {
        let Some(origins) = &self.origins else { return Ok(()) };
        let mut errors = crate::schema::FieldErrors::new();
        for (i, o) in origins.iter().enumerate() {
            let problem = if o == "*" {
                (origins.len() > 1).then(|| "'*' allows every origin: list it alone.".to_owned())
            } else {
                (!is_origin(o)).then(|| {
                    format!("'{o}' is not an origin: use scheme://host or scheme://host:port, without a path.")
                })
            };
            if let Some(message) = problem {
                let error = crate::schema::FieldError {
                    code: "validation_invalid_value".into(),
                    message,
                };
                errors.insert(format!("cors.origins.{i}"), error);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(errors))
        }
    }
}

/// `scheme://host[:port]` as browsers send it in `Origin`: any scheme
/// (apps also use `capacitor://`, `tauri://`…), a DNS name, IPv4 or
/// bracketed IPv6 host, a port 1–65535, nothing after it.
fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    // `[v6]` hosts hold colons themselves: a port follows the last one only
    // when that is outside the brackets.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest.starts_with('[') || rest[..i].ends_with(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .split('.')
                    .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        }
    };
    let port_ok = port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0));
    scheme_ok && host_ok && port_ok
}

#[cfg(test)]
mod proxy_tests {
    use super::*;

    #[test]
    fn client_ip_from_trusted_headers() {
        let peer = Some("10.0.0.1".parse().unwrap());
        let h = |name: &str| match name {
            "X-Forwarded-For" => Some("203.0.113.7, 198.51.100.2:443, [2001:db8::1]:80"),
            "X-Real-IP" => Some("not an ip"),
            _ => None,
        };
        let mut p = TrustedProxySettings::default();
        assert_eq!(p.client_ip(h, peer), peer, "no headers configured: the peer");
        p.headers = vec!["X-Real-IP".into(), "X-Forwarded-For".into()];
        assert_eq!(
            p.client_ip(h, peer),
            Some("2001:db8::1".parse().unwrap()),
            "rightmost by default"
        );
        p.use_leftmost_ip = true;
        assert_eq!(p.client_ip(h, peer), Some("203.0.113.7".parse().unwrap()));
        p.headers = vec!["CF-Connecting-IP".into()];
        assert_eq!(p.client_ip(h, peer), peer, "header absent: the peer");
    }
}
