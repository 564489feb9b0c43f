//! The gRPC edge: one file per service. Generated types stop here; handlers convert
//! them into domain types and back.

pub mod admin;
pub mod convert;
pub mod error;
pub mod ingest;
pub mod query;

use std::sync::Arc;

use std::future::Future;
use std::time::Duration;

use tonic::{Request, Response, Status};

pub use self::error::ApiError;
use crate::auth::{self, AuthError, Principal};
use crate::ids::StreamId;
use crate::ingest::Ingestor;
use crate::store::Store;
use crate::stream::Stream;

/// What every service shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingestor: Ingestor,
    /// How long one call (or one batch of a `PublishStream`) may take.
    pub deadline: Duration,
}

impl AppState {
    /// Runs a handler within the request deadline and turns its result into a reply.
    /// The deadline is per call here (not a server-wide layer) so that a long-lived
    /// `PublishStream` is never cut: each of its batches has the deadline instead.
    pub async fn reply<T>(
        &self,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<Response<T>, Status> {
        match tokio::time::timeout(self.deadline, work).await {
            Ok(result) => result.map(Response::new).map_err(Status::from),
            Err(_) => Err(ApiError::Deadline(self.deadline).into()),
        }
    }

    /// The principal of the request's bearer token.
    pub async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, ApiError> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().map_err(|_| AuthError::MalformedHeader))
            .transpose()?;
        let token = auth::bearer(header)?;
        let principal = self
            .store
            .principal_for_token(&auth::hash_token(&token), jiff::Timestamp::now())
            .await?
            .ok_or(AuthError::InvalidToken)?;
        Ok(principal)
    }

    /// The stream `id` as the principal may see it.
    pub async fn stream_for(&self, who: &Principal, id: &str) -> Result<Stream, ApiError> {
        let id = parse_stream_id(id)?;
        Ok(self.store.get_stream(&who.org_id, &id).await?)
    }
}

pub fn parse_stream_id(id: &str) -> Result<StreamId, ApiError> {
    if id.is_empty() {
        return Err(ApiError::Invalid("stream_id is required".into()));
    }
    Ok(StreamId::parse(id)?)
}
