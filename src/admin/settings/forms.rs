//! The settings page's sections as forms. Each view model holds the text its
//! inputs show (from the current settings, or as submitted when a save
//! failed, so nothing typed is lost) and turns a submission into a settings
//! patch. It checks what only a form can get wrong (text in a number field,
//! a line break in a name) with a message per field; everything else is
//! left to `SettingsStore::patch`, the validation `PATCH /api/settings` uses.

use serde_json::{json, Map, Value};

use super::errors::{checked, format_size, human_size, number, obj, one_line, size, Errors};
use crate::admin::AdminForm;
use crate::settings::Settings;

// ---- Application ---------------------------------------------------------

pub struct AppForm {
    pub app_name: String,
    pub app_url: String,
    pub sender_name: String,
    pub sender_address: String,
}

impl AppForm {
    pub fn from_settings(s: &Settings) -> AppForm {
        AppForm {
            app_name: s.meta.app_name.clone(),
            app_url: s.meta.app_url.clone(),
            sender_name: s.meta.sender_name.clone(),
            sender_address: s.meta.sender_address.clone(),
        }
    }

    pub fn from_form(f: &AdminForm) -> AppForm {
        AppForm {
            app_name: f.text("meta.appName").trim().to_owned(),
            app_url: f.text("meta.appURL").trim().to_owned(),
            sender_name: f.text("meta.senderName").trim().to_owned(),
            sender_address: f.text("meta.senderAddress").trim().to_owned(),
        }
    }

    pub fn patch(&self) -> Result<Map<String, Value>, Errors> {
        let mut errors = Errors::default();
        if self.app_name.is_empty() {
            errors.add("meta.appName", "Required.");
        }
        one_line(&mut errors, "meta.appName", &self.app_name);
        let url_ok = ["http://", "https://"]
            .iter()
            .any(|p| self.app_url.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
            && !self.app_url.contains(char::is_whitespace);
        if !url_ok {
            errors.add(
                "meta.appURL",
                "Must be a full http:// or https:// address, e.g. https://app.example.com.",
            );
        }
        one_line(&mut errors, "meta.senderName", &self.sender_name);
        if !crate::schema::record::is_valid_email(&self.sender_address) {
            errors.add("meta.senderAddress", "Must be a valid email address.");
        }
        errors.into_result(obj(json!({"meta": {
            "appName": self.app_name,
            "appURL": self.app_url,
            "senderName": self.sender_name,
            "senderAddress": self.sender_address,
        }})))
    }
}

// ---- Mail ------------------------------------------------------------------

/// The SMTP form. The password is write-only: never part of this model, so
/// it can never be rendered; an empty password field keeps the stored one.
pub struct MailForm {
    pub enabled: bool,
    pub host: String,
    pub port: String,
    pub username: String,
    pub tls: String,
    /// PocketBase's `authMethod` (`PLAIN` or `LOGIN`; empty is PLAIN).
    pub auth_method: String,
    /// PocketBase's `localName`: the EHLO name (empty: `localhost`).
    pub local_name: String,
    /// Whether a password is stored (shown as a hint, never the password).
    pub has_password: bool,
    /// A new password typed into the form (kept for the patch, not shown).
    password: String,
}

impl MailForm {
    pub fn from_settings(s: &Settings) -> MailForm {
        MailForm {
            enabled: s.smtp.enabled,
            host: s.smtp.host.clone(),
            port: s.smtp.port.to_string(),
            username: s.smtp.username.clone(),
            tls: s.smtp.tls.clone(),
            auth_method: s.smtp.auth_method.clone(),
            local_name: s.smtp.local_name.clone(),
            has_password: !s.smtp.password.is_empty(),
            password: String::new(),
        }
    }

    pub fn from_form(f: &AdminForm, current: &Settings) -> MailForm {
        MailForm {
            enabled: checked(f, "smtp.enabled"),
            host: f.text("smtp.host").trim().to_owned(),
            port: f.text("smtp.port").trim().to_owned(),
            username: f.text("smtp.username").trim().to_owned(),
            tls: f.text("smtp.tls").to_owned(),
            auth_method: f.text("smtp.authMethod").to_owned(),
            local_name: f.text("smtp.localName").trim().to_owned(),
            has_password: !current.smtp.password.is_empty(),
            password: f.text("smtp.password").to_owned(),
        }
    }

