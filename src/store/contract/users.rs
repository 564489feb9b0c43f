//! Users and teams of an organisation, roles, and the admin an organisation always keeps.

use super::{
    TestOrg, assert_already_exists, assert_not_found, at, daily_stream, new_org, new_token,
    new_user,
};
use crate::access::{Access, Grant, GrantSpec, Grantee, Team, User};
use crate::auth::Role;
use crate::ids::UserId;

use crate::store::{Store, StoreError};

fn users(list: &[User]) -> Vec<(&UserId, &str, Role, jiff::Timestamp)> {
    list.iter()
        .map(|u| (&u.id, u.name.as_str(), u.role, u.created_at))
        .collect()
}

fn teams(list: &[Team]) -> Vec<(&str, Vec<&str>, jiff::Timestamp)> {
    list.iter()
        .map(|t| {
            let members = t.members.iter().map(String::as_str).collect();
            (t.name.as_str(), members, t.created_at)
        })
        .collect()
}

/// The grants of a stream as `grantee:access` texts, sorted.
pub(super) fn grant_texts(grants: &[Grant]) -> Vec<String> {
    let mut texts: Vec<_> = grants
        .iter()
        .map(|g| format!("{}:{}", g.grantee, g.access.as_str()))
        .collect();
    texts.sort();
    texts
}

#[track_caller]
fn assert_last_admin<T: std::fmt::Debug>(result: Result<T, StoreError>, name: &str, org: &TestOrg) {
    match result {
        Err(StoreError::LastAdmin { user, org: of }) => {
            assert_eq!((user.as_str(), &of), (name, &org.id));
        }
        other => panic!("expected LastAdmin, got {other:?}"),
    }
}

async fn roles(store: &dyn Store, org: &TestOrg) -> Vec<(String, Role)> {
    let list = store.list_users(&org.id).await.unwrap();
    list.into_iter().map(|u| (u.name, u.role)).collect()
}

pub async fn users_are_created_and_listed_by_name(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let zoe = store
        .create_user(&org.id, "zoe", Role::Member, at(1))
        .await
        .unwrap();
    assert_eq!(
        (zoe.name.as_str(), zoe.role, zoe.created_at),
        ("zoe", Role::Member, at(1))
    );
    let bob = store
        .create_user(&org.id, "bob", Role::Runner, at(2))
        .await
        .unwrap();
    assert_ne!(zoe.id, bob.id);

    let listed = store.list_users(&org.id).await.unwrap();
    assert_eq!(
        users(&listed),
        [
            (&org.admin, "ada", Role::Admin, at(0)),
            (&bob.id, "bob", Role::Runner, at(2)),
            (&zoe.id, "zoe", Role::Member, at(1)),
        ]
    );
}

pub async fn a_user_name_is_taken_once_per_organisation(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "zoe", Role::Member).await;
    assert_already_exists(store.create_user(&org.id, "zoe", Role::Admin, at(1)).await);
    assert_already_exists(store.create_user(&org.id, "ada", Role::Member, at(1)).await);
    assert_eq!(
        roles(store, &org).await,
        [("ada".into(), Role::Admin), ("zoe".into(), Role::Member)]
    );
    let other = new_org(store, "Globex").await;
    store
        .create_user(&other.id, "zoe", Role::Member, at(2))
        .await
        .expect("another organisation has its own names");
}

