//! Server settings editable by superusers (`GET/PATCH /api/settings`),
//! stored in the `meta` tree under `settings`, cached in memory.
//!
//! Each section has sane defaults, so a fresh install works without any
//! configuration (mail then goes to the dev outbox, see `mail`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::store::{Store, StoreError, WriteOp};

/// The `meta` key of the settings document.
const KEY: &str = crate::store::meta::SETTINGS;

/// Set (to `2`) once settings were saved under PocketBase's rate-limit
/// labels (`*:auth` = logins only). Absent, stored rules equal to the old
/// default are read as the new default: the old `*:auth` also limited the
/// mail routes, so the new rules keep that, and drop only the limit on
/// token refresh. Rules an admin changed are never rewritten.
const LABELS_KEY: &str = "settings.rateLimitLabels";

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
    /// PocketBase's dashboard accent colour and "hide collection controls"
    /// switch: stored so PocketBase settings round-trip; Basalt's dashboard
    /// does not use them.
    pub accent_color: String,
    pub hide_controls: bool,
}

impl Default for MetaSettings {
    fn default() -> Self {
        MetaSettings {
            app_name: "Basalt".into(),
            app_url: "http://127.0.0.1:8090".into(),
            sender_name: "Basalt".into(),
            sender_address: "noreply@example.com".into(),
            accent_color: String::new(),
            hide_controls: false,
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
    /// On the wire a bool as in PocketBase (`true` = implicit TLS, `false` =
    /// STARTTLS, which Basalt requires rather than merely offers), or
    /// `"none"` for the one mode PocketBase cannot express; Basalt's older
    /// string form (`"starttls"`, `"tls"`, `"none"`) is still accepted.
    #[serde(with = "smtp_tls")]
    pub tls: String,
    /// SMTP AUTH mechanism (PocketBase's `authMethod`): `PLAIN`, `LOGIN`, or
    /// empty for PLAIN.
    pub auth_method: String,
    /// Name sent in EHLO/HELO (PocketBase's `localName`); empty: `localhost`.
    pub local_name: String,
}

/// `smtp.tls`: written as PocketBase's bool (or `"none"`), read as a bool
/// or Basalt's older string.
mod smtp_tls {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &str, s: S) -> Result<S::Ok, S::Error> {
        match mode {
            "tls" => s.serialize_bool(true),
            "starttls" => s.serialize_bool(false),
            other => s.serialize_str(other),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Bool(bool),
            Text(String),
        }
        Ok(match Form::deserialize(d)? {
            Form::Bool(true) => "tls".into(),
            Form::Bool(false) => "starttls".into(),
            Form::Text(t) => t,
        })
    }
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
            auth_method: String::new(),
            local_name: String::new(),
        }
    }
}

/// Every action tag a PocketBase route carries (`ratelimit`'s route
/// table, the record CRUD ones and `file`): a `collection:tag` label with
/// another tag is stored (PocketBase accepts any word) but never matches.
pub const RATE_LIMIT_TAGS: [&str; 19] = [
    "list",
    "view",
    "create",
    "update",
    "delete",
    "file",
    "auth",
    "authWithPassword",
    "authWithOAuth2",
    "authWithOTP",
    "authRefresh",
    "listAuthMethods",
    "requestOTP",
    "requestPasswordReset",
    "confirmPasswordReset",
    "requestVerification",
    "confirmVerification",
    "requestEmailChange",
    "confirmEmailChange",
];

/// `1.2.3.4`, `2001:db8::1`, `10.0.0.0/8` or `2001:db8::/32` as (network,
/// prefix length); `None` for anything else (settings validation refuses
/// those, so only a hand-edited store could hold one).
pub fn parse_subnet(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, bits) = match s.trim().split_once('/') {
        Some((a, b)) => (a.parse::<std::net::IpAddr>().ok()?, Some(b.parse::<u8>().ok()?)),
        None => (s.trim().parse::<std::net::IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((addr, bits))
}

/// One rate-limit rule, PocketBase style: `label` is a path prefix
/// (`/api/`), `METHOD /path`, `collection:tag` or `*:tag` (tags:
/// [`RATE_LIMIT_TAGS`]; `auth` is the three logins).
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
    /// Addresses and subnets (`10.0.0.0/8`) never limited (PocketBase's
    /// `excludedIPs`), e.g. a trusted backend or monitoring.
    #[serde(rename = "excludedIPs")]
    pub excluded_ips: Vec<String>,
}

