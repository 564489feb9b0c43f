//! Nothing crosses organisations: another organisation's streams, keys, grants, users,
//! teams, tokens, categories, connectors and audit entries are not found from this one,
//! and calls made from it change nothing there.

use super::users::grant_texts;
use super::{
    assert_conflict, assert_not_found, at, daily_stream, definition, new_key, new_org, new_token,
    new_user,
};
use crate::access::{Access, AuditEvent, AuditFilter, GrantSpec, Grantee};
use crate::auth::Role;
use crate::ids::StreamId;
use crate::period::Frequency;
use crate::runner_state::{ConnectorName, ConnectorState, LeaseTtl, RunReport, RunnerId};
use crate::stream::{StreamDefinition, StreamUpdate};

use crate::store::{NewToken, Store};

fn org_read() -> GrantSpec {
    GrantSpec {
        grantee: Grantee::Org,
        access: Access::Read,
    }
}

pub async fn streams_are_invisible_to_another_organisation(store: &dyn Store) {
    let acme = new_org(store, "Acme").await;
    let globex = new_org(store, "Globex").await;
    let (stream, _) = daily_stream(store, &acme, "Revenue").await;

    assert!(store.list_streams(&globex.id).await.unwrap().is_empty());
    assert_not_found(store.get_stream(&globex.id, &stream.id).await);
    let rename = StreamUpdate {
        name: Some("Taken".into()),
        ..StreamUpdate::default()
    };
    assert_not_found(
        store
            .update_stream(&globex.id, &stream.id, &rename, at(1))
            .await,
    );
    assert_not_found(
        store
            .set_stream_disabled(&globex.id, &stream.id, true, at(1))
            .await,
    );
    assert_not_found(store.delete_stream(&globex.id, &stream.id).await);

    let still = store.get_stream(&acme.id, &stream.id).await.unwrap();
    assert_eq!(still.definition.name, "Revenue");
    assert!(!still.disabled);
    assert_eq!(still.updated_at, at(0));
}

pub async fn keys_and_grants_are_invisible_to_another_organisation(store: &dyn Store) {
    let acme = new_org(store, "Acme").await;
    let globex = new_org(store, "Globex").await;
    let (stream, key) = daily_stream(store, &acme, "Revenue").await;

    assert_not_found(store.list_keys(&globex.id, &stream.id).await);
    assert_not_found(
        store
            .add_key(&globex.id, &stream.id, &new_key(), at(1))
            .await,
    );
    assert_not_found(store.revoke_key(&globex.id, &stream.id, &key, at(1)).await);
    assert_not_found(store.list_grants(&globex.id, &stream.id).await);
    assert_not_found(
        store
            .set_grants(&globex.id, &stream.id, &[org_read()], at(1))
            .await,
    );
    let ada = Grantee::User("ada".into());
    assert_not_found(store.remove_grant(&globex.id, &stream.id, &ada).await);

    let keys = store.list_keys(&acme.id, &stream.id).await.unwrap();
    let keys: Vec<_> = keys.iter().map(|k| (&k.key_id, k.revoked_at)).collect();
    assert_eq!(keys, [(&key, None)]);
    let grants = store.list_grants(&acme.id, &stream.id).await.unwrap();
    assert_eq!(grant_texts(&grants), ["user:ada:manage"]);
}

pub async fn users_and_teams_are_invisible_to_another_organisation(store: &dyn Store) {
    let acme = new_org(store, "Acme").await;
    let globex = new_org(store, "Globex").await;
    new_user(store, &acme, "zoe", Role::Member).await;
    store.create_team(&acme.id, "finance", at(0)).await.unwrap();
    store
        .set_team_member(&acme.id, "finance", "zoe", true)
        .await
        .unwrap();

    let names: Vec<_> = store
        .list_users(&globex.id)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    assert_eq!(names, [(globex.admin.clone(), "ada".to_owned())]);
    assert!(store.list_teams(&globex.id).await.unwrap().is_empty());
    assert_not_found(store.set_user_role(&globex.id, "zoe", Role::Admin).await);
    assert_not_found(store.delete_user(&globex.id, "zoe").await);
    assert_not_found(store.delete_team(&globex.id, "finance").await);
    assert_not_found(
        store
            .set_team_member(&globex.id, "finance", "ada", true)
            .await,
    );
    store.create_team(&globex.id, "ops", at(1)).await.unwrap();
    assert_not_found(store.set_team_member(&globex.id, "ops", "zoe", true).await);
    let (own, _) = daily_stream(store, &globex, "Visits").await;
    for grantee in [Grantee::User("zoe".into()), Grantee::Team("finance".into())] {
        let grant = [GrantSpec {
            grantee,
            access: Access::Read,
        }];
        assert_not_found(store.set_grants(&globex.id, &own.id, &grant, at(2)).await);
    }

    let acme_users = store.list_users(&acme.id).await.unwrap();
    let roles: Vec<_> = acme_users
        .iter()
        .map(|u| (u.name.as_str(), u.role))
        .collect();
    assert_eq!(roles, [("ada", Role::Admin), ("zoe", Role::Member)]);
    let teams = store.list_teams(&acme.id).await.unwrap();
    assert_eq!(teams.len(), 1);
    assert_eq!(teams[0].members, ["zoe"]);
}

