//! Outgoing mail: SMTP when configured (`smtp`), otherwise the dev outbox.
//!
//! The dev outbox makes every mail flow work on a fresh machine: each mail is
//! written as an `.eml` file under `<data dir>/outbox/` and its subject and
//! recipient are logged, so a developer can follow a verification link
//! without setting up SMTP. Tokens are never logged (only written to the
//! outbox file, which lives in the 0700 data dir).

pub mod smtp;
pub mod templates;
pub mod throttle;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::settings::SettingsStore;

/// A message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail could not be written to the outbox: {0}")]
    Outbox(String),
    #[error("SMTP delivery failed: {0}")]
    Smtp(String),
}

/// Cheap-clone handle for sending mail.
#[derive(Clone)]
pub struct Mailer {
    outbox: PathBuf,
    settings: SettingsStore,
    smtp: smtp::SmtpClient,
    /// Auth mails per recipient (`limits.mailsPerAddress`).
    throttle: Arc<throttle::RecipientThrottle>,
}

impl Mailer {
    pub fn new(data_dir: &Path, settings: SettingsStore) -> Mailer {
        Mailer {
            outbox: data_dir.join("outbox"),
            settings,
            smtp: smtp::SmtpClient::default(),
            throttle: Default::default(),
        }
    }

    /// Whether an auth mail of `kind` may go to `to` now, under the
    /// per-recipient throttle of the settings (`limits.mailsPerAddress`
    /// per `limits.mailWindow`); counted if so. The auth flows ask before
    /// they issue a token; test mails from superusers are not throttled.
    pub fn admit(&self, kind: throttle::MailKind, to: &str) -> bool {
        let settings = self.settings.get();
        let limits = &settings.limits;
        let window = std::time::Duration::from_secs(limits.mail_window.into());
        let ok = self.throttle.admit(kind, to, limits.mails_per_address, window);
        if !ok {
            tracing::info!(%to, ?kind, "auth mail not sent: too many to this address lately");
        }
        ok
    }

    /// Where dev mails go.
    pub fn outbox_dir(&self) -> &Path {
        &self.outbox
    }

    /// Sends `mail` with the current settings: over SMTP when enabled
    /// (bounded by [`smtp::SEND_TIMEOUT`]), else to the dev outbox.
    ///
    /// Logs recipient and subject only: bodies carry tokens, and the SMTP
    /// password never leaves the settings.
    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let settings = self.settings.get();
        if settings.smtp.enabled {
            let result = self.smtp.send(&settings.smtp, &settings.meta, &mail).await;
            match &result {
                Ok(()) => tracing::info!(to = %mail.to, subject = %mail.subject, "mail sent over SMTP"),
                Err(e) => tracing::warn!(to = %mail.to, subject = %mail.subject, error = %e, "mail not sent"),
            }
            return result;
        }
        let dir = self.outbox.clone();
        let from = format!("{} <{}>", settings.meta.sender_name, settings.meta.sender_address);
        let (to, subject) = (mail.to.clone(), mail.subject.clone());
        tokio::task::spawn_blocking(move || write_outbox(&dir, &from, &mail))
            .await
            .map_err(|e| MailError::Outbox(e.to_string()))??;
        tracing::info!(%to, %subject, "mail written to the dev outbox (SMTP is not configured)");
        Ok(())
    }
}

/// Writes `mail` as an `.eml` file a mail client opens: a
/// multipart/alternative message with the text part first, both parts 8-bit
/// UTF-8 as they are (no transfer encoding), so a developer (or a test) can
/// read the links and codes in the file directly.
fn write_outbox(dir: &Path, from: &str, mail: &Mail) -> Result<(), MailError> {
    std::fs::create_dir_all(dir).map_err(|e| MailError::Outbox(e.to_string()))?;
    let id = crate::ids::record_id();
    let name = format!("{}-{id}.eml", crate::clock::now_millis());
    let boundary = format!("basalt-{id}");
    let body = format!(
        "From: {from}\r\nTo: {}\r\nSubject: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n\
         --{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n\
         --{boundary}--\r\n",
        mail.to,
        mail.subject,
        crlf(&mail.text),
        crlf(&mail.html)
    );
    std::fs::write(dir.join(name), body).map_err(|e| MailError::Outbox(e.to_string()))
}

/// `s` with CRLF line ends (a form's textarea sends CRLF already).
fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}
