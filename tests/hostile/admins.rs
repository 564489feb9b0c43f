//! The last admin of an organisation cannot be demoted or deleted.
//!
//! Taking the admin role away (a demotion to member or runner, or a deletion) is
//! refused with FAILED_PRECONDITION when it would leave the organisation without an
//! admin, and the check is made in the same write transaction as the change, so two
//! admins demoting each other at once leave exactly one.

use kpistream::client::{Client, Role};
use tonic::Code;

use crate::common::TestServer;

/// Creates a user with `role` and connects a client with a token of theirs.
async fn user(server: &TestServer, admin: &Client, name: &str, role: Role) -> Client {
    admin
        .create_user(name, role)
        .await
        .expect("the user is created");
    let (_, secret) = admin
        .create_token("test", Some(name), None)
        .await
        .expect("a token for the user");
    Client::connect(&server.grpc, Some(secret))
        .await
        .expect("the client connects")
}

/// The names of the organisation's admins.
async fn admins(client: &Client) -> Vec<String> {
    let users = client.users(0).await.expect("the users");
    users
        .into_iter()
        .filter(|u| u.role == "admin")
        .map(|u| u.name)
        .collect()
}

/// Asserts that a call was refused because `name` is the only admin.
fn refused_as_last_admin<T: std::fmt::Debug>(name: &str, result: Result<T, tonic::Status>) {
    let err = result.expect_err("the last admin stays");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().starts_with(&format!(
            "user {name:?} is the only admin of organisation org_"
        )),
        "{err:?}"
    );
    assert!(
        err.message()
            .ends_with(": make another user an admin first"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_admin_cannot_demote_themselves() {
    let server = TestServer::start();
    let root = server.client().await;
    let me = root.who_am_i().await.expect("WhoAmI").user;
    for role in [Role::Member, Role::Runner] {
        refused_as_last_admin(&me, root.set_user_role(&me, role).await);
    }
    assert_eq!(admins(&root).await, [me]);
    root.create_category("Still an admin")
        .await
        .expect("the admin can still administer the organisation");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_admin_cannot_delete_themselves() {
    let server = TestServer::start();
    let root = server.client().await;
    let me = root.who_am_i().await.expect("WhoAmI").user;
    refused_as_last_admin(&me, root.delete_user(&me).await);
    assert_eq!(admins(&root).await, [me]);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_two_admins_one_can_be_demoted_and_then_the_other_is_the_last() {
    let server = TestServer::start();
    let root = server.client().await;
    let me = root.who_am_i().await.expect("WhoAmI").user;
    let grace = user(&server, &root, "grace", Role::Admin).await;

    grace
        .set_user_role(&me, Role::Member)
        .await
        .expect("one of two admins is demoted");
    assert_eq!(admins(&grace).await, ["grace"]);
    refused_as_last_admin("grace", grace.set_user_role("grace", Role::Member).await);

    // Promoted again, the first admin may delete the second.
    grace.set_user_role(&me, Role::Admin).await.unwrap();
    root.delete_user("grace")
        .await
        .expect("one of two admins is deleted");
    assert_eq!(admins(&root).await, [me]);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_admins_demoting_each_other_at_once_leave_exactly_one() {
    let server = TestServer::start();
    let root = server.client().await;
    let me = root.who_am_i().await.expect("WhoAmI").user;
    let grace = user(&server, &root, "grace", Role::Admin).await;
    for round in 0..10 {
        let (a, b) = tokio::join!(
            root.set_user_role("grace", Role::Member),
            grace.set_user_role(&me, Role::Member),
        );
        assert!(a.is_ok() != b.is_ok(), "round {round}: {a:?} {b:?}");
        // The loser is refused as the last admin, or, when the winner's change
        // committed before the loser's call began, as a member who may not change roles.
        let refused = a.as_ref().err().or(b.as_ref().err()).unwrap().code();
        assert!(
            matches!(refused, Code::FailedPrecondition | Code::PermissionDenied),
            "round {round}: {a:?} {b:?}"
        );
        let left = admins(&root).await;
        assert_eq!(left.len(), 1, "round {round}: {left:?}");
        // Whoever is left makes the other an admin again for the next round.
        let (survivor, demoted) = match a.is_ok() {
            true => (&root, "grace"),
            false => (&grace, me.as_str()),
        };
        survivor.set_user_role(demoted, Role::Admin).await.unwrap();
    }
}