pub async fn set_user_role_changes_the_role_a_token_acts_with(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let zoe = new_user(store, &org, "zoe", Role::Member).await;
    let (_, token) = new_token(store, &org, "zoe", None).await;

    let promoted = store
        .set_user_role(&org.id, "zoe", Role::Admin)
        .await
        .unwrap();
    assert_eq!(
        (
            &promoted.id,
            promoted.name.as_str(),
            promoted.role,
            promoted.created_at
        ),
        (&zoe, "zoe", Role::Admin, at(0))
    );
    let principal = store
        .principal_for_token(&token, at(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        principal.role,
        Role::Admin,
        "a token acts with the role its user has now"
    );
    let runner = store
        .set_user_role(&org.id, "zoe", Role::Runner)
        .await
        .unwrap();
    assert_eq!(runner.role, Role::Runner);
    assert_eq!(
        roles(store, &org).await,
        [("ada".into(), Role::Admin), ("zoe".into(), Role::Runner)]
    );
    assert_not_found(store.set_user_role(&org.id, "nobody", Role::Admin).await);
}

pub async fn the_last_admin_cannot_be_demoted(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "zoe", Role::Member).await;
    assert_last_admin(
        store.set_user_role(&org.id, "ada", Role::Member).await,
        "ada",
        &org,
    );
    assert_last_admin(
        store.set_user_role(&org.id, "ada", Role::Runner).await,
        "ada",
        &org,
    );
    let still = store
        .set_user_role(&org.id, "ada", Role::Admin)
        .await
        .unwrap();
    assert_eq!(still.role, Role::Admin, "an admin may stay an admin");

    store
        .set_user_role(&org.id, "zoe", Role::Admin)
        .await
        .unwrap();
    store
        .set_user_role(&org.id, "ada", Role::Member)
        .await
        .expect("zoe is an admin too");
    assert_last_admin(
        store.set_user_role(&org.id, "zoe", Role::Member).await,
        "zoe",
        &org,
    );
    assert_eq!(
        roles(store, &org).await,
        [("ada".into(), Role::Member), ("zoe".into(), Role::Admin)]
    );
}

pub async fn the_last_admin_cannot_be_deleted(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "zoe", Role::Member).await;
    assert_last_admin(store.delete_user(&org.id, "ada").await, "ada", &org);
    assert_eq!(roles(store, &org).await.len(), 2);

    store
        .set_user_role(&org.id, "zoe", Role::Admin)
        .await
        .unwrap();
    store
        .delete_user(&org.id, "ada")
        .await
        .expect("zoe is an admin too");
    assert_eq!(roles(store, &org).await, [("zoe".into(), Role::Admin)]);
    assert_eq!(
        store.principal_for_token(&org.token, at(1)).await.unwrap(),
        None
    );
    assert_not_found(store.delete_user(&org.id, "ada").await);
}

pub async fn deleting_a_user_removes_their_tokens_memberships_and_grants(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let bob = new_user(store, &org, "bob", Role::Member).await;
    new_user(store, &org, "zoe", Role::Member).await;
    let (_, token) = new_token(store, &org, "bob", None).await;
    store.create_team(&org.id, "finance", at(0)).await.unwrap();
    for member in ["bob", "zoe"] {
        store
            .set_team_member(&org.id, "finance", member, true)
            .await
            .unwrap();
    }
    let (stream, _) = daily_stream(store, &org, "Revenue").await;
    let grants = [
        GrantSpec {
            grantee: Grantee::User("bob".into()),
            access: Access::Manage,
        },
        GrantSpec {
            grantee: Grantee::Team("finance".into()),
            access: Access::Read,
        },
    ];
    store
        .set_grants(&org.id, &stream.id, &grants, at(1))
        .await
        .unwrap();

    store.delete_user(&org.id, "bob").await.unwrap();
    assert_eq!(
        store.principal_for_token(&token, at(2)).await.unwrap(),
        None
    );
    assert!(
        store
            .list_tokens(&org.id, Some("bob"))
            .await
            .unwrap()
            .is_empty()
    );
    let listed = store.list_teams(&org.id).await.unwrap();
    assert_eq!(teams(&listed), [("finance", vec!["zoe"], at(0))]);
    let listed = store.list_grants(&org.id, &stream.id).await.unwrap();
    assert_eq!(
        grant_texts(&listed),
        ["team:finance:read", "user:ada:manage"]
    );
    assert_eq!(
        store
            .stream_access(&org.id, &bob, &stream.id)
            .await
            .unwrap(),
        None
    );

    let new_bob = new_user(store, &org, "bob", Role::Member).await;
    assert_eq!(
        store
            .stream_access(&org.id, &new_bob, &stream.id)
            .await
            .unwrap(),
        None,
        "a new user of the same name inherits nothing"
    );
    assert_not_found(store.delete_user(&org.id, "nobody").await);
}

