//! The SDK examples, run as a user would run them, against a real server.

mod common;

use std::process::Command;

use common::TestServer;
use kpistream::proto;

fn example(name: &str) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["run", "--quiet", "--example", name, "--"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn the_publish_one_example_stores_its_value() {
    let server = TestServer::start();
    let (stream, credential) = server
        .create_stream(common::stream_request(
            "Example",
            proto::Frequency::Weekly,
            "UTC",
        ))
        .await;
    let credential_file = server.dir().join("example.kpik");
    std::fs::write(&credential_file, credential.expose_secret()).unwrap();

    let output = example("publish_one")
        .args(["2026-W48", "1520.50"])
        .env("KPISTREAM_SERVER", &server.grpc)
        .env("KPISTREAM_CREDENTIAL_FILE", &credential_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("stored 2026-W48 = 1520.50"), "{stdout}");

    let values = common::values(&server.client().await, &stream.id).await;
    assert_eq!(values, vec![("2026-W48".to_owned(), "1520.50".to_owned())]);

    let refused = example("publish_one")
        .args(["2026-11-23", "1"])
        .env("KPISTREAM_SERVER", &server.grpc)
        .env("KPISTREAM_CREDENTIAL_FILE", &credential_file)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is daily, but the stream is weekly"),
        "{stderr}"
    );
}
