//! The mail templates of an auth collection, in PocketBase 0.40's keys and
//! shapes: `verificationTemplate`, `resetPasswordTemplate`,
//! `confirmEmailChangeTemplate` (each `{subject, body}`), `otp.emailTemplate`
//! and `authAlert: {enabled, emailTemplate}`.
//!
//! A template not set is `None` in [`AuthOptions`] and means Basalt's
//! default below (so a later release's better default reaches collections
//! that never changed theirs); the PocketBase view always shows the
//! effective one, as PocketBase does. Placeholders (`{APP_NAME}`,
//! `{APP_URL}`, `{TOKEN}`, `{OTP}`, `{OTP_ID}`, `{ALERT_INFO}`,
//! `{RECORD:field}`) are filled when a mail is sent (`core::auth`, with
//! `mail::templates`); unknown ones stay as text, as in PocketBase.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::collection::AuthOptions;
use super::SchemaError;

/// Longest subject (characters): a mail subject is one line.
pub const MAX_SUBJECT: usize = 500;
/// Longest body (bytes): templates are stored in every collection
/// definition, which is read on every start and shown on every read.
pub const MAX_BODY: usize = 64 * 1024;

/// One mail: a plain-text subject and an HTML body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailTemplate {
    pub subject: String,
    pub body: String,
}

/// New-origin login alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthAlert {
    pub enabled: bool,
    pub email_template: MailTemplate,
}

/// The mails an auth collection sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    Verification,
    ResetPassword,
    ConfirmEmailChange,
    Otp,
    AuthAlert,
}

impl TemplateKind {
    pub const ALL: [TemplateKind; 5] = [
        TemplateKind::Verification,
        TemplateKind::ResetPassword,
        TemplateKind::ConfirmEmailChange,
        TemplateKind::Otp,
        TemplateKind::AuthAlert,
    ];

    /// The name in URLs and forms (also PocketBase's test-mail names).
    pub fn slug(self) -> &'static str {
        match self {
            TemplateKind::Verification => "verification",
            TemplateKind::ResetPassword => "password-reset",
            TemplateKind::ConfirmEmailChange => "email-change",
            TemplateKind::Otp => "otp",
            TemplateKind::AuthAlert => "login-alert",
        }
    }

    pub fn from_slug(s: &str) -> Option<TemplateKind> {
        TemplateKind::ALL.into_iter().find(|k| k.slug() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            TemplateKind::Verification => "Verification",
            TemplateKind::ResetPassword => "Password reset",
            TemplateKind::ConfirmEmailChange => "Email change",
            TemplateKind::Otp => "One-time password",
            TemplateKind::AuthAlert => "Login alert",
        }
    }

    /// Where the template sits in PocketBase's collection JSON (error keys).
    pub fn pocketbase_path(self) -> &'static str {
        match self {
            TemplateKind::Verification => "verificationTemplate",
            TemplateKind::ResetPassword => "resetPasswordTemplate",
            TemplateKind::ConfirmEmailChange => "confirmEmailChangeTemplate",
            TemplateKind::Otp => "otp.emailTemplate",
            TemplateKind::AuthAlert => "authAlert.emailTemplate",
        }
    }

    /// The placeholders this mail fills besides `{APP_NAME}`, `{APP_URL}`
    /// and `{RECORD:…}`.
    pub fn placeholders(self) -> &'static [&'static str] {
        match self {
            TemplateKind::Verification | TemplateKind::ResetPassword | TemplateKind::ConfirmEmailChange => &["{TOKEN}"],
            TemplateKind::Otp => &["{OTP}", "{OTP_ID}"],
            TemplateKind::AuthAlert => &["{ALERT_INFO}"],
        }
    }

    /// Basalt's default. Links go to Basalt's own mail-link pages
    /// (`/_/auth/confirm-…/{TOKEN}`), and the token is printed as well so
    /// an app with its own confirm screen can be told to paste it.
    pub fn default_template(self) -> MailTemplate {
        let (subject, body) = match self {
            TemplateKind::Verification => (
                "Verify your {APP_NAME} email",
                link_body(
                    "Thank you for joining {APP_NAME}. Open the link below to verify your email address:",
                    "confirm-verification",
                    "If you did not sign up, ignore this mail.",
                ),
            ),
            TemplateKind::ResetPassword => (
                "Reset your {APP_NAME} password",
                link_body(
                    "Open the link below to choose a new password:",
                    "confirm-password-reset",
                    "If you did not ask to reset your password, ignore this mail: your password stays the same.",
                ),
            ),
            TemplateKind::ConfirmEmailChange => (
                "Confirm your new {APP_NAME} email address",
                link_body(
                    "Open the link below to confirm your new email address:",
                    "confirm-email-change",
                    "If you did not ask to change your email address, ignore this mail.",
                ),
            ),
            TemplateKind::Otp => (
                "Your {APP_NAME} sign-in code",
                "<p>Hello,</p>\n<p>Your one-time sign-in code is: <strong>{OTP}</strong></p>\n\
                 <p>It expires in a few minutes. If you did not try to sign in, ignore this mail.</p>\n\
                 <p>The {APP_NAME} team</p>"
                    .to_owned(),
            ),
            TemplateKind::AuthAlert => (
                "New sign-in to your {APP_NAME} account",
                "<p>Hello,</p>\n<p>Your {APP_NAME} account was just signed in to from a device or place \
                 it was not used from before:</p>\n<p><em>{ALERT_INFO}</em></p>\n\
                 <p><strong>If this was not you, change your {APP_NAME} password now: that signs \
                 out every other session.</strong></p>\n<p>If it was you, there is nothing to do.</p>\n\
                 <p>The {APP_NAME} team</p>"
                    .to_owned(),
            ),
        };
        MailTemplate {
            subject: subject.to_owned(),
            body,
        }
    }

    /// The template `opts` set for this mail, or the default.
    pub fn of(self, opts: &AuthOptions) -> MailTemplate {
        let set = match self {
            TemplateKind::Verification => &opts.verification_template,
            TemplateKind::ResetPassword => &opts.reset_password_template,
            TemplateKind::ConfirmEmailChange => &opts.confirm_email_change_template,
            TemplateKind::Otp => &opts.otp.email_template,
            TemplateKind::AuthAlert => return auth_alert(opts).email_template,
        };
        set.clone().unwrap_or_else(|| self.default_template())
    }

    /// Sets this mail's template in `opts` (`None`: back to the default).
    pub fn set(self, opts: &mut AuthOptions, template: Option<MailTemplate>) {
        match self {
            TemplateKind::Verification => opts.verification_template = template,
            TemplateKind::ResetPassword => opts.reset_password_template = template,
            TemplateKind::ConfirmEmailChange => opts.confirm_email_change_template = template,
            TemplateKind::Otp => opts.otp.email_template = template,
            TemplateKind::AuthAlert => {
                let enabled = auth_alert(opts).enabled;
                opts.auth_alert = Some(AuthAlert {
                    enabled,
                    email_template: template.unwrap_or_else(|| self.default_template()),
                });
            }
        }
    }
}

