//! Free text from clients and runners is bounded, and echoes of input are cut with a marker.
//!
//! A rejection reason quotes at most 64 bytes of what the publisher sent, then `…` and
//! the total length, so a committed batch's reply always fits the client's 4 MiB
//! message limit; over-long names are refused before any lookup, with the limit.

use kpistream::proto;
use prost::Message;
use tonic::Code;

use crate::common::{TestServer, day, point, stream_request};

/// The longest a per-point rejection reason may be, in bytes.
const MAX_REASON_BYTES: usize = 300;

#[tokio::test(flavor = "multi_thread")]
async fn a_100_kb_period_is_rejected_with_a_short_reason_cut_with_a_marker() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Huge period").await;
    let client = server.anonymous_client().await;
    let huge = format!("2026-{}", "1".repeat(100 * 1024));
    let answer = client
        .publish(
            &credential,
            vec![point(&huge, "1"), point("2026-11-23", "2")],
            false,
        )
        .await
        .expect("the batch is committed");
    assert_eq!(answer.accepted, 1, "{stream}");
    let reason = &answer.rejected[0].reason;
    assert!(reason.len() <= MAX_REASON_BYTES, "{} bytes", reason.len());
    assert_eq!(
        reason,
        &format!(
            "\"2026-{}\"… (102405 characters) is not a period: write 2026-11-23 (daily), 2026-W48 (weekly), 2026-11 (monthly) or 2026-Q4 (quarterly)",
            "1".repeat(59)
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_value_is_rejected_with_a_short_reason() {
    let server = TestServer::start();
    let (_, credential) = server.daily_stream("Huge value").await;
    let client = server.anonymous_client().await;
    let answer = client
        .publish(
            &credential,
            vec![
                point("2026-11-23", &format!("{}nan", "-".repeat(100_000))),
                point("2026-11-24", &format!("1.{}", "0".repeat(100_001))),
                point("2026-11-25", &format!("1e{}", "9".repeat(100_001))),
            ],
            false,
        )
        .await
        .expect("the batch is committed");
    assert_eq!(answer.rejected.len(), 3, "{answer:?}");
    for rejection in &answer.rejected {
        assert!(
            rejection.reason.len() <= MAX_REASON_BYTES,
            "{}",
            rejection.reason
        );
        assert!(
            rejection.reason.contains("… (100003 characters)"),
            "{}",
            rejection.reason
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_10000_point_batch_of_long_bad_periods_gets_a_reply_far_under_the_message_limit() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Many bad periods").await;
    let client = server.anonymous_client().await;
    // 10,000 points of 370-byte periods fill most of a 4 MiB request. Echoed whole,
    // their reasons would make a reply over the client's 4 MiB limit: the batch would
    // be stored and the client would see an error.
    let points: Vec<proto::Point> = (0..10_000)
        .map(|n| point(&format!("{}-{}", day(n), "9".repeat(359)), "1"))
        .collect();
    let request = credential.seal(&kpistream::client::new_batch(points));
    assert!(request.encoded_len() < 4 * 1024 * 1024 - 1024);
    let answer = crate::common::publish_envelope(&client, request, false)
        .await
        .expect("the reply fits the client's message limit");
    assert_eq!(answer.rejected.len(), 10_000);
    assert!(
        answer
            .rejected
            .iter()
            .all(|r| r.reason.len() <= MAX_REASON_BYTES)
    );
    let size = answer.encoded_len();
    assert!(size < 2_500_000, "the reply is {size} bytes");
    let admin = server.client().await;
    assert!(crate::common::values(&admin, &stream).await.is_empty());
}

/// Asserts that a call was refused as too long, naming the limit, in a short message.
fn refused_as_too_long<T: std::fmt::Debug>(what: &str, result: Result<T, tonic::Status>) {
    let err = result.expect_err(what);
    assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    assert!(err.message().len() <= MAX_REASON_BYTES, "{what}: {err:?}");
    assert!(
        err.message().contains("characters long; at most"),
        "{what}: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn over_long_names_and_texts_are_refused_with_invalid_argument_before_any_lookup() {
    let server = TestServer::start();
    let client = server.client().await;
    let (stream, _) = server.daily_stream("Named").await;
    let long = "n".repeat(100 * 1024);
    let admin = || client.admin();

    let mut request = stream_request(&"s".repeat(201), proto::Frequency::Daily, "UTC");
    refused_as_too_long(
        "a stream name",
        admin().create_stream(request.clone()).await,
    );
    request.name = "Fine".into();
    request.description = "d".repeat(4001);
    refused_as_too_long(
        "a description",
        admin().create_stream(request.clone()).await,
    );
    request.description = String::new();
    request.category = long.clone();
    refused_as_too_long("a category", admin().create_stream(request.clone()).await);
    request.category = String::new();
    request.grants = vec![format!("user:{long}")];
    refused_as_too_long("a grant", admin().create_stream(request).await);

    let user = proto::CreateUserRequest {
        name: long.clone(),
        role: "member".into(),
    };
    refused_as_too_long("a new user", admin().create_user(user).await);
    let role = proto::SetUserRoleRequest {
        name: long.clone(),
        role: "member".into(),
    };
    refused_as_too_long("a user looked up", admin().set_user_role(role).await);
    let gone = proto::UserRef { name: long.clone() };
    refused_as_too_long("a user to delete", admin().delete_user(gone).await);
    let team = proto::TeamMemberRequest {
        team: long.clone(),
        user: "admin".into(),
    };
    refused_as_too_long("a team", admin().add_team_member(team).await);
    let rename = proto::RenameCategoryRequest {
        name: long.clone(),
        new_name: "x".into(),
    };
    refused_as_too_long(
        "a category to rename",
        admin().rename_category(rename).await,
    );
    let token = proto::RevokeTokenRequest { id: long.clone() };
    refused_as_too_long("a token id", admin().revoke_token(token).await);
    let grant = proto::GrantRequest {
        stream_id: stream.clone(),
        grant: format!("team:{long}:read"),
    };
    refused_as_too_long("a grant", admin().add_grant(grant).await);
    let list = proto::ListStreamsRequest {
        name_contains: long.clone(),
        ..Default::default()
    };
    refused_as_too_long("a name filter", admin().list_streams(list).await);
    let audit = proto::ListAuditRequest {
        actor: long.clone(),
        ..Default::default()
    };
    refused_as_too_long("an audit actor", admin().list_audit(audit).await);

    // A long text in a field that is parsed, not looked up, is echoed cut short.
    let revisions = proto::ListRevisionsRequest {
        stream_id: stream,
        period: long.clone(),
        ..Default::default()
    };
    let err = client
        .query()
        .list_revisions(revisions)
        .await
        .expect_err("not a period");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().len() <= MAX_REASON_BYTES, "{err:?}");
    assert!(err.message().contains("… (102400 characters)"), "{err:?}");
}
