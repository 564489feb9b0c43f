//! `kpistream.v1.Runner`: the state connector runners keep on the server (leases,
//! cursors, failure counts, enabled flags, the run log). Every call needs an org
//! admin's token; connectors are named per organisation, so one organisation never
//! sees another's connector of the same name.

use jiff::Timestamp;
use tonic::{Request, Response, Status};

use super::{AppState, paging};
use crate::proto;
use crate::proto::runner_server::Runner;
use crate::runner_state::{
    ConnectorName, ConnectorState, LeaseOutcome, LeaseTtl, RunRecord, RunReport, RunnerError,
    RunnerId, bounded_error, checked_backfill, checked_cursor,
};
use crate::wire;

/// Runs `ListRuns` answers when the request names no limit, and at most.
const DEFAULT_RUNS: u32 = 100;
const MAX_RUNS: u32 = 1_000;
/// The audit detail of a connector re-enabled by a successful manual run.
const RECOVERED_DETAIL: &str = "recovered by a successful manual run (connector run)";

pub struct RunnerService {
    state: AppState,
}

impl RunnerService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn timestamp(
    field: &'static str,
    ts: Option<prost_types::Timestamp>,
) -> Result<Timestamp, RunnerError> {
    let ts = ts.ok_or(RunnerError::Missing { field })?;
    crate::signature::timestamp(&ts).ok_or(RunnerError::BadTimestamp { field })
}

/// Most connectors one `ListConnectors` answers with.
const MAX_CONNECTORS_LISTED: usize = 10_000;

fn state_to_proto(connector: &ConnectorName, s: ConnectorState) -> proto::ConnectorState {
    proto::ConnectorState {
        connector: connector.to_string(),
        cursor: s.cursor,
        enabled: s.enabled,
        consecutive_failures: s.consecutive_failures,
        last_run_started: wire::opt_timestamp(s.last_run_started),
        last_run_ended: wire::opt_timestamp(s.last_run_ended),
        last_error: s.last_error.unwrap_or_default(),
        unfinished_slot: wire::opt_timestamp(s.unfinished_slot),
        run_requested_at: wire::opt_timestamp(s.run_requested_at),
    }
}

fn lease_to_proto(l: LeaseOutcome) -> proto::Lease {
    proto::Lease {
        granted: l.granted,
        holder: l.holder.map(|h| h.to_string()).unwrap_or_default(),
        expires_at: wire::opt_timestamp(l.expires_at),
        slot_completed: l.slot_completed,
    }
}

/// A cursor as the audit log writes it: quoted and cut, or `none`.
fn audited_cursor(cursor: Option<&str>) -> String {
    cursor.map_or("none".to_owned(), |c| crate::text::excerpt(c).to_string())
}

fn run_to_proto(r: RunRecord) -> proto::Run {
    proto::Run {
        slot: Some(wire::timestamp(r.slot)),
        started_at: Some(wire::timestamp(r.started_at)),
        ended_at: Some(wire::timestamp(r.ended_at)),
        records_pulled: r.records_pulled,
        points_published: r.points_published,
        points_rejected: r.points_rejected,
        error: r.error.unwrap_or_default(),
        interrupted: r.interrupted,
        runner_id: r.runner,
        manual: r.manual,
        backfill: r.backfill.unwrap_or_default(),
    }
}

impl TryFrom<proto::RunReport> for RunReport {
    type Error = RunnerError;

    fn try_from(r: proto::RunReport) -> Result<Self, Self::Error> {
        if r.max_consecutive_failures == 0 {
            return Err(RunnerError::NoFailureLimit);
        }
        if r.interrupted && !r.error.is_empty() {
            return Err(RunnerError::InterruptedWithError);
        }
        Ok(RunReport {
            runner: RunnerId::parse(&r.runner_id)?,
            slot: timestamp("slot", r.slot)?,
            started_at: timestamp("started_at", r.started_at)?,
            ended_at: timestamp("ended_at", r.ended_at)?,
            records_pulled: r.records_pulled,
            points_published: r.points_published,
            points_rejected: r.points_rejected,
            error: Some(r.error)
                .filter(|e| !e.is_empty())
                .map(|e| bounded_error(&e)),
            new_cursor: r.new_cursor.map(checked_cursor).transpose()?,
            max_consecutive_failures: r.max_consecutive_failures,
            interrupted: r.interrupted,
            manual: r.manual,
            backfill: Some(r.backfill)
                .filter(|b| !b.is_empty())
                .map(|b| checked_backfill(&b))
                .transpose()?,
        })
    }
}

