#![allow(unused_imports)]
//! The PostgreSQL side of runner (placeholder: ported in the next commits).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;

use super::PostgresStore;
use crate::access::{
    Access, AuditEntry, AuditEvent, AuditFilter, Grant, GrantSpec, Grantee, Team, TokenInfo, User,
};
use crate::auth::{Principal, Role};
use crate::batch::{CommitRefusal, PreparedBatch, PublishOutcome};
use crate::ids::{KeyId, OrgId, StreamId, UserId};
use crate::runner_state::{
    ConnectorName, ConnectorState, LeaseOutcome, LeaseTtl, ReportOutcome, RunRecord, RunReport,
    RunnerId,
};
use crate::store::*;
use crate::stream::{
    Category, DeletedCounts, PublishingKey, Stream, StreamDefinition, StreamKey, StreamUpdate,
};

#[async_trait]
#[allow(unused_variables)]
impl RunnerStore for PostgresStore {
    async fn acquire_lease(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        slot: Timestamp,
        runner: &RunnerId,
        ttl: LeaseTtl,
        now: Timestamp,
    ) -> Result<LeaseOutcome> {
        unimplemented!()
    }
    async fn release_lease(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        runner: &RunnerId,
    ) -> Result<bool> {
        unimplemented!()
    }
    async fn connector_state(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
    ) -> Result<ConnectorState> {
        unimplemented!()
    }
    async fn report_run(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        report: &RunReport,
        now: Timestamp,
    ) -> Result<ReportOutcome> {
        unimplemented!()
    }
    async fn set_connector_enabled(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        enabled: bool,
        now: Timestamp,
    ) -> Result<ConnectorState> {
        unimplemented!()
    }
    async fn list_runs(
        &self,
        org: &OrgId,
        connector: &ConnectorName,
        limit: u32,
    ) -> Result<Vec<RunRecord>> {
        unimplemented!()
    }
}
