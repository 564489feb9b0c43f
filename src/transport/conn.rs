//! Accepting connections: a limit on how many are open, a back-off when the process
//! runs out of file descriptors, and a wrapper around each socket that closes it when
//! it sends nothing, idles, or outlives the shutdown grace.
//!
//! Closing happens below HTTP/2, by ending the socket's reads (the connection sees the
//! peer hang up) and failing its writes, because hyper offers no per-connection idle
//! timeout and waits forever for a client that never sends its preface.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How long the accept loop pauses after the process ran out of file descriptors (or
/// memory for sockets), instead of retrying at once and spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning per this interval about refused connections or accept errors.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Which port a connection came in on, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Grpc,
    Http,
}

impl Port {
    fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        }
    }
}

/// When connections of one port are closed.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Most connections open at once; the next ones are closed as soon as accepted.
    pub max_connections: usize,
    /// A connection that has not started its first request this long after it was
    /// accepted is closed.
    pub handshake_timeout: Duration,
    /// A connection with no call in progress for this long is closed.
    pub idle_timeout: Duration,
    /// Bytes of request messages one connection may be receiving at once.
    pub receive_bytes: usize,
}

/// The two steps of a shutdown, shared by every connection: `draining` (stop taking
/// work, close connections that never started a call, end long-lived calls) and
/// `closing` (the grace is over: close everything still open).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    pub draining: CancellationToken,
    pub closing: CancellationToken,
}

/// What the request layer shares with the connection a request came in on.
#[derive(Debug)]
pub struct ConnState {
    /// Calls in progress (from request headers to the end of the response).
    active: AtomicUsize,
    /// Whether any call has begun.
    begun: AtomicBool,
    /// Milliseconds since `epoch` at which the last call ended.
    idle_since_ms: AtomicU64,
    epoch: Instant,
    /// The connection's share of the receive budget (see `budget`).
    pub receive: Arc<Semaphore>,
}

impl ConnState {
    fn new(receive_bytes: usize) -> Self {
        Self {
            active: AtomicUsize::new(0),
            begun: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            receive: Arc::new(Semaphore::new(receive_bytes)),
        }
    }

    /// Counts a call as in progress until the guard is dropped.
    pub fn begin_call(self: &Arc<Self>) -> CallGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.begun.store(true, Ordering::SeqCst);
        CallGuard(self.clone())
    }

    /// How long the connection has had no call in progress (zero while it has one).
    fn idle_for(&self) -> Duration {
        if self.active.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst));
        self.epoch.elapsed().saturating_sub(since)
    }
}

/// A call in progress on a connection; dropping it ends the call.
#[derive(Debug)]
pub struct CallGuard(Arc<ConnState>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let now = self.0.epoch.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(now, Ordering::SeqCst);
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the gRPC server puts into each request's extensions about its connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    pub state: Arc<ConnState>,
}

/// Accepts connections of one port within its limits.
pub struct Acceptor {
    listener: TcpListener,
    port: Port,
    limits: ConnLimits,
    slots: Arc<Semaphore>,
    shutdown: Shutdown,
    last_warning: Option<Instant>,
}

impl Acceptor {
    pub fn new(listener: TcpListener, port: Port, limits: ConnLimits, shutdown: Shutdown) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            listener,
            port,
            limits,
            shutdown,
            last_warning: None,
        }
    }

    /// The next connection within the limit. Connections over the limit are closed at
    /// once (the client sees the connection reset and can retry), so they cost one file
    /// descriptor for a moment and no work.
    pub async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            let (socket, remote) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    self.accept_failed(e).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                metrics::counter!("kpistream_connections_refused_total", "port" => self.port.as_str())
                    .increment(1);
                let max = self.limits.max_connections;
                self.warn(|| format!("{max} connections are open (limits.max_connections): closing new ones until some close"));
                drop(socket);
                continue;
            };
            let _ = socket.set_nodelay(true);
            let conn = Conn::new(
                socket,
                remote,
                slot,
                &self.limits,
                &self.shutdown,
                self.port,
            );
            return (conn, remote);
        }
    }

    /// The accepted connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(self) -> impl Stream<Item = io::Result<Conn>> {
        futures::stream::unfold(self, |mut acceptor| async move {
            let (conn, _) = acceptor.accept().await;
            Some((Ok(conn), acceptor))
        })
    }

    async fn accept_failed(&mut self, error: io::Error) {
        // A client that gave up between the handshake and accept() is not our problem.
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
        ) {
            return;
        }
        metrics::counter!("kpistream_accept_errors_total", "port" => self.port.as_str())
            .increment(1);
        self.warn(|| {
            format!("cannot accept connections: {error} (out of file descriptors? lower limits.max_connections or raise `ulimit -n`)")
        });
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }

    fn warn(&mut self, message: impl FnOnce() -> String) {
        if self
            .last_warning
            .is_some_and(|at| at.elapsed() < WARN_EVERY)
        {
            return;
        }
        self.last_warning = Some(Instant::now());
        tracing::warn!(port = self.port.as_str(), "{}", message());
    }
}

