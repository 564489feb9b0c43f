//! `kpistream serve`: binds its ports, opens the store, bootstraps a fresh database,
//! and runs the gRPC and HTTP servers until the shutdown future resolves. Tests and
//! `main` share this path. The gRPC port serves TLS (and mutual TLS) when the config
//! names a certificate; the HTTP port is always plain HTTP. Both ports take their
//! connections through `transport`, which bounds what an unauthenticated client can
//! make the server hold.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::auth;
use crate::config::{ServerConfig, TlsSettings};
use crate::grpc::AppState;
use crate::grpc::admin::AdminService;
use crate::grpc::ingest::IngestService;
use crate::grpc::query::QueryService;
use crate::grpc::runner::RunnerService;
use crate::ids::{OrgId, UserId};
use crate::ingest::Ingestor;
use crate::proto::ingest_server::IngestServer;
use crate::proto::query_server::QueryServer;
use crate::proto::runner_server::RunnerServer;
use crate::proto::stream_admin_server::StreamAdminServer;
use crate::secret_file::StagedSecret;
use crate::store::{self, Bootstrap, Store, WriteHealth};
use crate::tls;
use crate::transport::conn::ConnInfo;
use crate::transport::{self, Acceptor, BudgetLayer, ConnLimits, Port, Shutdown};

/// How the gRPC port is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcSecurity {
    /// Plain-text HTTP/2 (`http://`).
    Plain,
    /// TLS (`https://`): clients check the server's certificate.
    Tls,
    /// Mutual TLS: the server also requires a client certificate signed by its client CA.
    MutualTls,
}

/// A server bound to its ports, ready to run.
pub struct Application {
    config: ServerConfig,
    store: Arc<dyn Store>,
    grpc: TcpListener,
    http: TcpListener,
    /// Connection limits of the two ports, fitted to the open-files limit.
    conn_limits: (ConnLimits, ConnLimits),
    tls: Option<ServerTlsConfig>,
    security: GrpcSecurity,
    /// Sends alert emails and webhook events.
    sender: crate::notify::dispatch::Sender,
}

