//! SMTP delivery through lettre (async over tokio, TLS through rustls).
//!
//! Settings can change at runtime (`PATCH /api/settings`), so the transport
//! is cached keyed by the SMTP settings it was built from and rebuilt when
//! they differ; building it loads the TLS root store, which is worth not
//! repeating per mail. Each send opens its own connection (no pool: auth
//! mails are rare, and an idle pooled connection would outlive a settings
//! change).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Mail, MailError};
use crate::settings::{MetaSettings, SmtpSettings};

/// Upper bound for one delivery (connect, TLS, AUTH, DATA). lettre's own
/// timeout covers only the TCP connect; a server that accepts and then
/// stalls must not hold a background task (or a test-email request) forever.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Cheap-clone SMTP client: the cached transport and the settings it was
/// built from.
#[derive(Clone, Default)]
pub struct SmtpClient {
    cached: Arc<Mutex<Option<(SmtpSettings, Transport)>>>,
}

impl SmtpClient {
    /// Delivers `mail` with `smtp`, From `meta`'s sender, within
    /// [`SEND_TIMEOUT`].
    pub async fn send(&self, smtp: &SmtpSettings, meta: &MetaSettings, mail: &Mail) -> Result<(), MailError> {
        let message = build_message(meta, mail)?;
        let transport = self.transport(smtp)?;
        match tokio::time::timeout(SEND_TIMEOUT, transport.send(message)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) => Err(MailError::Smtp(format!("{} ({}:{})", e, smtp.host, smtp.port))),
            Err(_) => Err(MailError::Smtp(format!(
                "no answer from {}:{} within {} s",
                smtp.host,
                smtp.port,
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The transport for `smtp`, from the cache when the settings are
    /// unchanged. The lock is never held across an await (the transport is a
    /// cheap clone of its configuration).
    fn transport(&self, smtp: &SmtpSettings) -> Result<Transport, MailError> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((settings, transport)) = cached.as_ref() {
            if settings == smtp {
                return Ok(transport.clone());
            }
        }
        let transport = build_transport(smtp)?;
        *cached = Some((smtp.clone(), transport.clone()));
        Ok(transport)
    }
}

fn build_transport(smtp: &SmtpSettings) -> Result<Transport, MailError> {
    let tls_params = || {
        TlsParameters::new(smtp.host.clone()).map_err(|e| MailError::Smtp(format!("TLS setup for {}: {e}", smtp.host)))
    };
    let tls = match smtp.tls.as_str() {
        // Required, not opportunistic: a stripped STARTTLS offer must fail
        // the send rather than leak credentials and tokens in clear text.
        "starttls" => Tls::Required(tls_params()?),
        "tls" => Tls::Wrapper(tls_params()?),
        "none" => Tls::None,
        other => return Err(MailError::Smtp(format!("unknown SMTP tls mode '{other}'"))),
    };
    let mut builder = Transport::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(SEND_TIMEOUT));
    if !smtp.username.is_empty() {
        builder = builder.credentials(Credentials::new(smtp.username.clone(), smtp.password.clone()));
        // PocketBase's `authMethod`: PLAIN unless LOGIN is asked for.
        let mechanism = match smtp.auth_method.as_str() {
            "LOGIN" => Mechanism::Login,
            _ => Mechanism::Plain,
        };
        builder = builder.authentication(vec![mechanism]);
    }
    if !smtp.local_name.is_empty() {
        builder = builder.hello_name(ClientId::Domain(smtp.local_name.clone()));
    }
    Ok(builder.build())
}

/// The MIME message: From `"{senderName} <{senderAddress}>"`, a
/// multipart/alternative text + HTML body. lettre picks each part's
/// transfer encoding (7bit, or quoted-printable/base64 for long or non-ASCII
/// lines), and encodes non-ASCII names and subjects.
fn build_message(meta: &MetaSettings, mail: &Mail) -> Result<Message, MailError> {
    let sender = meta
        .sender_address
        .parse()
        .map_err(|e| MailError::Smtp(format!("invalid sender address '{}': {e}", meta.sender_address)))?;
    let name = Some(meta.sender_name.trim().to_owned()).filter(|n| !n.is_empty());
    let from = Mailbox::new(name, sender);
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| MailError::Smtp(format!("invalid recipient address '{}': {e}", mail.to)))?;
    // lettre only generates `<id@localhost>` without its `hostname` feature;
    // an id in the sender's domain reads better to spam filters.
    let message_id = format!(
        "<{}.{}@{}>",
        crate::clock::now_millis(),
        crate::ids::record_id(),
        from.email.domain()
    );
    Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .message_id(Some(message_id))
        .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
        .map_err(|e| MailError::Smtp(format!("cannot build the message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> Mail {
        Mail {
            to: "amy@example.com".into(),
            subject: "Hello".into(),
            text: "Token: abc".into(),
            html: "<p>Token: abc</p>".into(),
        }
    }

    #[test]
    fn mail_message_has_sender_and_both_parts() {
        let meta = MetaSettings {
            sender_name: "Basalt App".into(),
            sender_address: "no-reply@basalt.test".into(),
            ..MetaSettings::default()
        };
        let raw = String::from_utf8(build_message(&meta, &mail()).expect("message").formatted()).expect("utf-8");
        assert!(raw.contains("From: \"Basalt App\" <no-reply@basalt.test>\r\n"), "{raw}");
        assert!(raw.contains("To: amy@example.com\r\n"), "{raw}");
        assert!(raw.contains("@basalt.test>\r\n"), "{raw}");
        assert!(raw.contains("text/plain") && raw.contains("text/html"), "{raw}");
    }

    #[test]
    fn mail_bad_addresses_are_errors_not_panics() {
        let meta = MetaSettings {
            sender_address: "not an address".into(),
            ..MetaSettings::default()
        };
        assert!(matches!(build_message(&meta, &mail()), Err(MailError::Smtp(_))));
        let bad_to = Mail {
            to: "nobody".into(),
            ..mail()
        };
        assert!(matches!(
            build_message(&MetaSettings::default(), &bad_to),
            Err(MailError::Smtp(_))
        ));
    }

    #[test]
    fn mail_transport_is_cached_per_settings() {
        let client = SmtpClient::default();
        let mut smtp = SmtpSettings {
            enabled: true,
            host: "127.0.0.1".into(),
            port: 2525,
            tls: "none".into(),
            ..SmtpSettings::default()
        };
        client.transport(&smtp).expect("transport");
        smtp.tls = "starttls".into();
        client.transport(&smtp).expect("transport");
        let cached = client.cached.lock().expect("lock");
        assert_eq!(cached.as_ref().map(|(s, _)| s.tls.as_str()), Some("starttls"));
        drop(cached);
        smtp.tls = "bogus".into();
        assert!(client.transport(&smtp).is_err());
    }
}