    pub fn patch(&self) -> Result<Map<String, Value>, Errors> {
        let mut errors = Errors::default();
        if self.enabled && self.host.is_empty() {
            errors.add("smtp.host", "Required while SMTP is on.");
        }
        one_line(&mut errors, "smtp.host", &self.host);
        let port = number(
            &mut errors,
            "smtp.port",
            &self.port,
            1,
            65535,
            "Must be a whole number from 1 to 65535.",
        );
        one_line(&mut errors, "smtp.username", &self.username);
        one_line(&mut errors, "smtp.localName", &self.local_name);
        let mut smtp = json!({
            "enabled": self.enabled,
            "host": self.host,
            "port": port,
            "username": self.username,
            "tls": self.tls,
            "authMethod": self.auth_method,
            "localName": self.local_name,
        });
        if !self.password.is_empty() {
            smtp["password"] = json!(self.password);
        }
        errors.into_result(obj(json!({ "smtp": smtp })))
    }
}

/// The "send test mail" form.
pub struct TestMailForm {
    pub email: String,
    pub template: String,
}

// ---- CORS ------------------------------------------------------------------

pub struct CorsForm {
    /// Use the `--origins` flag (nothing saved).
    pub use_flag: bool,
    /// One origin per line.
    pub origins: String,
    /// The flag's value, for the hint.
    pub flag: String,
}

impl CorsForm {
    pub fn from_settings(s: &Settings, flag: &str) -> CorsForm {
        let origins = match &s.cors.origins {
            Some(list) => list.join("\n"),
            None => flag_entries(flag).join("\n"),
        };
        CorsForm {
            use_flag: s.cors.origins.is_none(),
            origins,
            flag: flag.to_owned(),
        }
    }

    pub fn from_form(f: &AdminForm, flag: &str) -> CorsForm {
        CorsForm {
            use_flag: checked(f, "cors.useFlag"),
            origins: f.text("cors.origins").to_owned(),
            flag: flag.to_owned(),
        }
    }

    /// The origins in effect, for the summary above the form.
    pub fn effective(&self) -> String {
        let list = if self.use_flag {
            flag_entries(&self.flag)
        } else {
            self.lines()
        };
        if list.is_empty() {
            "none (no other website may call the API from a browser)".to_owned()
        } else {
            list.join(", ")
        }
    }

    fn lines(&self) -> Vec<&str> {
        self.origins.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
    }

    pub fn patch(&self) -> Result<Map<String, Value>, Errors> {
        let origins = if self.use_flag {
            Value::Null
        } else {
            json!(self.lines())
        };
        Ok(obj(json!({"cors": {"origins": origins}})))
    }
}

fn flag_entries(flag: &str) -> Vec<&str> {
    flag.split(',').map(str::trim).filter(|o| !o.is_empty()).collect()
}

// ---- Realtime and batch ----------------------------------------------------

/// What a size field accepts, for its hint and its error.
const SIZE_HINT: &str = "e.g. 128 MiB, 2 GiB or a number of bytes; 1 MiB to 1 TiB";
const SIZE_MESSAGE: &str = "Must be a size such as 128 MiB, 1.5 GiB or a number of bytes.";

/// What a log holds now, for the hint under its size field.
pub struct Usage {
    pub bytes: u64,
    pub entries: u64,
}

impl Usage {
    /// `Now 3.2 MiB in 1200 events.`
    pub fn text(&self, one: &str, many: &str) -> String {
        let what = if self.entries == 1 { one } else { many };
        format!("Now {} in {} {what}.", human_size(self.bytes), self.entries)
    }
}

pub struct RealtimeForm {
    pub retention_hours: String,
    pub retention_events: String,
    pub max_bytes: String,
    /// The change log now (shown as a hint).
    pub usage: String,
}

impl RealtimeForm {
    pub fn from_settings(s: &Settings, usage: &Usage) -> RealtimeForm {
        RealtimeForm {
            retention_hours: s.realtime.retention_hours.to_string(),
            retention_events: s.realtime.retention_events.to_string(),
            max_bytes: format_size(s.realtime.max_bytes),
            usage: usage.text("event", "events"),
        }
    }

    pub fn from_form(f: &AdminForm, usage: &Usage) -> RealtimeForm {
        RealtimeForm {
            retention_hours: f.text("realtime.retentionHours").trim().to_owned(),
            retention_events: f.text("realtime.retentionEvents").trim().to_owned(),
            max_bytes: f.text("realtime.maxBytes").trim().to_owned(),
            usage: usage.text("event", "events"),
        }
    }

    pub fn size_hint(&self) -> String {
        format!("{SIZE_HINT}. {}", self.usage)
    }

