//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert` in the `--store`
//! URL, spoken through rustls with the ring provider already in the tree
//! (no OpenSSL, no new crate: tokio-rustls is built for lettre/reqwest).
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` only and refuses
//! any option it does not know, so the TLS options are taken out of the
//! URL here and the rest is handed to it. The modes mean what libpq says:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | no | – |
//! | `prefer` (the default, as libpq) | if the server offers it | no |
//! | `require` | yes | no; with `sslrootcert`: chain, as libpq |
//! | `verify-ca` | yes | chain up to the trusted roots |
//! | `verify-full` | yes | chain and the host name (or IP) |
//!
//! Trusted roots: the PEM file `sslrootcert=PATH`, or the Mozilla roots
//! (webpki-roots) without it or with `sslrootcert=system`. Client
//! certificates (`sslcert`, `sslkey`) are not supported: refused with a
//! message, not ignored. Channel binding (SCRAM-SHA-256-PLUS) is not
//! offered; SCRAM-SHA-256 works over the encrypted connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// How connections are made: plain, or TLS with this client configuration.
#[derive(Clone)]
pub(super) enum Tls {
    Off,
    On(MakeRustls),
}

/// Parses a `--store` URL: tokio-postgres' configuration and the TLS to
/// use. Errors are one line for the operator.
pub(super) fn parse(url: &str) -> Result<(tokio_postgres::Config, Tls), String> {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let (mut mode, mut root) = (None::<String>, None::<String>);
    let mut kept = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned();
        match k {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(format!(
                    "--store: {k} is not supported (Basalt does not present client certificates; use a password)"
                ))
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config =
        tokio_postgres::Config::from_str(&rest).map_err(|e| format!("--store: not a PostgreSQL URL ({e})"))?;
    let verify = match mode.as_deref().unwrap_or("prefer") {
        "disable" => {
            config.ssl_mode(SslMode::Disable);
            return Ok((config, Tls::Off));
        }
        "allow" | "prefer" => {
            config.ssl_mode(SslMode::Prefer);
            Verify::Nothing
        }
        "require" => {
            config.ssl_mode(SslMode::Require);
            if root.is_some() {
                Verify::Chain
            } else {
                Verify::Nothing
            }
        }
        "verify-ca" => {
            config.ssl_mode(SslMode::Require);
            Verify::Chain
        }
        "verify-full" => {
            config.ssl_mode(SslMode::Require);
            Verify::Full
        }
        other => {
            return Err(format!(
                "--store: sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ))
        }
    };
    let client = client_config(verify, root.as_deref())?;
    Ok((config, Tls::On(MakeRustls(Arc::new(client)))))
}

/// What a TLS connection checks of the server's certificate.
#[derive(Clone, Copy)]
enum Verify {
    Nothing,
    Chain,
    Full,
}

fn client_config(verify: Verify, root: Option<&str>) -> Result<ClientConfig, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(Unchecked(provider)),
        Verify::Chain | Verify::Full => {
            let roots = Arc::new(roots(root)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| format!("--store: sslrootcert: {e}"))?;
            match verify {
                Verify::Full => webpki,
                _ => Arc::new(AnyName(webpki)),
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The trusted roots: the PEM file at `path`, or the Mozilla roots.
fn roots(path: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match path {
        None | Some("system") => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--store: sslrootcert={path}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--store: sslrootcert={path}: {e}"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("--store: sslrootcert={path} holds no usable certificate"));
            }
        }
    }
    Ok(store)
}

/// `sslmode=prefer|require` without a root: encrypted, the certificate not
/// checked (libpq's meaning; it protects against eavesdropping only). The
/// handshake's signatures are still verified, so the server holds the key
/// of the certificate it sent.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not
/// compared (every other certificate error still fails).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// tokio-postgres' TLS factory over rustls: one connector per host tried.
#[derive(Clone)]
pub(super) struct MakeRustls(Arc<ClientConfig>);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MakeTlsConnect<S> for MakeRustls {
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.0.clone(),
            name: ServerName::try_from(domain.to_owned())?,
        })
    }
}

/// A TLS handshake with one host.
pub(super) struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> TlsConnect<S> for RustlsConnect {
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { connector.connect(self.name, stream).await.map(RustlsStream) })
    }
}

/// An encrypted connection.
pub(super) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Whether `e` is the TLS handshake refusing the server (its certificate,
/// or no protocol in common): a setting to fix, not an outage to wait out.
pub(super) fn refused_certificate(e: &tokio_postgres::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some()
}

/// Connects with `config` over `tls`; the connection's task runs on the
/// current runtime (its end is logged).
pub(super) async fn connect(
    config: &tokio_postgres::Config,
    tls: &Tls,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    fn drive<F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static>(connection: F) {
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection lost");
            }
        });
    }
    match tls {
        Tls::Off => {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            drive(connection);
            Ok(client)
        }
        Tls::On(make) => {
            let (client, connection) = config.connect(make.clone()).await?;
            drive(connection);
            Ok(client)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_taken_out_and_the_rest_kept() {
        let (c, tls) =
            parse("postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write&sslmode=require").unwrap();
        assert!(matches!(tls, Tls::On(_)));
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        assert_eq!(c.get_hosts().len(), 2);
        let (c, tls) = parse("postgres://u@h/db?sslmode=disable").unwrap();
        assert!(matches!(tls, Tls::Off));
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        let (c, _) = parse("postgres://u@h/db").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Prefer);
        for (url, says) in [
            ("postgres://u@h/db?sslmode=sometimes", "sslmode=sometimes"),
            (
                "postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem",
                "/nonexistent.pem",
            ),
            ("postgres://u@h/db?sslcert=/x.pem", "sslcert is not supported"),
        ] {
            let err = parse(url).err().expect(url);
            assert!(err.contains(says), "{url}: {err}");
        }
    }
}
