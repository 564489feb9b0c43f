//! Administration and reading, against the real server binary: every call needs a
//! valid token; categories, stream updates, keys, stream details and filters behave as
//! an admin expects; the HTTP port and the CLI do what the docs say.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{TestServer, cli, point, show, stream_request, values};
use ed25519_dalek::SigningKey;
use kpistream::client::Credential;
use kpistream::ids::{KeyId, StreamId};
use kpistream::proto;
use kpistream::proto::Frequency::{Daily, Weekly};
use kpistream::proto::query_client::QueryClient;
use kpistream::proto::stream_admin_client::StreamAdminClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// An interceptor that sends `authorization: <header>` (or nothing).
fn with_header(
    header: Option<&'static str>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        if let Some(header) = header {
            request
                .metadata_mut()
                .insert("authorization", header.parse().unwrap());
        }
        Ok(request)
    }
}

/// Calls every StreamAdmin and Query RPC once with `header`, on a real stream and key,
/// and returns each call's name with its outcome.
async fn call_every_rpc(
    channel: Channel,
    header: Option<&'static str>,
    stream_id: &str,
    key_id: &str,
) -> Vec<(&'static str, Result<(), Status>)> {
    let admin = || StreamAdminClient::with_interceptor(channel.clone(), with_header(header));
    let query = || QueryClient::with_interceptor(channel.clone(), with_header(header));
    let sref = || proto::StreamRef {
        stream_id: stream_id.to_owned(),
    };
    fn done<T>(r: Result<tonic::Response<T>, Status>) -> Result<(), Status> {
        r.map(drop)
    }
    vec![
        (
            "CreateStream",
            done(
                admin()
                    .create_stream(stream_request("Unauthorised", Daily, "UTC"))
                    .await,
            ),
        ),
        (
            "ListStreams",
            done(
                admin()
                    .list_streams(proto::ListStreamsRequest::default())
                    .await,
            ),
        ),
        ("GetStream", done(admin().get_stream(sref()).await)),
        (
            "UpdateStream",
            done(
                admin()
                    .update_stream(proto::UpdateStreamRequest {
                        stream_id: stream_id.to_owned(),
                        name: Some("Renamed".into()),
                        ..Default::default()
                    })
                    .await,
            ),
        ),
        ("DisableStream", done(admin().disable_stream(sref()).await)),
        ("EnableStream", done(admin().enable_stream(sref()).await)),
        ("RotateKey", done(admin().rotate_key(sref()).await)),
        (
            "AddKey",
            done(
                admin()
                    .add_key(proto::AddKeyRequest {
                        stream_id: stream_id.to_owned(),
                        public_key: SigningKey::from_bytes(&[7; 32])
                            .verifying_key()
                            .to_bytes()
                            .to_vec(),
                    })
                    .await,
            ),
        ),
        ("ListKeys", done(admin().list_keys(sref()).await)),
        (
            "CreateCategory",
            done(
                admin()
                    .create_category(proto::CreateCategoryRequest {
                        name: "Unauthorised".into(),
                    })
                    .await,
            ),
        ),
        (
            "ListCategories",
            done(
                admin()
                    .list_categories(proto::ListCategoriesRequest::default())
                    .await,
            ),
        ),
        (
            "RenameCategory",
            done(
                admin()
                    .rename_category(proto::RenameCategoryRequest {
                        name: "Finance".into(),
                        new_name: "Money".into(),
                    })
                    .await,
            ),
        ),
        (
            "DeleteCategory",
            done(
                admin()
                    .delete_category(proto::DeleteCategoryRequest {
                        name: "Money".into(),
                    })
                    .await,
            ),
        ),
        (
            "ListPoints",
            done(
                query()
                    .list_points(proto::ListPointsRequest {
                        stream_id: stream_id.to_owned(),
                        ..Default::default()
                    })
                    .await,
            ),
        ),
        (
            "Latest",
            done(
                query()
                    .latest(proto::LatestRequest {
                        stream_id: stream_id.to_owned(),
                    })
                    .await,
            ),
        ),
        (
            "ListRevisions",
            done(
                query()
                    .list_revisions(proto::ListRevisionsRequest {
                        stream_id: stream_id.to_owned(),
                        period: "2026-11-20".into(),
                        ..Default::default()
                    })
                    .await,
            ),
        ),
        (
            "RevokeKey",
            done(
                admin()
                    .revoke_key(proto::RevokeKeyRequest {
                        stream_id: stream_id.to_owned(),
                        key_id: key_id.to_owned(),
                    })
                    .await,
            ),
        ),
        ("DeleteStream", done(admin().delete_stream(sref()).await)),
    ]
}

