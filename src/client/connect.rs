//! Connecting, and saying in a sentence why a connection failed. Holds the client's
//! TLS identity, the probe that checks a gRPC server answers, and the reading of
//! transport errors (a TLS port spoken to in plain text, an untrusted certificate, a
//! missing or refused client certificate) into [`ClientError`]s.
//!
//! The transport reports these failures as a chain of library errors ("transport
//! error", "connection closed", "received corrupt message of type
//! InvalidContentType"); the sentences here say what the user should change.

#![warn(missing_docs)]

use std::error::Error as StdError;
use std::path::Path;
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};
use secrecy::SecretSlice;
use tonic::Status;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::{ClientError, ConnectOptions};
use crate::tls;

/// How long the first call after connecting may take to be answered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client certificate and its private key, shown to a server that requires client
/// certificates (mutual TLS). `Debug` never shows the key.
#[derive(Clone)]
pub struct ClientIdentity {
    pub(super) cert_pem: Vec<u8>,
    pub(super) key_pem: SecretSlice<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"[REDACTED]")
            .finish()
    }
}

impl ClientIdentity {
    /// An identity from PEM text: the certificate (followed by any intermediates) and
    /// its private key. It is parsed when the endpoint is built.
    pub fn from_pem(cert_pem: impl Into<Vec<u8>>, key_pem: SecretSlice<u8>) -> Self {
        Self {
            cert_pem: cert_pem.into(),
            key_pem,
        }
    }

    /// Reads a PEM certificate file and a PEM private key file (PKCS#8, PKCS#1 or
    /// SEC1), checking that each holds what it should; errors name the file.
    pub fn from_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, ClientError> {
        Ok(Self {
            cert_pem: tls::read_certificates(cert.as_ref(), "client certificate")?,
            key_pem: tls::read_private_key(key.as_ref(), "client key")?,
        })
    }
}

