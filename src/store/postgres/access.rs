#![allow(unused_imports)]
//! The PostgreSQL side of access (placeholder: ported in the next commits).

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
impl AccessStore for PostgresStore {
    async fn needs_bootstrap(&self) -> Result<bool> {
        unimplemented!()
    }
    async fn bootstrap(&self, first: &Bootstrap, now: Timestamp) -> Result<bool> {
        unimplemented!()
    }
    async fn principal_for_token(
        &self,
        hash: &[u8; 32],
        now: Timestamp,
    ) -> Result<Option<Principal>> {
        unimplemented!()
    }
    async fn create_org(&self, first: &Bootstrap, now: Timestamp) -> Result<()> {
        unimplemented!()
    }
    async fn create_user(
        &self,
        org: &OrgId,
        name: &str,
        role: Role,
        now: Timestamp,
    ) -> Result<User> {
        unimplemented!()
    }
    async fn list_users(&self, org: &OrgId) -> Result<Vec<User>> {
        unimplemented!()
    }
    async fn set_user_role(&self, org: &OrgId, name: &str, role: Role) -> Result<User> {
        unimplemented!()
    }
    async fn delete_user(&self, org: &OrgId, name: &str) -> Result<()> {
        unimplemented!()
    }
    async fn create_team(&self, org: &OrgId, name: &str, now: Timestamp) -> Result<()> {
        unimplemented!()
    }
    async fn list_teams(&self, org: &OrgId) -> Result<Vec<Team>> {
        unimplemented!()
    }
    async fn delete_team(&self, org: &OrgId, name: &str) -> Result<()> {
        unimplemented!()
    }
    async fn set_team_member(
        &self,
        org: &OrgId,
        team: &str,
        user: &str,
        member: bool,
    ) -> Result<()> {
        unimplemented!()
    }
    async fn create_token(
        &self,
        org: &OrgId,
        token: &NewToken,
        now: Timestamp,
    ) -> Result<TokenInfo> {
        unimplemented!()
    }
    async fn list_tokens(&self, org: &OrgId, user: Option<&str>) -> Result<Vec<TokenInfo>> {
        unimplemented!()
    }
    async fn token(&self, org: &OrgId, id: &str) -> Result<TokenInfo> {
        unimplemented!()
    }
    async fn revoke_token(&self, org: &OrgId, id: &str, now: Timestamp) -> Result<TokenInfo> {
        unimplemented!()
    }
    async fn set_grants(
        &self,
        org: &OrgId,
        stream: &StreamId,
        grants: &[GrantSpec],
        now: Timestamp,
    ) -> Result<()> {
        unimplemented!()
    }
    async fn remove_grant(&self, org: &OrgId, stream: &StreamId, grantee: &Grantee) -> Result<()> {
        unimplemented!()
    }
    async fn list_grants(&self, org: &OrgId, stream: &StreamId) -> Result<Vec<Grant>> {
        unimplemented!()
    }
    async fn stream_accesses(
        &self,
        org: &OrgId,
        user: &UserId,
    ) -> Result<HashMap<StreamId, Access>> {
        unimplemented!()
    }
    async fn stream_access(
        &self,
        org: &OrgId,
        user: &UserId,
        stream: &StreamId,
    ) -> Result<Option<Access>> {
        unimplemented!()
    }
    async fn record_audit(&self, event: &AuditEvent<'_>, now: Timestamp) -> Result<()> {
        unimplemented!()
    }
    async fn list_audit(&self, org: &OrgId, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        unimplemented!()
    }
}
