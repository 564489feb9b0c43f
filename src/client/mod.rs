//! The SDK: a typed client for the kpistream services and the signing helpers a
//! publisher needs. The CLI uses exactly this code.

#![warn(missing_docs)]

mod api;
mod connect;
mod notify;
mod publisher;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

pub use self::api::{
    AuditFilter, CreatedOrg, CreatedStream, NewStream, PeriodRange, StreamChanges, StreamFilter,
    ValueKind,
};
pub use self::connect::ClientIdentity;
pub use self::notify::{DeliveryTarget, NotifyScope};
pub use self::publisher::{
    BatchFailure, FailedBatch, PointOutcome, PublishError, Publisher, PublisherBuilder, Receipt,
    RejectedPoint, Report, RetryPolicy, Transport,
};
pub use crate::auth::Role;
use crate::proto;
use crate::proto::ingest_client::IngestClient;
use crate::proto::query_client::QueryClient;
use crate::proto::runner_client::RunnerClient;
use crate::proto::stream_admin_client::StreamAdminClient;
pub use crate::signature::{Credential, CredentialError};
use crate::tls::TlsFileError;
use crate::wire::timestamp;

/// How long the TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a client could not be made or could not reach the server. Each message says
/// what to change.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a URL.
    #[error("{0:?} is not a server address: use http://HOST:PORT, or https://HOST:PORT for TLS")]
    Endpoint(String),
    /// The connection could not be made.
    #[error("cannot connect to {endpoint}: {cause} (is `kpistream serve` running there?)")]
    Connect {
        /// The server address that was dialled.
        endpoint: String,
        /// What the transport layer reported.
        cause: String,
    },
    /// The token cannot be sent as a header.
    #[error("the token is not valid header text")]
    Token,
    /// A certificate or key file could not be read or parsed.
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    /// TLS settings were given for a plain-text address.
    #[error(
        "TLS settings (a CA certificate, a client certificate or a TLS domain name) were given, but {endpoint} is plain text: use https:// to connect with TLS"
    )]
    TlsWithoutHttps {
        /// The server address that was dialled.
        endpoint: String,
    },
    /// The TLS settings could not be applied.
    #[error("cannot set up TLS for {endpoint}: {cause}")]
    TlsConfig {
        /// The server address that was dialled.
        endpoint: String,
        /// What the transport layer reported.
        cause: String,
    },
    /// `http://` to a port that did not answer gRPC in plain text: most likely TLS.
    #[error(
        "the server at {endpoint} did not answer gRPC over plain text: is it serving TLS? use {https} ({cause})"
    )]
    ServesTls {
        /// The server address that was dialled.
        endpoint: String,
        /// The same address with `https://`.
        https: String,
        /// What the transport layer reported.
        cause: String,
    },
    /// `https://` to a port that did not answer TLS: most likely plain text.
    #[error(
        "the server at {endpoint} did not answer TLS: is it serving plain text? use {http} ({cause})"
    )]
    NotTls {
        /// The server address that was dialled.
        endpoint: String,
        /// The same address with `http://`.
        http: String,
        /// What the transport layer reported.
        cause: String,
    },
    /// The server's certificate is not signed by a trusted CA.
    #[error(
        "the server at {endpoint} presented a certificate this client does not trust ({cause}): trust the CA that signed it (--ca-cert FILE, ConnectOptions::ca_file)"
    )]
    UntrustedServer {
        /// The server address that was dialled.
        endpoint: String,
        /// What the transport layer reported.
        cause: String,
    },
    /// The server requires a client certificate and none was given.
    #[error(
        "the server at {endpoint} requires a client certificate (mutual TLS): give one with --client-cert FILE --client-key FILE (ConnectOptions::client_identity_files)"
    )]
    ClientCertificateRequired {
        /// The server address that was dialled.
        endpoint: String,
    },
    /// The server refused our client certificate.
    #[error(
        "the server at {endpoint} refused the TLS connection after the handshake: it did not accept our client certificate, which must be signed by the CA the server trusts for clients (its --tls-client-ca) ({cause})"
    )]
    ClientCertificateRefused {
        /// The server address that was dialled.
        endpoint: String,
        /// What the transport layer reported.
        cause: String,
    },
    /// Another TLS failure.
    #[error("TLS with the server at {endpoint} failed: {cause}")]
    Tls {
        /// The server address that was dialled.
        endpoint: String,
        /// What the transport layer reported.
        cause: String,
    },
    /// The server accepted the connection but did not answer gRPC.
    #[error("the server at {endpoint} accepted the connection but did not answer gRPC ({cause})")]
    NoAnswer {
        /// The server address that was dialled.
        endpoint: String,
        /// What the transport layer reported.
        cause: String,
    },
}

