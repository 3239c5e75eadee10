//! Default texts of the auth mails. Links point at the confirm pages under
//! `<appURL>/_/auth/` (`admin::mail_links`), which complete the flow with
//! the same `core::auth` functions as the confirm endpoints.

use super::Mail;
use crate::settings::MetaSettings;

fn link(meta: &MetaSettings, path: &str, token: &str) -> String {
    format!("{}/_/{path}/{token}", meta.app_url.trim_end_matches('/'))
}

fn mail(to: &str, subject: String, text: String) -> Mail {
    let html = format!(
        "<p>{}</p>",
        html_escape(&text).replace("\n\n", "</p><p>").replace('\n', "<br>")
    );
    Mail {
        to: to.to_owned(),
        subject,
        text,
        html,
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn verification(meta: &MetaSettings, to: &str, token: &str) -> Mail {
    mail(
        to,
        format!("Verify your {} email", meta.app_name),
        format!(
            "Hello,\n\nThank you for joining {}. Click the link below to verify your email address:\n\n{}\n\nToken: {token}\n\nIf you did not sign up, ignore this mail.",
            meta.app_name,
            link(meta, "auth/confirm-verification", token)
        ),
    )
}

pub fn password_reset(meta: &MetaSettings, to: &str, token: &str) -> Mail {
    mail(
        to,
        format!("Reset your {} password", meta.app_name),
        format!(
            "Hello,\n\nClick the link below to choose a new password:\n\n{}\n\nToken: {token}\n\nIf you did not ask to reset your password, ignore this mail: your password stays the same.",
            link(meta, "auth/confirm-password-reset", token)
        ),
    )
}

pub fn email_change(meta: &MetaSettings, to: &str, token: &str) -> Mail {
    mail(
        to,
        format!("Confirm your new {} email address", meta.app_name),
        format!(
            "Hello,\n\nClick the link below to confirm your new email address:\n\n{}\n\nToken: {token}\n\nIf you did not ask to change your email address, ignore this mail.",
            link(meta, "auth/confirm-email-change", token)
        ),
    )
}

pub fn otp(meta: &MetaSettings, to: &str, code: &str) -> Mail {
    mail(
        to,
        format!("Your {} sign-in code", meta.app_name),
        format!("Hello,\n\nYour one-time sign-in code is: {code}\n\nIt expires in a few minutes. If you did not try to sign in, ignore this mail."),
    )
}
