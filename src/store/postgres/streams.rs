#![allow(unused_imports)]
//! The PostgreSQL side of streams (placeholder: ported in the next commits).

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
impl StreamStore for PostgresStore {
    async fn create_category(&self, org: &OrgId, name: &str, now: Timestamp) -> Result<Category> {
        unimplemented!()
    }
    async fn list_categories(&self, org: &OrgId) -> Result<Vec<Category>> {
        unimplemented!()
    }
    async fn rename_category(&self, org: &OrgId, name: &str, new_name: &str) -> Result<Category> {
        unimplemented!()
    }
    async fn delete_category(&self, org: &OrgId, name: &str) -> Result<()> {
        unimplemented!()
    }
    async fn create_stream(
        &self,
        org: &OrgId,
        creator: &UserId,
        id: &StreamId,
        definition: &StreamDefinition,
        key: &NewKey,
        grants: &[GrantSpec],
        now: Timestamp,
    ) -> Result<(Stream, StreamKey)> {
        unimplemented!()
    }
    async fn list_streams(&self, org: &OrgId) -> Result<Vec<Stream>> {
        unimplemented!()
    }
    async fn get_stream(&self, org: &OrgId, id: &StreamId) -> Result<Stream> {
        unimplemented!()
    }
    async fn update_stream(
        &self,
        org: &OrgId,
        id: &StreamId,
        update: &StreamUpdate,
        now: Timestamp,
    ) -> Result<Stream> {
        unimplemented!()
    }
    async fn set_stream_disabled(
        &self,
        org: &OrgId,
        id: &StreamId,
        disabled: bool,
        now: Timestamp,
    ) -> Result<Stream> {
        unimplemented!()
    }
    async fn delete_stream(&self, org: &OrgId, id: &StreamId) -> Result<DeletedCounts> {
        unimplemented!()
    }
    async fn add_key(
        &self,
        org: &OrgId,
        stream: &StreamId,
        key: &NewKey,
        now: Timestamp,
    ) -> Result<StreamKey> {
        unimplemented!()
    }
    async fn revoke_key(
        &self,
        org: &OrgId,
        stream: &StreamId,
        key: &KeyId,
        now: Timestamp,
    ) -> Result<StreamKey> {
        unimplemented!()
    }
    async fn list_keys(&self, org: &OrgId, stream: &StreamId) -> Result<Vec<StreamKey>> {
        unimplemented!()
    }
    async fn publishing_key(
        &self,
        stream: &StreamId,
        key: &KeyId,
    ) -> Result<Option<PublishingKey>> {
        unimplemented!()
    }
}
