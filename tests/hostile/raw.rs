//! A raw HTTP/2 client that behaves as no gRPC library would: calls that announce a
//! large message and stall before its end.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Zeros to send as message bodies without allocating per chunk.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// One HTTP/2 connection with its driver running.
pub struct RawConnection {
    send: SendRequest<Bytes>,
    tasks: JoinSet<()>,
}

impl RawConnection {
    /// Connects and completes the HTTP/2 handshake. `window` is the receive window the
    /// client advertises (what the server may send before the client reads).
    pub async fn open(addr: SocketAddr, window: u32) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("the server accepts");
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(window)
            .initial_connection_window_size(window)
            .handshake(tcp)
            .await
            .expect("the HTTP/2 handshake");
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let _ = connection.await;
        });
        Self { send, tasks }
    }

    /// Whether the connection still takes calls.
    pub async fn is_open(&mut self) -> bool {
        self.send.clone().ready().await.is_ok()
    }

    /// Starts a gRPC call to `path`.
    async fn call(&mut self, path: &str) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        let request = http::Request::post(format!("http://kpistream{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut send = self.send.clone().ready().await.expect("room for a call");
        send.send_request(request, false).expect("the call starts")
    }

    /// Starts `calls` calls to `path`, each announcing a `announced`-byte message and
    /// sending all of it but the last KiB, as fast as the server's flow control allows;
    /// then the calls stall, holding what they sent.
    pub async fn stall_calls(&mut self, path: &str, calls: usize, announced: u32) {
        for _ in 0..calls {
            let (response, mut body) = self.call(path).await;
            self.tasks.spawn(async move {
                let mut header = vec![0u8];
                header.extend_from_slice(&announced.to_be_bytes());
                if body.send_data(Bytes::from(header), false).is_err() {
                    return;
                }
                let mut left = announced as usize - 1024;
                while left > 0 {
                    body.reserve_capacity(left.min(ZEROS.len()));
                    let granted = match std::future::poll_fn(|cx| body.poll_capacity(cx)).await {
                        Some(Ok(granted)) => granted.min(left),
                        _ => return,
                    };
                    if granted == 0 {
                        continue;
                    }
                    if body
                        .send_data(Bytes::from_static(&ZEROS[..granted]), false)
                        .is_err()
                    {
                        return;
                    }
                    left -= granted;
                }
                // Hold the call open, never finishing the message.
                let _ = response.await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(body);
            });
        }
    }
}
