//! `kpistream.v1.Ingest`: unary and streaming publish.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::{ApiError, AppState, convert};
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
    envelope: Arc<Envelope>,
    all_or_nothing: bool,
) -> Result<proto::PublishResponse, Status> {
    let ingestor = state.ingestor.clone();
    state
        .reply(async move {
            let outcome = ingestor.publish(envelope, all_or_nothing).await?;
            Ok(convert::outcome(outcome))
        })
        .await
        .map(Response::into_inner)
}

fn envelope(request: &mut proto::PublishRequest) -> Result<Arc<Envelope>, Status> {
    let batch = request
        .batch
        .take()
        .ok_or(ApiError::Ingest(IngestError::MissingBatch))?;
    Ok(Arc::new(Envelope {
        stream_id: batch.stream_id,
        key_id: batch.key_id,
        batch: batch.batch,
        signature: batch.signature,
    }))
}

/// Answers one request of a `PublishStream`: a failed batch is reported in-band, with
/// the batch id it claims (read without trusting it) so the publisher can match it.
async fn stream_answer(
    state: AppState,
    mut request: proto::PublishRequest,
) -> proto::PublishResponse {
    let result = match envelope(&mut request) {
        Ok(envelope) => publish_one(state, envelope.clone(), request.all_or_nothing)
            .await
            .map_err(|status| (status, claimed_batch_id(&envelope.batch))),
        Err(status) => Err((status, String::new())),
    };
    result.unwrap_or_else(|(status, batch_id)| proto::PublishResponse {
        batch_id,
        error: Some(proto::BatchError {
            code: status.code() as i32,
            message: status.message().to_owned(),
        }),
        ..Default::default()
    })
}

fn claimed_batch_id(bytes: &[u8]) -> String {
    proto::Batch::decode(bytes)
        .map(|b| {
            b.batch_id
                .chars()
                .take(crate::ingest::MAX_BATCH_ID_BYTES)
                .collect()
        })
        .unwrap_or_default()
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<proto::PublishResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishResponse>, Status> {
        let mut request = request.into_inner();
        let envelope = envelope(&mut request)?;
        publish_one(self.state.clone(), envelope, request.all_or_nothing)
            .await
            .map(Response::new)
    }

    type PublishStreamStream = ResponseStream;

    async fn publish_stream(
        &self,
        request: Request<Streaming<proto::PublishRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let state = self.state.clone();
        let stopping = self.state.stopping.clone();
        // On shutdown the stream stops reading batches, answers those it has read, and
        // ends with UNAVAILABLE, so the publisher sends what is unanswered again (to
        // the next server) instead of waiting on a stream that will never answer.
        let answers = request
            .into_inner()
            .take_until(self.state.stopping.clone().cancelled_owned())
            .map(move |item| {
                let state = state.clone();
                async move { Ok(stream_answer(state, item?).await) }
            })
            .buffered(STREAM_CONCURRENCY)
            .chain(
                futures::stream::once(async move { stopping.is_cancelled() }).filter_map(
                    |stopped| async move {
                        stopped.then(|| {
                            Err(Status::unavailable(
                                "the server is shutting down: publish the unanswered batches again",
                            ))
                        })
                    },
                ),
            );
        Ok(Response::new(Box::pin(answers)))
    }
}
