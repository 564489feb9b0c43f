//! Grants of streams to users, teams and the whole organisation, and the access they
//! add up to for one user.

use std::collections::HashMap;

use super::users::grant_texts;
use super::{TestOrg, assert_not_found, at, daily_stream, definition, new_key, new_org, new_user};
use crate::access::{Access, GrantSpec, Grantee};
use crate::auth::Role;
use crate::ids::{StreamId, UserId};
use crate::period::Frequency;

use crate::store::Store;

fn grant(grantee: Grantee, access: Access) -> GrantSpec {
    GrantSpec { grantee, access }
}

fn user(name: &str) -> Grantee {
    Grantee::User(name.into())
}

fn team(name: &str) -> Grantee {
    Grantee::Team(name.into())
}

async fn texts(store: &dyn Store, org: &TestOrg, stream: &StreamId) -> Vec<String> {
    grant_texts(&store.list_grants(&org.id, stream).await.unwrap())
}

/// A stream of `org`, with `grants` set on it.
async fn granted(store: &dyn Store, org: &TestOrg, name: &str, grants: &[GrantSpec]) -> StreamId {
    let (stream, _) = daily_stream(store, org, name).await;
    store
        .set_grants(&org.id, &stream.id, grants, at(1))
        .await
        .unwrap();
    stream.id
}

async fn finance_team_with(store: &dyn Store, org: &TestOrg, members: &[&str]) {
    store.create_team(&org.id, "finance", at(0)).await.unwrap();
    for member in members {
        store
            .set_team_member(&org.id, "finance", member, true)
            .await
            .unwrap();
    }
}

pub async fn the_creator_manages_a_new_stream_and_its_grants_are_added(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let zoe = new_user(store, &org, "zoe", Role::Member).await;
    let bob = new_user(store, &org, "bob", Role::Member).await;
    finance_team_with(store, &org, &[]).await;
    let grants = [
        grant(team("finance"), Access::Read),
        grant(user("bob"), Access::Manage),
        grant(Grantee::Org, Access::Read),
    ];
    let id = StreamId::generate();
    let daily = definition("Revenue", Frequency::Daily);
    store
        .create_stream(&org.id, &zoe, &id, &daily, &new_key(), &grants, at(3))
        .await
        .unwrap();

    let listed = store.list_grants(&org.id, &id).await.unwrap();
    assert_eq!(
        grant_texts(&listed),
        [
            "org:read",
            "team:finance:read",
            "user:bob:manage",
            "user:zoe:manage"
        ]
    );
    assert!(listed.iter().all(|g| g.created_at == at(3)));
    for who in [&zoe, &bob] {
        assert_eq!(
            store.stream_access(&org.id, who, &id).await.unwrap(),
            Some(Access::Manage)
        );
    }
}

pub async fn the_creator_keeps_manage_whatever_the_grants_at_creation_say(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let zoe = new_user(store, &org, "zoe", Role::Member).await;
    let id = StreamId::generate();
    let daily = definition("Revenue", Frequency::Daily);
    let grants = [
        grant(user("zoe"), Access::Read),
        grant(Grantee::Org, Access::Read),
    ];
    store
        .create_stream(&org.id, &zoe, &id, &daily, &new_key(), &grants, at(1))
        .await
        .unwrap();

    assert_eq!(
        texts(store, &org, &id).await,
        ["org:read", "user:zoe:manage"]
    );
    assert_eq!(
        store.stream_access(&org.id, &zoe, &id).await.unwrap(),
        Some(Access::Manage)
    );
}

pub async fn set_grants_adds_grants_and_changes_existing_ones(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let zoe = new_user(store, &org, "zoe", Role::Member).await;
    finance_team_with(store, &org, &[]).await;
    let stream = granted(store, &org, "Revenue", &[grant(user("zoe"), Access::Read)]).await;
    assert_eq!(
        texts(store, &org, &stream).await,
        ["user:ada:manage", "user:zoe:read"]
    );

    let more = [
        grant(user("zoe"), Access::Manage),
        grant(team("finance"), Access::Read),
    ];
    store
        .set_grants(&org.id, &stream, &more, at(2))
        .await
        .unwrap();
    let listed = store.list_grants(&org.id, &stream).await.unwrap();
    assert_eq!(
        grant_texts(&listed),
        ["team:finance:read", "user:ada:manage", "user:zoe:manage"]
    );
    let zoes = listed.iter().find(|g| g.grantee == user("zoe")).unwrap();
    assert_eq!(
        zoes.created_at,
        at(1),
        "a changed grant keeps when it was made"
    );
    let access = || store.stream_access(&org.id, &zoe, &stream);
    assert_eq!(access().await.unwrap(), Some(Access::Manage));

    let less = [grant(user("zoe"), Access::Read)];
    store
        .set_grants(&org.id, &stream, &less, at(3))
        .await
        .unwrap();
    assert_eq!(
        access().await.unwrap(),
        Some(Access::Read),
        "access can go down too"
    );
    store
        .set_grants(&org.id, &stream, &[], at(4))
        .await
        .unwrap();
    assert_eq!(texts(store, &org, &stream).await.len(), 3);
}