fn rule(label: &str, max_requests: u32, duration: u32) -> RateLimitRule {
    RateLimitRule {
        label: label.into(),
        max_requests,
        duration,
        audience: String::new(),
    }
}

/// The routes that send mail to an address the caller names: limited by
/// default, so one client cannot flood inboxes or the SMTP quota.
const MAIL_TAGS: [&str; 4] = [
    "*:requestOTP",
    "*:requestPasswordReset",
    "*:requestVerification",
    "*:requestEmailChange",
];

impl Default for RateLimitSettings {
    /// On by default (unlike PocketBase), for logins (`*:auth`: password,
    /// OAuth2 and OTP) and the mail-sending routes: brute-force and mail
    /// abuse targets from the first minute a server is on the internet.
    /// Token refresh is deliberately not limited (a page of users behind
    /// one NAT refreshes together), nor is the general API, whose fitting
    /// limit depends on the app (add `/api/`, `*:create`, `POST /api/batch`…
    /// rules as needed).
    fn default() -> Self {
        let mut rules = vec![rule("*:auth", 5, 10)];
        rules.extend(MAIL_TAGS.iter().map(|label| rule(label, 5, 10)));
        RateLimitSettings {
            enabled: true,
            rules,
            excluded_ips: Vec::new(),
        }
    }
}

impl RateLimitSettings {
    /// Basalt's defaults before `*:auth` meant logins only: one `*:auth`
    /// 5/10 s rule, which then also covered token refresh and the mail
    /// routes.
    fn is_old_default(&self) -> bool {
        self.enabled && self.excluded_ips.is_empty() && self.rules == [rule("*:auth", 5, 10)]
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
    /// PocketBase's `maxDataSize`, accepted so its settings round-trip:
    /// Basalt's entries carry no free-form data to cap.
    pub max_data_size: u64,
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
            max_data_size: 0,
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

/// An S3-compatible bucket (PocketBase's `s3` and `backups.s3`). Stored,
/// validated and masked as PocketBase does. `s3` holds uploaded files when
/// enabled (`core::settings::apply_storage`; files stored before a switch
/// stay where they were, as PocketBase); `backups.s3` can be tested
/// ("Test S3") but backups stay on the local disk (`<dir>/backups`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct S3Settings {
    pub enabled: bool,
    pub bucket: String,
    pub region: String,
    pub endpoint: String,
    pub access_key: String,
    /// Write-only: the API never shows it (absent when blank, as PocketBase).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret: String,
    pub force_path_style: bool,
}

impl S3Settings {
    fn validate(&self, key: &str, p: &mut Problems) {
        if self.enabled {
            for (name, v) in [
                ("accessKey", &self.access_key),
                ("bucket", &self.bucket),
                ("endpoint", &self.endpoint),
                ("region", &self.region),
                ("secret", &self.secret),
            ] {
                if v.trim().is_empty() {
                    p.add(&format!("{key}.{name}"), "validation_required", "Cannot be blank.");
                }
            }
        }
        if !self.endpoint.is_empty() && !is_url(&self.endpoint) {
            p.add(&format!("{key}.endpoint"), "validation_is_url", "Must be a valid URL.");
        }
    }
}

/// PocketBase's `backups` section. The schedule is validated and stored so
/// PocketBase settings round-trip, but Basalt does not run scheduled
/// backups yet (make them with `POST /api/backups` or `basalt backup`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct BackupsSettings {
    /// Five-field cron expression or macro (`@daily`); empty: none.
    pub cron: String,
    pub cron_max_keep: u32,
    pub s3: S3Settings,
}

impl Default for BackupsSettings {
    fn default() -> Self {
        BackupsSettings {
            cron: String::new(),
            cron_max_keep: 3,
            s3: S3Settings::default(),
        }
    }
}

/// All settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Settings {
    /// PocketBase's superuser address allow-list. Only the empty list is
    /// accepted: Basalt does not enforce one yet, and a stored list that is
    /// not enforced would promise protection it does not give.
    #[serde(rename = "superuserIPs")]
    pub superuser_ips: Vec<String>,
    pub s3: S3Settings,
    pub backups: BackupsSettings,
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
        s.s3.secret = String::new();
        s.backups.s3.secret = String::new();
        serde_json::to_value(s).expect("serialize settings")
    }
}

