//! The access model beyond single calls: tokens at rest, team membership that counts
//! from the next call, stream lists, role changes and deletions that count at once, and
//! admins who cannot delete themselves.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kpistream::proto;
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::common::TestServer;
use crate::fixtures::{
    connect, new_stream, new_team, new_token, new_user, other_org, stream_names, stream_ref,
    who_am_i,
};

/// Whether `needle` occurs in `haystack`.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Everything the server stored: its SQLite files (the WAL included), or on PostgreSQL
/// every row of every table of its schema, the binary columns as raw bytes.
async fn stored_bytes(server: &TestServer) -> Vec<(String, Vec<u8>)> {
    if let Some(url) = server.postgres_url() {
        use sqlx::{ConnectOptions, Row};
        let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
        let mut conn = options.connect().await.expect("the test connects");
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut out = Vec::new();
        for table in tables {
            let mut bytes = Vec::new();
            // Each row as text, and the raw bytes of its BYTEA columns.
            for row in sqlx::query(&format!("SELECT t::text AS text FROM {table} t"))
                .fetch_all(&mut conn)
                .await
                .unwrap()
            {
                bytes.extend(row.get::<String, _>("text").into_bytes());
            }
            let binary: Vec<String> = sqlx::query_scalar(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 AND data_type = 'bytea'",
            )
            .bind(&table)
            .fetch_all(&mut conn)
            .await
            .unwrap();
            for column in binary {
                for value in
                    sqlx::query_scalar::<_, Vec<u8>>(&format!("SELECT {column} FROM {table}"))
                        .fetch_all(&mut conn)
                        .await
                        .unwrap()
                {
                    bytes.extend(value);
                }
            }
            out.push((table, bytes));
        }
        return out;
    }
    let files: Vec<(String, Vec<u8>)> = std::fs::read_dir(server.dir())
        .expect("the server's folder")
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("kpistream.db")
        })
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a database file");
            (path.display().to_string(), bytes)
        })
        .collect();
    assert!(
        files
            .iter()
            .any(|(path, _)| path.ends_with("kpistream.db-wal")),
        "WAL mode is on, so a -wal file exists: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_stored_only_as_their_hashes() {
    let server = TestServer::start();
    let root = server.client().await;
    new_user(&server, &root, "alice", "member").await;
    let alice_secret = new_token(&root, "alice", None).await.secret;
    let alice = connect(&server, Some(&alice_secret)).await;
    let in_an_hour = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let mut made = vec![
        new_token(&root, "", None).await,
        new_token(&root, "alice", Some(in_an_hour)).await,
        new_token(&alice, "", None).await,
    ];
    let org = other_org(&root).await;
    let mut secrets = vec![server.token.clone(), alice_secret, org.token];
    secrets.extend(made.iter().map(|t| t.secret.clone()));
    for secret in &secrets {
        // Each use records the token's last use: one more write to the tokens table.
        who_am_i(&connect(&server, Some(secret)).await)
            .await
            .expect("the token works");
    }
    let revoked = new_token(&root, "alice", None).await;
    root.admin()
        .revoke_token(proto::RevokeTokenRequest {
            id: revoked.token.clone().expect("token").id,
        })
        .await
        .expect("a token is revoked");
    secrets.push(revoked.secret.clone());
    made.push(revoked);

    let files = stored_bytes(&server).await;
    let anywhere = |needle: &[u8]| files.iter().any(|(_, bytes)| holds(bytes, needle));
    // The files read are the live data: the tokens' ids are in them.
    for token in &made {
        let id = &token.token.as_ref().expect("token").id;
        assert!(
            anywhere(id.as_bytes()),
            "token {id} is in the database files"
        );
    }
    for secret in &secrets {
        let encoded = secret.strip_prefix("kpit_").expect("a kpit_ token");
        let raw = URL_SAFE_NO_PAD
            .decode(encoded)
            .expect("base64 after the prefix");
        assert_eq!(raw.len(), 32, "256 random bits");
        assert!(!anywhere(secret.as_bytes()), "a token is stored in clear");
        assert!(
            !anywhere(encoded.as_bytes()),
            "a token's base64 part is stored"
        );
        assert!(!anywhere(&raw), "a token's random bytes are stored");
        assert!(
            anywhere(&Sha256::digest(secret.as_bytes())),
            "the database holds the token's SHA-256"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leaving_a_team_takes_away_what_came_only_through_it_with_the_next_call() {
    let server = TestServer::start();
    let root = server.client().await;
    let dana = new_user(&server, &root, "dana", "member").await;
    new_team(&root, "finance", &["dana"]).await;
    let (only_team, _) = new_stream(&root, "Only through the team", &["team:finance"]).await;
    let (also_direct, _) = new_stream(&root, "Also direct", &["team:finance", "user:dana"]).await;
    let (managed, _) = new_stream(
        &root,
        "Managed through the team",
        &["team:finance:manage", "user:dana:read"],
    )
    .await;
    let get = |id: &str| {
        let mut admin = dana.admin();
        let id = id.to_owned();
        async move { admin.get_stream(stream_ref(&id)).await.map(drop) }
    };
    for id in [&only_team, &also_direct, &managed] {
        get(id)
            .await
            .expect("dana reads the stream through her team");
    }
    dana.admin()
        .list_grants(stream_ref(&managed))
        .await
        .expect("dana manages the stream through her team");

    root.admin()
        .remove_team_member(proto::TeamMemberRequest {
            team: "finance".into(),
            user: "dana".into(),
        })
        .await
        .expect("dana leaves the team");

    let gone = get(&only_team).await.expect_err("the team's read is gone");
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    assert_eq!(gone.message(), format!("stream {only_team} was not found"));
    let points = dana
        .query()
        .list_points(proto::ListPointsRequest {
            stream_id: only_team.clone(),
            ..Default::default()
        })
        .await
        .expect_err("the team's read is gone from Query too");
    assert_eq!(points.code(), Code::NotFound, "{points:?}");
    get(&also_direct).await.expect("the direct read stays");
    get(&managed).await.expect("the direct read stays");
    let grants = dana
        .admin()
        .list_grants(stream_ref(&managed))
        .await
        .expect_err("the team's manage is gone");
    assert_eq!(grants.code(), Code::PermissionDenied, "{grants:?}");
    assert_eq!(
        stream_names(&dana).await,
        BTreeSet::from(["Also direct".into(), "Managed through the team".into()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_lists_the_streams_shared_with_them_and_an_admin_all_of_their_organisation() {
    let server = TestServer::start();
    let root = server.client().await;
    let mia = new_user(&server, &root, "mia", "member").await;
    let ann = new_user(&server, &root, "ann", "admin").await;
    new_team(&root, "ops", &["mia"]).await;
    for (name, grants) in [
        ("Direct", &["user:mia"][..]),
        ("Through the team", &["team:ops"]),
        ("Through the org", &["org"]),
        ("Managed", &["user:mia:manage"]),
        ("Not shared", &[]),
        ("Shared with ann", &["user:ann:manage"]),
    ] {
        new_stream(&root, name, grants).await;
    }
    new_stream(&mia, "Made by mia", &[]).await;
    let org = other_org(&root).await;
    let other = connect(&server, Some(&org.token)).await;
    new_stream(&other, "Elsewhere's", &["org"]).await;

    let names = |list: &[&str]| {
        list.iter()
            .map(|n| (*n).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        stream_names(&mia).await,
        names(&[
            "Direct",
            "Through the team",
            "Through the org",
            "Managed",
            "Made by mia"
        ])
    );
    let all_of_the_first = names(&[
        "Direct",
        "Through the team",
        "Through the org",
        "Managed",
        "Not shared",
        "Shared with ann",
        "Made by mia",
    ]);
    assert_eq!(
        stream_names(&root).await,
        all_of_the_first,
        "the server admin"
    );
    assert_eq!(
        stream_names(&ann).await,
        all_of_the_first,
        "another org admin"
    );
    assert_eq!(stream_names(&other).await, names(&["Elsewhere's"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn role_changes_and_deletions_count_from_the_next_call() {
    let server = TestServer::start();
    let root = server.client().await;
    let eve = new_user(&server, &root, "eve", "member").await;
    let create_category = |name: &str| {
        let mut admin = eve.admin();
        let request = proto::CreateCategoryRequest { name: name.into() };
        async move { admin.create_category(request).await.map(drop) }
    };
    let set_role = |role: &str| {
        let mut admin = root.admin();
        let request = proto::SetUserRoleRequest {
            name: "eve".into(),
            role: role.into(),
        };
        async move {
            admin
                .set_user_role(request)
                .await
                .expect("the role changes")
        }
    };
    let refused = create_category("Before").await.expect_err("a member");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    set_role("admin").await;
    create_category("Promoted").await.expect("an admin now");
    set_role("member").await;
    let refused = create_category("Demoted")
        .await
        .expect_err("a member again");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    root.admin()
        .delete_user(proto::UserRef { name: "eve".into() })
        .await
        .expect("eve is deleted");
    let refused = who_am_i(&eve).await.expect_err("a deleted user's token");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_org_admin_cannot_delete_themselves() {
    let server = TestServer::start();
    let root = server.client().await;
    // With a second admin, so that this is not the last admin's refusal (tests/hostile).
    new_user(&server, &root, "grace", "admin").await;
    let me = who_am_i(&root).await.expect("WhoAmI").user;
    let refused = root
        .admin()
        .delete_user(proto::UserRef { name: me })
        .await
        .expect_err("an admin cannot delete themselves");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    who_am_i(&root).await.expect("the admin is still there");
}