/// Adds `authorization: Bearer <token>` to every call (the value is marked sensitive,
/// so it is never logged).
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The generated `StreamAdmin` client, sending the token.
pub type AdminClient = StreamAdminClient<InterceptedService<Channel, BearerToken>>;
/// The generated `Query` client, sending the token.
pub type ReadClient = QueryClient<InterceptedService<Channel, BearerToken>>;
/// The generated `Runner` client, sending the token.
pub type RunnerStateClient = RunnerClient<InterceptedService<Channel, BearerToken>>;

/// A connection to a kpistream server.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    token: BearerToken,
}

/// How to reach a server: the token for admin and query calls, and (over `https://`)
/// how to trust the server and prove who we are.
///
/// ```no_run
/// use kpistream::client::{Client, ConnectOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let options = ConnectOptions::default()
///     .ca_file("ca.pem")?
///     .client_identity_files("client.pem", "client.key")?;
/// let client = Client::connect_with("https://localhost:50051", options).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// Bearer token for admin and query calls; publishing needs none.
    pub token: Option<SecretString>,
    /// PEM certificate(s) of the CA that signed the server's certificate, for an
    /// `https://` server with a private CA. When set, only these CAs are trusted; when
    /// not, the public web roots (Mozilla's list, built in) are.
    pub ca_certificate: Option<Vec<u8>>,
    /// The certificate and key shown to a server that requires client certificates
    /// (mutual TLS).
    pub client_identity: Option<ClientIdentity>,
    /// The name the server's certificate must carry, when it is not the host of the
    /// address (for example when connecting through a tunnel or by another name).
    pub tls_domain: Option<String>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field(
                "ca_certificate",
                &self
                    .ca_certificate
                    .as_ref()
                    .map(|pem| format!("{} bytes", pem.len())),
            )
            .field("client_identity", &self.client_identity)
            .field("tls_domain", &self.tls_domain)
            .finish()
    }
}

impl ConnectOptions {
    /// Options with a bearer token.
    pub fn with_token(token: SecretString) -> Self {
        Self {
            token: Some(token),
            ..Self::default()
        }
    }

    /// Trusts the CA certificate(s) in the PEM file at `path` (instead of the public
    /// roots) to sign the server's certificate. Errors name the file.
    pub fn ca_file(self, path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let pem = crate::tls::read_certificates(path.as_ref(), "CA certificate")?;
        Ok(self.ca_pem(pem))
    }

    /// Trusts the CA certificate(s) in `pem` (instead of the public roots).
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certificate = Some(pem.into());
        self
    }

    /// Shows the certificate in the PEM file `cert` and its private key in `key` to
    /// servers that require client certificates. Errors name the file.
    pub fn client_identity_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, ClientError> {
        Ok(self.identity(ClientIdentity::from_files(cert, key)?))
    }

    /// Shows `identity` to servers that require client certificates.
    pub fn identity(mut self, identity: ClientIdentity) -> Self {
        self.client_identity = Some(identity);
        self
    }

    /// Checks the server's certificate against `name` instead of the address's host.
    pub fn tls_domain_name(mut self, name: impl Into<String>) -> Self {
        self.tls_domain = Some(name.into());
        self
    }

    fn uses_tls_settings(&self) -> bool {
        self.ca_certificate.is_some() || self.client_identity.is_some() || self.tls_domain.is_some()
    }

    /// The endpoint for `address` (`http://HOST:PORT`, or `https://HOST:PORT` for TLS
    /// with these options' CA and client certificate), not yet connected.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, ClientError> {
        let endpoint =
            Endpoint::from_str(address).map_err(|_| ClientError::Endpoint(address.to_owned()))?;
        match endpoint.uri().scheme_str() {
            Some("https") => {
                endpoint
                    .tls_config(self.tls_config())
                    .map_err(|e| ClientError::TlsConfig {
                        endpoint: address.to_owned(),
                        cause: connect::describe(&e),
                    })
            }
            Some("http") if self.uses_tls_settings() => Err(ClientError::TlsWithoutHttps {
                endpoint: address.to_owned(),
            }),
            Some("http") => Ok(endpoint),
            _ => Err(ClientError::Endpoint(address.to_owned())),
        }
    }

    fn tls_config(&self) -> ClientTlsConfig {
        crate::tls::use_ring_provider();
        let mut tls = ClientTlsConfig::new().timeout(TLS_HANDSHAKE_TIMEOUT);
        tls = match &self.ca_certificate {
            Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
            None => tls.with_webpki_roots(),
        };
        if let Some(identity) = &self.client_identity {
            let key = identity.key_pem.expose_secret();
            tls = tls.identity(Identity::from_pem(&identity.cert_pem, key));
        }
        if let Some(name) = &self.tls_domain {
            tls = tls.domain_name(name);
        }
        tls
    }
}

