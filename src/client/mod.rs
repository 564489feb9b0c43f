//! The SDK: a typed client for the kpistream services and the signing helpers a
//! publisher needs. The CLI uses exactly this code.

mod publisher;

use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

pub use self::publisher::{
    BatchFailure, FailedBatch, PointOutcome, PublishError, Publisher, PublisherBuilder, Receipt,
    RejectedPoint, Report, RetryPolicy, Transport,
};
use crate::proto;
use crate::proto::ingest_client::IngestClient;
use crate::proto::query_client::QueryClient;
use crate::proto::stream_admin_client::StreamAdminClient;
pub use crate::signature::{Credential, CredentialError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not a server address: use http://HOST:PORT")]
    Endpoint(String),
    #[error("cannot connect to {endpoint}: {source} (is `kpistream serve` running there?)")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("the token is not valid header text")]
    Token,
}

/// Adds `authorization: Bearer <token>` to every call.
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

pub type AdminClient = StreamAdminClient<InterceptedService<Channel, BearerToken>>;
pub type ReadClient = QueryClient<InterceptedService<Channel, BearerToken>>;

/// A connection to a kpistream server.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    token: BearerToken,
}

/// How to reach a server: the token for admin and query calls, and (over `https://`)
/// how to trust the server and prove who we are.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// Bearer token for admin and query calls; publishing needs none.
    pub token: Option<SecretString>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

impl ConnectOptions {
    /// Options with a bearer token.
    pub fn with_token(token: SecretString) -> Self {
        Self { token: Some(token) }
    }

    /// The endpoint for `address`, configured by these options. The connection is made
    /// lazily by the caller.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, ClientError> {
        Endpoint::from_str(address).map_err(|_| ClientError::Endpoint(address.to_owned()))
    }
}

impl Client {
    /// Connects to `endpoint` (`http://127.0.0.1:50051`); `token` is needed for admin
    /// and query calls, not for publishing.
    pub async fn connect(endpoint: &str, token: Option<SecretString>) -> Result<Self, ClientError> {
        Self::connect_with(endpoint, ConnectOptions { token }).await
    }

    /// Connects to `endpoint` with `options`.
    pub async fn connect_with(
        endpoint: &str,
        options: ConnectOptions,
    ) -> Result<Self, ClientError> {
        let channel = options
            .endpoint(endpoint)?
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?;
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

    pub fn admin(&self) -> AdminClient {
        StreamAdminClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(64 * 1024 * 1024)
    }

    pub fn query(&self) -> ReadClient {
        QueryClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(64 * 1024 * 1024)
    }

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
    let now = jiff::Timestamp::now();
    proto::Batch {
        batch_id: uuid::Uuid::now_v7().to_string(),
        signed_at: Some(prost_types::Timestamp {
            seconds: now.as_second(),
            nanos: now.subsec_nanosecond(),
        }),
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
        when: Some(proto::point::When::At(prost_types::Timestamp {
            seconds: at.as_second(),
            nanos: at.subsec_nanosecond(),
        })),
        value: value.to_owned(),
        external_id: external_id.to_owned(),
    }
}
