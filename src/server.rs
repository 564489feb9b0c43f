//! `kpistream serve`: opens the store, bootstraps a fresh database, and runs the gRPC
//! and HTTP servers until the shutdown future resolves. Tests and `main` share this path.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::auth;
use crate::config::ServerConfig;
use crate::grpc::AppState;
use crate::grpc::admin::AdminService;
use crate::grpc::ingest::IngestService;
use crate::grpc::query::QueryService;
use crate::ids::{OrgId, UserId};
use crate::ingest::Ingestor;
use crate::proto::ingest_server::IngestServer;
use crate::proto::query_server::QueryServer;
use crate::proto::stream_admin_server::StreamAdminServer;
use crate::store::{self, Bootstrap, Store};

/// A server bound to its ports, ready to run.
pub struct Application {
    config: ServerConfig,
    store: Arc<dyn Store>,
    grpc: TcpListener,
    http: TcpListener,
}

impl Application {
    /// Opens the database (migrating it), bootstraps it if empty, and binds both ports.
    pub async fn build(config: ServerConfig) -> anyhow::Result<Self> {
        let store = store::open(&config.db)
            .await
            .with_context(|| format!("cannot open the database {}", config.db))?;
        bootstrap(&config, store.as_ref()).await?;
        let grpc = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen for gRPC on {}", config.listen))?;
        let http = TcpListener::bind(config.http)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http))?;
        Ok(Self {
            config,
            store,
            grpc,
            http,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight calls
    /// finish (each publish is answered after its commit) and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            config,
            store,
            grpc,
            http,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let ingestor = Ingestor::start(store.clone(), config.ingest_config());
        let pruner = tokio::spawn(prune_loop(ingestor.clone()));
        let state = AppState {
            store: store.clone(),
            ingestor,
        };

        let http_server = axum::serve(http, crate::http::router(store.clone()))
            .with_graceful_shutdown(stopped(stop_rx.clone()));
        let http_task = tokio::spawn(async move { http_server.await });

        let grpc_result = serve_grpc(&config, state, grpc, async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight calls");
            let _ = stop_tx.send(true);
        })
        .await;
        pruner.abort();
        http_task.await.context("the HTTP server panicked")??;
        grpc_result.context("the gRPC server failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn serve_grpc(
    config: &ServerConfig,
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let limit = config.limits.max_message_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    tokio::spawn(async move {
        health.set_serving::<IngestServer<IngestService>>().await;
        health
            .set_serving::<StreamAdminServer<AdminService>>()
            .await;
        health.set_serving::<QueryServer<QueryService>>().await;
    });
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(config.limits.max_concurrent_streams))
        .timeout(Duration::from_secs(config.limits.request_timeout_secs))
        .layer(tower::util::MapResponseLayer::new(
            oversize_is_resource_exhausted,
        ))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            IngestServer::new(IngestService::new(state.clone())).max_decoding_message_size(limit),
        )
        .add_service(
            StreamAdminServer::new(AdminService::new(state.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(QueryServer::new(QueryService::new(state)).max_decoding_message_size(limit))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// The gRPC library answers a message over the size limit with OUT_OF_RANGE; gRPC's
/// own convention (and other languages' servers) say RESOURCE_EXHAUSTED, which is what
/// kpistream documents. Rewrites that one answer, with a sentence a person can act on.
fn oversize_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let oversize = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.contains("message%20length%20too%20large"));
    if oversize {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "the%20message%20is%20larger%20than%20the%20server%27s%20limit%20%28limits.max_message_bytes%29%3A%20send%20smaller%20batches",
            ),
        );
    }
    response
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn prune_loop(ingestor: Ingestor) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        match ingestor.prune().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(forgotten = n, "batch ids past the dedup window forgotten"),
            Err(e) => tracing::warn!(error = %e, "could not prune old batch ids"),
        }
    }
}

/// On a fresh database: creates the organisation and its admin, and writes the admin's
/// token once to a 0600 file.
async fn bootstrap(config: &ServerConfig, store: &dyn Store) -> anyhow::Result<()> {
    let token = auth::generate_token();
    let first = Bootstrap {
        org_id: OrgId::generate(),
        org_name: config.org_name.clone(),
        user_id: UserId::generate(),
        user_name: config.admin_name.clone(),
        token_hash: auth::hash_token(&token),
    };
    if !store.bootstrap(&first, jiff::Timestamp::now()).await? {
        return Ok(());
    }
    write_secret_file(&config.admin_token_file, token.expose_secret())?;
    println!(
        "created organisation {:?} with admin {:?}; the admin token was written to {} (mode 0600, shown only this once)",
        first.org_name,
        first.user_name,
        config.admin_token_file.display()
    );
    Ok(())
}

/// Writes a secret to a file readable by its owner only, creating the folder.
pub fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(file, "{secret}")?;
    file.sync_all()?;
    Ok(())
}
