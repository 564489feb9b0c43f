//! Ids of another organisation (and streams of one's own organisation without a grant)
//! answer exactly like ids that do not exist: same code, same message but for the id.

use kpistream::client::Client;
use kpistream::ids::{KeyId, StreamId};
use kpistream::proto;
use kpistream::proto::Frequency::Daily;
use tonic::{Code, Status};

use crate::common::{self, TestServer, stream_request};
use crate::fixtures::{
    PERIOD, code_name, connect, done, new_public_key, new_stream, new_team, new_token, new_user,
    other_org, stream_ref,
};

/// Each call's name and outcome.
type Answers = Vec<(&'static str, Result<(), Status>)>;

/// Every call addressed to stream `id`, the key calls with `key_id`.
async fn stream_answers(client: &Client, id: &str, key_id: &str) -> Answers {
    let admin = || client.admin();
    let query = || client.query();
    let grant = |grant: &str| proto::GrantRequest {
        stream_id: id.to_owned(),
        grant: grant.to_owned(),
    };
    let update = proto::UpdateStreamRequest {
        stream_id: id.to_owned(),
        name: Some("Renamed".into()),
        ..Default::default()
    };
    let revoke = proto::RevokeKeyRequest {
        stream_id: id.to_owned(),
        key_id: key_id.to_owned(),
    };
    let add_key = proto::AddKeyRequest {
        stream_id: id.to_owned(),
        public_key: new_public_key(),
    };
    let points = proto::ListPointsRequest {
        stream_id: id.to_owned(),
        ..Default::default()
    };
    let latest = proto::LatestRequest {
        stream_id: id.to_owned(),
    };
    let revisions = proto::ListRevisionsRequest {
        stream_id: id.to_owned(),
        period: PERIOD.into(),
        ..Default::default()
    };
    vec![
        ("GetStream", done(admin().get_stream(stream_ref(id)).await)),
        ("UpdateStream", done(admin().update_stream(update).await)),
        (
            "DisableStream",
            done(admin().disable_stream(stream_ref(id)).await),
        ),
        (
            "EnableStream",
            done(admin().enable_stream(stream_ref(id)).await),
        ),
        ("RotateKey", done(admin().rotate_key(stream_ref(id)).await)),
        ("RevokeKey", done(admin().revoke_key(revoke).await)),
        ("AddKey", done(admin().add_key(add_key).await)),
        ("ListKeys", done(admin().list_keys(stream_ref(id)).await)),
        ("AddGrant", done(admin().add_grant(grant("org")).await)),
        (
            "RemoveGrant",
            done(admin().remove_grant(grant("org")).await),
        ),
        (
            "ListGrants",
            done(admin().list_grants(stream_ref(id)).await),
        ),
        ("Query.ListPoints", done(query().list_points(points).await)),
        ("Query.Latest", done(query().latest(latest).await)),
        (
            "Query.ListRevisions",
            done(query().list_revisions(revisions).await),
        ),
        (
            "DeleteStream",
            done(admin().delete_stream(stream_ref(id)).await),
        ),
    ]
}

/// Every call naming user `name`; `team` and `stream` are the caller's own.
async fn user_answers(client: &Client, name: &str, team: &str, stream: &str) -> Answers {
    let admin = || client.admin();
    let membership = || proto::TeamMemberRequest {
        team: team.to_owned(),
        user: name.to_owned(),
    };
    let grant = || proto::GrantRequest {
        stream_id: stream.to_owned(),
        grant: format!("user:{name}"),
    };
    let role = proto::SetUserRoleRequest {
        name: name.to_owned(),
        role: "admin".into(),
    };
    let token = proto::CreateTokenRequest {
        name: "probe".into(),
        user: name.to_owned(),
        expires_at: None,
    };
    let tokens = proto::ListTokensRequest {
        user: name.to_owned(),
        ..Default::default()
    };
    let mut granted = stream_request("Probe", Daily, "UTC");
    granted.grants = vec![format!("user:{name}")];
    let user = proto::UserRef {
        name: name.to_owned(),
    };
    vec![
        ("SetUserRole", done(admin().set_user_role(role).await)),
        (
            "AddTeamMember",
            done(admin().add_team_member(membership()).await),
        ),
        (
            "RemoveTeamMember",
            done(admin().remove_team_member(membership()).await),
        ),
        ("CreateToken", done(admin().create_token(token).await)),
        ("ListTokens", done(admin().list_tokens(tokens).await)),
        ("AddGrant", done(admin().add_grant(grant()).await)),
        ("RemoveGrant", done(admin().remove_grant(grant()).await)),
        ("CreateStream", done(admin().create_stream(granted).await)),
        ("DeleteUser", done(admin().delete_user(user).await)),
    ]
}

/// Every call naming team `name`; `user` and `stream` are the caller's own.
async fn team_answers(client: &Client, name: &str, user: &str, stream: &str) -> Answers {
    let admin = || client.admin();
    let membership = || proto::TeamMemberRequest {
        team: name.to_owned(),
        user: user.to_owned(),
    };
    let grant = || proto::GrantRequest {
        stream_id: stream.to_owned(),
        grant: format!("team:{name}"),
    };
    let mut granted = stream_request("Probe", Daily, "UTC");
    granted.grants = vec![format!("team:{name}")];
    let team = proto::TeamRef {
        name: name.to_owned(),
    };
    vec![
        (
            "AddTeamMember",
            done(admin().add_team_member(membership()).await),
        ),
        (
            "RemoveTeamMember",
            done(admin().remove_team_member(membership()).await),
        ),
        ("AddGrant", done(admin().add_grant(grant()).await)),
        ("RemoveGrant", done(admin().remove_grant(grant()).await)),
        ("CreateStream", done(admin().create_stream(granted).await)),
        ("DeleteTeam", done(admin().delete_team(team).await)),
    ]
}

/// Every call naming category `name`; `stream` is the caller's own.
async fn category_answers(client: &Client, name: &str, stream: &str) -> Answers {
    let admin = || client.admin();
    let rename = proto::RenameCategoryRequest {
        name: name.to_owned(),
        new_name: "Renamed".into(),
    };
    let mut create = stream_request("Probe", Daily, "UTC");
    create.category = name.to_owned();
    let update = proto::UpdateStreamRequest {
        stream_id: stream.to_owned(),
        category: Some(name.to_owned()),
        ..Default::default()
    };
    let delete = proto::DeleteCategoryRequest {
        name: name.to_owned(),
    };
    vec![
        (
            "RenameCategory",
            done(admin().rename_category(rename).await),
        ),
        ("CreateStream", done(admin().create_stream(create).await)),
        ("UpdateStream", done(admin().update_stream(update).await)),
        (
            "DeleteCategory",
            done(admin().delete_category(delete).await),
        ),
    ]
}

async fn token_answers(client: &Client, id: &str) -> Answers {
    let revoke = proto::RevokeTokenRequest { id: id.to_owned() };
    vec![(
        "RevokeToken",
        done(client.admin().revoke_token(revoke).await),
    )]
}

async fn key_answers(client: &Client, stream: &str, key_id: &str) -> Answers {
    let revoke = proto::RevokeKeyRequest {
        stream_id: stream.to_owned(),
        key_id: key_id.to_owned(),
    };
    vec![("RevokeKey", done(client.admin().revoke_key(revoke).await))]
}

/// What differs between the answers about an existing id and a missing one, apart from
/// the id itself; both must be NOT_FOUND.
fn differences(what: &str, existing: &str, missing: &str, a: Answers, b: Answers) -> Vec<String> {
    let mut out = Vec::new();
    for ((call, a), (_, b)) in a.into_iter().zip(b) {
        let (a, b) = match (a, b) {
            (Err(a), Err(b)) => (a, b),
            (a, b) => {
                out.push(format!("{what} {call}: existing {a:?}, missing {b:?}"));
                continue;
            }
        };
        let seen_a = (a.code(), a.message().replace(existing, "<id>"));
        let seen_b = (b.code(), b.message().replace(missing, "<id>"));
        if seen_a != seen_b || seen_a.0 != Code::NotFound {
            out.push(format!(
                "{what} {call}: existing {} {:?}, missing {} {:?}",
                code_name(seen_a.0),
                seen_a.1,
                code_name(seen_b.0),
                seen_b.1
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_of_another_organisation_answer_exactly_like_ids_that_do_not_exist() {
    let server = TestServer::start();
    let root = server.client().await;
    let member = new_user(&server, &root, "alice", "member").await;
    new_team(&root, "finance", &["alice"]).await;
    root.admin()
        .create_category(proto::CreateCategoryRequest {
            name: "Revenue".into(),
        })
        .await
        .expect("a category");
    let (stream, credential) = new_stream(&root, "Sales", &["team:finance:read"]).await;
    let key = credential.key_id().to_string();
    let token = new_token(&root, "alice", None)
        .await
        .token
        .expect("token")
        .id;

    let org = other_org(&root).await;
    let other = connect(&server, Some(&org.token)).await;
    new_team(&other, "own-team", &[]).await;
    let (own_stream, _) = new_stream(&other, "Own", &[]).await;
    let (hidden, _) = new_stream(&root, "Hidden from alice", &[]).await;

    let missing_stream = StreamId::generate().to_string();
    let missing_key = KeyId::generate().to_string();
    let missing_token = format!("tok_{:032x}", rand::random::<u128>());
    let mut wrong = Vec::new();
    wrong.extend(differences(
        "stream",
        &stream,
        &missing_stream,
        stream_answers(&other, &stream, &key).await,
        stream_answers(&other, &missing_stream, &missing_key).await,
    ));
    wrong.extend(differences(
        "stream (a member without grant)",
        &hidden,
        &missing_stream,
        stream_answers(&member, &hidden, &key).await,
        stream_answers(&member, &missing_stream, &key).await,
    ));
    wrong.extend(differences(
        "user",
        "alice",
        "nobody",
        user_answers(&other, "alice", "own-team", &own_stream).await,
        user_answers(&other, "nobody", "own-team", &own_stream).await,
    ));
    wrong.extend(differences(
        "team",
        "finance",
        "noteam",
        team_answers(&other, "finance", "otheradmin", &own_stream).await,
        team_answers(&other, "noteam", "otheradmin", &own_stream).await,
    ));
    wrong.extend(differences(
        "category",
        "Revenue",
        "Nothing",
        category_answers(&other, "Revenue", &own_stream).await,
        category_answers(&other, "Nothing", &own_stream).await,
    ));
    wrong.extend(differences(
        "token",
        &token,
        &missing_token,
        token_answers(&other, &token).await,
        token_answers(&other, &missing_token).await,
    ));
    wrong.extend(differences(
        "key",
        &key,
        &missing_key,
        key_answers(&other, &own_stream, &key).await,
        key_answers(&other, &own_stream, &missing_key).await,
    ));
    assert!(
        wrong.is_empty(),
        "existing and missing ids answer differently:\n{}",
        wrong.join("\n")
    );

    // Nothing of the first organisation changed.
    let detail = common::show(&root, &stream).await;
    assert_eq!(detail.stream.expect("stream").name, "Sales");
    assert_eq!(detail.keys.len(), 1, "no key was added, rotated or revoked");
    let users = root
        .admin()
        .list_users(proto::ListUsersRequest::default())
        .await
        .expect("users")
        .into_inner()
        .users;
    let alice = users.iter().find(|u| u.name == "alice").expect("alice");
    assert_eq!(
        (alice.role.as_str(), &alice.teams[..]),
        ("member", &["finance".to_owned()][..])
    );
}
