//! The gRPC edge: one file per service. Generated types stop here; handlers convert
//! them into domain types and back.

pub mod access;
pub mod admin;
pub mod codec;
pub mod convert;
pub mod error;
pub mod ingest;
pub mod notify;
pub mod paging;
pub mod query;
pub mod runner;
pub mod watch;

use std::sync::Arc;

use std::future::Future;
use std::time::Duration;

use tonic::{Request, Response, Status};

pub use self::error::ApiError;
use crate::access::{Access, AccessError, AuditEvent};
use crate::auth::{self, AuthError, Principal};
use crate::ids::StreamId;
use crate::ingest::Ingestor;
use crate::store::{Store, StoreError, WriteHealth};
use crate::stream::Stream;

/// A caller this process has authenticated already: the web console calls the same
/// handlers as the gRPC API, for its signed-in user, with this in the request's
/// extensions (which only code in this process can set: a network client sends
/// metadata, never Rust values).
#[derive(Clone)]
pub struct Authenticated(pub Principal);

impl Authenticated {
    /// `message` as a request of `who`.
    pub fn request<T>(who: &Principal, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(Self(who.clone()));
        request
    }
}

/// What every service shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingestor: Ingestor,
    /// Storage faults seen by calls, for `/healthz`.
    pub health: Arc<WriteHealth>,
    /// Most points a `Watch` may have queued for its client.
    pub watch_buffer_points: usize,
    /// How long one call (or one batch of a `PublishStream`) may take.
    pub deadline: Duration,
    /// Cancelled when the server starts to shut down (the `draining` step of
    /// `transport::Shutdown`), to end long-lived calls (`Watch`, `PublishStream`).
    pub stopping: tokio_util::sync::CancellationToken,
    /// Whether the server can send alert emails (`[alerts.smtp]` is set).
    pub alert_email: bool,
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
            Ok(result) => result.map(Response::new).map_err(|err| {
                if let ApiError::Store(e) = &err {
                    self.health.failed(e);
                }
                Status::from(err)
            }),
            Err(_) => Err(ApiError::Deadline(self.deadline).into()),
        }
    }

    /// The principal of the request's bearer token, or the one the process itself put
    /// on a request it makes (the web console's signed-in user, see [`Authenticated`]).
    pub async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, ApiError> {
        if let Some(Authenticated(who)) = request.extensions().get::<Authenticated>() {
            return Ok(who.clone());
        }
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

    /// The principal of the request, if they are an org admin or a runner.
    pub async fn runner<T>(
        &self,
        request: &Request<T>,
        action: &'static str,
    ) -> Result<Principal, ApiError> {
        let who = self.principal(request).await?;
        who.require_runner(action)?;
        Ok(who)
    }

    /// The principal of the request, if they are an admin of their organisation.
    pub async fn admin<T>(
        &self,
        request: &Request<T>,
        action: &'static str,
    ) -> Result<Principal, ApiError> {
        let who = self.principal(request).await?;
        who.require_admin(action)?;
        Ok(who)
    }

    /// The stream `id`, if the principal has `needed` access to it. A stream the
    /// principal may not even read answers exactly like a stream that does not exist.
    pub async fn stream_for(
        &self,
        who: &Principal,
        id: &str,
        needed: Access,
    ) -> Result<Stream, ApiError> {
        let id = parse_stream_id(id)?;
        let stream = self.store.get_stream(&who.org_id, &id).await?;
        match self.access(who, &id).await? {
            None => Err(StoreError::NotFound(format!("stream {id}")).into()),
            Some(access) if access < needed => Err(AccessError::ReadOnly(id.to_string()).into()),
            Some(_) => Ok(stream),
        }
    }

    /// What the principal may do with a stream of their organisation: admins manage
    /// every stream, runners read every stream and manage none (whatever grants they
    /// hold), members have what their grants give them.
    pub async fn access(&self, who: &Principal, id: &StreamId) -> Result<Option<Access>, ApiError> {
        if who.is_admin() {
            return Ok(Some(Access::Manage));
        }
        if who.reads_every_stream() {
            return Ok(Some(Access::Read));
        }
        Ok(self
            .store
            .stream_access(&who.org_id, &who.user_id, id)
            .await?)
    }

    /// Records an admin action; a failure to record is logged, not returned, since the
    /// action itself has happened.
    pub async fn audit(
        &self,
        who: &Principal,
        action: &'static str,
        target_kind: &'static str,
        target_id: &str,
        detail: impl Into<String>,
    ) {
        let event = AuditEvent {
            org: &who.org_id,
            actor_id: &who.user_id,
            actor_name: &who.name,
            action,
            target_kind,
            target_id: target_id.to_owned(),
            detail: detail.into(),
        };
        if let Err(e) = self
            .store
            .record_audit(&event, jiff::Timestamp::now())
            .await
        {
            self.health.failed(&e);
            tracing::error!(error = %e, action, target_id, "could not record an audit entry");
        }
    }
}

pub fn parse_stream_id(id: &str) -> Result<StreamId, ApiError> {
    if id.is_empty() {
        return Err(ApiError::Invalid("stream_id is required".into()));
    }
    Ok(StreamId::parse(id)?)
}
