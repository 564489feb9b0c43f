//! `kpistream.v1.StreamAdmin`: streams, keys and categories (users, teams, tokens,
//! grants and the audit log are in `access.rs`). Every call needs a token; what it
//! allows is in `docs/permissions.md`.

use jiff::Timestamp;
use tonic::{Request, Response, Status};

use super::{ApiError, AppState, convert, paging};
use crate::access::{Access, GrantSpec};
use crate::auth::Principal;
use crate::ids::{KeyId, StreamId};
use crate::proto;
use crate::proto::stream_admin_server::StreamAdmin;
use crate::signature::{self, Credential};
use crate::store::NewKey;
use crate::stream::{KeyOrigin, StreamDefinition, StreamFilter, StreamUpdate, check_name};
use crate::text;
use crate::value::ValueType;
use crate::wire;

/// Most grants one `CreateStream` may carry: each is a lookup in the same transaction.
pub const MAX_GRANTS_PER_STREAM: usize = 100;

/// Most streams, users or tokens one page of a listing holds.
pub const MAX_LISTED: u32 = 1_000;

pub struct AdminService {
    pub(super) state: AppState,
}

impl AdminService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// The caller, if they may manage the stream.
    pub(super) async fn manager<T>(
        &self,
        request: &Request<T>,
        stream_id: &str,
    ) -> Result<(Principal, StreamId), ApiError> {
        let who = self.state.principal(request).await?;
        let stream = self
            .state
            .stream_for(&who, stream_id, Access::Manage)
            .await?;
        Ok((who, stream.id))
    }

    async fn create_stream(
        &self,
        request: Request<proto::CreateStreamRequest>,
    ) -> Result<proto::CreateStreamResponse, ApiError> {
        let who = self.state.principal(&request).await?;
        who.refuse_runner("create streams")?;
        let r = request.into_inner();
        if r.grants.len() > MAX_GRANTS_PER_STREAM {
            return Err(ApiError::Invalid(format!(
                "the request has {} grants; at most {MAX_GRANTS_PER_STREAM} may be given when a stream is created (add more with AddGrant)",
                r.grants.len()
            )));
        }
        let grants = r
            .grants
            .iter()
            .map(|g| g.parse::<GrantSpec>())
            .collect::<Result<Vec<_>, _>>()?;
        let frequency = wire::frequency(r.frequency)?.ok_or_else(|| {
            ApiError::Invalid("frequency is required: daily, weekly, monthly or quarterly".into())
        })?;
        let kind = wire::value_kind(r.value_type)?.ok_or_else(|| {
            ApiError::Invalid("value_type is required: number, currency or percentage".into())
        })?;
        let definition = StreamDefinition {
            name: r.name.trim().to_owned(),
            description: r.description,
            category: non_empty(r.category),
            frequency,
            value_type: ValueType::from_parts(kind, Some(r.currency.as_str()))?,
            time_zone: non_empty(r.time_zone).unwrap_or_else(|| "UTC".into()),
        };
        definition.check()?;
        let credential = Credential::generate(StreamId::generate(), KeyId::generate());
        let key = NewKey {
            key_id: credential.key_id().clone(),
            public_key: credential.public_key().to_bytes(),
            origin: KeyOrigin::Generated,
        };
        let now = Timestamp::now();
        let (stream, key) = self
            .state
            .store
            .create_stream(
                &who.org_id,
                &who.user_id,
                credential.stream_id(),
                &definition,
                &key,
                &grants,
                now,
            )
            .await?;
        tracing::info!(stream_id = %stream.id, name = %definition.name, "stream created");
        let granted: Vec<String> = grants.iter().map(ToString::to_string).collect();
        let detail = format!(
            "name {:?}, grants [{}]",
            definition.name,
            granted.join(", ")
        );
        self.state
            .audit(&who, "stream.created", "stream", stream.id.as_str(), detail)
            .await;
        Ok(proto::CreateStreamResponse {
            stream: Some(convert::stream(&stream, now)),
            key: Some(convert::key(&key)),
            credential: credential.expose_secret(),
        })
    }

    async fn update_stream(
        &self,
        request: Request<proto::UpdateStreamRequest>,
    ) -> Result<proto::Stream, ApiError> {
        let who = self.state.principal(&request).await?;
        let r = request.into_inner();
        let current = self
            .state
            .stream_for(&who, &r.stream_id, Access::Manage)
            .await?;
        let id = current.id.clone();
        let kind = wire::value_kind(r.value_type)?;
        let value_type = match (kind, r.currency.as_deref()) {
            (None, None) => None,
            (Some(kind), currency) => Some(ValueType::from_parts(kind, currency)?),
            (None, Some(currency)) => Some(ValueType::from_parts(
                current.definition.value_type.kind(),
                Some(currency),
            )?),
        };
        let update = StreamUpdate {
            name: r.name.map(|n| n.trim().to_owned()),
            description: r.description,
            category: r.category.map(non_empty),
            frequency: wire::frequency(r.frequency)?,
            value_type,
            time_zone: r.time_zone,
        };
        update.apply(&current.definition).check()?;
        let stream = self
            .state
            .store
            .update_stream(&who.org_id, &id, &update, Timestamp::now())
            .await?;
        self.state.ingestor.forget_stream(&id);
        let detail = format!("{update:?}");
        self.state
            .audit(&who, "stream.updated", "stream", id.as_str(), detail)
            .await;
        Ok(convert::stream(&stream, Timestamp::now()))
    }

    async fn set_disabled(
        &self,
        request: Request<proto::StreamRef>,
        disabled: bool,
    ) -> Result<proto::Stream, ApiError> {
        let (who, id) = self.manager(&request, &request.get_ref().stream_id).await?;
        let stream = self
            .state
            .store
            .set_stream_disabled(&who.org_id, &id, disabled, Timestamp::now())
            .await?;
        self.state.ingestor.forget_stream(&id);
        tracing::info!(stream_id = %id, disabled, "stream state changed");
        let action = if disabled {
            "stream.disabled"
        } else {
            "stream.enabled"
        };
        self.state
            .audit(&who, action, "stream", id.as_str(), "")
            .await;
        Ok(convert::stream(&stream, Timestamp::now()))
    }

    async fn rotate_key(
        &self,
        request: Request<proto::StreamRef>,
    ) -> Result<proto::RotateKeyResponse, ApiError> {
        let (who, id) = self.manager(&request, &request.get_ref().stream_id).await?;
        let credential = Credential::generate(id.clone(), KeyId::generate());
        let key = NewKey {
            key_id: credential.key_id().clone(),
            public_key: credential.public_key().to_bytes(),
            origin: KeyOrigin::Generated,
        };
        let key = self
            .state
            .store
            .add_key(&who.org_id, &id, &key, Timestamp::now())
            .await?;
        tracing::info!(stream_id = %id, key_id = %key.key_id, "key rotated");
        let detail = format!("new key {}", key.key_id);
        self.state
            .audit(&who, "key.rotated", "stream", id.as_str(), detail)
            .await;
        Ok(proto::RotateKeyResponse {
            key: Some(convert::key(&key)),
            credential: credential.expose_secret(),
        })
    }

    async fn add_key(
        &self,
        request: Request<proto::AddKeyRequest>,
    ) -> Result<proto::StreamKey, ApiError> {
        let (who, id) = self.manager(&request, &request.get_ref().stream_id).await?;
        let r = request.into_inner();
        let public_key = signature::parse_public_key(&r.public_key)?;
        let key = NewKey {
            key_id: KeyId::generate(),
            public_key: public_key.to_bytes(),
            origin: KeyOrigin::Registered,
        };
        let key = self
            .state
            .store
            .add_key(&who.org_id, &id, &key, Timestamp::now())
            .await?;
        tracing::info!(stream_id = %id, key_id = %key.key_id, "public key registered");
        let detail = format!("registered key {}", key.key_id);
        self.state
            .audit(&who, "key.added", "stream", id.as_str(), detail)
            .await;
        Ok(convert::key(&key))
    }

    async fn revoke_key(
        &self,
        request: Request<proto::RevokeKeyRequest>,
    ) -> Result<proto::StreamKey, ApiError> {
        let (who, id) = self.manager(&request, &request.get_ref().stream_id).await?;
        let r = request.into_inner();
        let key_id = KeyId::parse(&r.key_id)?;
        let key = self
            .state
            .store
            .revoke_key(&who.org_id, &id, &key_id, Timestamp::now())
            .await?;
        self.state.ingestor.forget_stream(&id);
        tracing::info!(stream_id = %id, key_id = %key_id, "key revoked");
        let detail = format!("revoked key {key_id}");
        self.state
            .audit(&who, "key.revoked", "stream", id.as_str(), detail)
            .await;
        Ok(convert::key(&key))
    }
}

