//! The audit log: recorded actions, read back oldest first, filtered.

use super::{TestOrg, at, new_org, new_user};
use crate::access::{AuditEvent, AuditFilter};
use crate::auth::Role;
use crate::ids::UserId;

use crate::store::Store;

/// Records `action` on `target` by `actor` at second `second`.
async fn record(
    store: &dyn Store,
    org: &TestOrg,
    (actor_id, actor_name): (&UserId, &str),
    (action, target_id): (&'static str, &str),
    second: i64,
) {
    let event = AuditEvent {
        org: &org.id,
        actor_id,
        actor_name,
        action,
        target_kind: "stream",
        target_id: target_id.into(),
        detail: format!("{action} #{second}"),
    };
    store.record_audit(&event, at(second)).await.unwrap();
}

/// The details of the entries `filter` selects, which name each entry.
async fn details(store: &dyn Store, org: &TestOrg, filter: AuditFilter) -> Vec<String> {
    let entries = store.list_audit(&org.id, &filter).await.unwrap();
    entries.into_iter().map(|e| e.detail).collect()
}

pub async fn audit_entries_are_listed_oldest_first_within_the_newest_limit(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let ada = (&org.admin, "ada");
    record(store, &org, ada, ("stream.created", "str_1"), 1).await;
    record(store, &org, ada, ("stream.updated", "str_1"), 2).await;
    record(store, &org, ada, ("stream.deleted", "str_1"), 3).await;

    let entries = store
        .list_audit(&org.id, &AuditFilter::default())
        .await
        .unwrap();
    let listed: Vec<_> = entries
        .iter()
        .map(|e| {
            let texts = [&e.actor, &e.action, &e.target_kind, &e.target_id, &e.detail];
            (e.at, texts.map(String::as_str))
        })
        .collect();
    assert_eq!(
        listed,
        [
            (
                at(1),
                [
                    "ada",
                    "stream.created",
                    "stream",
                    "str_1",
                    "stream.created #1"
                ]
            ),
            (
                at(2),
                [
                    "ada",
                    "stream.updated",
                    "stream",
                    "str_1",
                    "stream.updated #2"
                ]
            ),
            (
                at(3),
                [
                    "ada",
                    "stream.deleted",
                    "stream",
                    "str_1",
                    "stream.deleted #3"
                ]
            ),
        ],
        "a limit of 0 leaves the number to the store (all 3 here)"
    );
    let newest = |limit| AuditFilter {
        limit,
        ..AuditFilter::default()
    };
    assert_eq!(
        details(store, &org, newest(2)).await,
        ["stream.updated #2", "stream.deleted #3"]
    );
    assert_eq!(details(store, &org, newest(1)).await, ["stream.deleted #3"]);
}

pub async fn audit_pages_go_back_from_the_newest_entry(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let ada = (&org.admin, "ada");
    for second in 1..=5 {
        record(store, &org, ada, ("stream.updated", "str_1"), second).await;
    }
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let filter = AuditFilter {
            limit: 2,
            before,
            ..AuditFilter::default()
        };
        let page = store.list_audit(&org.id, &filter).await.unwrap();
        let Some(oldest) = page.first() else { break };
        before = Some(oldest.id);
        pages.push(page.into_iter().map(|e| e.detail).collect::<Vec<_>>());
    }
    let d = |n: i64| format!("stream.updated #{n}");
    assert_eq!(
        pages,
        [vec![d(4), d(5)], vec![d(2), d(3)], vec![d(1)]],
        "each page the newest before the last, oldest first within"
    );
}

pub async fn audit_entries_are_filtered_by_target_actor_and_time(store: &dyn Store) {
    let org = new_org(store, "Acme").await;
    let zoe_id = new_user(store, &org, "zoe", Role::Admin).await;
    let (ada, zoe) = ((&org.admin, "ada"), (&zoe_id, "zoe"));
    record(store, &org, ada, ("e1", "str_1"), 1).await;
    record(store, &org, zoe, ("e2", "str_2"), 2).await;
    record(store, &org, ada, ("e3", "str_2"), 3).await;
    record(store, &org, zoe, ("e4", "str_1"), 4).await;

    let filter = |target: Option<&str>, actor: Option<&str>, times: (Option<i64>, Option<i64>)| {
        AuditFilter {
            target: target.map(str::to_owned),
            actor: actor.map(str::to_owned),
            since: times.0.map(at),
            until: times.1.map(at),
            limit: 0,
            before: None,
        }
    };
    let any_time = (None, None);
    let cases = [
        (
            filter(Some("str_2"), None, any_time),
            vec!["e2 #2", "e3 #3"],
        ),
        (filter(None, Some("zoe"), any_time), vec!["e2 #2", "e4 #4"]),
        (filter(Some("str_1"), Some("zoe"), any_time), vec!["e4 #4"]),
        (
            filter(None, None, (Some(2), None)),
            vec!["e2 #2", "e3 #3", "e4 #4"],
        ),
        (
            filter(None, None, (None, Some(3))),
            vec!["e1 #1", "e2 #2", "e3 #3"],
        ),
        (
            filter(None, None, (Some(2), Some(3))),
            vec!["e2 #2", "e3 #3"],
        ),
        (filter(None, None, (Some(5), None)), vec![]),
        (filter(Some("str_3"), None, any_time), vec![]),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            details(store, &org, filter.clone()).await,
            expected,
            "{filter:?}"
        );
    }
    let newest_of_str_1 = AuditFilter {
        limit: 1,
        ..filter(Some("str_1"), None, any_time)
    };
    assert_eq!(details(store, &org, newest_of_str_1).await, ["e4 #4"]);
}
