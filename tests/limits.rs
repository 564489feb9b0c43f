//! Configuration and limits: the TOML file, flags over it, the message-size limit, and
//! the standard health service.

mod common;

use common::{TestServer, point};
use kpistream::proto;
use tonic::Code;

fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kpistream.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path.display().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_over_the_size_limit_is_resource_exhausted_with_a_sentence() {
    let (_dir, path) = config_file("[limits]\nmax_message_bytes = 2000\n");
    let server = TestServer::start_with(&["--config", &path]);
    let (_, credential) = server.daily_stream("sized").await;
    let client = server.anonymous_client().await;

    let small = client
        .publish(&credential, vec![point("2026-11-01", "1")], false)
        .await;
    assert_eq!(small.expect("a small batch fits").accepted, 1);

    let big: Vec<proto::Point> = (1..=28)
        .map(|d| point(&format!("2026-02-{d:02}"), "1234567.891"))
        .collect();
    let mut many = big.clone();
    many.extend(big.iter().cloned().map(|mut p| {
        p.external_id = "x".repeat(60);
        p
    }));
    let err = client
        .publish(&credential, many, false)
        .await
        .expect_err("a 4 kB message is over a 2,000-byte limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("larger than the server's limit"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_override_the_config_file() {
    let (_dir, path) = config_file("[limits]\nmax_points_per_batch = 5\n");
    let server = TestServer::start_with(&["--config", &path, "--max-points-per-batch", "3"]);
    let (_, credential) = server.daily_stream("limited").await;
    let client = server.anonymous_client().await;
    let four: Vec<proto::Point> = (1..=4)
        .map(|d| point(&format!("2026-03-{d:02}"), "1"))
        .collect();
    let err = client
        .publish(&credential, four, false)
        .await
        .expect_err("4 points > 3");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("at most 3"), "{}", err.message());
    let three: Vec<proto::Point> = (1..=3)
        .map(|d| point(&format!("2026-03-{d:02}"), "1"))
        .collect();
    assert_eq!(
        client
            .publish(&credential, three, false)
            .await
            .unwrap()
            .accepted,
        3
    );
}

#[test]
fn a_typo_in_the_config_file_stops_serve_naming_the_file_and_the_field() {
    let (dir, path) = config_file("[limits]\nmax_point_per_batch = 5\n");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kpistream"))
        .args([
            "serve",
            "--config",
            &path,
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&path), "{stderr}");
    assert!(stderr.contains("max_point_per_batch"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grpc_health_service_reports_serving() {
    let server = TestServer::start();
    let channel = tonic::transport::Endpoint::from_shared(server.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in [
        "",
        "kpistream.v1.Ingest",
        "kpistream.v1.StreamAdmin",
        "kpistream.v1.Query",
    ] {
        let mut status = 0;
        for _ in 0..50 {
            let request = tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            };
            status = health.check(request).await.unwrap().into_inner().status;
            if status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
}
