//! `kpistream.v1.Ingest`: unary and streaming publish.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{AppState, convert};
use crate::ingest::{Envelope, IngestError};
use crate::proto;
use crate::proto::ingest_server::Ingest;

/// How many batches of one `PublishStream` are checked at once; answers keep their order.
const STREAM_CONCURRENCY: usize = 16;

pub struct IngestService {
    state: AppState,
}

impl IngestService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

async fn publish_one(
    state: AppState,
    request: proto::PublishRequest,
) -> Result<proto::PublishResponse, Status> {
    let batch = request
        .batch
        .ok_or(super::ApiError::Ingest(IngestError::MissingBatch))?;
    let envelope = Envelope {
        stream_id: batch.stream_id,
        key_id: batch.key_id,
        batch: batch.batch,
        signature: batch.signature,
    };
    let outcome = state
        .ingestor
        .publish(envelope, request.all_or_nothing)
        .await
        .map_err(super::ApiError::from)?;
    Ok(convert::outcome(outcome))
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<proto::PublishResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishResponse>, Status> {
        publish_one(self.state.clone(), request.into_inner())
            .await
            .map(Response::new)
    }

    type PublishStreamStream = ResponseStream;

    async fn publish_stream(
        &self,
        request: Request<Streaming<proto::PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let state = self.state.clone();
        let answers = request
            .into_inner()
            .map(move |item| {
                let state = state.clone();
                async move {
                    let request = item?;
                    let batch_id_hint = String::new();
                    Ok(match publish_one(state, request).await {
                        Ok(response) => response,
                        Err(status) => proto::PublishResponse {
                            batch_id: batch_id_hint,
                            error: Some(proto::BatchError {
                                code: status.code() as i32,
                                message: status.message().to_owned(),
                            }),
                            ..Default::default()
                        },
                    })
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(answers)))
    }
}