pub async fn teams_are_listed_by_name_with_their_members(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "zoe", Role::Member).await;
    new_user(store, &org, "bob", Role::Member).await;
    store.create_team(&org.id, "ops", at(1)).await.unwrap();
    store.create_team(&org.id, "finance", at(2)).await.unwrap();
    for (team, user) in [("finance", "zoe"), ("finance", "bob"), ("ops", "ada")] {
        store
            .set_team_member(&org.id, team, user, true)
            .await
            .unwrap();
    }
    let listed = store.list_teams(&org.id).await.unwrap();
    assert_eq!(
        teams(&listed),
        [
            ("finance", vec!["bob", "zoe"], at(2)),
            ("ops", vec!["ada"], at(1))
        ]
    );
}

pub async fn a_team_name_is_taken_once_per_organisation(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    store.create_team(&org.id, "finance", at(1)).await.unwrap();
    assert_already_exists(store.create_team(&org.id, "finance", at(2)).await);
    let listed = store.list_teams(&org.id).await.unwrap();
    assert_eq!(teams(&listed), [("finance", vec![], at(1))]);
    let other = new_org(store, "Globex").await;
    store
        .create_team(&other.id, "finance", at(3))
        .await
        .expect("another organisation has its own names");
}

pub async fn a_membership_is_added_once_and_removed(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "zoe", Role::Member).await;
    store.create_team(&org.id, "finance", at(1)).await.unwrap();
    let org_id = &org.id;
    let members = || async move {
        let listed = store.list_teams(org_id).await.unwrap();
        listed
            .into_iter()
            .flat_map(|t| t.members)
            .collect::<Vec<_>>()
    };
    for _ in 0..2 {
        store
            .set_team_member(&org.id, "finance", "zoe", true)
            .await
            .unwrap();
    }
    assert_eq!(members().await, ["zoe"]);
    store
        .set_team_member(&org.id, "finance", "zoe", false)
        .await
        .unwrap();
    assert!(members().await.is_empty());
    store
        .set_team_member(&org.id, "finance", "zoe", false)
        .await
        .expect("removing a non-member changes nothing");
    assert!(members().await.is_empty());
}

pub async fn a_membership_needs_an_existing_team_and_user(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "zoe", Role::Member).await;
    store.create_team(&org.id, "finance", at(1)).await.unwrap();
    for member in [true, false] {
        assert_not_found(
            store
                .set_team_member(&org.id, "nobody", "zoe", member)
                .await,
        );
        assert_not_found(
            store
                .set_team_member(&org.id, "finance", "nobody", member)
                .await,
        );
    }
    let listed = store.list_teams(&org.id).await.unwrap();
    assert_eq!(teams(&listed), [("finance", vec![], at(1))]);
}

pub async fn deleting_a_team_removes_its_grants_and_memberships(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let zoe = new_user(store, &org, "zoe", Role::Member).await;
    store.create_team(&org.id, "finance", at(1)).await.unwrap();
    store
        .set_team_member(&org.id, "finance", "zoe", true)
        .await
        .unwrap();
    let (stream, _) = daily_stream(store, &org, "Revenue").await;
    let grants = [GrantSpec {
        grantee: Grantee::Team("finance".into()),
        access: Access::Read,
    }];
    store
        .set_grants(&org.id, &stream.id, &grants, at(2))
        .await
        .unwrap();
    let access = || store.stream_access(&org.id, &zoe, &stream.id);
    assert_eq!(access().await.unwrap(), Some(Access::Read));

    store.delete_team(&org.id, "finance").await.unwrap();
    assert_eq!(access().await.unwrap(), None);
    assert!(store.list_teams(&org.id).await.unwrap().is_empty());
    let listed = store.list_grants(&org.id, &stream.id).await.unwrap();
    assert_eq!(grant_texts(&listed), ["user:ada:manage"]);
    assert_not_found(store.delete_team(&org.id, "finance").await);

    store.create_team(&org.id, "finance", at(3)).await.unwrap();
    store
        .set_team_member(&org.id, "finance", "zoe", true)
        .await
        .unwrap();
    assert_eq!(
        access().await.unwrap(),
        None,
        "a new team of the same name inherits nothing"
    );
}
