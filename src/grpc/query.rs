//! `kpistream.v1.Query`: points in a period range, the latest value, revisions.

use tonic::{Request, Response, Status};

use super::{ApiError, AppState, convert, paging};
use crate::access::Access;
use crate::period::{Frequency, Period};
use crate::proto;
use crate::proto::query_server::Query;

/// Most points one `ListPoints` answers.
pub const MAX_POINTS_PER_QUERY: u32 = 10_000;

/// Most revisions one `ListRevisions` page holds.
const MAX_REVISIONS_PER_PAGE: u32 = 1_000;

/// The period a page token continues after.
fn page_after(token: &str, frequency: Frequency) -> Result<Option<Period>, ApiError> {
    paging::after(token)?
        .map(|period| Period::parse(frequency, &period).map_err(|_| paging::not_ours()))
        .transpose()
}

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
                let (mut from, to) = (bound(&r.from)?, bound(&r.to)?);
                if let Some(after) = page_after(&r.page_token, frequency)? {
                    let next = after.next().to_string();
                    if from.as_ref().is_none_or(|from| *from < next) {
                        from = Some(next);
                    }
                }
                let limit = paging::size(r.limit, MAX_POINTS_PER_QUERY, MAX_POINTS_PER_QUERY);
                // One more than the page holds: whether another page follows.
                let mut points = self
                    .state
                    .store
                    .list_points(&stream.id, from.as_deref(), to.as_deref(), limit + 1)
                    .await?;
                let next_page_token = if points.len() > limit as usize {
                    points.truncate(limit as usize);
                    points
                        .last()
                        .map(|p| paging::token(&p.period))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                Ok(proto::ListPointsResponse {
                    points: points.into_iter().map(convert::point).collect(),
                    next_page_token,
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
                // A batch revises a period once: the time and the batch id order them.
                let (revisions, next_page_token) = paging::page(
                    revisions,
                    |r| {
                        let at = format!("{:020}", r.revised_at.as_microsecond());
                        paging::key_of(&[&at, &r.batch_id])
                    },
                    &r.page_token,
                    paging::size(r.page_size, MAX_REVISIONS_PER_PAGE, MAX_REVISIONS_PER_PAGE),
                )?;
                Ok(proto::ListRevisionsResponse {
                    revisions: revisions.into_iter().map(convert::revision).collect(),
                    next_page_token,
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
