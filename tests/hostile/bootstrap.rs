//! The first start writes the admin token or commits nothing, and checks its ports
//! before it bootstraps: an operator can always administer the server they started.
//! The data folder and the database files are private to the server's user.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use kpistream::client::Client;
use secrecy::SecretString;

use crate::common::{Setup, TestServer};

/// Runs `kpistream serve` in `dir` with `args`, expecting it to stop by itself.
fn serve_failing(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kpistream"));
    command
        .current_dir(dir)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(args)
        .env_remove("KPISTREAM_CONFIG")
        .stdin(Stdio::null());
    let out = command.output().expect("serve runs");
    assert!(!out.status.success(), "serve was expected to fail: {out:?}");
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_file_that_cannot_be_written_commits_nothing_and_the_next_start_bootstraps() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notadir"), "a file, not a folder").unwrap();
    let db = format!("sqlite://{}/kpistream.db", dir.path().display());
    let out = serve_failing(
        dir.path(),
        &["--db", &db, "--admin-token-file", "notadir/admin.token"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write the admin token file") && stderr.contains("notadir"),
        "the error names the file: {stderr}"
    );

    // The next start, with a path that works, creates the organisation and its admin.
    let token_file = dir.path().join("tokens/admin.token");
    let server = TestServer::start_setup(Setup {
        db: Some(db),
        token_file: Some(token_file.clone()),
        ..Setup::default()
    });
    let token = std::fs::read_to_string(&token_file).unwrap();
    let admin = Client::connect(
        &server.grpc,
        Some(SecretString::from(token.trim().to_owned())),
    )
    .await
    .unwrap();
    let me = admin.who_am_i().await.expect("the operator can administer");
    assert_eq!(me.role, "admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_in_use_stops_serve_before_it_bootstraps() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let db = format!("sqlite://{}/kpistream.db", dir.path().display());
    let out = serve_failing(
        dir.path(),
        &[
            "--db",
            &db,
            "--http",
            &taken.local_addr().unwrap().to_string(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen for HTTP"),
        "{out:?}"
    );
    assert!(
        !dir.path().join("kpistream.db").exists(),
        "no database was created"
    );
    assert!(
        !dir.path().join("data/admin.token").exists(),
        "no token was written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_folder_is_0700_and_the_database_files_0600() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start_setup(Setup {
        db: Some(format!("sqlite://{}/kpistream.db", data.display())),
        token_file: Some(data.join("admin.token")),
        ..Setup::default()
    });
    // A write, so that the WAL and shared-memory files exist.
    server.daily_stream("private").await;
    assert_eq!(mode(&data), 0o700, "the data folder");
    for file in [
        "kpistream.db",
        "kpistream.db-wal",
        "kpistream.db-shm",
        "admin.token",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_readable_by_others_is_made_private_at_start() {
    let mut server = TestServer::start();
    server.daily_stream("was public").await;
    server.kill();
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", server.db_path().display());
        if Path::new(&file).exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    server.restart();
    server.daily_stream("now private").await;
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", server.db_path().display());
        assert_eq!(mode(Path::new(&file)), 0o600, "{file}");
    }
}
