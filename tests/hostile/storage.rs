//! A full or read-only disk fails writes cleanly (nothing acknowledged is lost), the
//! server says it is not ready while writes fail, and it recovers without a restart
//! once the disk does. The disk is a small tmpfs this test mounts (it runs as root;
//! under `CI=true` that is required, elsewhere the tests skip when they cannot).

use std::path::{Path, PathBuf};
use std::process::Command;

use kpistream::client::Credential;
use kpistream::proto;
use tonic::Code;

use crate::common::{Setup, TestServer, day, point, required, sealed, values};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (like `8m`), or says why it cannot.
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().to_owned();
        mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ],
            &path,
        )?;
        Ok(Self { _dir: dir, path })
    }

    fn resize(&self, size: &str) {
        mount(&["-o", &format!("remount,size={size}")], &self.path).expect("the tmpfs is resized");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn mount(args: &[&str], at: &Path) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "mount {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Whether this test may run: as root (mount, other users). Under CI it must.
fn privileged(test: &str) -> bool {
    // /proc/self belongs to the process's effective user.
    let root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    if !root && required() {
        panic!(
            "{test} needs root (it mounts a tmpfs or runs the server as another user), and CI=true requires it"
        );
    }
    if !root {
        eprintln!(
            "skipped {test}: it needs root (it mounts a tmpfs or runs the server as another user)"
        );
    }
    root
}

/// 2,000 daily points starting at day `first`.
fn big_batch(credential: &Credential, first: i64) -> proto::SignedBatch {
    let points = (first..first + 2000)
        .map(|n| point(&day(n), &format!("{n}.123456")))
        .collect();
    sealed(credential, points)
}

async fn publish(
    client: &kpistream::client::Client,
    envelope: proto::SignedBatch,
) -> Result<proto::PublishResponse, tonic::Status> {
    crate::common::publish_envelope(client, envelope, false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_disk_fills_and_is_enlarged_publishes_and_stream_creation_succeed_without_a_restart()
 {
    if !privileged("the disk-full test") {
        return;
    }
    let disk = Tmpfs::mount("3m").unwrap_or_else(|why| panic!("{why}"));
    let server = TestServer::start_setup(Setup {
        db: Some(format!("sqlite://{}/kpistream.db", disk.path.display())),
        ..Setup::default()
    });
    let (stream, credential) = server.daily_stream("filling").await;
    let client = server.anonymous_client().await;

    let mut acknowledged = 0;
    let mut failure = None;
    for n in 0..200 {
        match publish(&client, big_batch(&credential, n * 2000)).await {
            Ok(reply) => acknowledged += reply.accepted as usize,
            Err(status) => {
                failure = Some(status);
                break;
            }
        }
    }
    let failure = failure.expect("3 MiB fill up within 200 batches of 2,000 points");
    assert_eq!(failure.code(), Code::Unavailable, "{failure:?}");
    assert!(
        failure.message().contains("full"),
        "the error says the disk is full: {failure:?}"
    );
    let (code, body) = server.http_get("/healthz");
    assert_eq!(code, 503, "not ready while writes fail: {body}");
    assert!(body.contains("writes to the database fail"), "{body}");
    assert!(server.metric("kpistream_store_errors_total") >= 1.0);
    // Small writes on the full disk fail when they commit, each with a clear error.
    let admin = server.client().await;
    for n in 0..20 {
        let name = format!("on a full disk {n}");
        let created = admin
            .admin()
            .create_stream(crate::common::stream_request(
                &name,
                proto::Frequency::Daily,
                "UTC",
            ))
            .await;
        if let Err(status) = created {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        }
        let _ = client
            .publish(&credential, vec![point(&day(2_000_000 + n), "1")], false)
            .await
            .map(|reply| acknowledged += reply.accepted as usize);
    }

    disk.resize("64m");
    let reply = publish(&client, big_batch(&credential, 1_000_000))
        .await
        .expect("a publish succeeds once the disk has room, without a restart");
    assert_eq!(reply.accepted, 2000);
    let (_, more) = server
        .daily_stream("created after the disk was enlarged")
        .await;
    let reply = client
        .publish(&more, vec![point("2026-01-01", "1")], false)
        .await
        .expect("the new stream takes data");
    assert_eq!(reply.accepted, 1);
    let (code, body) = server.http_get("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let stored = values(&server.client().await, &stream).await.len();
    assert_eq!(
        stored,
        acknowledged + 2000,
        "every acknowledged point is stored, and nothing of a failed batch"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_database_is_made_read_only_and_writable_again_writes_succeed_without_a_restart()
{
    if !privileged("the read-only test") {
        return;
    }
    let server = TestServer::start_setup(Setup {
        as_nobody: true,
        ..Setup::default()
    });
    let (_, credential) = server.daily_stream("read-only").await;
    let set_mode = |mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(server.db_path(), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(0o444);
    // Concurrent writes make the server open further database connections, which now
    // can only read.
    let admin = server.client().await;
    let writes = |tag: &'static str| {
        let admin = admin.clone();
        let credential = credential.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for n in 0..16 {
                let admin = admin.clone();
                let credential = credential.clone();
                tasks.spawn(async move {
                    let created = admin
                        .admin()
                        .create_stream(crate::common::stream_request(
                            &format!("{tag} {n}"),
                            proto::Frequency::Daily,
                            "UTC",
                        ))
                        .await
                        .map(|_| ());
                    let envelope = sealed(&credential, vec![point(&day(n), tag)]);
                    let published = admin
                        .ingest()
                        .publish(proto::PublishRequest {
                            batch: Some(envelope),
                            all_or_nothing: false,
                        })
                        .await
                        .map(|_| ());
                    created.and(published)
                });
            }
            tasks.join_all().await
        }
    };
    let while_read_only = writes("read-only").await;
    let refused: Vec<&tonic::Status> = while_read_only
        .iter()
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert!(
        !refused.is_empty(),
        "some writes met a read-only connection"
    );
    assert!(
        refused
            .iter()
            .all(|s| s.code() == Code::Unavailable && s.message().contains("readonly")),
        "each says the database is read-only: {refused:?}"
    );
    // (Which writes fail while the file is read-only depends on which database
    // connections were open before the change: SQLite reuses their file descriptors.)
    set_mode(0o600);
    let after = writes("writable").await;
    let failed: Vec<_> = after.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "every write succeeds again: {failed:?}");
    let (code, body) = server.http_get("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
}
