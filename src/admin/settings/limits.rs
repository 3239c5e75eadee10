//! The rate-limit rules table: existing rules plus blank rows, each row's
//! inputs named `rateLimits.rules.<i>.<field>`, so it works without scripts.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::errors::{checked, number, obj, Errors};
use crate::admin::AdminForm;
use crate::settings::Settings;

/// One row of the rules table (`index` names its inputs).
pub struct RuleRow {
    pub index: usize,
    pub label: String,
    pub max_requests: String,
    pub duration: String,
    pub audience: String,
    pub remove: bool,
}

impl RuleRow {
    fn empty(index: usize) -> RuleRow {
        RuleRow {
            index,
            label: String::new(),
            max_requests: String::new(),
            duration: String::new(),
            audience: String::new(),
            remove: false,
        }
    }

    /// Rows with no label, or marked "remove", are dropped on save.
    fn kept(&self) -> bool {
        !self.remove && !self.label.trim().is_empty()
    }

    fn key(&self, field: &str) -> String {
        format!("rateLimits.rules.{}.{field}", self.index)
    }
}

/// Blank rows offered below the rules, for adding rules without scripts.
pub const BLANK_RULES: usize = 3;

pub struct LimitsForm {
    pub enabled: bool,
    pub rows: Vec<RuleRow>,
}

impl LimitsForm {
    pub fn from_settings(s: &Settings) -> LimitsForm {
        let mut rows: Vec<RuleRow> = s
            .rate_limits
            .rules
            .iter()
            .enumerate()
            .map(|(index, r)| RuleRow {
                index,
                label: r.label.clone(),
                max_requests: r.max_requests.to_string(),
                duration: r.duration.to_string(),
                audience: r.audience.clone(),
                remove: false,
            })
            .collect();
        let n = rows.len();
        rows.extend((n..n + BLANK_RULES).map(RuleRow::empty));
        LimitsForm {
            enabled: s.rate_limits.enabled,
            rows,
        }
    }

    /// Rows come as `rateLimits.rules.<i>.<field>`; order follows `<i>`.
    pub fn from_form(f: &AdminForm) -> LimitsForm {
        let mut rows: BTreeMap<usize, RuleRow> = BTreeMap::new();
        for (name, value) in &f.fields {
            let Some(rest) = name.strip_prefix("rateLimits.rules.") else {
                continue;
            };
            let Some((i, field)) = rest.split_once('.') else {
                continue;
            };
            let Ok(index) = i.parse::<usize>() else { continue };
            let row = rows.entry(index).or_insert_with(|| RuleRow::empty(index));
            match field {
                "label" => row.label = value.trim().to_owned(),
                "maxRequests" => row.max_requests = value.trim().to_owned(),
                "duration" => row.duration = value.trim().to_owned(),
                "audience" => row.audience = value.clone(),
                "remove" => row.remove = true,
                _ => {}
            }
        }
        LimitsForm {
            enabled: checked(f, "rateLimits.enabled"),
            rows: rows.into_values().collect(),
        }
    }

    /// The row index of the `n`-th rule sent in the patch.
    pub fn row_of_rule(&self, n: usize) -> Option<usize> {
        self.rows.iter().filter(|r| r.kept()).nth(n).map(|r| r.index)
    }

    pub fn patch(&self) -> Result<Map<String, Value>, Errors> {
        let mut errors = Errors::default();
        let mut rules = Vec::new();
        for row in self.rows.iter().filter(|r| r.kept()) {
            if !label_is_known(&row.label) {
                errors.add(
                    row.key("label"),
                    "Not a known label: use /path, METHOD /path, collection:action or *:action \
                     (actions as PocketBase: list, view, create, update, delete, file; auth = the \
                     three logins; authWithPassword, authWithOAuth2, authWithOTP, authRefresh, \
                     listAuthMethods, requestOTP, requestPasswordReset, confirmPasswordReset, \
                     requestVerification, confirmVerification, requestEmailChange, confirmEmailChange).",
                );
            }
            let message = "Must be a whole number, at least 1.";
            let max = number(
                &mut errors,
                &row.key("maxRequests"),
                &row.max_requests,
                1,
                u32::MAX.into(),
                message,
            );
            let duration = number(
                &mut errors,
                &row.key("duration"),
                &row.duration,
                1,
                u32::MAX.into(),
                message,
            );
            if !["", "@guest", "@auth"].contains(&row.audience.as_str()) {
                errors.add(row.key("audience"), "Must be everyone, @guest or @auth.");
            }
            rules.push(json!({
                "label": row.label, "maxRequests": max, "duration": duration, "audience": row.audience,
            }));
        }
        errors.into_result(obj(json!({"rateLimits": {"enabled": self.enabled, "rules": rules}})))
    }
}

/// Whether a rate-limit label has a form the limiter understands (see
/// `ratelimit::RateLimiter`'s table build): the API stores any label (for
/// PocketBase round trips) and ignores unknown ones, but a rule typed into
/// the dashboard that can never match is a mistake worth pointing out.
fn label_is_known(label: &str) -> bool {
    let label = label.trim();
    if label.starts_with('/') {
        return true;
    }
    if let Some((method, path)) = label.split_once(' ') {
        return !method.is_empty() && method.chars().all(|c| c.is_ascii_alphabetic()) && path.trim().starts_with('/');
    }
    match label.split_once(':') {
        Some((c, action)) => {
            let c_ok = c == "*" || crate::schema::collection::is_valid_name(c);
            c_ok && crate::settings::RATE_LIMIT_TAGS.contains(&action)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_labels() {
        for ok in [
            "*:auth",
            "posts:create",
            "/api/",
            "POST /api/batch",
            "users:list",
            "*:authRefresh",
            "users:requestOTP",
        ] {
            assert!(label_is_known(ok), "{ok}");
        }
        for bad in ["posts", "posts:frob", "POST api", "1bad:list", "*:"] {
            assert!(!label_is_known(bad), "{bad}");
        }
    }
}
