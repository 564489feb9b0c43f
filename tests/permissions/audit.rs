//! The audit log: each admin action of a scenario with its actor, read back filtered by
//! actor, target and time; members cannot read it, and each organisation has its own.

use std::time::Duration;

use kpistream::client::Client;
use kpistream::proto;
use kpistream::proto::Frequency::Daily;
use tonic::Code;

use crate::common::{TestServer, stream_request};
use crate::fixtures::{
    connect, new_public_key, new_token, new_user, other_org, stream_ref, timestamp, who_am_i,
};

async fn audit(client: &Client, filter: proto::ListAuditRequest) -> Vec<proto::AuditEntry> {
    client
        .admin()
        .list_audit(filter)
        .await
        .expect("the audit log is read")
        .into_inner()
        .entries
}

/// (action, target id) of each entry.
fn actions(entries: &[proto::AuditEntry]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|e| (e.action.clone(), e.target_id.clone()))
        .collect()
}

/// A moment strictly between the audit entries made before and after it.
async fn mark() -> jiff::Timestamp {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let now = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    now
}

/// What the scenario did: (action, target id) of each audit entry it should have made,
/// in order, and what the checks need to know about it.
struct Scenario {
    log: Vec<(String, String)>,
    stream: String,
    /// Two moments between entries, each with how many entries came before it.
    marks: [(jiff::Timestamp, usize); 2],
    /// A token and a stream credential made during the scenario.
    secrets: [String; 2],
}

fn entry(action: &str, target: &str) -> (String, String) {
    (action.to_owned(), target.to_owned())
}

/// Every kind of admin action, as `actor` (an org admin).
async fn scenario(actor: &Client) -> Scenario {
    let mut log: Vec<(String, String)> = Vec::new();
    let mut admin = actor.admin();
    let membership = || proto::TeamMemberRequest {
        team: "finance".into(),
        user: "bob".into(),
    };
    let finance = || proto::TeamRef {
        name: "finance".into(),
    };

    let sales = proto::CreateCategoryRequest {
        name: "Sales".into(),
    };
    admin.create_category(sales).await.unwrap();
    log.push(entry("category.created", "Sales"));
    let bob = proto::CreateUserRequest {
        name: "bob".into(),
        role: "member".into(),
    };
    admin.create_user(bob).await.unwrap();
    log.push(entry("user.created", "bob"));
    admin.create_team(finance()).await.unwrap();
    log.push(entry("team.created", "finance"));
    admin.add_team_member(membership()).await.unwrap();
    log.push(entry("team.member_added", "finance"));

    let mut request = stream_request("Revenue", Daily, "UTC");
    request.category = "Sales".into();
    request.grants = vec!["team:finance".into(), "user:bob:manage".into()];
    let created = admin.create_stream(request).await.unwrap().into_inner();
    let id = created.stream.expect("stream").id;
    log.push(entry("stream.created", &id));
    let rename = proto::UpdateStreamRequest {
        stream_id: id.clone(),
        name: Some("Net revenue".into()),
        ..Default::default()
    };
    admin.update_stream(rename).await.unwrap();
    log.push(entry("stream.updated", &id));
    admin.disable_stream(stream_ref(&id)).await.unwrap();
    log.push(entry("stream.disabled", &id));
    admin.enable_stream(stream_ref(&id)).await.unwrap();
    log.push(entry("stream.enabled", &id));
    let rotated = admin.rotate_key(stream_ref(&id)).await.unwrap();
    log.push(entry("key.rotated", &id));
    let revoke = proto::RevokeKeyRequest {
        stream_id: id.clone(),
        key_id: created.key.expect("key").key_id,
    };
    admin.revoke_key(revoke).await.unwrap();
    log.push(entry("key.revoked", &id));
    let add_key = proto::AddKeyRequest {
        stream_id: id.clone(),
        public_key: new_public_key(),
    };
    admin.add_key(add_key).await.unwrap();
    log.push(entry("key.added", &id));

    let first_mark = (mark().await, log.len());
    let grant = |grant: &str| proto::GrantRequest {
        stream_id: id.clone(),
        grant: grant.into(),
    };
    admin.add_grant(grant("org:read")).await.unwrap();
    log.push(entry("grant.added", &id));
    admin.remove_grant(grant("org")).await.unwrap();
    log.push(entry("grant.removed", &id));
    let token = new_token(actor, "bob", None).await;
    let token_id = token.token.expect("token").id;
    log.push(entry("token.created", &token_id));
    let revoke = proto::RevokeTokenRequest {
        id: token_id.clone(),
    };
    admin.revoke_token(revoke).await.unwrap();
    log.push(entry("token.revoked", &token_id));

    let second_mark = (mark().await, log.len());
    let promote = proto::SetUserRoleRequest {
        name: "bob".into(),
        role: "admin".into(),
    };
    admin.set_user_role(promote).await.unwrap();
    log.push(entry("user.role_changed", "bob"));
    admin.remove_team_member(membership()).await.unwrap();
    log.push(entry("team.member_removed", "finance"));
    let rename = proto::RenameCategoryRequest {
        name: "Sales".into(),
        new_name: "Turnover".into(),
    };
    admin.rename_category(rename).await.unwrap();
    log.push(entry("category.renamed", "Turnover"));
    admin.delete_stream(stream_ref(&id)).await.unwrap();
    log.push(entry("stream.deleted", &id));
    let turnover = proto::DeleteCategoryRequest {
        name: "Turnover".into(),
    };
    admin.delete_category(turnover).await.unwrap();
    log.push(entry("category.deleted", "Turnover"));
    admin.delete_team(finance()).await.unwrap();
    log.push(entry("team.deleted", "finance"));
    let bob = proto::UserRef { name: "bob".into() };
    admin.delete_user(bob).await.unwrap();
    log.push(entry("user.deleted", "bob"));

    Scenario {
        log,
        stream: id,
        marks: [first_mark, second_mark],
        secrets: [token.secret, rotated.into_inner().credential],
    }
}