/// Makes one cheap call (the standard health check) so that a server that does not
/// answer gRPC on this connection fails at connect time, with a sentence. Any answer
/// from a gRPC server counts, even an error status.
pub(super) async fn probe(
    channel: Channel,
    endpoint: &str,
    options: &ConnectOptions,
) -> Result<(), ClientError> {
    let mut health = HealthClient::new(channel);
    let check = health.check(HealthCheckRequest::default());
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Err(_) => Err(ClientError::NoAnswer {
            endpoint: endpoint.to_owned(),
            cause: format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => match ClientError::from_transport_status(endpoint, options, &status) {
            Some(err) => Err(err),
            None => Ok(()),
        },
    }
}

/// The error for a failed `Endpoint::connect` (TCP connect and, over `https://`, the
/// TLS handshake).
pub(super) fn connect_failed(
    endpoint: &str,
    options: &ConnectOptions,
    error: tonic::transport::Error,
) -> ClientError {
    let cause = describe(&error);
    if is_https(endpoint) {
        if let Some(failure) = tls_failure(&error) {
            return failure.into_error(endpoint, options, cause);
        }
    }
    ClientError::Connect {
        endpoint: endpoint.to_owned(),
        cause,
    }
}

impl ClientError {
    /// Explains a call that failed before any gRPC answer came back (a transport
    /// failure), for channels made with [`ConnectOptions::endpoint`] and
    /// `connect_lazy`. Returns `None` when `status` is an answer from a server.
    pub fn from_transport_status(
        endpoint: &str,
        options: &ConnectOptions,
        status: &Status,
    ) -> Option<ClientError> {
        // A status sent by a server has no source; one made from a transport error does.
        let source = StdError::source(status)?;
        let endpoint = endpoint.to_owned();
        let cause = describe(source);
        if unreachable(source) {
            return Some(ClientError::Connect { endpoint, cause });
        }
        if !is_https(&endpoint) {
            let https = with_scheme(&endpoint, "https");
            return Some(ClientError::ServesTls {
                endpoint,
                https,
                cause,
            });
        }
        Some(match tls_failure(source) {
            Some(failure) => failure.into_error(&endpoint, options, cause),
            // TLS 1.3 servers check the client certificate after the client considers
            // the handshake done; the refusal then arrives as the alert or as a bare
            // reset, whichever the race gives. Both get the same answer, so that one
            // mistake always reads the same.
            None if options.client_identity.is_some() => {
                ClientError::ClientCertificateRefused { endpoint, cause }
            }
            None => ClientError::ClientCertificateRequired { endpoint },
        })
    }
}

/// Whether the chain says no connection could be made at all (as when a lazy channel
/// reconnects to a server that is down).
fn unreachable(err: &(dyn StdError + 'static)) -> bool {
    use std::io::ErrorKind::*;
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if text.starts_with("tcp connect error") || text.starts_with("dns error") {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let kind = io.kind();
            if matches!(
                kind,
                ConnectionRefused
                    | TimedOut
                    | HostUnreachable
                    | NetworkUnreachable
                    | AddrNotAvailable
            ) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// What went wrong in TLS, as far as the error chain tells.
enum TlsFailure {
    /// The peer did not speak TLS.
    NotTls,
    /// The server's certificate does not chain to a CA we trust.
    UntrustedServer,
    /// The server wants a client certificate and we sent none.
    CertificateRequired,
    /// The server did not accept our client certificate.
    CertificateRefused,
    /// Anything else (wrong name, expired certificate…): rustls's own words suffice.
    Other,
}

impl TlsFailure {
    fn into_error(self, endpoint: &str, options: &ConnectOptions, cause: String) -> ClientError {
        let endpoint = endpoint.to_owned();
        match self {
            TlsFailure::NotTls => ClientError::NotTls {
                http: with_scheme(&endpoint, "http"),
                endpoint,
                cause,
            },
            TlsFailure::UntrustedServer => ClientError::UntrustedServer { endpoint, cause },
            TlsFailure::CertificateRequired if options.client_identity.is_none() => {
                ClientError::ClientCertificateRequired { endpoint }
            }
            TlsFailure::CertificateRequired | TlsFailure::CertificateRefused => {
                ClientError::ClientCertificateRefused { endpoint, cause }
            }
            TlsFailure::Other => ClientError::Tls { endpoint, cause },
        }
    }
}

/// Finds the TLS failure in an error chain. rustls errors come typed during the
/// handshake, and as text (inside an I/O error) once it is done.
fn tls_failure(err: &(dyn StdError + 'static)) -> Option<TlsFailure> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = rustls_failure(e) {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(found) = io.get_ref().and_then(|inner| rustls_failure(inner)) {
                return Some(found);
            }
            // A peer that closes the connection during the handshake is not a TLS server.
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return Some(TlsFailure::NotTls);
            }
        }
        next = e.source();
    }
    None
}

fn rustls_failure(e: &(dyn StdError + 'static)) -> Option<TlsFailure> {
    if let Some(error) = e.downcast_ref::<rustls::Error>() {
        return Some(classify(error));
    }
    let text = e.to_string();
    REFUSAL_ALERTS
        .iter()
        .map(|alert| rustls::Error::AlertReceived(*alert))
        .find(|error| error.to_string() == text)
        .map(|error| classify(&error))
}

/// Alerts a server sends when it refuses a client, matched by rustls's own wording.
const REFUSAL_ALERTS: [AlertDescription; 8] = [
    AlertDescription::CertificateRequired,
    AlertDescription::BadCertificate,
    AlertDescription::UnknownCA,
    AlertDescription::CertificateUnknown,
    AlertDescription::CertificateExpired,
    AlertDescription::CertificateRevoked,
    AlertDescription::UnsupportedCertificate,
    AlertDescription::AccessDenied,
];

fn classify(error: &rustls::Error) -> TlsFailure {
    match error {
        rustls::Error::InvalidMessage(_) => TlsFailure::NotTls,
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => TlsFailure::UntrustedServer,
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            TlsFailure::CertificateRequired
        }
        rustls::Error::AlertReceived(alert) if REFUSAL_ALERTS.contains(alert) => {
            TlsFailure::CertificateRefused
        }
        _ => TlsFailure::Other,
    }
}

/// The messages of an error chain, outermost first, joined by ": ", without tonic's
/// bare "transport error" and without repeats.
pub(super) fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if text != "transport error" && !parts.contains(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

fn is_https(endpoint: &str) -> bool {
    endpoint
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// `endpoint` with its scheme replaced, to suggest the other one.
fn with_scheme(endpoint: &str, scheme: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    format!("{scheme}://{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_other_scheme_is_suggested_with_the_same_host_and_port() {
        assert_eq!(
            with_scheme("http://localhost:50051", "https"),
            "https://localhost:50051"
        );
        assert_eq!(
            with_scheme("https://127.0.0.1:1", "http"),
            "http://127.0.0.1:1"
        );
    }

    #[test]
    fn an_alert_reported_as_text_is_recognised() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired).to_string(),
        );
        assert!(matches!(
            tls_failure(&io),
            Some(TlsFailure::CertificateRequired)
        ));
    }

    #[test]
    fn the_identity_debug_output_hides_the_key() {
        let identity = ClientIdentity::from_pem("CERT", SecretSlice::from(b"KEY".to_vec()));
        let text = format!("{identity:?}");
        assert!(
            !text.contains("KEY") && !text.contains("75, 69, 89"),
            "{text}"
        );
        assert!(text.contains("[REDACTED]"), "{text}");
    }
}