/// Today's daily period in UTC: data that keeps a stream active.
fn today() -> String {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

/// Every RPC of the two token-guarded services, as `call_every_rpc` names them.
const GUARDED_RPCS: usize = 15 + 3;

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_and_query_call_without_a_valid_token_is_unauthenticated() {
    let server = TestServer::start();
    let client = server.client().await;
    client
        .admin()
        .create_category(proto::CreateCategoryRequest {
            name: "Finance".into(),
        })
        .await
        .unwrap();
    let (stream_id, credential) = server.daily_stream("Guarded").await;
    client
        .publish(&credential, vec![point(&today(), "1")], false)
        .await
        .unwrap();
    let channel = Endpoint::from_shared(server.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let key_id = credential.key_id().to_string();

    let refused: [(&str, Option<&'static str>); 6] = [
        ("no header", None),
        ("another scheme", Some("Basic YWRtaW46YWRtaW4=")),
        ("a scheme without a token", Some("Bearer")),
        ("a token without a scheme", Some("kpit_abc")),
        (
            "a wrong token",
            Some("Bearer kpit_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
        ("an empty bearer token", Some("Bearer  ")),
    ];
    for (case, header) in refused {
        let outcomes = call_every_rpc(channel.clone(), header, &stream_id, &key_id).await;
        assert_eq!(outcomes.len(), GUARDED_RPCS);
        for (rpc, outcome) in outcomes {
            let err = outcome.expect_err(&format!("{rpc} with {case} must be refused"));
            assert_eq!(
                err.code(),
                Code::Unauthenticated,
                "{rpc} with {case}: {err:?}"
            );
            assert!(
                err.message().contains("token"),
                "{rpc} with {case}: {err:?}"
            );
        }
    }

    // Nothing those calls asked for happened.
    let detail = show(&client, &stream_id).await;
    let stream = detail.stream.unwrap();
    assert_eq!(stream.name, "Guarded");
    assert_eq!(stream.status, proto::StreamStatus::Active as i32);
    assert_eq!(detail.keys.len(), 1);
    assert!(detail.keys[0].revoked_at.is_none());
    assert_eq!(values(&client, &stream_id).await.len(), 1);

    // The same calls with the admin's token get past authentication.
    let header: &'static str = format!("Bearer {}", server.token).leak();
    for (rpc, outcome) in call_every_rpc(channel, Some(header), &stream_id, &key_id).await {
        if let Err(err) = outcome {
            assert_ne!(err.code(), Code::Unauthenticated, "{rpc}: {err:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn categories_are_created_listed_with_counts_renamed_and_deleted_only_when_unused() {
    let server = TestServer::start();
    let client = server.client().await;
    let mut admin = client.admin();
    for name in ["Product", "Growth"] {
        let category = admin
            .create_category(proto::CreateCategoryRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((category.name.as_str(), category.stream_count), (name, 0));
    }
    let err = admin
        .create_category(proto::CreateCategoryRequest {
            name: "Product".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    let (stream, _) = server
        .create_stream(proto::CreateStreamRequest {
            category: "Product".into(),
            ..stream_request("Weekly active users", Weekly, "UTC")
        })
        .await;
    assert_eq!(stream.category, "Product");
    let counts = |list: proto::ListCategoriesResponse| {
        list.categories
            .into_iter()
            .map(|c| (c.name, c.stream_count))
            .collect::<Vec<_>>()
    };
    let listed = admin
        .list_categories(proto::ListCategoriesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        counts(listed),
        [("Growth".to_owned(), 0), ("Product".to_owned(), 1)]
    );

    let renamed = admin
        .rename_category(proto::RenameCategoryRequest {
            name: "Product".into(),
            new_name: "Product analytics".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (renamed.name.as_str(), renamed.stream_count),
        ("Product analytics", 1)
    );
    assert_eq!(
        show(&client, &stream.id).await.stream.unwrap().category,
        "Product analytics",
        "the stream follows its category's new name"
    );

    let err = admin
        .delete_category(proto::DeleteCategoryRequest {
            name: "Product analytics".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("used by 1 stream"), "{err:?}");

    admin
        .delete_category(proto::DeleteCategoryRequest {
            name: "Growth".into(),
        })
        .await
        .expect("an unused category can be deleted");
    let err = admin
        .create_stream(proto::CreateStreamRequest {
            category: "Growth".into(),
            ..stream_request("Signups", Daily, "UTC")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("Growth"), "{err:?}");

    // Once no stream uses it, the category can go.
    admin
        .update_stream(proto::UpdateStreamRequest {
            stream_id: stream.id.clone(),
            category: Some(String::new()),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .delete_category(proto::DeleteCategoryRequest {
            name: "Product analytics".into(),
        })
        .await
        .expect("a category no stream uses any more can be deleted");
    let listed = admin
        .list_categories(proto::ListCategoriesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.categories.is_empty(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_frequency_can_change_before_data_exists_but_not_after() {
    let server = TestServer::start();
    let client = server.client().await;
    let mut admin = client.admin();
    let (stream, credential) = server.daily_stream("Changing").await;
    let change = |frequency: proto::Frequency| proto::UpdateStreamRequest {
        stream_id: stream.clone(),
        frequency: frequency as i32,
        ..Default::default()
    };

    let updated = admin
        .update_stream(change(Weekly))
        .await
        .expect("a stream without data may change frequency")
        .into_inner();
    assert_eq!(updated.frequency, Weekly as i32);
    let response = client
        .publish(&credential, vec![point("2026-W47", "1")], false)
        .await
        .unwrap();
    assert_eq!(
        response.accepted, 1,
        "the new frequency applies: {response:?}"
    );

    let err = admin
        .update_stream(change(proto::Frequency::Monthly))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("fixed once data exists"),
        "the message says why: {err:?}"
    );
    let err = admin
        .update_stream(proto::UpdateStreamRequest {
            time_zone: Some("Europe/Paris".into()),
            ..change(proto::Frequency::Unspecified)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let renamed = admin
        .update_stream(proto::UpdateStreamRequest {
            name: Some("Changed".into()),
            ..change(proto::Frequency::Unspecified)
        })
        .await
        .expect("the name may change at any time")
        .into_inner();
    assert_eq!(
        (
            renamed.name.as_str(),
            renamed.frequency,
            renamed.time_zone.as_str()
        ),
        ("Changed", Weekly as i32, "UTC")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_overlaps_the_old_one_until_the_old_one_is_revoked() {
    let server = TestServer::start();
    let client = server.client().await;
    let (stream, old) = server.daily_stream("Rotating").await;
    let (key, new) = client.rotate_key(&stream).await.unwrap();
    assert_eq!(new.stream_id().as_str(), stream);
    assert_ne!(new.key_id(), old.key_id());
    assert_eq!(key.key_id, new.key_id().as_str());

    client
        .publish(&old, vec![point("2026-11-20", "1")], false)
        .await
        .expect("the old key keeps working after a rotation");
    client
        .publish(&new, vec![point("2026-11-21", "2")], false)
        .await
        .expect("the new key works");

    let revoked = client
        .revoke_key(&stream, old.key_id().as_str())
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    let err = client
        .publish(&old, vec![point("2026-11-22", "3")], false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    client
        .publish(&new, vec![point("2026-11-23", "4")], false)
        .await
        .expect("the new key still works");

    let keys = client
        .admin()
        .list_keys(proto::StreamRef {
            stream_id: stream.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys;
    let revoked_ids: Vec<(String, bool)> = keys
        .iter()
        .map(|k| (k.key_id.clone(), k.revoked_at.is_some()))
        .collect();
    assert_eq!(revoked_ids.len(), 2, "{revoked_ids:?}");
    assert!(revoked_ids.contains(&(old.key_id().to_string(), true)));
    assert!(revoked_ids.contains(&(new.key_id().to_string(), false)));
    assert_eq!(values(&client, &stream).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_may_register_their_own_public_key_but_not_a_small_order_one() {
    let server = TestServer::start();
    let client = server.client().await;
    let (stream, _) = server.daily_stream("Own key").await;
    let own = SigningKey::generate(&mut rand::rngs::OsRng);

    let key = client
        .admin()
        .add_key(proto::AddKeyRequest {
            stream_id: stream.clone(),
            public_key: own.verifying_key().to_bytes().to_vec(),
        })
        .await
        .expect("a valid public key is registered")
        .into_inner();
    assert_eq!(key.origin, "registered");
    assert_eq!(key.public_key, own.verifying_key().to_bytes());
    let credential = Credential::new(
        StreamId::parse(&stream).unwrap(),
        KeyId::parse(&key.key_id).unwrap(),
        own,
    );
    client
        .publish(&credential, vec![point("2026-11-20", "7")], false)
        .await
        .expect("a batch signed with the registered key's own seed is accepted");
    assert_eq!(values(&client, &stream).await.len(), 1);

    let mut identity = [0u8; 32];
    identity[0] = 1;
    for (what, public_key) in [
        ("a small-order key", identity.to_vec()),
        ("a 31-byte key", vec![9; 31]),
    ] {
        let err = client
            .admin()
            .add_key(proto::AddKeyRequest {
                stream_id: stream.clone(),
                public_key,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    let keys = show(&client, &stream).await.keys;
    assert_eq!(keys.len(), 2, "only the valid key was added: {keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_details_show_the_latest_period_point_count_and_key_use() {
    let server = TestServer::start();
    let client = server.client().await;
    let (stream, credential) = server
        .create_stream(proto::CreateStreamRequest {
            description: "Paid orders".into(),
            value_type: proto::ValueType::Currency as i32,
            currency: "EUR".into(),
            ..stream_request("Revenue", Daily, "Europe/Paris")
        })
        .await;
    assert_eq!(stream.status, proto::StreamStatus::Pending as i32);
    let before = show(&client, &stream.id).await;
    let fresh = before.stream.unwrap();
    assert_eq!(fresh.latest_period, "");
    assert_eq!(fresh.point_count, 0);
    assert!(fresh.last_data_at.is_none());
    assert!(before.keys[0].last_used_at.is_none());

    client
        .publish(
            &credential,
            vec![
                point("2026-11-21", "10.00"),
                point("2026-11-23", "30.00"),
                point("2026-11-22", "20.00"),
            ],
            false,
        )
        .await
        .unwrap();
    client
        .publish(&credential, vec![point("2026-11-22", "25.00")], false)
        .await
        .unwrap();

    let after = show(&client, &stream.id).await;
    let s = after.stream.unwrap();
    assert_eq!(
        (
            s.name.as_str(),
            s.description.as_str(),
            s.time_zone.as_str()
        ),
        ("Revenue", "Paid orders", "Europe/Paris")
    );
    assert_eq!(
        (s.value_type, s.currency.as_str()),
        (proto::ValueType::Currency as i32, "EUR")
    );
    assert_eq!(s.latest_period, "2026-11-23");
    assert_eq!(s.point_count, 3, "a revision is not a new point");
    assert!(s.last_data_at.is_some());
    assert_eq!(after.keys.len(), 1);
    assert_eq!(after.keys[0].key_id, credential.key_id().as_str());
    assert_eq!(after.keys[0].origin, "generated");
    assert!(after.keys[0].last_used_at.is_some());
    assert!(after.keys[0].revoked_at.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_are_listed_by_category_status_and_part_of_the_name() {
    let server = TestServer::start();
    let client = server.client().await;
    let mut admin = client.admin();
    admin
        .create_category(proto::CreateCategoryRequest {
            name: "Finance".into(),
        })
        .await
        .unwrap();
    let in_finance = |name: &str| proto::CreateStreamRequest {
        category: "Finance".into(),
        ..stream_request(name, Daily, "UTC")
    };
    let (eu, eu_key) = server.create_stream(in_finance("Revenue EU")).await;
    let (us, _) = server.create_stream(in_finance("Revenue US")).await;
    let (signups, _) = server
        .create_stream(stream_request("Signups", Daily, "UTC"))
        .await;
    client
        .publish(&eu_key, vec![point(&today(), "1")], false)
        .await
        .unwrap();

    let list = |request: proto::ListStreamsRequest| {
        let mut admin = client.admin();
        async move {
            let mut names: Vec<String> = admin
                .list_streams(request)
                .await
                .unwrap()
                .into_inner()
                .streams
                .into_iter()
                .map(|s| s.name)
                .collect();
            names.sort();
            names
        }
    };
    let status = |s: proto::StreamStatus| proto::ListStreamsRequest {
        status: s as i32,
        ..Default::default()
    };

    assert_eq!(
        list(Default::default()).await,
        [eu.name, us.name, signups.name]
    );
    assert_eq!(
        list(proto::ListStreamsRequest {
            category: "finance".into(),
            ..Default::default()
        })
        .await,
        ["Revenue EU", "Revenue US"]
    );
    assert_eq!(
        list(proto::ListStreamsRequest {
            name_contains: "REVENUE".into(),
            ..Default::default()
        })
        .await,
        ["Revenue EU", "Revenue US"]
    );
    assert_eq!(
        list(status(proto::StreamStatus::Active)).await,
        ["Revenue EU"]
    );
    assert_eq!(
        list(status(proto::StreamStatus::Pending)).await,
        ["Revenue US", "Signups"]
    );
    assert_eq!(
        list(proto::ListStreamsRequest {
            category: "Finance".into(),
            status: proto::StreamStatus::Pending as i32,
            name_contains: "us".into(),
            ..Default::default()
        })
        .await,
        ["Revenue US"]
    );
    assert!(
        list(proto::ListStreamsRequest {
            name_contains: "nothing like this".into(),
            ..Default::default()
        })
        .await
        .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_answers_ok_and_metrics_count_publishes() {
    let server = TestServer::start();
    let (code, body) = server.http_get("/healthz");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body.trim(), "ok");

    let (_, credential) = server.daily_stream("Measured").await;
    server
        .anonymous_client()
        .await
        .publish(&credential, vec![point("2026-11-20", "1")], false)
        .await
        .unwrap();

    let (code, body) = server.http_get("/metrics");
    assert_eq!(code, 200, "{body}");
    let line = body
        .lines()
        .find(|l| l.starts_with("kpistream_publishes_total{") && l.contains("accepted"))
        .unwrap_or_else(|| panic!("no accepted publishes counted:\n{body}"));
    assert!(line.ends_with(" 1"), "{line}");
    let (code, _) = server.http_get("/nothing-here");
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_carry_each_streams_status_age_and_latest_period_within_the_series_limit() {
    let server = TestServer::start_with_limits("metrics_stream_series = 2");
    let (fresh, credential) = server.daily_stream("A \"fresh\" stream").await;
    let (old, old_credential) = server.daily_stream("B old").await;
    let (_pending, _) = server.daily_stream("C pending").await;
    let client = server.anonymous_client().await;
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    client
        .publish(&credential, vec![point(&today, "1")], false)
        .await
        .unwrap();
    client
        .publish(&old_credential, vec![point("2020-01-31", "1")], false)
        .await
        .unwrap();

    let (_, body) = server.http_get("/metrics");
    let sample = |series: &str, stream: &str, extra: &str| -> Option<f64> {
        let prefix = format!("{series}{{org=\"");
        body.lines()
            .find(|l| {
                l.starts_with(&prefix)
                    && l.contains(&format!("stream=\"{stream}\""))
                    && l.contains(extra)
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    assert!(
        body.contains(r#"name="A \"fresh\" stream""#),
        "escaped label:\n{body}"
    );
    assert_eq!(
        sample("kpistream_stream_status", &fresh, "status=\"active\""),
        Some(1.0)
    );
    assert_eq!(
        sample("kpistream_stream_status", &fresh, "status=\"stale\""),
        Some(0.0)
    );
    assert_eq!(
        sample("kpistream_stream_status", &old, "status=\"stale\""),
        Some(1.0)
    );
    let age = sample("kpistream_stream_seconds_since_data", &fresh, "").unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    // 2020-01-31 ends at 2020-02-01T00:00:00Z (UTC stream).
    assert_eq!(
        sample("kpistream_stream_latest_period_end_seconds", &old, ""),
        Some(1_580_515_200.0)
    );
    // The third stream is past the limit of two.
    assert!(!body.contains("C pending"), "{body}");
    assert_eq!(server.metric("kpistream_stream_series_omitted"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_token_file_is_readable_by_its_owner_only() {
    let server = TestServer::start();
    let metadata = std::fs::metadata(server.token_path()).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert!(server.token.starts_with("kpit_"), "a recognisable token");
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_creates_a_stream_with_a_private_credential_file_and_names_bad_csv_lines() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let created = cli(work.path())
        .args([
            "stream",
            "create",
            "--name",
            "Orders",
            "--frequency",
            "daily",
        ])
        .args(["--type", "number", "--credential-out", "orders.kpik"])
        .args(["--server", &server.grpc])
        .arg("--token-file")
        .arg(server.token_path())
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let stream_id = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let credential_path = work.path().join("orders.kpik");
    assert_eq!(mode_of(&credential_path), 0o600);
    let credential: Credential = std::fs::read_to_string(&credential_path)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(credential.stream_id().as_str(), stream_id);

    std::fs::write(
        work.path().join("points.csv"),
        "period,value,external_id\n2026-11-20,10,a\n2026-11-21,NaN,b\n2026-11-22,12.5,c\n",
    )
    .unwrap();
    let published = cli(work.path())
        .args([
            "publish",
            "--credential",
            "orders.kpik",
            "--file",
            "points.csv",
        ])
        .args(["--server", &server.grpc])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&published.stderr);
    assert!(
        !published.status.success(),
        "a rejected line fails the command"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("points.csv line 3:"))
        .unwrap_or_else(|| panic!("the bad line is named:\n{stderr}"));
    assert!(line.contains("NaN"), "{line}");
    assert!(
        !stderr.contains("line 2:") && !stderr.contains("line 4:"),
        "{stderr}"
    );

    let client = server.client().await;
    assert_eq!(
        values(&client, &stream_id).await,
        [
            ("2026-11-20".to_owned(), "10".to_owned()),
            ("2026-11-22".to_owned(), "12.5".to_owned())
        ]
    );
}