    pub fn patch(&self) -> Result<Map<String, Value>, Errors> {
        let mut errors = Errors::default();
        let hours = number(
            &mut errors,
            "realtime.retentionHours",
            &self.retention_hours,
            0,
            u32::MAX.into(),
            "Must be a whole number of hours (0 or more).",
        );
        let events = number(
            &mut errors,
            "realtime.retentionEvents",
            &self.retention_events,
            1,
            u64::MAX,
            "Must be a whole number, at least 1.",
        );
        // The range is the settings store's check.
        let bytes = size(&mut errors, "realtime.maxBytes", &self.max_bytes, SIZE_MESSAGE);
        errors.into_result(obj(json!({"realtime": {
            "retentionHours": hours, "retentionEvents": events, "maxBytes": bytes,
        }})))
    }
}

pub struct BatchForm {
    pub enabled: bool,
    pub max_requests: String,
}

impl BatchForm {
    pub fn from_settings(s: &Settings) -> BatchForm {
        BatchForm {
            enabled: s.batch.enabled,
            max_requests: s.batch.max_requests.to_string(),
        }
    }

    pub fn from_form(f: &AdminForm) -> BatchForm {
        BatchForm {
            enabled: checked(f, "batch.enabled"),
            max_requests: f.text("batch.maxRequests").trim().to_owned(),
        }
    }

    /// The range (1–1000) is the settings store's check.
    pub fn patch(&self) -> Result<Map<String, Value>, Errors> {
        let mut errors = Errors::default();
        let max = number(
            &mut errors,
            "batch.maxRequests",
            &self.max_requests,
            0,
            u32::MAX.into(),
            "Must be a whole number from 1 to 1000.",
        );
        errors.into_result(obj(json!({"batch": {"enabled": self.enabled, "maxRequests": max}})))
    }
}

// ---- Request budget ----------------------------------------------------------

pub struct BudgetForm {
    pub max_records: String,
    pub max_expand: String,
    pub max_output_bytes: String,
    pub realtime_max_records: String,
    pub max_seconds: String,
}

impl BudgetForm {
    pub fn from_settings(s: &Settings) -> BudgetForm {
        BudgetForm {
            max_records: s.budget.max_records.to_string(),
            max_expand: s.budget.max_expand.to_string(),
            max_output_bytes: s.budget.max_output_bytes.to_string(),
            realtime_max_records: s.budget.realtime_max_records.to_string(),
            max_seconds: s.budget.max_seconds.to_string(),
        }
    }

    pub fn from_form(f: &AdminForm) -> BudgetForm {
        BudgetForm {
            max_records: f.text("budget.maxRecords").trim().to_owned(),
            max_expand: f.text("budget.maxExpand").trim().to_owned(),
            max_output_bytes: f.text("budget.maxOutputBytes").trim().to_owned(),
            realtime_max_records: f.text("budget.realtimeMaxRecords").trim().to_owned(),
            max_seconds: f.text("budget.maxSeconds").trim().to_owned(),
        }
    }

    /// The ranges are the settings store's check.
    pub fn patch(&self) -> Result<Map<String, Value>, Errors> {
        let mut errors = Errors::default();
        let mut field = |key: &str, value: &str| {
            number(
                &mut errors,
                key,
                value,
                1,
                u64::MAX,
                "Must be a whole number, at least 1.",
            )
        };
        let records = field("budget.maxRecords", &self.max_records);
        let expand = field("budget.maxExpand", &self.max_expand);
        let output_bytes = field("budget.maxOutputBytes", &self.max_output_bytes);
        let realtime = field("budget.realtimeMaxRecords", &self.realtime_max_records);
        let seconds = field("budget.maxSeconds", &self.max_seconds);
        errors.into_result(obj(json!({"budget": {
            "maxRecords": records, "maxExpand": expand, "maxOutputBytes": output_bytes,
            "realtimeMaxRecords": realtime, "maxSeconds": seconds
        }})))
    }
}

// ---- Trusted proxy -----------------------------------------------------------

pub struct ProxyForm {
    /// One header name per line.
    pub headers: String,
    pub use_leftmost_ip: bool,
}

impl ProxyForm {
    pub fn from_settings(s: &Settings) -> ProxyForm {
        ProxyForm {
            headers: s.trusted_proxy.headers.join("\n"),
            use_leftmost_ip: s.trusted_proxy.use_leftmost_ip,
        }
    }

    pub fn from_form(f: &AdminForm) -> ProxyForm {
        ProxyForm {
            headers: f.text("trustedProxy.headers").to_owned(),
            use_leftmost_ip: checked(f, "trustedProxy.useLeftmostIP"),
        }
    }