#[tonic::async_trait]
impl Runner for RunnerService {
    async fn acquire_lease(
        &self,
        request: Request<proto::AcquireLeaseRequest>,
    ) -> Reply<proto::Lease> {
        self.state
            .reply(async {
                let who = self
                    .state
                    .runner(&request, "acquire a connector lease")
                    .await?;
                let r = request.into_inner();
                let connector = ConnectorName::parse(&r.connector)?;
                let runner = RunnerId::parse(&r.runner_id)?;
                let slot = timestamp("slot", r.slot)?;
                let ttl = LeaseTtl::new(r.ttl_seconds)?;
                let lease = self
                    .state
                    .store
                    .acquire_lease(
                        &who.org_id,
                        &connector,
                        slot,
                        &runner,
                        ttl,
                        Timestamp::now(),
                    )
                    .await?;
                Ok(lease_to_proto(lease))
            })
            .await
    }

    async fn release_lease(
        &self,
        request: Request<proto::ReleaseLeaseRequest>,
    ) -> Reply<proto::ReleaseLeaseResponse> {
        self.state
            .reply(async {
                let who = self
                    .state
                    .runner(&request, "release a connector lease")
                    .await?;
                let r = request.into_inner();
                let connector = ConnectorName::parse(&r.connector)?;
                let runner = RunnerId::parse(&r.runner_id)?;
                let released = self
                    .state
                    .store
                    .release_lease(&who.org_id, &connector, &runner)
                    .await?;
                Ok(proto::ReleaseLeaseResponse { released })
            })
            .await
    }

    async fn get_state(
        &self,
        request: Request<proto::ConnectorRef>,
    ) -> Reply<proto::ConnectorState> {
        self.state
            .reply(async {
                let who = self
                    .state
                    .runner(&request, "read a connector's state")
                    .await?;
                let connector = ConnectorName::parse(&request.get_ref().connector)?;
                let state = self
                    .state
                    .store
                    .connector_state(&who.org_id, &connector)
                    .await?;
                Ok(state_to_proto(&connector, state))
            })
            .await
    }

    async fn report_run(
        &self,
        request: Request<proto::RunReport>,
    ) -> Reply<proto::ReportRunResponse> {
        self.state
            .reply(async {
                let who = self.state.runner(&request, "report a connector run").await?;
                let r = request.into_inner();
                let connector = ConnectorName::parse(&r.connector)?;
                let report = RunReport::try_from(r)?;
                let outcome = self
                    .state
                    .store
                    .report_run(&who.org_id, &connector, &report, Timestamp::now())
                    .await?;
                if outcome.just_disabled {
                    tracing::warn!(connector = %connector, "connector disabled after repeated failures");
                }
                if let Some(range) = &report.backfill {
                    let detail = match &report.error {
                        None => format!("{range}: {} points published", report.points_published),
                        Some(_) => format!("{range}: failed"),
                    };
                    self.state
                        .audit(&who, "connector.backfilled", "connector", connector.as_str(), detail)
                        .await;
                }
                if outcome.recovered {
                    // The same action as `SetEnabled`: whoever ran it by hand turned it on.
                    self.state
                        .audit(
                            &who,
                            "connector.enabled",
                            "connector",
                            connector.as_str(),
                            RECOVERED_DETAIL,
                        )
                        .await;
                }
                Ok(proto::ReportRunResponse {
                    state: Some(state_to_proto(&connector, outcome.state)),
                    just_disabled: outcome.just_disabled,
                    recovered: outcome.recovered,
                })
            })
            .await
    }

    async fn set_enabled(
        &self,
        request: Request<proto::SetEnabledRequest>,
    ) -> Reply<proto::ConnectorState> {
        self.state
            .reply(async {
                let who = self
                    .state
                    .runner(&request, "enable or disable a connector")
                    .await?;
                let r = request.into_inner();
                let connector = ConnectorName::parse(&r.connector)?;
                let state = self
                    .state
                    .store
                    .set_connector_enabled(&who.org_id, &connector, r.enabled, Timestamp::now())
                    .await?;
                let action = if r.enabled {
                    "connector.enabled"
                } else {
                    "connector.disabled"
                };
                self.state
                    .audit(&who, action, "connector", connector.as_str(), "")
                    .await;
                Ok(state_to_proto(&connector, state))
            })
            .await
    }