/// The HTTP port's requests carry their connection's [`ConnInfo`] too (as axum's
/// `ConnectInfo`), so that its calls are counted like the gRPC port's.
impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Acceptor>>
    for ConnInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Acceptor>) -> Self {
        stream.io().info.clone()
    }
}

impl axum::serve::Listener for Acceptor {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        Acceptor::accept(self).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy)]
enum CloseReason {
    Silent,
    Idle,
    Shutdown,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Silent => "silent",
            Self::Idle => "idle",
            Self::Shutdown => "shutdown",
        }
    }
}

/// An accepted socket that closes itself when its limits say so.
pub struct Conn {
    socket: TcpStream,
    info: ConnInfo,
    port: Port,
    accepted: Instant,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    closed: Option<CloseReason>,
    timer: Pin<Box<Sleep>>,
    draining: Pin<Box<WaitForCancellationFutureOwned>>,
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
    _slot: OwnedSemaphorePermit,
    _open: Gauge,
}

/// Counts open connections in a gauge for as long as it lives.
struct Gauge(Port);

impl Gauge {
    fn new(port: Port) -> Self {
        metrics::gauge!("kpistream_connections_open", "port" => port.as_str()).increment(1.0);
        Self(port)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!("kpistream_connections_open", "port" => self.0.as_str()).decrement(1.0);
    }
}

impl Conn {
    fn new(
        socket: TcpStream,
        remote: SocketAddr,
        slot: OwnedSemaphorePermit,
        limits: &ConnLimits,
        shutdown: &Shutdown,
        port: Port,
    ) -> Self {
        let accepted = Instant::now();
        Self {
            socket,
            info: ConnInfo {
                remote: Some(remote),
                state: Arc::new(ConnState::new(limits.receive_bytes)),
            },
            port,
            accepted,
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
            closed: None,
            timer: Box::pin(tokio::time::sleep(
                limits.handshake_timeout.min(limits.idle_timeout),
            )),
            draining: Box::pin(shutdown.draining.clone().cancelled_owned()),
            closing: Box::pin(shutdown.closing.clone().cancelled_owned()),
            _slot: slot,
            _open: Gauge::new(port),
        }
    }

    /// Whether the client has started its first call (each port's request layer counts
    /// calls in [`ConnState`]).
    fn started(&self) -> bool {
        self.info.state.begun.load(Ordering::SeqCst)
    }

    /// Whether the connection must close now; registers wake-ups for when it might.
    fn close_reason(&mut self, cx: &mut Context<'_>) -> Option<CloseReason> {
        if self.closing.as_mut().poll(cx).is_ready() {
            return Some(CloseReason::Shutdown);
        }
        // A connection that never started a call has none to finish.
        if !self.started() && self.draining.as_mut().poll(cx).is_ready() {
            return Some(CloseReason::Shutdown);
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let next = if !self.started() {
                // TLS handshake, HTTP/2 preface and the first request's headers must
                // all arrive within the handshake timeout.
                match self.handshake_timeout.checked_sub(self.accepted.elapsed()) {
                    None | Some(Duration::ZERO) => return Some(CloseReason::Silent),
                    // Nothing wakes this timer when the first call starts: look again
                    // within an idle timeout, so idleness is not noticed late.
                    Some(left) => left.min(self.idle_timeout),
                }
            } else {
                let idle = self.info.state.idle_for();
                if idle >= self.idle_timeout {
                    return Some(CloseReason::Idle);
                }
                // Busy (idle is zero): look again one idle timeout later.
                self.idle_timeout - idle
            };
            let at = tokio::time::Instant::now() + next;
            self.timer.as_mut().reset(at);
        }
        None
    }

    fn close(&mut self, reason: CloseReason) {
        if self.closed.is_none() {
            tracing::debug!(port = self.port.as_str(), remote = ?self.info.remote, reason = reason.as_str(), "closing connection");
            metrics::counter!("kpistream_connections_closed_total", "port" => self.port.as_str(), "reason" => reason.as_str())
                .increment(1);
            self.closed = Some(reason);
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by the server",
    )
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.closed.is_none() {
            if let Some(reason) = self.close_reason(cx) {
                self.close(reason);
            }
        }
        if self.closed.is_some() {
            // End of stream: the connection sees the peer hang up and ends.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.closed.is_none() && self.closing.as_mut().poll(cx).is_ready() {
            // A client that stopped reading can block writes; the grace still ends them.
            self.close(CloseReason::Shutdown);
        }
        if self.closed.is_some() {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.closed.is_some() {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed.is_some() {
            return Poll::Ready(Err(closed_error()));
        }
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

/// Tells how many file descriptors the process may open, after raising its soft limit
/// to the hard one (a server needs one per connection, and the usual soft limit of
/// 1,024 is below what the connection limits allow).
pub fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}