fn by_actor(actor: &str) -> proto::ListAuditRequest {
    proto::ListAuditRequest {
        actor: actor.into(),
        ..Default::default()
    }
}

fn by_target(target: &str) -> proto::ListAuditRequest {
    proto::ListAuditRequest {
        target: target.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_actions_are_audited_with_their_actor_and_filtered_by_target_actor_and_time() {
    let server = TestServer::start();
    let root = server.client().await;
    let root_name = who_am_i(&root).await.expect("WhoAmI").user;
    let ada = new_user(&server, &root, "ada", "admin").await;
    let Scenario {
        log,
        stream,
        marks: [(first_mark, before_first), (second_mark, before_second)],
        secrets,
    } = scenario(&ada).await;

    // By actor: every action of ada's, in order, each with her name.
    let by_ada = audit(&root, by_actor("ada")).await;
    assert_eq!(actions(&by_ada), log);
    assert!(by_ada.iter().all(|e| e.actor == "ada"), "{by_ada:?}");
    let created = &by_ada[4];
    assert!(
        created.detail.contains("team:finance:read") && created.detail.contains("user:bob:manage"),
        "stream.created carries its grants: {created:?}"
    );
    let by_root = audit(&root, by_actor(&root_name)).await;
    assert!(by_root.iter().all(|e| e.actor == root_name), "{by_root:?}");
    assert!(
        actions(&by_root).contains(&("user.created".into(), "ada".into())),
        "{by_root:?}"
    );

    // By target.
    let on_stream: Vec<_> = log.iter().filter(|(_, t)| *t == stream).cloned().collect();
    assert_eq!(on_stream.len(), 10);
    assert_eq!(actions(&audit(&ada, by_target(&stream)).await), on_stream);
    let on_bob = audit(&ada, by_target("bob")).await;
    let on_bob: Vec<&str> = on_bob.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        on_bob,
        ["user.created", "user.role_changed", "user.deleted"]
    );

    // By time: since, until, and both.
    let between = |since: Option<jiff::Timestamp>, until: Option<jiff::Timestamp>| {
        let request = proto::ListAuditRequest {
            since: since.map(timestamp),
            until: until.map(timestamp),
            ..by_actor("ada")
        };
        let ada = &ada;
        async move { actions(&audit(ada, request).await) }
    };
    assert_eq!(between(Some(first_mark), None).await, log[before_first..]);
    assert_eq!(between(None, Some(first_mark)).await, log[..before_first]);
    assert_eq!(
        between(Some(first_mark), Some(second_mark)).await,
        log[before_first..before_second]
    );

    // No secret is in the log.
    for entry in audit(&root, proto::ListAuditRequest::default()).await {
        let text = format!("{entry:?}");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret in {entry:?}");
        }
        let prefixes = !text.contains("kpit_") && !text.contains("kpik1.");
        assert!(prefixes, "a token or credential in {entry:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_org_admins_read_the_audit_log_and_only_their_own_organisations() {
    let server = TestServer::start();
    let root = server.client().await;
    let root_name = who_am_i(&root).await.expect("WhoAmI").user;
    let carl = new_user(&server, &root, "carl", "member").await;
    let refused = carl
        .admin()
        .list_audit(proto::ListAuditRequest::default())
        .await
        .expect_err("a member cannot read the audit log");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // A new organisation is logged in its creator's organisation.
    let ours_before = audit(&root, proto::ListAuditRequest::default()).await;
    let org = other_org(&root).await;
    let by_root = audit(&root, by_actor(&root_name)).await;
    let last = by_root.last().expect("an entry");
    assert_eq!(
        (last.action.as_str(), last.target_id.as_str()),
        ("org.created", org.org_id.as_str())
    );

    // Each organisation's admins read their own log only.
    let other = connect(&server, Some(&org.token)).await;
    let category = proto::CreateCategoryRequest {
        name: "Elsewhere's".into(),
    };
    other
        .admin()
        .create_category(category)
        .await
        .expect("a category of the other organisation");
    let theirs = audit(&other, proto::ListAuditRequest::default()).await;
    assert_eq!(
        actions(&theirs),
        [("category.created".to_owned(), "Elsewhere's".to_owned())]
    );
    let ours = audit(&root, proto::ListAuditRequest::default()).await;
    assert_eq!(
        ours.len(),
        ours_before.len() + 1,
        "only org.created was added"
    );
}