/// Cheap-clone handle to the current settings.
#[derive(Clone)]
pub struct SettingsStore {
    current: Arc<RwLock<Arc<Settings>>>,
    /// `budget.realtime_limits()` of the current settings, kept beside them:
    /// every change costs every realtime connection one budget, and reading
    /// it through `get()` takes the lock and the `Arc`'s count, counters
    /// every core writes; these are written only when settings change.
    realtime: Arc<LiveLimits>,
    /// Held by a change (write + swap) and a reload (read + swap), so a
    /// reload never swaps in what it read before a change it overtook.
    swapping: Arc<tokio::sync::Mutex<()>>,
}

impl Default for SettingsStore {
    fn default() -> Self {
        SettingsStore::holding(Settings::default())
    }
}

/// A [`crate::rules::BudgetLimits`] readable without a lock.
#[derive(Default)]
struct LiveLimits {
    records: AtomicU64,
    expand: AtomicU64,
    output_bytes: AtomicU64,
    seconds: AtomicU64,
}

impl LiveLimits {
    fn set(&self, l: crate::rules::BudgetLimits) {
        self.records.store(l.records, Relaxed);
        self.expand.store(l.expand, Relaxed);
        self.output_bytes.store(l.output_bytes, Relaxed);
        self.seconds.store(l.time.as_secs(), Relaxed);
    }

    fn get(&self) -> crate::rules::BudgetLimits {
        crate::rules::BudgetLimits {
            records: self.records.load(Relaxed),
            expand: self.expand.load(Relaxed),
            output_bytes: self.output_bytes.load(Relaxed),
            time: std::time::Duration::from_secs(self.seconds.load(Relaxed)),
        }
    }
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
        let settings = SettingsStore::read(store)?;
        store.logs().set_limits(settings.logs.limits());
        store.set_change_budget(settings.realtime.max_bytes);
        Ok(SettingsStore::holding(settings))
    }

    fn read(store: &Store) -> Result<Settings, StoreError> {
        let mut settings: Settings = match store.meta_get(KEY)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("settings: {e}")))?,
            None => Settings::default(),
        };
        if store.meta_get(LABELS_KEY)?.is_none() && settings.rate_limits.is_old_default() {
            tracing::info!("rate limits: the old default (*:auth for every auth route) becomes the new one");
            settings.rate_limits = RateLimitSettings::default();
        }
        Ok(settings)
    }

    /// Reads the stored settings again (another node changed them) and
    /// swaps them in; returns whether they differ from the current ones.
    pub async fn reload(&self, store: &Store) -> Result<bool, StoreError> {
        let _swapping = self.swapping.lock().await;
        let next = SettingsStore::read(store)?;
        if *self.get() == next {
            return Ok(false);
        }
        self.swap(store, next);
        Ok(true)
    }

    /// Makes `next` the current settings, with what is kept beside them.
    fn swap(&self, store: &Store, next: Settings) -> Arc<Settings> {
        store.logs().set_limits(next.logs.limits());
        store.set_change_budget(next.realtime.max_bytes);
        let next = Arc::new(next);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = next.clone();
        self.realtime.set(next.budget.realtime_limits());
        drop(current);
        next
    }

    fn holding(settings: Settings) -> SettingsStore {
        let realtime = Arc::new(LiveLimits::default());
        realtime.set(settings.budget.realtime_limits());
        SettingsStore {
            current: Arc::new(RwLock::new(Arc::new(settings))),
            realtime,
            swapping: Default::default(),
        }
    }

    /// What one change may cost one realtime connection
    /// (`budget.realtime_limits()` of the current settings), without a lock.
    pub fn realtime_limits(&self) -> crate::rules::BudgetLimits {
        self.realtime.get()
    }

    /// A snapshot of the current settings.
    pub fn get(&self) -> Arc<Settings> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Applies a partial update (objects merge; an empty SMTP password keeps
    /// the stored one), validates, stores durably, and swaps it in.
    pub async fn patch(&self, store: &Store, patch: Map<String, Value>) -> Result<Arc<Settings>, ApiError> {
        let _swapping = self.swapping.lock().await;
        let current = self.get();
        let mut value = serde_json::to_value(&*current).expect("serialize settings");
        // Secrets are never shown, so a client writing back what it read
        // sends them blank or not at all: that keeps the stored ones.
        let patch = Value::Object(patch);
        let blank = |path: &[&str]| {
            let mut v = Some(&patch);
            for key in path {
                v = v.and_then(|v| v.get(key));
            }
            v.and_then(Value::as_str).is_none_or(str::is_empty)
        };
        let keep = [
            blank(&["smtp", "password"]),
            blank(&["s3", "secret"]),
            blank(&["backups", "s3", "secret"]),
        ];
        merge(&mut value, patch);
        let mut next: Settings = serde_json::from_value(value)
            .map_err(|e| ApiError::field("", "validation_invalid_settings", &format!("Invalid settings: {e}")))?;
        if keep[0] {
            next.smtp.password = current.smtp.password.clone();
        }
        if keep[1] {
            next.s3.secret = current.s3.secret.clone();
        }
        if keep[2] {
            next.backups.s3.secret = current.backups.s3.secret.clone();
        }
        next.validate()?;
        store
            .write(vec![
                WriteOp::PutMeta {
                    key: KEY.into(),
                    value: Some(serde_json::to_vec(&next).expect("serialize settings")),
                },
                WriteOp::PutMeta {
                    key: LABELS_KEY.into(),
                    value: Some(b"2".to_vec()),
                },
            ])
            .await?;
        Ok(self.swap(store, next))
    }
}