pub async fn tokens_are_invisible_to_another_organisation(store: &dyn Store) {
    let acme = new_org(store, "Acme").await;
    let globex = new_org(store, "Globex").await;
    new_user(store, &acme, "bob", Role::Member).await;
    let (id, token) = new_token(store, &acme, "bob", None).await;

    let listed = store.list_tokens(&globex.id, None).await.unwrap();
    let listed: Vec<_> = listed
        .iter()
        .map(|t| (t.user.as_str(), t.name.as_str()))
        .collect();
    assert_eq!(listed, [("ada", "first")], "globex's own admin token only");
    assert!(
        store
            .list_tokens(&globex.id, Some("bob"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_not_found(store.token(&globex.id, &id).await);
    assert_not_found(store.revoke_token(&globex.id, &id, at(1)).await);
    let for_bob = NewToken {
        user: "bob".into(),
        name: "stolen".into(),
        hash: rand::random(),
        expires_at: None,
    };
    assert_not_found(store.create_token(&globex.id, &for_bob, at(1)).await);

    let principal = store
        .principal_for_token(&token, at(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (principal.name.as_str(), &principal.org_id),
        ("bob", &acme.id)
    );
    assert_eq!(store.token(&acme.id, &id).await.unwrap().revoked_at, None);
}

pub async fn categories_are_invisible_to_another_organisation(store: &dyn Store) {
    let acme = new_org(store, "Acme").await;
    let globex = new_org(store, "Globex").await;
    store
        .create_category(&acme.id, "Growth", at(0))
        .await
        .unwrap();

    assert!(store.list_categories(&globex.id).await.unwrap().is_empty());
    assert_not_found(store.rename_category(&globex.id, "Growth", "Taken").await);
    assert_not_found(store.delete_category(&globex.id, "Growth").await);
    let in_growth = StreamDefinition {
        category: Some("Growth".into()),
        ..definition("Visits", Frequency::Daily)
    };
    let created = store
        .create_stream(
            &globex.id,
            &globex.admin,
            &StreamId::generate(),
            &in_growth,
            &new_key(),
            &[],
            at(1),
        )
        .await;
    assert_not_found(created);

    let categories = store.list_categories(&acme.id).await.unwrap();
    let names: Vec<_> = categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Growth"]);
}

pub async fn an_org_grant_reaches_only_its_own_organisation(store: &dyn Store) {
    let acme = new_org(store, "Acme").await;
    let globex = new_org(store, "Globex").await;
    let acme_zoe = new_user(store, &acme, "zoe", Role::Member).await;
    let globex_zoe = new_user(store, &globex, "zoe", Role::Member).await;
    let (stream, _) = daily_stream(store, &acme, "Revenue").await;
    store
        .set_grants(&acme.id, &stream.id, &[org_read()], at(1))
        .await
        .unwrap();

    assert_eq!(
        store
            .stream_access(&acme.id, &acme_zoe, &stream.id)
            .await
            .unwrap(),
        Some(Access::Read)
    );
    assert!(
        store
            .stream_accesses(&globex.id, &globex_zoe)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .stream_access(&globex.id, &globex_zoe, &stream.id)
            .await
            .unwrap(),
        None
    );
}

pub async fn connectors_of_one_name_are_separate_per_organisation(store: &dyn Store) {
    let acme = new_org(store, "Acme").await;
    let globex = new_org(store, "Globex").await;
    let crm = ConnectorName::parse("crm").unwrap();
    let (r1, r2) = (
        RunnerId::parse("r1").unwrap(),
        RunnerId::parse("r2").unwrap(),
    );
    let ttl = LeaseTtl::new(60).unwrap();
    let slot = at(0);

    let acme_lease = store
        .acquire_lease(&acme.id, &crm, slot, &r1, ttl, at(1))
        .await
        .unwrap();
    assert!(acme_lease.granted);
    let globex_lease = store
        .acquire_lease(&globex.id, &crm, slot, &r2, ttl, at(2))
        .await
        .unwrap();
    assert!(
        globex_lease.granted,
        "acme's lease does not hold globex's crm"
    );
    let acme_run = RunReport {
        runner: r1.clone(),
        slot,
        started_at: at(1),
        ended_at: at(3),
        records_pulled: 1,
        points_published: 1,
        points_rejected: 0,
        error: None,
        new_cursor: Some("9".into()),
        max_consecutive_failures: 1,
        interrupted: false,
        manual: false,
        backfill: None,
    };
    assert_conflict(store.report_run(&globex.id, &crm, &acme_run, at(3)).await);
    assert!(!store.release_lease(&globex.id, &crm, &r1).await.unwrap());
    store
        .report_run(&acme.id, &crm, &acme_run, at(3))
        .await
        .unwrap();

    let globex_state = store.connector_state(&globex.id, &crm).await.unwrap();
    assert_eq!(
        globex_state,
        ConnectorState {
            unfinished_slot: Some(slot),
            ..ConnectorState::default()
        },
        "globex's crm has its own cursor and lease"
    );
    assert!(
        store
            .list_runs(&globex.id, &crm, 10, None)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .set_connector_enabled(&globex.id, &crm, false, at(4))
        .await
        .unwrap();
    let acme_state = store.connector_state(&acme.id, &crm).await.unwrap();
    assert!(acme_state.enabled);
    assert_eq!(acme_state.cursor.as_deref(), Some("9"));
    assert_eq!(
        store
            .list_runs(&acme.id, &crm, 10, None)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn the_audit_log_is_per_organisation(store: &dyn Store) {
    let acme = new_org(store, "Acme").await;
    let globex = new_org(store, "Globex").await;
    for (org, action) in [(&acme, "stream.created"), (&globex, "user.created")] {
        let event = AuditEvent {
            org: &org.id,
            actor_id: &org.admin,
            actor_name: "ada",
            action,
            target_kind: "stream",
            target_id: "str_1".into(),
            detail: String::new(),
        };
        store.record_audit(&event, at(1)).await.unwrap();
    }
    for (org, action) in [(&acme, "stream.created"), (&globex, "user.created")] {
        let entries = store
            .list_audit(&org.id, &AuditFilter::default())
            .await
            .unwrap();
        let actions: Vec<_> = entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, [action]);
    }
}
