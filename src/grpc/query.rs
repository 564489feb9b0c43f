//! `kpistream.v1.Query`: points in a period range, the latest value, revisions.

use tonic::{Request, Response, Status};

use super::{ApiError, AppState, convert};
use crate::access::Access;
use crate::period::Period;
use crate::proto;
use crate::proto::query_server::Query;

/// Most points one `ListPoints` answers.
pub const MAX_POINTS_PER_QUERY: u32 = 10_000;

pub struct QueryService {
    state: AppState,
}

impl QueryService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Query for QueryService {
    async fn list_points(
        &self,
        request: Request<proto::ListPointsRequest>,
    ) -> Reply<proto::ListPointsResponse> {
        self.state
            .reply(async {
                let who = self.state.principal(&request).await?;
                let r = request.into_inner();
                let stream = self
                    .state
                    .stream_for(&who, &r.stream_id, Access::Read)
                    .await?;
                let frequency = stream.definition.frequency;
                let bound = |text: &str| -> Result<Option<String>, ApiError> {
                    if text.is_empty() {
                        return Ok(None);
                    }
                    Ok(Some(Period::parse(frequency, text)?.to_string()))
                };
                let (from, to) = (bound(&r.from)?, bound(&r.to)?);
                let limit = match r.limit {
                    0 => MAX_POINTS_PER_QUERY,
                    n => n.min(MAX_POINTS_PER_QUERY),
                };
                let points = self
                    .state
                    .store
                    .list_points(&stream.id, from.as_deref(), to.as_deref(), limit)
                    .await?;
                Ok(proto::ListPointsResponse {
                    points: points.into_iter().map(convert::point).collect(),
                })
            })
            .await
    }

    async fn latest(&self, request: Request<proto::LatestRequest>) -> Reply<proto::DataPoint> {
        self.state
            .reply(async {
                let who = self.state.principal(&request).await?;
                let stream = self
                    .state
                    .stream_for(&who, &request.get_ref().stream_id, Access::Read)
                    .await?;
                let point = self
                    .state
                    .store
                    .latest_point(&stream.id)
                    .await?
                    .ok_or_else(|| {
                        crate::store::StoreError::NotFound(format!(
                            "a value in stream {} (it has no data yet)",
                            stream.id
                        ))
                    })?;
                Ok(convert::point(point))
            })
            .await
    }

    async fn list_revisions(
        &self,
        request: Request<proto::ListRevisionsRequest>,
    ) -> Reply<proto::ListRevisionsResponse> {
        self.state
            .reply(async {
                let who = self.state.principal(&request).await?;
                let r = request.into_inner();
                let stream = self
                    .state
                    .stream_for(&who, &r.stream_id, Access::Read)
                    .await?;
                let period = Period::parse(stream.definition.frequency, &r.period)?.to_string();
                let revisions = self.state.store.list_revisions(&stream.id, &period).await?;
                Ok(proto::ListRevisionsResponse {
                    revisions: revisions.into_iter().map(convert::revision).collect(),
                })
            })
            .await
    }

    type WatchStream = super::watch::WatchStream;

    async fn watch(&self, request: Request<proto::WatchRequest>) -> Reply<Self::WatchStream> {
        let state = self.state.clone();
        self.state.reply(super::watch::start(state, request)).await
    }
}