impl Settings {
    fn validate(&self) -> Result<(), ApiError> {
        self.validate_pocketbase_sections()?;
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

impl Settings {
    /// The sections and fields taken from PocketBase, checked as it checks
    /// them and answered in its nested error shape
    /// (`{"backups": {"cron": {code, message}}}`).
    fn validate_pocketbase_sections(&self) -> Result<(), ApiError> {
        let mut p = Problems::default();
        if !self.superuser_ips.is_empty() {
            p.add(
                "superuserIPs",
                "validation_not_supported",
                "Superuser IP allow-lists are not supported by Basalt yet: leave the list empty.",
            );
        }
        self.s3.validate("s3", &mut p);
        self.backups.s3.validate("backups.s3", &mut p);
        if let Err(message) = check_cron(&self.backups.cron) {
            p.add("backups.cron", "validation_invalid_cron", &message);
        }
        if !self.backups.cron.is_empty() && self.backups.cron_max_keep == 0 {
            p.add("backups.cronMaxKeep", "validation_required", "Cannot be blank.");
        }
        if !["", "PLAIN", "LOGIN"].contains(&self.smtp.auth_method.as_str()) {
            p.add("smtp.authMethod", "validation_in_invalid", "Must be a valid value.");
        }
        if !self.smtp.local_name.is_empty() && !is_host(&self.smtp.local_name) {
            p.add(
                "smtp.localName",
                "validation_is_host",
                "Must be a valid IP address or DNS name.",
            );
        }
        let color = &self.meta.accent_color;
        let hex = color.len() == 7 && color.starts_with('#') && color[1..].bytes().all(|b| b.is_ascii_hexdigit());
        if !color.is_empty() && !hex {
            p.add(
                "meta.accentColor",
                "validation_is_hex_color",
                "Must be a valid hex color code.",
            );
        }
        for (i, ip) in self.rate_limits.excluded_ips.iter().enumerate() {
            if parse_subnet(ip).is_none() {
                p.add(
                    &format!("rateLimits.excludedIPs.{i}"),
                    "validation_invalid_ip_or_subnet",
                    "Invalid IP or CIDR subnet.",
                );
            }
        }
        p.into_result()
    }
}

/// Field problems, rendered nested by their dotted keys as PocketBase
/// renders its settings errors.
#[derive(Default)]
struct Problems(Vec<(String, &'static str, String)>);

impl Problems {
    fn add(&mut self, key: &str, code: &'static str, message: &str) {
        self.0.push((key.to_owned(), code, message.to_owned()));
    }

    fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut e = ApiError::bad_request("An error occurred while saving the new settings.");
        for (key, code, message) in self.0 {
            let mut at = &mut e.data;
            let mut parts = key.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    at.insert(part.to_owned(), serde_json::json!({"code": code, "message": message}));
                    break;
                }
                let next = at.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
                if !next.is_object() {
                    *next = Value::Object(Map::new());
                }
                at = next.as_object_mut().expect("just made an object");
            }
        }
        Err(e)
    }
}

/// PocketBase's cron syntax: a macro (`@daily`…) or five space-separated
/// fields (minute, hour, day, month, weekday), each a comma list of `*`,
/// `n` or `a-b`, optionally `/step`. `Err` carries what is wrong.
fn check_cron(expr: &str) -> Result<(), String> {
    if expr.is_empty() {
        return Ok(());
    }
    const MACROS: [&str; 7] = [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    if MACROS.contains(&expr) {
        return Ok(());
    }
    let fields: Vec<&str> = expr.split(' ').collect();
    if fields.len() != 5 {
        return Err(
            "Invalid cron expression - must be a valid macro or to have exactly 5 space separated segments.".into(),
        );
    }
    let bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];
    for (field, (min, max)) in fields.iter().zip(bounds) {
        for part in field.split(',') {
            check_cron_part(part, min, max)?;
        }
    }
    Ok(())
}

fn check_cron_part(part: &str, min: u32, max: u32) -> Result<(), String> {
    let number = |s: &str| s.parse::<u32>().map_err(|_| format!("Invalid cron segment '{part}'."));
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => (r, Some(number(s)?)),
        None => (part, None),
    };
    if let Some(step) = step {
        if !(1..=max).contains(&step) {
            return Err(format!("Invalid cron step in '{part}': must be between 1 and {max}."));
        }
    }
    let (lo, hi) = match range {
        "*" => (min, max),
        r => match r.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None if step.is_some() => return Err(format!("Invalid cron segment '{part}': use */n or a-b/n.")),
            None => (number(r)?, number(r)?),
        },
    };
    if lo < min || hi > max || lo > hi {
        return Err(format!("Invalid cron range in '{part}': must be within {min}-{max}."));
    }
    Ok(())
}