impl Application {
    /// Checks the limits, reads the TLS files, binds both ports, opens the database
    /// (migrating it) and bootstraps it if empty, in that order: a start that could not
    /// serve stops before it writes anything.
    pub async fn build(config: ServerConfig) -> anyhow::Result<Self> {
        config.check()?;
        config.alerts.check()?;
        let sender = crate::notify::dispatch::Sender::new(&config.alerts)?;
        let conn_limits = transport::conn_limits(&config.limits);
        let handshake = Duration::from_secs(config.limits.handshake_timeout_secs);
        let (tls, security) = match server_tls(&config.tls, handshake)? {
            Some((tls, security)) => (Some(tls), security),
            None => (None, GrpcSecurity::Plain),
        };
        let grpc = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen for gRPC on {}", config.listen))?;
        let http = TcpListener::bind(config.http)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http))?;
        let options = store::OpenOptions {
            migrate: config.migrate,
            allow_async_commit: config.allow_async_commit,
        };
        let store = store::open_with(&config.db, &options)
            .await
            .with_context(|| {
                format!("cannot open the database {}", store::redact_url(&config.db))
            })?;
        bootstrap(&config, store.as_ref()).await?;
        if security != GrpcSecurity::Plain && !config.http.ip().is_loopback() {
            tracing::warn!(
                http = %config.http,
                "gRPC is served over TLS, but /healthz and /metrics are plain HTTP on a non-loopback address"
            );
        }
        Ok(Self {
            config,
            store,
            grpc,
            http,
            conn_limits,
            tls,
            security,
            sender,
        })
    }

    /// Plain text, TLS or mutual TLS on the gRPC port.
    pub fn grpc_security(&self) -> GrpcSecurity {
        self.security
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

    /// Serves until `shutdown` resolves. Then it stops accepting, tells clients to go
    /// away (HTTP/2 GOAWAY), lets calls in flight finish (each publish is answered after
    /// its commit; open `PublishStream`s and `Watch`es are ended), and closes whatever
    /// is still open when `limits.shutdown_grace_secs` have passed.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            config,
            store,
            grpc,
            http,
            conn_limits: (grpc_limits, http_limits),
            tls,
            security: _,
            sender,
        } = self;
        let ending = Shutdown::default();
        let health = store.write_health();
        let ingestor = Ingestor::start(store.clone(), config.ingest_config(), health.clone());
        let pruner = tokio::spawn(prune_loop(ingestor.clone(), health.clone()));
        let notifier = tokio::spawn(crate::notify::dispatch::run(
            store.clone(),
            config.alerts.clone(),
            sender,
            health.clone(),
        ));
        let state = AppState {
            store: store.clone(),
            ingestor,
            health: health.clone(),
            deadline: Duration::from_secs(config.limits.request_timeout_secs),
            watch_buffer_points: config.limits.watch_buffer_points,
            stopping: ending.draining.clone(),
            alert_email: config.alerts.smtp.is_some(),
        };

        let http = Acceptor::new(http, Port::Http, http_limits, ending.clone());
        let grpc = Acceptor::new(grpc, Port::Grpc, grpc_limits, ending.clone());

        let draining = ending.draining.clone();
        // Live console pages hold a connection each: at most half of the HTTP port's, so
        // /healthz, /metrics and the console's other pages always have room.
        let live_pages = (config.limits.max_http_connections / 2).max(1);
        let console = crate::console::router(state.clone(), live_pages);
        let router =
            crate::http::router(store, health, config.limits.metrics_stream_series, console);
        let http_server = axum::serve(
            http,
            router.into_make_service_with_connect_info::<ConnInfo>(),
        )
        .with_graceful_shutdown(async move { draining.cancelled().await });
        let http_task = tokio::spawn(async move { http_server.await });

        let grace = Duration::from_secs(config.limits.shutdown_grace_secs);
        let signal = {
            let ending = ending.clone();
            async move {
                shutdown.await;
                tracing::info!(
                    grace_secs = grace.as_secs(),
                    "shutting down: finishing calls in flight"
                );
                ending.draining.cancel();
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    tracing::info!("shutdown grace over: closing the connections still open");
                    ending.closing.cancel();
                });
            }
        };
        let grpc_result = serve_grpc(&config, tls, state, grpc, signal).await;
        pruner.abort();
        notifier.abort();
        http_task.await.context("the HTTP server panicked")??;
        grpc_result.context("the gRPC server failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn serve_grpc(
    config: &ServerConfig,
    tls: Option<ServerTlsConfig>,
    state: AppState,
    acceptor: Acceptor,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let limits = &config.limits;
    let limit = limits.max_message_bytes;
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
        health.set_serving::<RunnerServer<RunnerService>>().await;
    });
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let budget = Arc::new(transport::receive_budget(limits));
    builder
        .max_concurrent_streams(Some(limits.max_concurrent_streams))
        .initial_stream_window_size(Some(limits.stream_window_bytes))
        .initial_connection_window_size(Some(limits.connection_window_bytes))
        .http2_max_header_list_size(Some(limits.max_header_bytes))
        .http2_keepalive_interval(Some(Duration::from_secs(limits.keepalive_interval_secs)))
        .http2_keepalive_timeout(Some(Duration::from_secs(limits.keepalive_timeout_secs)))
        .layer(tower::util::MapResponseLayer::new(
            oversize_is_resource_exhausted,
        ))
        .layer(BudgetLayer::new(budget))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            IngestServer::new(IngestService::new(state.clone())).max_decoding_message_size(limit),
        )
        .add_service(
            StreamAdminServer::new(AdminService::new(state.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(
            QueryServer::new(QueryService::new(state.clone())).max_decoding_message_size(limit),
        )
        .add_service(RunnerServer::new(RunnerService::new(state)).max_decoding_message_size(limit))
        .serve_with_incoming_shutdown(acceptor.into_stream(), shutdown)
        .await?;
    Ok(())
}

/// Reads the TLS files `settings` names and checks that they work together: `None` when
/// TLS is off. Every error names the file and the setting to fix.
fn server_tls(
    settings: &TlsSettings,
    handshake_timeout: Duration,
) -> anyhow::Result<Option<(ServerTlsConfig, GrpcSecurity)>> {
    tls::use_ring_provider();
    let (cert_path, key_path) = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if settings.client_ca.is_some() => bail!(
            "tls.client_ca (--tls-client-ca) requires client certificates, which needs TLS: set tls.cert (--tls-cert) and tls.key (--tls-key) too"
        ),
        (None, None) => return Ok(None),
        (Some(_), None) => bail!(
            "TLS needs a certificate and its key: tls.cert (--tls-cert) is set but tls.key (--tls-key) is not"
        ),
        (None, Some(_)) => bail!(
            "TLS needs a certificate and its key: tls.key (--tls-key) is set but tls.cert (--tls-cert) is not"
        ),
    };
    let cert = tls::read_certificates(cert_path, "server certificate (tls.cert, --tls-cert)")?;
    let key = tls::read_private_key(key_path, "server key (tls.key, --tls-key)")?;
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key.expose_secret()))
        .timeout(handshake_timeout);
    let mut security = GrpcSecurity::Tls;
    if let Some(ca_path) = &settings.client_ca {
        let ca = tls::read_certificates(
            ca_path,
            "client CA certificate (tls.client_ca, --tls-client-ca)",
        )?;
        config = config.client_ca_root(Certificate::from_pem(ca));
        security = GrpcSecurity::MutualTls;
    }
    // Building the TLS acceptor is where a key that does not belong to the certificate
    // shows up; do it now, so start-up fails instead of the first handshake.
    if let Err(e) = tonic::transport::Server::builder().tls_config(config.clone()) {
        let cause = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
        bail!(
            "cannot serve TLS with the certificate {} and the key {}: {cause}",
            cert_path.display(),
            key_path.display()
        );
    }
    Ok(Some((config, security)))
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

