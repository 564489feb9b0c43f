//! Unauthenticated clients cannot exhaust memory or connections: calls that announce
//! big messages and stall, thousands of silent connections, a server at its open-files
//! limit. Memory is read from `/proc/PID/status` (VmRSS).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{Setup, TestServer, point};
use crate::raw::RawConnection;

const MIB: u64 = 1024 * 1024;

fn grpc_addr(server: &TestServer) -> SocketAddr {
    server.grpc.trim_start_matches("http://").parse().unwrap()
}

/// The value of a metric line (the first one starting with `name`) on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_four_mib_messages_on_a_thousand_calls_keep_memory_bounded_and_publishes_working() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("under attack").await;
    let before = server.rss_mib();

    // 5 connections x 200 calls, each announcing a 4 MiB publish and stalling 1 KiB
    // short of its end: 4 GiB announced, and no token needed.
    let addr = grpc_addr(&server);
    let mut attackers = Vec::new();
    for _ in 0..5 {
        let mut connection = RawConnection::open(addr, 65_535).await;
        connection
            .stall_calls("/kpistream.v1.Ingest/Publish", 200, 4 * MIB as u32 - 64)
            .await;
        attackers.push(connection);
    }

    let client = server.anonymous_client().await;
    let mut peak = 0;
    let mut held = 0.0f64;
    let started = Instant::now();
    let mut published = 0;
    while started.elapsed() < Duration::from_secs(8) {
        peak = peak.max(server.rss_mib());
        held = held.max(server.metric("kpistream_receive_budget_used_bytes"));
        let day = format!("2026-01-{:02}", published % 28 + 1);
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            client.publish(&credential, vec![point(&day, "1")], false),
        )
        .await
        .expect("an authenticated publish is answered during the attack")
        .expect("an authenticated publish succeeds during the attack");
        assert_eq!(reply.accepted, 1);
        published += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "RSS {before} MiB before, peak {peak} MiB during the attack; receive budget held at most {:.1} MiB; {published} publishes succeeded",
        held / MIB as f64
    );
    assert!(
        held > (16 * MIB) as f64,
        "the attack did reach the server (budget held {held} bytes)"
    );
    assert!(
        peak < 256,
        "the server stayed under 256 MiB (peak {peak} MiB)\n{}",
        server.logs()
    );
    assert_eq!(
        crate::common::values(&server.client().await, &stream)
            .await
            .len(),
        published.min(28)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_message_is_cut_after_the_message_timeout_and_its_budget_given_back() {
    let server = TestServer::start_with_limits("message_timeout_secs = 2");
    let mut attacker = RawConnection::open(grpc_addr(&server), 65_535).await;
    attacker
        .stall_calls("/kpistream.v1.Ingest/Publish", 2, MIB as u32)
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let held = server.metric("kpistream_receive_budget_used_bytes");
    assert!(
        held >= (2 * MIB) as f64,
        "two stalled messages hold budget: {held}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        server.metric("kpistream_receive_budget_used_bytes"),
        0.0,
        "the stalled calls were ended and gave their budget back"
    );
    assert_eq!(
        server.metric("kpistream_requests_cut_total{reason=\"message_timeout\"}"),
        2.0
    );
}

/// Whether the server has closed this connection (end of stream or reset), reading
/// past what it sent before (its HTTP/2 settings).
fn is_closed(mut socket: &TcpStream) -> bool {
    socket.set_nonblocking(true).unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        match socket.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: nix::unistd::Pid) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn at_its_open_files_limit_the_server_refuses_connections_keeps_health_and_closes_silent_ones()
 {
    let server = TestServer::start_setup(Setup {
        limits: Some("handshake_timeout_secs = 3\nidle_timeout_secs = 3".into()),
        // Default max_connections (1,024) does not fit: the server must lower it.
        open_files: Some(400),
        ..Setup::default()
    });
    assert!(
        server
            .logs()
            .contains("limits.max_connections is more than the open-files limit allows"),
        "{}",
        server.logs()
    );
    let addr = grpc_addr(&server);
    // Twice as many silent connections as the process could hold.
    let sockets: Vec<TcpStream> = (0..800)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    let ticks = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(server.pid()) - ticks;
    assert!(
        spent < 50,
        "the accept loop does not spin: {spent} ticks of CPU in a second"
    );
    let (code, body) = server.http_get("/healthz");
    assert_eq!(
        (code, body.as_str()),
        (200, "ok\n"),
        "/healthz still answers"
    );
    let refused = sockets.iter().filter(|s| is_closed(s)).count();
    assert!(
        refused >= 800 - 400,
        "connections over the limit are closed at once ({refused} of 800)"
    );
    // The silent ones go after the handshake timeout, and service resumes.
    std::thread::sleep(Duration::from_secs(4));
    let still_open = sockets.iter().filter(|s| !is_closed(s)).count();
    assert_eq!(still_open, 0, "silent connections are closed after 3 s");
    drop(sockets);
    let (stream, credential) = server.daily_stream("after the flood").await;
    let reply = server
        .anonymous_client()
        .await
        .publish(&credential, vec![point("2026-01-01", "1")], false)
        .await
        .expect("publishing works again");
    assert_eq!(reply.accepted, 1, "{stream}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_the_client_reconnects() {
    let server = TestServer::start_with_limits("idle_timeout_secs = 2");
    let (_, credential) = server.daily_stream("idle").await;
    let client = server.anonymous_client().await;
    client
        .publish(&credential, vec![point("2026-01-01", "1")], false)
        .await
        .unwrap();
    let closed =
        || server.metric("kpistream_connections_closed_total{port=\"grpc\",reason=\"idle\"}");
    let before = closed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(closed() > before, "the idle connection was closed");
    let reply = client
        .publish(&credential, vec![point("2026-01-02", "2")], false)
        .await
        .expect("the client connects again on its next call");
    assert_eq!(reply.accepted, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_speaks_http2_but_starts_no_call_is_closed_after_the_handshake_timeout() {
    let server = TestServer::start_with_limits("handshake_timeout_secs = 2");
    let mut connection = RawConnection::open(grpc_addr(&server), 65_535).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        server.metric("kpistream_connections_closed_total{port=\"grpc\",reason=\"silent\"}"),
        1.0,
        "the preface alone does not keep a connection"
    );
    assert!(
        !connection.is_open().await,
        "the server closed the connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_http_request_is_closed_after_the_handshake_timeout_and_health_still_answers() {
    use std::io::Write;
    let server = TestServer::start_with_limits("handshake_timeout_secs = 2");
    // A request line and a header, then nothing: the headers never end.
    let mut slow = TcpStream::connect(server.http).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(is_closed(&slow), "the slow request's connection was closed");
    let (code, _) = server.http_get("/healthz");
    assert_eq!(code, 200);
}