fn link_body(intro: &str, page: &str, outro: &str) -> String {
    let url = format!("{{APP_URL}}/_/auth/{page}/{{TOKEN}}");
    format!(
        "<p>Hello,</p>\n<p>{intro}</p>\n<p><a href=\"{url}\">{url}</a></p>\n<p>Token: {{TOKEN}}</p>\n\
         <p>{outro}</p>\n<p>The {{APP_NAME}} team</p>"
    )
}

/// The effective `authAlert`: on by default, as in PocketBase.
pub fn auth_alert(opts: &AuthOptions) -> AuthAlert {
    opts.auth_alert.clone().unwrap_or_else(|| AuthAlert {
        enabled: true,
        email_template: TemplateKind::AuthAlert.default_template(),
    })
}

fn invalid(field: String, code: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        field,
        code: code.into(),
        message: message.into(),
    }
}

/// Checks one template (`at` names it in errors): subject and body given
/// (PocketBase requires both) and bounded.
fn check_template(at: &str, t: &MailTemplate) -> Result<(), SchemaError> {
    for (key, value) in [("subject", &t.subject), ("body", &t.body)] {
        if value.trim().is_empty() {
            return Err(invalid(
                format!("{at}.{key}"),
                "validation_required",
                "Cannot be blank.",
            ));
        }
    }
    if t.subject.chars().count() > MAX_SUBJECT {
        return Err(invalid(
            format!("{at}.subject"),
            "validation_length_too_long",
            format!("The subject may be at most {MAX_SUBJECT} characters."),
        ));
    }
    if t.body.len() > MAX_BODY {
        return Err(invalid(
            format!("{at}.body"),
            "validation_length_too_long",
            format!("The body may be at most {} KiB.", MAX_BODY / 1024),
        ));
    }
    Ok(())
}

/// Checks every template `opts` sets (whichever way they were sent: as
/// PocketBase's top-level keys or in Basalt's `authOptions`).
pub fn check(opts: &AuthOptions) -> Result<(), SchemaError> {
    for kind in TemplateKind::ALL {
        check_template(kind.pocketbase_path(), &kind.of(opts))?;
    }
    Ok(())
}

/// `value` (a PocketBase template object) over `current`: the keys sent
/// replace the current ones, as PocketBase decodes JSON into the stored
/// options; other keys are ignored, as there.
fn merge_template(at: &str, current: MailTemplate, value: &Value) -> Result<MailTemplate, SchemaError> {
    let obj = value.as_object().ok_or_else(|| {
        invalid(
            at.to_owned(),
            "validation_invalid_value",
            "Must be an object {subject, body}.",
        )
    })?;
    let mut t = current;
    for (key, slot) in [("subject", &mut t.subject), ("body", &mut t.body)] {
        match obj.get(key) {
            None => {}
            Some(Value::String(s)) => *slot = s.clone(),
            Some(_) => {
                return Err(invalid(
                    format!("{at}.{key}"),
                    "validation_invalid_type",
                    "Must be a string.",
                ))
            }
        }
    }
    check_template(at, &t)?;
    Ok(t)
}