async fn prune_loop(ingestor: Ingestor, health: Arc<WriteHealth>) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        match ingestor.prune().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(forgotten = n, "batch ids past the dedup window forgotten"),
            Err(e) => {
                health.failed(&e);
                tracing::warn!(error = %e, "could not prune old batch ids");
            }
        }
    }
}

/// On a fresh database: creates the organisation and its admin, and writes the admin's
/// token once to a 0600 file. The token is written (beside its final path) before the
/// organisation is committed and moved into place after: a start that cannot write the
/// file commits nothing, so the next start, with a path that works, bootstraps then.
async fn bootstrap(config: &ServerConfig, store: &dyn Store) -> anyhow::Result<()> {
    if !store.needs_bootstrap().await? {
        return Ok(());
    }
    let path = &config.admin_token_file;
    let token = auth::generate_token();
    let staged = StagedSecret::write(path, token.expose_secret())
        .context("cannot write the admin token file (admin_token_file, --admin-token-file), so nothing was created")?;
    let first = Bootstrap {
        org_id: OrgId::generate(),
        org_name: config.org_name.clone(),
        user_id: UserId::generate(),
        user_name: config.admin_name.clone(),
        token_hash: auth::hash_token(&token),
    };
    if !store.bootstrap(&first, jiff::Timestamp::now()).await? {
        // Another server bootstrapped the database meanwhile; its token stands.
        return Ok(());
    }
    staged.publish()?;
    println!(
        "created organisation {:?} with admin {:?}; the admin token was written to {} (mode 0600, shown only this once)",
        first.org_name,
        first.user_name,
        path.display()
    );
    Ok(())
}