    /// Header names are checked by the settings store.
    pub fn patch(&self) -> Result<Map<String, Value>, Errors> {
        let headers: Vec<&str> = self.headers.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        Errors::default().into_result(obj(json!({
            "trustedProxy": {"headers": headers, "useLeftmostIP": self.use_leftmost_ip}
        })))
    }
}

// ---- Request log -------------------------------------------------------------

pub struct LogsForm {
    pub enabled: bool,
    pub max_days: String,
    pub max_entries: String,
    pub max_bytes: String,
    pub log_ip: bool,
    pub log_auth_id: bool,
    /// The request log now (shown as a hint).
    pub usage: String,
}

impl LogsForm {
    pub fn from_settings(s: &Settings, usage: &Usage) -> LogsForm {
        LogsForm {
            enabled: s.logs.enabled,
            max_days: s.logs.max_days.to_string(),
            max_entries: s.logs.max_entries.to_string(),
            max_bytes: format_size(s.logs.max_bytes),
            log_ip: s.logs.log_ip,
            log_auth_id: s.logs.log_auth_id,
            usage: usage.text("entry", "entries"),
        }
    }

    pub fn from_form(f: &AdminForm, usage: &Usage) -> LogsForm {
        LogsForm {
            enabled: checked(f, "logs.enabled"),
            max_days: f.text("logs.maxDays").trim().to_owned(),
            max_entries: f.text("logs.maxEntries").trim().to_owned(),
            max_bytes: f.text("logs.maxBytes").trim().to_owned(),
            log_ip: checked(f, "logs.logIP"),
            log_auth_id: checked(f, "logs.logAuthId"),
            usage: usage.text("entry", "entries"),
        }
    }

    pub fn size_hint(&self) -> String {
        format!("{SIZE_HINT}. {}", self.usage)
    }

    /// The ranges are the settings store's checks.
    pub fn patch(&self) -> Result<Map<String, Value>, Errors> {
        let mut errors = Errors::default();
        let days = number(
            &mut errors,
            "logs.maxDays",
            &self.max_days,
            0,
            u32::MAX.into(),
            "Must be a whole number of days from 1 to 3650.",
        );
        let entries = number(
            &mut errors,
            "logs.maxEntries",
            &self.max_entries,
            0,
            u64::MAX,
            "Must be a whole number from 1 to 10,000,000.",
        );
        let bytes = size(&mut errors, "logs.maxBytes", &self.max_bytes, SIZE_MESSAGE);
        errors.into_result(obj(json!({"logs": {
            "enabled": self.enabled, "maxDays": days, "maxEntries": entries, "maxBytes": bytes,
            "logIP": self.log_ip, "logAuthId": self.log_auth_id,
        }})))
    }
}

/// The resource caps (`limits`): connections and realtime streams per
/// address, the body read timeout, auth mails per recipient. The ranges
/// are the settings store's checks.
pub struct CapsForm {
    pub connections_per_address: String,
    pub realtime_per_address: String,
    pub body_timeout: String,
    pub mails_per_address: String,
    pub mail_window: String,
}

impl CapsForm {
    pub fn from_settings(s: &Settings) -> CapsForm {
        let l = &s.limits;
        CapsForm {
            connections_per_address: l.connections_per_address.to_string(),
            realtime_per_address: l.realtime_per_address.to_string(),
            body_timeout: l.body_timeout.to_string(),
            mails_per_address: l.mails_per_address.to_string(),
            mail_window: l.mail_window.to_string(),
        }
    }

    pub fn from_form(f: &AdminForm) -> CapsForm {
        let text = |k: &str| f.text(k).trim().to_owned();
        CapsForm {
            connections_per_address: text("limits.connectionsPerAddress"),
            realtime_per_address: text("limits.realtimePerAddress"),
            body_timeout: text("limits.bodyTimeout"),
            mails_per_address: text("limits.mailsPerAddress"),
            mail_window: text("limits.mailWindow"),
        }
    }

    pub fn patch(&self) -> Result<Map<String, Value>, Errors> {
        let mut errors = Errors::default();
        let mut n = |key: &str, text: &str, message: &str| number(&mut errors, key, text, 0, u32::MAX.into(), message);
        let connections = n(
            "limits.connectionsPerAddress",
            &self.connections_per_address,
            "Must be a whole number from 16 to 1,000,000.",
        );
        let realtime = n(
            "limits.realtimePerAddress",
            &self.realtime_per_address,
            "Must be a whole number from 1 to 1,000,000.",
        );
        let body = n(
            "limits.bodyTimeout",
            &self.body_timeout,
            "Must be a whole number of seconds from 1 to 3600.",
        );
        let mails = n(
            "limits.mailsPerAddress",
            &self.mails_per_address,
            "Must be a whole number from 1 to 1000.",
        );
        let window = n(
            "limits.mailWindow",
            &self.mail_window,
            "Must be a whole number of seconds from 1 to 86400.",
        );
        errors.into_result(obj(json!({"limits": {
            "connectionsPerAddress": connections, "realtimePerAddress": realtime,
            "bodyTimeout": body, "mailsPerAddress": mails, "mailWindow": window,
        }})))
    }
}