/// An absolute `http(s)` URL with a host, as an S3 endpoint must be.
fn is_url(s: &str) -> bool {
    url::Url::parse(s)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()))
}

/// A DNS name or IP address (PocketBase's `is.Host`).
fn is_host(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
        || (s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
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

#[cfg(test)]
mod pocketbase_tests {
    use super::*;

    #[test]
    fn settings_cron_is_checked_as_pocketbase() {
        for ok in ["", "@daily", "0 0 * * *", "*/5 1-3 1,15 1-12/2 0", "59 23 31 12 6"] {
            assert_eq!(check_cron(ok), Ok(()), "{ok}");
        }
        for bad in [
            "bad cron",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "*/0 * * * *",
            "5/2 * * * *",
            "3-1 * * * *",
            "@often",
            "*  * * * *",
        ] {
            assert!(check_cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_smtp_tls_reads_bool_and_old_strings() {
        let read =
            |tls: Value| serde_json::from_value::<SmtpSettings>(serde_json::json!({ "tls": tls })).map(|s| s.tls);
        assert_eq!(read(Value::Bool(true)).unwrap(), "tls");
        assert_eq!(read(Value::Bool(false)).unwrap(), "starttls");
        for old in ["starttls", "tls", "none"] {
            assert_eq!(read(Value::from(old)).unwrap(), old);
        }
        let written = |tls: &str| {
            serde_json::to_value(SmtpSettings {
                tls: tls.into(),
                ..SmtpSettings::default()
            })
            .unwrap()["tls"]
                .clone()
        };
        assert_eq!(written("tls"), Value::Bool(true));
        assert_eq!(written("starttls"), Value::Bool(false));
        assert_eq!(written("none"), Value::from("none"));
    }

    #[test]
    fn settings_old_rate_limit_default_is_recognised() {
        let old = RateLimitSettings {
            enabled: true,
            rules: vec![rule("*:auth", 5, 10)],
            excluded_ips: Vec::new(),
        };
        assert!(old.is_old_default());
        assert!(!RateLimitSettings::default().is_old_default());
        let changed = RateLimitSettings {
            rules: vec![rule("*:auth", 5, 30)],
            ..old
        };
        assert!(!changed.is_old_default());
    }

    #[test]
    fn settings_hosts_and_urls() {
        for ok in ["mail.example.com", "localhost", "10.0.0.1", "::1"] {
            assert!(is_host(ok), "{ok}");
        }
        for bad in ["bad host!", "-x.com", "a..b", ""] {
            assert!(!is_host(bad), "{bad}");
        }
        assert!(is_url("https://s3.eu-west-1.amazonaws.com"));
        assert!(is_url("http://minio:9000/path"));
        assert!(!is_url("notaurl"));
        assert!(!is_url("ftp://x.com"));
    }
}
