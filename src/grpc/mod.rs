//! The gRPC edge: one file per service. Generated types stop here; handlers convert
//! them into domain types and back.

pub mod admin;
pub mod convert;
pub mod error;
pub mod ingest;
pub mod query;

use std::sync::Arc;

use tonic::Request;

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
}

impl AppState {
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