fn non_empty(s: String) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn category_name(name: &str) -> Result<String, ApiError> {
    check_name("category name", name)?;
    Ok(name.trim().to_owned())
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl StreamAdmin for AdminService {
    async fn create_stream(
        &self,
        request: Request<proto::CreateStreamRequest>,
    ) -> Reply<proto::CreateStreamResponse> {
        self.state.reply(self.create_stream(request)).await
    }

    async fn list_streams(
        &self,
        request: Request<proto::ListStreamsRequest>,
    ) -> Reply<proto::ListStreamsResponse> {
        self.state
            .reply(async {
                let who = self.state.principal(&request).await?;
                let r = request.into_inner();
                let filter = StreamFilter {
                    category: non_empty(r.category),
                    status: wire::status(r.status)?,
                    name_contains: non_empty(r.name_contains),
                };
                filter.check()?;
                let now = Timestamp::now();
                let mut streams = self.state.store.list_streams(&who.org_id).await?;
                if !who.reads_every_stream() {
                    let visible = self
                        .state
                        .store
                        .stream_accesses(&who.org_id, &who.user_id)
                        .await?;
                    streams.retain(|s| visible.contains_key(&s.id));
                }
                streams.retain(|s| filter.matches(s, now));
                let (page, next_page_token) = paging::page(
                    streams,
                    |s| paging::key_of(&[&s.definition.name, s.id.as_str()]),
                    &r.page_token,
                    paging::size(r.page_size, MAX_LISTED, MAX_LISTED),
                )?;
                Ok(proto::ListStreamsResponse {
                    streams: page.iter().map(|s| convert::stream(s, now)).collect(),
                    next_page_token,
                })
            })
            .await
    }

    async fn get_stream(&self, request: Request<proto::StreamRef>) -> Reply<proto::StreamDetail> {
        self.state
            .reply(async {
                let who = self.state.principal(&request).await?;
                let stream = self
                    .state
                    .stream_for(&who, &request.get_ref().stream_id, Access::Read)
                    .await?;
                // Keys are for those who manage the stream; readers see the rest.
                let manages = self.state.access(&who, &stream.id).await? == Some(Access::Manage);
                let keys = match manages {
                    true => self.state.store.list_keys(&who.org_id, &stream.id).await?,
                    false => Vec::new(),
                };
                Ok(proto::StreamDetail {
                    stream: Some(convert::stream(&stream, Timestamp::now())),
                    keys: keys.iter().map(convert::key).collect(),
                })
            })
            .await
    }

    async fn update_stream(
        &self,
        request: Request<proto::UpdateStreamRequest>,
    ) -> Reply<proto::Stream> {
        self.state.reply(self.update_stream(request)).await
    }

    async fn disable_stream(&self, request: Request<proto::StreamRef>) -> Reply<proto::Stream> {
        self.state.reply(self.set_disabled(request, true)).await
    }

    async fn enable_stream(&self, request: Request<proto::StreamRef>) -> Reply<proto::Stream> {
        self.state.reply(self.set_disabled(request, false)).await
    }

    async fn delete_stream(
        &self,
        request: Request<proto::StreamRef>,
    ) -> Reply<proto::DeleteStreamResponse> {
        self.state
            .reply(async {
                let (who, id) = self.manager(&request, &request.get_ref().stream_id).await?;
                let counts = self.state.store.delete_stream(&who.org_id, &id).await?;
                self.state.ingestor.forget_stream(&id);
                tracing::info!(stream_id = %id, points = counts.points, "stream deleted");
                let detail = format!(
                    "{} points, {} revisions, {} keys removed",
                    counts.points, counts.revisions, counts.keys
                );
                self.state
                    .audit(&who, "stream.deleted", "stream", id.as_str(), detail)
                    .await;
                Ok(proto::DeleteStreamResponse {
                    points_deleted: counts.points,
                    revisions_deleted: counts.revisions,
                    keys_deleted: counts.keys,
                })
            })
            .await
    }

    async fn rotate_key(
        &self,
        request: Request<proto::StreamRef>,
    ) -> Reply<proto::RotateKeyResponse> {
        self.state.reply(self.rotate_key(request)).await
    }

    async fn revoke_key(
        &self,
        request: Request<proto::RevokeKeyRequest>,
    ) -> Reply<proto::StreamKey> {
        self.state.reply(self.revoke_key(request)).await
    }

    async fn add_key(&self, request: Request<proto::AddKeyRequest>) -> Reply<proto::StreamKey> {
        self.state.reply(self.add_key(request)).await
    }

    async fn list_keys(
        &self,
        request: Request<proto::StreamRef>,
    ) -> Reply<proto::ListKeysResponse> {
        self.state
            .reply(async {
                let (who, id) = self.manager(&request, &request.get_ref().stream_id).await?;
                let keys = self.state.store.list_keys(&who.org_id, &id).await?;
                Ok(proto::ListKeysResponse {
                    keys: keys.iter().map(convert::key).collect(),
                })
            })
            .await
    }

    async fn create_category(
        &self,
        request: Request<proto::CreateCategoryRequest>,
    ) -> Reply<proto::Category> {
        self.state
            .reply(async {
                let who = self.state.admin(&request, "create categories").await?;
                let name = category_name(&request.get_ref().name)?;
                let category = self
                    .state
                    .store
                    .create_category(&who.org_id, &name, Timestamp::now())
                    .await?;
                self.state
                    .audit(&who, "category.created", "category", name.as_str(), "")
                    .await;
                Ok(convert::category(&category))
            })
            .await
    }

    async fn list_categories(
        &self,
        request: Request<proto::ListCategoriesRequest>,
    ) -> Reply<proto::ListCategoriesResponse> {
        self.state
            .reply(async {
                let who = self.state.principal(&request).await?;
                let categories = self.state.store.list_categories(&who.org_id).await?;
                Ok(proto::ListCategoriesResponse {
                    categories: categories.iter().map(convert::category).collect(),
                })
            })
            .await
    }

    async fn rename_category(
        &self,
        request: Request<proto::RenameCategoryRequest>,
    ) -> Reply<proto::Category> {
        self.state
            .reply(async {
                let who = self.state.admin(&request, "rename categories").await?;
                let r = request.get_ref();
                text::check_name_len("category name", &r.name)?;
                let new_name = category_name(&r.new_name)?;
                let category = self
                    .state
                    .store
                    .rename_category(&who.org_id, &r.name, &new_name)
                    .await?;
                let detail = format!("renamed {:?} to {new_name:?}", r.name);
                self.state
                    .audit(
                        &who,
                        "category.renamed",
                        "category",
                        new_name.as_str(),
                        detail,
                    )
                    .await;
                Ok(convert::category(&category))
            })
            .await
    }

    async fn delete_category(
        &self,
        request: Request<proto::DeleteCategoryRequest>,
    ) -> Reply<proto::DeleteCategoryResponse> {
        self.state
            .reply(async {
                let who = self.state.admin(&request, "delete categories").await?;
                text::check_name_len("category name", &request.get_ref().name)?;
                self.state
                    .store
                    .delete_category(&who.org_id, &request.get_ref().name)
                    .await?;
                let name = request.get_ref().name.as_str();
                self.state
                    .audit(&who, "category.deleted", "category", name, "")
                    .await;
                Ok(proto::DeleteCategoryResponse {})
            })
            .await
    }
    async fn who_am_i(
        &self,
        request: Request<proto::WhoAmIRequest>,
    ) -> Reply<proto::WhoAmIResponse> {
        self.state.reply(self.do_who_am_i(request)).await
    }

    async fn create_org(
        &self,
        request: Request<proto::CreateOrgRequest>,
    ) -> Reply<proto::CreateOrgResponse> {
        self.state.reply(self.do_create_org(request)).await
    }

    async fn create_user(&self, request: Request<proto::CreateUserRequest>) -> Reply<proto::User> {
        self.state.reply(self.do_create_user(request)).await
    }

    async fn list_users(
        &self,
        request: Request<proto::ListUsersRequest>,
    ) -> Reply<proto::ListUsersResponse> {
        self.state.reply(self.do_list_users(request)).await
    }

    async fn set_user_role(
        &self,
        request: Request<proto::SetUserRoleRequest>,
    ) -> Reply<proto::User> {
        self.state.reply(self.do_set_user_role(request)).await
    }

    async fn delete_user(
        &self,
        request: Request<proto::UserRef>,
    ) -> Reply<proto::DeleteUserResponse> {
        self.state.reply(self.do_delete_user(request)).await
    }

    async fn create_team(&self, request: Request<proto::TeamRef>) -> Reply<proto::Team> {
        self.state.reply(self.do_create_team(request)).await
    }

    async fn list_teams(
        &self,
        request: Request<proto::ListTeamsRequest>,
    ) -> Reply<proto::ListTeamsResponse> {
        self.state.reply(self.do_list_teams(request)).await
    }

    async fn delete_team(
        &self,
        request: Request<proto::TeamRef>,
    ) -> Reply<proto::DeleteTeamResponse> {
        self.state.reply(self.do_delete_team(request)).await
    }

    async fn add_team_member(
        &self,
        request: Request<proto::TeamMemberRequest>,
    ) -> Reply<proto::Team> {
        self.state.reply(self.do_team_member(request, true)).await
    }

    async fn remove_team_member(
        &self,
        request: Request<proto::TeamMemberRequest>,
    ) -> Reply<proto::Team> {
        self.state.reply(self.do_team_member(request, false)).await
    }

    async fn create_token(
        &self,
        request: Request<proto::CreateTokenRequest>,
    ) -> Reply<proto::CreateTokenResponse> {
        self.state.reply(self.do_create_token(request)).await
    }

    async fn list_tokens(
        &self,
        request: Request<proto::ListTokensRequest>,
    ) -> Reply<proto::ListTokensResponse> {
        self.state.reply(self.do_list_tokens(request)).await
    }

    async fn revoke_token(
        &self,
        request: Request<proto::RevokeTokenRequest>,
    ) -> Reply<proto::Token> {
        self.state.reply(self.do_revoke_token(request)).await
    }

    async fn add_grant(
        &self,
        request: Request<proto::GrantRequest>,
    ) -> Reply<proto::ListGrantsResponse> {
        self.state.reply(self.do_add_grant(request)).await
    }

    async fn remove_grant(
        &self,
        request: Request<proto::GrantRequest>,
    ) -> Reply<proto::ListGrantsResponse> {
        self.state.reply(self.do_remove_grant(request)).await
    }

    async fn list_grants(
        &self,
        request: Request<proto::StreamRef>,
    ) -> Reply<proto::ListGrantsResponse> {
        self.state.reply(self.do_list_grants(request)).await
    }

    async fn list_audit(
        &self,
        request: Request<proto::ListAuditRequest>,
    ) -> Reply<proto::ListAuditResponse> {
        self.state.reply(self.do_list_audit(request)).await
    }

    async fn create_webhook(
        &self,
        request: Request<proto::CreateWebhookRequest>,
    ) -> Reply<proto::CreateWebhookResponse> {
        self.state.reply(self.do_create_webhook(request)).await
    }

    async fn list_webhooks(
        &self,
        request: Request<proto::ListWebhooksRequest>,
    ) -> Reply<proto::ListWebhooksResponse> {
        self.state.reply(self.do_list_webhooks(request)).await
    }

    async fn delete_webhook(
        &self,
        request: Request<proto::WebhookRef>,
    ) -> Reply<proto::DeleteWebhookResponse> {
        self.state.reply(self.do_delete_webhook(request)).await
    }

    async fn set_webhook_enabled(
        &self,
        request: Request<proto::SetWebhookEnabledRequest>,
    ) -> Reply<proto::Webhook> {
        self.state.reply(self.do_set_webhook_enabled(request)).await
    }

    async fn list_deliveries(
        &self,
        request: Request<proto::ListDeliveriesRequest>,
    ) -> Reply<proto::ListDeliveriesResponse> {
        self.state.reply(self.do_list_deliveries(request)).await
    }

    async fn create_alert_subscription(
        &self,
        request: Request<proto::CreateAlertSubscriptionRequest>,
    ) -> Reply<proto::AlertSubscription> {
        self.state
            .reply(self.do_create_alert_subscription(request))
            .await
    }

    async fn list_alert_subscriptions(
        &self,
        request: Request<proto::ListAlertSubscriptionsRequest>,
    ) -> Reply<proto::ListAlertSubscriptionsResponse> {
        self.state
            .reply(self.do_list_alert_subscriptions(request))
            .await
    }

    async fn delete_alert_subscription(
        &self,
        request: Request<proto::AlertSubscriptionRef>,
    ) -> Reply<proto::DeleteAlertSubscriptionResponse> {
        self.state
            .reply(self.do_delete_alert_subscription(request))
            .await
    }
}