/// Applies PocketBase's top-level template key `key` (one of the three
/// `…Template` keys or `authAlert`); `false` for any other key.
pub fn apply_key(key: &str, value: &Value, opts: &mut AuthOptions) -> Result<bool, SchemaError> {
    let kind = match key {
        "verificationTemplate" => TemplateKind::Verification,
        "resetPasswordTemplate" => TemplateKind::ResetPassword,
        "confirmEmailChangeTemplate" => TemplateKind::ConfirmEmailChange,
        "authAlert" => return apply_auth_alert(value, opts).map(|()| true),
        _ => return Ok(false),
    };
    let t = merge_template(key, kind.of(opts), value)?;
    kind.set(opts, Some(t));
    Ok(true)
}

fn apply_auth_alert(value: &Value, opts: &mut AuthOptions) -> Result<(), SchemaError> {
    let obj = value.as_object().ok_or_else(|| {
        invalid(
            "authAlert".into(),
            "validation_invalid_value",
            "Must be an object {enabled, emailTemplate}.",
        )
    })?;
    let mut alert = auth_alert(opts);
    match obj.get("enabled") {
        None => {}
        Some(Value::Bool(b)) => alert.enabled = *b,
        Some(_) => {
            return Err(invalid(
                "authAlert.enabled".into(),
                "validation_invalid_type",
                "Must be true or false.",
            ))
        }
    }
    if let Some(t) = obj.get("emailTemplate") {
        alert.email_template = merge_template("authAlert.emailTemplate", alert.email_template, t)?;
    }
    opts.auth_alert = Some(alert);
    Ok(())
}

/// Applies `otp.emailTemplate` from PocketBase's `otp` object, if sent.
pub fn apply_otp_template(otp: &Map<String, Value>, opts: &mut AuthOptions) -> Result<(), SchemaError> {
    if let Some(v) = otp.get("emailTemplate") {
        let t = merge_template("otp.emailTemplate", TemplateKind::Otp.of(opts), v)?;
        opts.otp.email_template = Some(t);
    }
    Ok(())
}

/// PocketBase's view of a top-level template key (`None` for other keys).
pub fn key_view(key: &str, opts: &AuthOptions) -> Option<Value> {
    let kind = match key {
        "verificationTemplate" => TemplateKind::Verification,
        "resetPasswordTemplate" => TemplateKind::ResetPassword,
        "confirmEmailChangeTemplate" => TemplateKind::ConfirmEmailChange,
        "authAlert" => return Some(json!(auth_alert(opts))),
        _ => return None,
    };
    Some(json!(kind.of(opts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_default_until_set_and_views_show_the_effective_one() {
        let mut opts = AuthOptions::default();
        assert_eq!(
            key_view("verificationTemplate", &opts).unwrap()["subject"],
            "Verify your {APP_NAME} email"
        );
        assert_eq!(key_view("authAlert", &opts).unwrap()["enabled"], true);
        assert!(apply_key("verificationTemplate", &json!({"subject": "Hi {APP_NAME}"}), &mut opts).unwrap());
        let t = TemplateKind::Verification.of(&opts);
        assert_eq!(t.subject, "Hi {APP_NAME}");
        assert_eq!(t.body, TemplateKind::Verification.default_template().body, "body kept");
        assert!(!apply_key("otp", &json!({}), &mut opts).unwrap());
        apply_key("authAlert", &json!({"enabled": false}), &mut opts).unwrap();
        assert!(!auth_alert(&opts).enabled);
        check(&opts).unwrap();
    }

    #[test]
    fn templates_bad_values_name_the_key() {
        let mut opts = AuthOptions::default();
        let field = |r: Result<bool, SchemaError>| match r {
            Err(SchemaError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(apply_key("resetPasswordTemplate", &json!({"subject": ""}), &mut opts)),
            "resetPasswordTemplate.subject"
        );
        assert_eq!(
            field(apply_key("resetPasswordTemplate", &json!({"body": 5}), &mut opts)),
            "resetPasswordTemplate.body"
        );
        assert_eq!(
            field(apply_key("confirmEmailChangeTemplate", &json!("x"), &mut opts)),
            "confirmEmailChangeTemplate"
        );
        let big = "x".repeat(MAX_BODY + 1);
        assert_eq!(
            field(apply_key(
                "authAlert",
                &json!({"emailTemplate": {"body": big}}),
                &mut opts
            )),
            "authAlert.emailTemplate.body"
        );
        assert_eq!(
            field(apply_key("authAlert", &json!({"enabled": "yes"}), &mut opts)),
            "authAlert.enabled"
        );
        assert_eq!(opts, AuthOptions::default(), "nothing applied");
        opts.otp.email_template = Some(MailTemplate {
            subject: "s".repeat(MAX_SUBJECT + 1),
            body: "b".into(),
        });
        assert!(
            matches!(check(&opts), Err(SchemaError::Invalid { field, .. }) if field == "otp.emailTemplate.subject")
        );
    }
}
