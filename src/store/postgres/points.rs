#![allow(unused_imports)]
//! The PostgreSQL side of points (placeholder: ported in the next commits).

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
impl PointStore for PostgresStore {
    async fn commit_batches(
        &self,
        batches: Arc<Vec<PreparedBatch>>,
        now: Timestamp,
    ) -> Result<Vec<Result<PublishOutcome, CommitRefusal>>> {
        unimplemented!()
    }
    async fn prune_batches(&self, before: Timestamp) -> Result<u64> {
        unimplemented!()
    }
    async fn list_points(
        &self,
        stream: &StreamId,
        from: Option<&str>,
        to: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PointRecord>> {
        unimplemented!()
    }
    async fn latest_point(&self, stream: &StreamId) -> Result<Option<PointRecord>> {
        unimplemented!()
    }
    async fn points_updated_after(
        &self,
        stream: &StreamId,
        after: (Timestamp, Option<&str>),
        limit: u32,
    ) -> Result<Vec<PointRecord>> {
        unimplemented!()
    }
    async fn list_revisions(&self, stream: &StreamId, period: &str) -> Result<Vec<RevisionRecord>> {
        unimplemented!()
    }
}