    async fn set_cursor(
        &self,
        request: Request<proto::SetCursorRequest>,
    ) -> Reply<proto::SetCursorResponse> {
        self.state
            .reply(async {
                let who = self
                    .state
                    .runner(&request, "set a connector's cursor")
                    .await?;
                let r = request.into_inner();
                let connector = ConnectorName::parse(&r.connector)?;
                let cursor = r.cursor.map(checked_cursor).transpose()?;
                let (previous, state) = self
                    .state
                    .store
                    .set_connector_cursor(
                        &who.org_id,
                        &connector,
                        cursor.as_deref(),
                        Timestamp::now(),
                    )
                    .await?;
                let detail = format!(
                    "from {} to {}",
                    audited_cursor(previous.as_deref()),
                    audited_cursor(cursor.as_deref())
                );
                self.state
                    .audit(
                        &who,
                        "connector.cursor_set",
                        "connector",
                        connector.as_str(),
                        detail,
                    )
                    .await;
                Ok(proto::SetCursorResponse {
                    state: Some(state_to_proto(&connector, state)),
                    previous_cursor: previous,
                })
            })
            .await
    }

    async fn forget_connector(
        &self,
        request: Request<proto::ConnectorRef>,
    ) -> Reply<proto::ForgetConnectorResponse> {
        self.state
            .reply(async {
                let who = self.state.runner(&request, "forget a connector").await?;
                let connector = ConnectorName::parse(&request.get_ref().connector)?;
                let (before, runs_deleted) = self
                    .state
                    .store
                    .forget_connector(&who.org_id, &connector, Timestamp::now())
                    .await?;
                let cursor = before.as_ref().and_then(|s| s.cursor.clone());
                let detail = match &before {
                    None => "nothing was kept".to_owned(),
                    Some(_) => format!(
                        "cursor {}, {runs_deleted} run(s) deleted",
                        audited_cursor(cursor.as_deref())
                    ),
                };
                self.state
                    .audit(
                        &who,
                        "connector.forgotten",
                        "connector",
                        connector.as_str(),
                        detail,
                    )
                    .await;
                Ok(proto::ForgetConnectorResponse {
                    existed: before.is_some(),
                    cursor,
                    runs_deleted,
                })
            })
            .await
    }

    async fn list_runs(
        &self,
        request: Request<proto::ListRunsRequest>,
    ) -> Reply<proto::ListRunsResponse> {
        self.state
            .reply(async {
                let who = self
                    .state
                    .runner(&request, "read a connector's run log")
                    .await?;
                let r = request.into_inner();
                let connector = ConnectorName::parse(&r.connector)?;
                let before = paging::after_id(&r.page_token)?;
                let limit = paging::size(r.limit, DEFAULT_RUNS, MAX_RUNS);
                // One more than the page holds: whether another page follows.
                let mut runs = self
                    .state
                    .store
                    .list_runs(&who.org_id, &connector, limit + 1, before)
                    .await?;
                let next_page_token = if runs.len() > limit as usize {
                    runs.truncate(limit as usize);
                    runs.last()
                        .map(|run| paging::token(&run.id.to_string()))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                Ok(proto::ListRunsResponse {
                    runs: runs.into_iter().map(run_to_proto).collect(),
                    next_page_token,
                })
            })
            .await
    }

    async fn list_connectors(
        &self,
        request: Request<proto::ListConnectorsRequest>,
    ) -> Reply<proto::ListConnectorsResponse> {
        self.state
            .reply(async {
                let who = self.state.runner(&request, "list connectors").await?;
                let requested_only = request.get_ref().requested_only;
                let mut connectors = self
                    .state
                    .store
                    .list_connectors(&who.org_id, requested_only)
                    .await?;
                connectors.truncate(MAX_CONNECTORS_LISTED);
                Ok(proto::ListConnectorsResponse {
                    connectors: connectors
                        .into_iter()
                        .map(|(name, state)| state_to_proto(&name, state))
                        .collect(),
                })
            })
            .await
    }

    async fn request_run(
        &self,
        request: Request<proto::ConnectorRef>,
    ) -> Reply<proto::ConnectorState> {
        self.state
            .reply(async {
                let who = self
                    .state
                    .runner(&request, "ask for a connector run")
                    .await?;
                let connector = ConnectorName::parse(&request.get_ref().connector)?;
                let state = self
                    .state
                    .store
                    .request_run(&who.org_id, &connector, Timestamp::now())
                    .await?;
                self.state
                    .audit(
                        &who,
                        "connector.run_requested",
                        "connector",
                        connector.as_str(),
                        "",
                    )
                    .await;
                Ok(state_to_proto(&connector, state))
            })
            .await
    }
}