pub async fn remove_grant_removes_one_grant(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "zoe", Role::Member).await;
    finance_team_with(store, &org, &[]).await;
    let grants = [
        grant(user("zoe"), Access::Read),
        grant(Grantee::Org, Access::Read),
    ];
    let stream = granted(store, &org, "Revenue", &grants).await;

    store
        .remove_grant(&org.id, &stream, &user("zoe"))
        .await
        .unwrap();
    assert_eq!(
        texts(store, &org, &stream).await,
        ["org:read", "user:ada:manage"]
    );
    assert_not_found(store.remove_grant(&org.id, &stream, &user("zoe")).await);
    store
        .remove_grant(&org.id, &stream, &Grantee::Org)
        .await
        .unwrap();
    assert_eq!(texts(store, &org, &stream).await, ["user:ada:manage"]);
    assert_not_found(store.remove_grant(&org.id, &stream, &team("finance")).await);
    assert_not_found(store.remove_grant(&org.id, &stream, &team("nobody")).await);
    assert_not_found(store.remove_grant(&org.id, &stream, &user("nobody")).await);
}

pub async fn grants_need_an_existing_stream_and_grantee(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    new_user(store, &org, "zoe", Role::Member).await;
    let unknown = StreamId::generate();
    let to_zoe = [grant(user("zoe"), Access::Read)];
    assert_not_found(store.set_grants(&org.id, &unknown, &to_zoe, at(1)).await);
    assert_not_found(store.list_grants(&org.id, &unknown).await);
    assert_not_found(store.remove_grant(&org.id, &unknown, &user("zoe")).await);

    let (stream, _) = daily_stream(store, &org, "Revenue").await;
    let partly_unknown = [
        grant(user("zoe"), Access::Read),
        grant(team("nobody"), Access::Read),
    ];
    assert_not_found(
        store
            .set_grants(&org.id, &stream.id, &partly_unknown, at(1))
            .await,
    );
    let to_nobody = [grant(user("nobody"), Access::Read)];
    assert_not_found(
        store
            .set_grants(&org.id, &stream.id, &to_nobody, at(1))
            .await,
    );
    assert_eq!(
        texts(store, &org, &stream.id).await,
        ["user:ada:manage"],
        "a refused call adds none of its grants"
    );
}

pub async fn accesses_reach_a_user_directly_through_a_team_and_through_the_org(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let zoe = new_user(store, &org, "zoe", Role::Member).await;
    let bob = new_user(store, &org, "bob", Role::Member).await;
    finance_team_with(store, &org, &["zoe"]).await;
    let direct = granted(store, &org, "Direct", &[grant(user("zoe"), Access::Read)]).await;
    let by_team = granted(
        store,
        &org,
        "Team",
        &[grant(team("finance"), Access::Manage)],
    )
    .await;
    let by_org = granted(store, &org, "Org", &[grant(Grantee::Org, Access::Read)]).await;
    let hidden = granted(store, &org, "Hidden", &[]).await;

    let expected = HashMap::from([
        (direct.clone(), Access::Read),
        (by_team.clone(), Access::Manage),
        (by_org.clone(), Access::Read),
    ]);
    assert_eq!(
        store.stream_accesses(&org.id, &zoe).await.unwrap(),
        expected
    );
    for (stream, access) in [
        (&direct, Some(Access::Read)),
        (&by_team, Some(Access::Manage)),
        (&by_org, Some(Access::Read)),
        (&hidden, None),
    ] {
        assert_eq!(
            store.stream_access(&org.id, &zoe, stream).await.unwrap(),
            access
        );
    }
    assert_eq!(
        store.stream_accesses(&org.id, &bob).await.unwrap(),
        HashMap::from([(by_org, Access::Read)]),
        "bob is in no team and has no grant of his own"
    );
}

pub async fn the_strongest_grant_reaching_a_user_wins(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let zoe = new_user(store, &org, "zoe", Role::Member).await;
    finance_team_with(store, &org, &["zoe"]).await;
    let through_team = [
        grant(Grantee::Org, Access::Read),
        grant(team("finance"), Access::Manage),
        grant(user("zoe"), Access::Read),
    ];
    let first = granted(store, &org, "First", &through_team).await;
    let through_org = [
        grant(Grantee::Org, Access::Manage),
        grant(user("zoe"), Access::Read),
    ];
    let second = granted(store, &org, "Second", &through_org).await;

    let expected = HashMap::from([
        (first.clone(), Access::Manage),
        (second.clone(), Access::Manage),
    ]);
    assert_eq!(
        store.stream_accesses(&org.id, &zoe).await.unwrap(),
        expected
    );
    for stream in [&first, &second] {
        assert_eq!(
            store.stream_access(&org.id, &zoe, stream).await.unwrap(),
            Some(Access::Manage)
        );
    }
}

pub async fn leaving_a_team_takes_away_what_it_granted(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let zoe = new_user(store, &org, "zoe", Role::Member).await;
    finance_team_with(store, &org, &["zoe"]).await;
    let stream = granted(
        store,
        &org,
        "Revenue",
        &[grant(team("finance"), Access::Read)],
    )
    .await;
    assert_eq!(
        store.stream_access(&org.id, &zoe, &stream).await.unwrap(),
        Some(Access::Read)
    );

    store
        .set_team_member(&org.id, "finance", "zoe", false)
        .await
        .unwrap();
    assert_eq!(
        store.stream_access(&org.id, &zoe, &stream).await.unwrap(),
        None
    );
    assert!(
        store
            .stream_accesses(&org.id, &zoe)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn an_admins_implicit_access_is_not_a_grant(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let bob: UserId = new_user(store, &org, "bob", Role::Member).await;
    let id = StreamId::generate();
    let daily = definition("Revenue", Frequency::Daily);
    store
        .create_stream(&org.id, &bob, &id, &daily, &new_key(), &[], at(1))
        .await
        .unwrap();

    assert_eq!(
        store.stream_access(&org.id, &org.admin, &id).await.unwrap(),
        None
    );
    assert!(
        store
            .stream_accesses(&org.id, &org.admin)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.stream_accesses(&org.id, &bob).await.unwrap(),
        HashMap::from([(id, Access::Manage)])
    );
}