impl Client {
    /// Connects to `endpoint` (`http://127.0.0.1:50051`); `token` is needed for admin
    /// and query calls, not for publishing.
    pub async fn connect(endpoint: &str, token: Option<SecretString>) -> Result<Self, ClientError> {
        let options = ConnectOptions {
            token,
            ..ConnectOptions::default()
        };
        Self::connect_with(endpoint, options).await
    }

    /// Connects to `endpoint` with `options`, and makes one health check so that a
    /// wrong scheme, an untrusted certificate or a missing client certificate fails
    /// here, with a sentence, rather than at the first call.
    pub async fn connect_with(
        endpoint: &str,
        options: ConnectOptions,
    ) -> Result<Self, ClientError> {
        let channel = options
            .endpoint(endpoint)?
            .connect()
            .await
            .map_err(|error| connect::connect_failed(endpoint, &options, error))?;
        connect::probe(channel.clone(), endpoint, &options).await?;
        Self::from_channel(channel, &options)
    }

    /// A client over an existing channel (for example one made with
    /// [`ConnectOptions::endpoint`] and `connect_lazy`).
    pub fn from_channel(channel: Channel, options: &ConnectOptions) -> Result<Self, ClientError> {
        let token = match &options.token {
            None => None,
            Some(t) => {
                let mut value: MetadataValue<_> = format!("Bearer {}", t.expose_secret())
                    .parse()
                    .map_err(|_| ClientError::Token)?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Self {
            channel,
            token: BearerToken(token),
        })
    }

    /// The `StreamAdmin` service: streams, keys, categories (needs an admin's token).
    pub fn admin(&self) -> AdminClient {
        StreamAdminClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(64 * 1024 * 1024)
    }

    /// The `Query` service: points, latest value, revisions (needs a token).
    pub fn query(&self) -> ReadClient {
        QueryClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(64 * 1024 * 1024)
    }

    /// The `Runner` service: connector leases, state and run log (needs an org admin's
    /// token).
    pub fn runner(&self) -> RunnerStateClient {
        RunnerClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    /// The `Ingest` service (no token: signatures authorise publishing).
    pub fn ingest(&self) -> IngestClient<Channel> {
        IngestClient::new(self.channel.clone())
    }

    /// Signs `points` as one new batch with `credential` and publishes it.
    pub async fn publish(
        &self,
        credential: &Credential,
        points: Vec<proto::Point>,
        all_or_nothing: bool,
    ) -> Result<proto::PublishResponse, Status> {
        let request = proto::PublishRequest {
            batch: Some(credential.seal(&new_batch(points))),
            all_or_nothing,
        };
        Ok(self.ingest().publish(request).await?.into_inner())
    }
}

/// A batch with a fresh UUIDv7 `batch_id`, signed now.
pub fn new_batch(points: Vec<proto::Point>) -> proto::Batch {
    proto::Batch {
        batch_id: uuid::Uuid::now_v7().to_string(),
        signed_at: Some(timestamp(jiff::Timestamp::now())),
        points,
    }
}

/// A point for a period given as text.
pub fn point_for_period(period: &str, value: &str, external_id: &str) -> proto::Point {
    proto::Point {
        when: Some(proto::point::When::Period(period.to_owned())),
        value: value.to_owned(),
        external_id: external_id.to_owned(),
    }
}

/// A point placed by the server from an instant, in the stream's time zone.
pub fn point_at(at: jiff::Timestamp, value: &str, external_id: &str) -> proto::Point {
    proto::Point {
        when: Some(proto::point::When::At(timestamp(at))),
        value: value.to_owned(),
        external_id: external_id.to_owned(),
    }
}
