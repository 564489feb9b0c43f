//! The fixtures of the permissions tests: small helpers over the generated clients, and
//! the world the table runs in (two organisations, a caller per role, and a fresh
//! stream, user, team, category or token for each call that changes one).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use kpistream::client::{AdminClient, Client, Credential};
use kpistream::proto;
use kpistream::proto::Frequency::Daily;
use secrecy::SecretString;
use tonic::{Code, Response, Status};

use crate::common::{Setup, TestServer, point, stream_request};
use crate::{Call, Role};

/// The period of the one point a readable fixture stream holds.
pub const PERIOD: &str = "2024-01-31";

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

pub fn done<T>(reply: Result<Response<T>, Status>) -> Result<(), Status> {
    reply.map(drop)
}

pub fn stream_ref(id: &str) -> proto::StreamRef {
    proto::StreamRef {
        stream_id: id.to_owned(),
    }
}

pub fn timestamp(at: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.as_second(),
        nanos: at.subsec_nanosecond(),
    }
}

/// `NOT_FOUND`, as the doc writes codes.
pub fn code_name(code: Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The last `n` bytes of `text` (or a little more, to stay on a character boundary).
pub fn tail(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    &text[start..]
}

pub async fn connect(server: &TestServer, token: Option<&str>) -> Client {
    let token = token.map(|t| SecretString::from(t.to_owned()));
    Client::connect(&server.grpc, token)
        .await
        .expect("the client connects")
}

pub async fn who_am_i(client: &Client) -> Result<proto::WhoAmIResponse, Status> {
    Ok(client
        .admin()
        .who_am_i(proto::WhoAmIRequest {})
        .await?
        .into_inner())
}

/// Creates a user with `admin` (an org admin) and returns a client with a new token of theirs.
pub async fn new_user(server: &TestServer, admin: &Client, name: &str, role: &str) -> Client {
    admin
        .admin()
        .create_user(proto::CreateUserRequest {
            name: name.to_owned(),
            role: role.to_owned(),
        })
        .await
        .unwrap_or_else(|e| panic!("user {name} is created: {e}"));
    let secret = new_token(admin, name, None).await.secret;
    connect(server, Some(&secret)).await
}

pub async fn new_token(
    client: &Client,
    user: &str,
    expires_at: Option<jiff::Timestamp>,
) -> proto::CreateTokenResponse {
    client
        .admin()
        .create_token(proto::CreateTokenRequest {
            name: "fixture".into(),
            user: user.to_owned(),
            expires_at: expires_at.map(timestamp),
        })
        .await
        .unwrap_or_else(|e| panic!("a token for {user:?} is created: {e}"))
        .into_inner()
}

/// A second organisation, "Elsewhere", with its first admin "otheradmin", made by the
/// server admin `root`.
pub async fn other_org(root: &Client) -> proto::CreateOrgResponse {
    root.admin()
        .create_org(proto::CreateOrgRequest {
            name: "Elsewhere".into(),
            admin_name: "otheradmin".into(),
        })
        .await
        .expect("the server admin creates an organisation")
        .into_inner()
}

pub async fn new_team(admin: &Client, name: &str, members: &[&str]) {
    let mut admin = admin.admin();
    admin
        .create_team(proto::TeamRef {
            name: name.to_owned(),
        })
        .await
        .unwrap_or_else(|e| panic!("team {name} is created: {e}"));
    for user in members {
        admin
            .add_team_member(proto::TeamMemberRequest {
                team: name.to_owned(),
                user: (*user).to_owned(),
            })
            .await
            .unwrap_or_else(|e| panic!("{user} joins team {name}: {e}"));
    }
}

/// Creates a daily stream with `grants`; returns it with its first key's credential.
pub async fn new_stream(client: &Client, name: &str, grants: &[&str]) -> (String, Credential) {
    let mut request = stream_request(name, Daily, "UTC");
    request.grants = grants.iter().map(|g| (*g).to_owned()).collect();
    let created = client
        .admin()
        .create_stream(request)
        .await
        .unwrap_or_else(|e| panic!("stream {name} is created: {e}"))
        .into_inner();
    let credential = created.credential.parse().expect("the credential parses");
    (created.stream.expect("the created stream").id, credential)
}

pub fn new_public_key() -> Vec<u8> {
    SigningKey::generate(&mut rand::rngs::OsRng)
        .verifying_key()
        .to_bytes()
        .to_vec()
}

pub async fn stream_names(client: &Client) -> BTreeSet<String> {
    client
        .admin()
        .list_streams(proto::ListStreamsRequest::default())
        .await
        .expect("the streams are listed")
        .into_inner()
        .streams
        .into_iter()
        .map(|s| s.name)
        .collect()
}

// ---------------------------------------------------------------------------------------
// The world the table runs in
// ---------------------------------------------------------------------------------------

/// Two organisations: the first with a server admin, an org admin, a stream owner, a
/// bystander and one user per member role; the second with its first admin only.
pub struct World {
    pub server: TestServer,
    /// The server admin, first admin of the first organisation: makes the fixtures.
    root: Client,
    root_name: String,
    /// A member who creates the fixture streams, so that admins act without a grant.
    owner: Client,
    /// The first admin of the second organisation.
    other: Client,
    callers: Vec<(Role, Client)>,
    next: AtomicU32,
}

impl World {
    /// Builds the world; the expired token's expiry has passed when this returns.
    pub async fn build() -> Self {
        // An SMTP server (nothing listens there), so that alert subscriptions are taken.
        let server = TestServer::start_setup(Setup {
            config: Some(
                "[alerts.smtp]\nhost = \"127.0.0.1\"\nport = 9\nstarttls = false\nfrom = \"kpistream@example.com\"\n"
                    .into(),
            ),
            ..Setup::default()
        });
        let root = server.client().await;
        let root_name = who_am_i(&root).await.expect("WhoAmI").user;

        // Made first and used once while valid; by the time the world is built it has expired.
        let expires_at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
        let expired_after = Instant::now() + Duration::from_millis(2_300);
        let expiring = new_token(&root, "", Some(expires_at)).await.secret;
        let expired = connect(&server, Some(&expiring)).await;
        who_am_i(&expired)
            .await
            .expect("the expiring token works before its expiry");

        let revoked = new_token(&root, "", None).await;
        root.admin()
            .revoke_token(proto::RevokeTokenRequest {
                id: revoked.token.expect("token").id,
            })
            .await
            .expect("the token is revoked");

        let owner = new_user(&server, &root, "owner", "member").await;
        let mut callers = vec![
            (Role::NoToken, connect(&server, None).await),
            (
                Role::RevokedToken,
                connect(&server, Some(&revoked.secret)).await,
            ),
            (Role::ExpiredToken, expired),
            (Role::ServerAdmin, root.clone()),
        ];
        for role in Role::ALL {
            if let Some(name) = role.user() {
                let kind = match role {
                    Role::OrgAdmin => "admin",
                    Role::Runner => "runner",
                    _ => "member",
                };
                callers.push((role, new_user(&server, &root, name, kind).await));
            }
        }
        new_user(&server, &root, "bystander", "member").await;
        new_team(&root, "readers", &["teamreader"]).await;

        let org = other_org(&root).await;
        let other = connect(&server, Some(&org.token)).await;
        callers.push((Role::OtherAdmin, other.clone()));

        tokio::time::sleep_until(expired_after.into()).await;
        Self {
            server,
            root,
            root_name,
            owner,
            other,
            callers,
            next: AtomicU32::new(0),
        }
    }

    pub fn caller(&self, role: Role) -> &Client {
        &self
            .callers
            .iter()
            .find(|(r, _)| *r == role)
            .expect("every role has a client")
            .1
    }

    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// A new stream of the owner's with the grant `role` needs, a read grant to the
    /// bystander (for `RemoveGrant` to remove) and, if asked, one point. Returns the
    /// stream id and its first key's id.
    async fn stream(&self, role: Role, with_data: bool) -> (String, String) {
        let mut grants = vec!["user:bystander:read"];
        grants.extend(role.grant());
        let (id, credential) = new_stream(&self.owner, &self.unique("stream"), &grants).await;
        if with_data {
            let published = self
                .owner
                .publish(&credential, vec![point(PERIOD, "1")], false)
                .await
                .expect("a point is published");
            assert_eq!(published.accepted, 1, "{published:?}");
        }
        (id, credential.key_id().to_string())
    }

    async fn category(&self) -> String {
        let name = self.unique("category");
        self.root
            .admin()
            .create_category(proto::CreateCategoryRequest { name: name.clone() })
            .await
            .expect("a category is created");
        name
    }

    /// A webhook of the first organisation (nothing listens at its URL); its id.
    async fn webhook(&self) -> String {
        self.root
            .admin()
            .create_webhook(webhook_request())
            .await
            .expect("a webhook is created")
            .into_inner()
            .webhook
            .expect("the webhook")
            .id
    }

    /// An alert subscription of the first organisation; its id.
    async fn subscription(&self) -> String {
        self.root
            .admin()
            .create_alert_subscription(subscription_request(&self.unique("ops")))
            .await
            .expect("a subscription is created")
            .into_inner()
            .id
    }

    async fn user(&self) -> String {
        let name = self.unique("user");
        self.root
            .admin()
            .create_user(proto::CreateUserRequest {
                name: name.clone(),
                role: "member".into(),
            })
            .await
            .expect("a user is created");
        name
    }

    async fn team(&self, members: &[&str]) -> String {
        let name = self.unique("team");
        new_team(&self.root, &name, members).await;
        name
    }

    /// The id of a new token of `user` (of the first organisation).
    async fn token_of(&self, user: &str) -> String {
        new_token(&self.root, user, None)
            .await
            .token
            .expect("token")
            .id
    }

    /// The id of a new token of the role's own user (the bystander's for the roles
    /// without a valid token, which are refused before it matters).
    async fn own_token(&self, role: Role) -> String {
        match role {
            Role::OtherAdmin => {
                new_token(&self.other, "", None)
                    .await
                    .token
                    .expect("token")
                    .id
            }
            Role::ServerAdmin => self.token_of(&self.root_name).await,
            _ => self.token_of(role.user().unwrap_or("bystander")).await,
        }
    }

    /// Makes the fixture `call` needs, then makes the call as `role`.
    pub async fn attempt(&self, call: Call, role: Role) -> Result<(), Status> {
        if call.on_stream() {
            self.attempt_on_stream(call, role).await
        } else if call.on_token() {
            self.attempt_on_token(call, role).await
        } else {
            self.attempt_on_org(call, role).await
        }
    }

    async fn attempt_on_stream(&self, call: Call, role: Role) -> Result<(), Status> {
        let reads_points = matches!(call, Call::ListPoints | Call::Latest | Call::ListRevisions);
        let (id, key_id) = self.stream(role, reads_points).await;
        if call == Call::EnableStream {
            self.root
                .admin()
                .disable_stream(stream_ref(&id))
                .await
                .expect("the fixture stream is disabled");
        }
        let mut admin = self.caller(role).admin();
        let mut query = self.caller(role).query();
        let grant = |grant: &str| proto::GrantRequest {
            stream_id: id.clone(),
            grant: grant.to_owned(),
        };
        match call {
            Call::GetStream => done(admin.get_stream(stream_ref(&id)).await),
            Call::UpdateStream => done(
                admin
                    .update_stream(proto::UpdateStreamRequest {
                        stream_id: id.clone(),
                        name: Some(self.unique("renamed")),
                        ..Default::default()
                    })
                    .await,
            ),
            Call::DisableStream => done(admin.disable_stream(stream_ref(&id)).await),
            Call::EnableStream => done(admin.enable_stream(stream_ref(&id)).await),
            Call::DeleteStream => done(admin.delete_stream(stream_ref(&id)).await),
            Call::RotateKey => done(admin.rotate_key(stream_ref(&id)).await),
            Call::RevokeKey => done(
                admin
                    .revoke_key(proto::RevokeKeyRequest {
                        stream_id: id.clone(),
                        key_id,
                    })
                    .await,
            ),
            Call::AddKey => done(
                admin
                    .add_key(proto::AddKeyRequest {
                        stream_id: id.clone(),
                        public_key: new_public_key(),
                    })
                    .await,
            ),
            Call::ListKeys => done(admin.list_keys(stream_ref(&id)).await),
            Call::AddGrant => done(admin.add_grant(grant("user:bystander:manage")).await),
            Call::RemoveGrant => done(admin.remove_grant(grant("user:bystander")).await),
            Call::ListGrants => done(admin.list_grants(stream_ref(&id)).await),
            Call::ListPoints => done(
                query
                    .list_points(proto::ListPointsRequest {
                        stream_id: id.clone(),
                        ..Default::default()
                    })
                    .await,
            ),
            Call::Latest => done(
                query
                    .latest(proto::LatestRequest {
                        stream_id: id.clone(),
                    })
                    .await,
            ),
            Call::ListRevisions => done(
                query
                    .list_revisions(proto::ListRevisionsRequest {
                        stream_id: id.clone(),
                        period: PERIOD.into(),
                        ..Default::default()
                    })
                    .await,
            ),
            // A watch that was let in answers its headers at once; that is the OK.
            Call::Watch => done(
                query
                    .watch(proto::WatchRequest {
                        stream_id: id.clone(),
                        ..Default::default()
                    })
                    .await,
            ),
            other => unreachable!("{other:?} is not addressed to a stream"),
        }
    }

    async fn attempt_on_token(&self, call: Call, role: Role) -> Result<(), Status> {
        let mut admin = self.caller(role).admin();
        let create = |user: &str| proto::CreateTokenRequest {
            name: self.unique("token"),
            user: user.to_owned(),
            expires_at: None,
        };
        let list = |user: &str| proto::ListTokensRequest {
            user: user.to_owned(),
            ..Default::default()
        };
        match call {
            Call::CreateOwnToken => done(admin.create_token(create("")).await),
            Call::CreateTokenForAnother => done(admin.create_token(create("bystander")).await),
            Call::ListOwnTokens => done(admin.list_tokens(list("")).await),
            Call::ListTokensOfAnother => done(admin.list_tokens(list("bystander")).await),
            Call::RevokeOwnToken => {
                let id = self.own_token(role).await;
                done(admin.revoke_token(proto::RevokeTokenRequest { id }).await)
            }
            Call::RevokeTokenOfAnother => {
                let id = self.token_of("bystander").await;
                done(admin.revoke_token(proto::RevokeTokenRequest { id }).await)
            }
            other => unreachable!("{other:?} is not a token call"),
        }
    }

    async fn attempt_on_org(&self, call: Call, role: Role) -> Result<(), Status> {
        let mut admin = self.caller(role).admin();
        match call {
            Call::CreateStream => {
                let request = stream_request(&self.unique("stream"), Daily, "UTC");
                done(admin.create_stream(request).await)
            }
            Call::ListStreams => done(
                admin
                    .list_streams(proto::ListStreamsRequest::default())
                    .await,
            ),
            Call::ListCategories => done(
                admin
                    .list_categories(proto::ListCategoriesRequest::default())
                    .await,
            ),
            Call::ListUsers => done(admin.list_users(proto::ListUsersRequest::default()).await),
            Call::ListTeams => done(admin.list_teams(proto::ListTeamsRequest::default()).await),
            Call::WhoAmI => done(admin.who_am_i(proto::WhoAmIRequest::default()).await),
            Call::ListAudit => done(
                admin
                    .list_audit(proto::ListAuditRequest {
                        limit: 10,
                        ..Default::default()
                    })
                    .await,
            ),
            Call::CreateOrg => done(
                admin
                    .create_org(proto::CreateOrgRequest {
                        name: self.unique("org"),
                        admin_name: self.unique("first-admin"),
                    })
                    .await,
            ),
            Call::CreateCategory => done(
                admin
                    .create_category(proto::CreateCategoryRequest {
                        name: self.unique("category"),
                    })
                    .await,
            ),
            Call::CreateUser => done(
                admin
                    .create_user(proto::CreateUserRequest {
                        name: self.unique("user"),
                        role: "member".into(),
                    })
                    .await,
            ),
            Call::CreateTeam => done(
                admin
                    .create_team(proto::TeamRef {
                        name: self.unique("team"),
                    })
                    .await,
            ),
            Call::CreateWebhook => done(admin.create_webhook(webhook_request()).await),
            Call::ListWebhooks => done(admin.list_webhooks(proto::ListWebhooksRequest {}).await),
            Call::ListDeliveries => done(
                admin
                    .list_deliveries(proto::ListDeliveriesRequest::default())
                    .await,
            ),
            Call::CreateAlertSubscription => done(
                admin
                    .create_alert_subscription(subscription_request(&self.unique("ops")))
                    .await,
            ),
            Call::ListAlertSubscriptions => done(
                admin
                    .list_alert_subscriptions(proto::ListAlertSubscriptionsRequest {})
                    .await,
            ),
            _ => self.attempt_change_in_org(call, admin).await,
        }
    }

    /// The admin calls that change an existing category, user or team of the first
    /// organisation.
    async fn attempt_change_in_org(
        &self,
        call: Call,
        mut admin: AdminClient,
    ) -> Result<(), Status> {
        let member = |team: String| proto::TeamMemberRequest {
            team,
            user: "bystander".into(),
        };
        match call {
            Call::RenameCategory => {
                let name = self.category().await;
                let new_name = self.unique("renamed");
                done(
                    admin
                        .rename_category(proto::RenameCategoryRequest { name, new_name })
                        .await,
                )
            }
            Call::DeleteCategory => {
                let name = self.category().await;
                done(
                    admin
                        .delete_category(proto::DeleteCategoryRequest { name })
                        .await,
                )
            }
            Call::SetUserRole => {
                let name = self.user().await;
                let role = "admin".into();
                done(
                    admin
                        .set_user_role(proto::SetUserRoleRequest { name, role })
                        .await,
                )
            }
            Call::DeleteUser => {
                let name = self.user().await;
                done(admin.delete_user(proto::UserRef { name }).await)
            }
            Call::DeleteTeam => {
                let name = self.team(&[]).await;
                done(admin.delete_team(proto::TeamRef { name }).await)
            }
            Call::DeleteWebhook => {
                let id = self.webhook().await;
                done(admin.delete_webhook(proto::WebhookRef { id }).await)
            }
            Call::SetWebhookEnabled => {
                let id = self.webhook().await;
                let request = proto::SetWebhookEnabledRequest { id, enabled: false };
                done(admin.set_webhook_enabled(request).await)
            }
            Call::DeleteAlertSubscription => {
                let id = self.subscription().await;
                let request = proto::AlertSubscriptionRef { id };
                done(admin.delete_alert_subscription(request).await)
            }
            Call::AddTeamMember => {
                let team = self.team(&[]).await;
                done(admin.add_team_member(member(team)).await)
            }
            Call::RemoveTeamMember => {
                let team = self.team(&["bystander"]).await;
                done(admin.remove_team_member(member(team)).await)
            }
            other => unreachable!("{other:?} is not a change in the organisation"),
        }
    }
}

/// A webhook for every event of every stream, at a URL where nothing listens.
fn webhook_request() -> proto::CreateWebhookRequest {
    proto::CreateWebhookRequest {
        url: "http://127.0.0.1:9/hook".into(),
        ..Default::default()
    }
}

fn subscription_request(local: &str) -> proto::CreateAlertSubscriptionRequest {
    proto::CreateAlertSubscriptionRequest {
        email: format!("{local}@example.com"),
        ..Default::default()
    }
}
