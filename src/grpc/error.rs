//! The one mapping from domain errors to gRPC status codes. Every message is a
//! sentence a person can act on.

use tonic::{Code, Status};

use crate::access::AccessError;
use crate::auth::AuthError;
use crate::batch::CommitRefusal;
use crate::ids::InvalidId;
use crate::ingest::IngestError;
use crate::period::PeriodError;
use crate::runner_state::RunnerError;
use crate::signature::SignatureError;
use crate::store::StoreError;
use crate::stream::StreamError;
use crate::text::TooLong;
use crate::value::ValueError;

/// Everything a gRPC handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Period(#[from] PeriodError),
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Id(#[from] InvalidId),
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// A free-text request field over its limit.
    #[error(transparent)]
    TooLong(#[from] TooLong),
    /// A request field is missing or out of range.
    #[error("{0}")]
    Invalid(String),
    /// The call took longer than the server's request deadline.
    #[error("the call took longer than the server's deadline of {} s (limits.request_timeout_secs)", .0.as_secs())]
    Deadline(std::time::Duration),
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        let code = code_of(&err);
        if code == Code::Internal || code == Code::Unavailable {
            tracing::error!(error = %err, "request failed");
        }
        Status::new(code, err.to_string())
    }
}

fn code_of(err: &ApiError) -> Code {
    match err {
        ApiError::Auth(e) => match e {
            AuthError::MissingToken | AuthError::MalformedHeader | AuthError::InvalidToken => {
                Code::Unauthenticated
            }
            AuthError::NotAdmin(_) | AuthError::NotRunner(_) | AuthError::RunnerMayNot(_) => {
                Code::PermissionDenied
            }
        },
        ApiError::Access(e) => match e {
            AccessError::Invalid(_) | AccessError::TooLong(_) => Code::InvalidArgument,
            AccessError::ReadOnly(_)
            | AccessError::NotServerAdmin(_)
            | AccessError::NotYourToken(_) => Code::PermissionDenied,
        },
        ApiError::Store(e) => store_code(e),
        ApiError::Runner(e) => match e {
            RunnerError::Missing { .. }
            | RunnerError::TooLong { .. }
            | RunnerError::ControlCharacter { .. }
            | RunnerError::Ttl(_)
            | RunnerError::NoFailureLimit
            | RunnerError::InterruptedWithError
            | RunnerError::BadTimestamp { .. }
            | RunnerError::CursorTooLong { .. }
            | RunnerError::BadBackfill(_) => Code::InvalidArgument,
        },
        ApiError::Ingest(e) => ingest_code(e),
        ApiError::Stream(StreamError::Invalid(_) | StreamError::TooLong(_))
        | ApiError::TooLong(_)
        | ApiError::Period(_)
        | ApiError::Value(_)
        | ApiError::Signature(_)
        | ApiError::Id(_)
        | ApiError::Invalid(_) => Code::InvalidArgument,
        ApiError::Deadline(_) => Code::DeadlineExceeded,
    }
}

fn store_code(err: &StoreError) -> Code {
    match err {
        StoreError::NotFound(_) => Code::NotFound,
        StoreError::AlreadyExists(_) => Code::AlreadyExists,
        StoreError::Conflict(_) | StoreError::LastAdmin { .. } => Code::FailedPrecondition,
        StoreError::Unavailable(_) => Code::Unavailable,
        StoreError::Corrupt(_) | StoreError::Migration(_) | StoreError::UnsupportedUrl(_) => {
            Code::Internal
        }
    }
}

fn ingest_code(err: &IngestError) -> Code {
    match err {
        IngestError::MissingBatch
        | IngestError::InvalidId(_)
        | IngestError::MissingBatchId
        | IngestError::BatchIdTooLong(_)
        | IngestError::NoPoints
        | IngestError::TooManyPoints { .. }
        | IngestError::AllOrNothing(_) => Code::InvalidArgument,
        IngestError::Signature(e) => match e {
            SignatureError::BadSignature { .. } => Code::Unauthenticated,
            SignatureError::SignatureLength(_)
            | SignatureError::PublicKeyLength(_)
            | SignatureError::InvalidPublicKey
            | SignatureError::NonCanonicalPublicKey
            | SignatureError::WeakPublicKey
            | SignatureError::Undecodable(_)
            | SignatureError::MissingSignedAt
            | SignatureError::InvalidSignedAt(_) => Code::InvalidArgument,
        },
        IngestError::UnknownKey { .. }
        | IngestError::RevokedKey { .. }
        | IngestError::Skew { .. } => Code::Unauthenticated,
        IngestError::Disabled(_) => Code::FailedPrecondition,
        IngestError::Refused(refusal) => match refusal {
            CommitRefusal::StreamGone(_) | CommitRefusal::Disabled(_) => Code::FailedPrecondition,
            CommitRefusal::FrequencyChanged(_) => Code::Aborted,
        },
        IngestError::Store(e) => store_code(e),
        IngestError::ShuttingDown => Code::Unavailable,
    }
}
