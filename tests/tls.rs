//! TLS and mutual TLS on the gRPC port: publishing and querying over TLS, client
//! certificates required and checked, and clear errors when one side speaks TLS and the
//! other does not. Certificates are made per test with rcgen, in a temporary folder.

mod common;

use std::path::{Path, PathBuf};

use common::{TestServer, cli, point, stream_request};
use kpistream::client::{Client, ClientError, ConnectOptions, Credential};
use kpistream::proto;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use secrecy::SecretString;
use tempfile::TempDir;

/// A test CA with a server certificate for `localhost` and 127.0.0.1, a client
/// certificate it signed, and a client certificate signed by another CA.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = certificate_authority(dir.path(), "ca");
        let other = certificate_authority(dir.path(), "other-ca");
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        leaf(
            dir.path(),
            "server",
            &["localhost", "127.0.0.1"],
            server,
            &ca,
        );
        leaf(dir.path(), "client", &[], client.clone(), &ca);
        leaf(dir.path(), "stranger", &[], client, &other);
        Self { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn arg(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    /// `serve` flags for TLS with the server certificate.
    fn tls_flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.arg("server.pem"),
            "--tls-key".into(),
            self.arg("server.key"),
        ]
    }

    /// `serve` flags for mutual TLS: client certificates must be signed by `ca.pem`.
    fn mtls_flags(&self) -> Vec<String> {
        let mut flags = self.tls_flags();
        flags.extend(["--tls-client-ca".into(), self.arg("ca.pem")]);
        flags
    }

    /// Options that trust the test CA and carry the admin token.
    fn options(&self, server: &TestServer) -> ConnectOptions {
        ConnectOptions::with_token(SecretString::from(server.token.clone()))
            .ca_file(self.path("ca.pem"))
            .expect("the CA file reads")
    }

    /// [`Pki::options`] with the client certificate `name` (`client` or `stranger`).
    fn options_with_certificate(&self, server: &TestServer, name: &str) -> ConnectOptions {
        self.options(server)
            .client_identity_files(
                self.path(&format!("{name}.pem")),
                self.path(&format!("{name}.key")),
            )
            .expect("the client certificate and key read")
    }
}

fn certificate_authority(dir: &Path, name: &str) -> Issuer<'static, KeyPair> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("kpistream test {name}"));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    Issuer::new(params, key)
}

fn leaf(
    dir: &Path,
    name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'static, KeyPair>,
) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

fn start(flags: &[String]) -> TestServer {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    TestServer::start_with(&flags)
}

/// `https://localhost:PORT` of a server (its `grpc` field is `http://127.0.0.1:PORT`).
fn https(server: &TestServer) -> String {
    server
        .grpc
        .replace("http://127.0.0.1:", "https://localhost:")
}

async fn connect(server: &TestServer, options: ConnectOptions) -> Result<Client, ClientError> {
    Client::connect_with(&https(server), options).await
}

/// Creates a daily stream, publishes two points and reads them back, all over `client`.
async fn publish_and_query(client: &Client) {
    let created = client
        .admin()
        .create_stream(stream_request("over tls", proto::Frequency::Daily, "UTC"))
        .await
        .expect("the stream is created over TLS")
        .into_inner();
    let credential: Credential = created.credential.parse().unwrap();
    let stream_id = created.stream.unwrap().id;
    let points = vec![point("2026-11-01", "1.5"), point("2026-11-02", "2")];
    let published = client.publish(&credential, points, false).await.unwrap();
    assert_eq!(published.accepted, 2, "{published:?}");
    let values: Vec<(String, String)> = common::values(client, &stream_id).await;
    assert_eq!(
        values,
        [
            ("2026-11-01".into(), "1.5".into()),
            ("2026-11-02".into(), "2".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_and_query_work_over_tls() {
    let pki = Pki::new();
    let server = start(&pki.tls_flags());
    let client = connect(&server, pki.options(&server))
        .await
        .expect("a client trusting the CA connects");
    publish_and_query(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn under_mtls_a_client_certificate_signed_by_the_client_ca_publishes_and_queries() {
    let pki = Pki::new();
    let server = start(&pki.mtls_flags());
    let options = pki.options_with_certificate(&server, "client");
    let client = connect(&server, options)
        .await
        .expect("a client with a certificate from the client CA connects");
    publish_and_query(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn under_mtls_a_client_without_a_certificate_is_refused_and_told_to_give_one() {
    let pki = Pki::new();
    let server = start(&pki.mtls_flags());
    let err = connect(&server, pki.options(&server))
        .await
        .err()
        .expect("a client without a certificate is refused");
    // Whether the server's alert or a bare reset arrives first, the answer is one.
    assert!(
        matches!(err, ClientError::ClientCertificateRequired { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("client certificate"), "{text}");
    assert!(text.contains("--client-cert"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn under_mtls_a_client_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let server = start(&pki.mtls_flags());
    let options = pki.options_with_certificate(&server, "stranger");
    let err = connect(&server, options)
        .await
        .err()
        .expect("a certificate from another CA is refused");
    assert!(
        matches!(err, ClientError::ClientCertificateRefused { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("did not accept our client certificate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_text_to_a_tls_port_fails_saying_to_use_https() {
    let pki = Pki::new();
    let server = start(&pki.tls_flags());
    let err = Client::connect(&server.grpc, None)
        .await
        .err()
        .expect("plain text to a TLS port fails");
    assert!(matches!(err, ClientError::ServesTls { .. }), "{err:?}");
    let port = server.grpc.rsplit(':').next().unwrap();
    let text = err.to_string();
    assert!(
        text.contains("did not answer gRPC over plain text: is it serving TLS?"),
        "{text}"
    );
    assert!(
        text.contains(&format!("use https://127.0.0.1:{port}")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_to_a_plain_port_fails_saying_to_use_http() {
    let pki = Pki::new();
    let server = TestServer::start();
    let err = connect(&server, pki.options(&server))
        .await
        .err()
        .expect("TLS to a plain-text port fails");
    assert!(matches!(err, ClientError::NotTls { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("did not answer TLS: is it serving plain text? use http://localhost:"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_certificate_from_a_private_ca_is_not_trusted_without_that_ca() {
    let pki = Pki::new();
    let server = start(&pki.tls_flags());
    let err = connect(&server, ConnectOptions::default())
        .await
        .err()
        .expect("the public roots do not include the test CA");
    assert!(
        matches!(err, ClientError::UntrustedServer { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("--ca-cert"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_lists_streams_over_mtls_and_explains_a_plain_text_mistake() {
    let pki = Pki::new();
    let server = start(&pki.mtls_flags());
    let client = connect(&server, pki.options_with_certificate(&server, "client"))
        .await
        .unwrap();
    client
        .admin()
        .create_stream(stream_request(
            "seen by the cli",
            proto::Frequency::Weekly,
            "UTC",
        ))
        .await
        .unwrap();

    let token_file = server.token_path().display().to_string();
    let output = cli(server.dir())
        .args(["stream", "list", "--server", &https(&server)])
        .args(["--token-file", &token_file])
        .args(["--ca-cert", &pki.arg("ca.pem")])
        .args(["--client-cert", &pki.arg("client.pem")])
        .args(["--client-key", &pki.arg("client.key")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("seen by the cli"), "{stdout}");

    let output = cli(server.dir())
        .args(["stream", "list", "--server", &server.grpc])
        .args(["--token-file", &token_file])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("is it serving TLS? use https://"),
        "{stderr}"
    );
}

#[test]
fn serve_prints_mtls_after_the_grpc_address() {
    use std::io::{BufRead, BufReader};
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let mut child = cli(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(pki.mtls_flags())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("gRPC listening on "));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("the server prints its gRPC address");
    let re = regex::Regex::new(r"^gRPC listening on 127\.0\.0\.1:\d+ \(mTLS\)$").unwrap();
    assert!(re.is_match(&line), "{line}");
}

/// Runs `kpistream serve` with `flags` and returns its error output, expecting it to
/// refuse to start.
fn serve_refuses(flags: &[String]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = cli(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(flags)
        .output()
        .unwrap();
    assert!(!output.status.success(), "serve started with {flags:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serve_refuses_a_certificate_without_its_key() {
    let pki = Pki::new();
    let stderr = serve_refuses(&["--tls-cert".into(), pki.arg("server.pem")]);
    assert!(
        stderr.contains("tls.cert (--tls-cert) is set but tls.key (--tls-key) is not"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_a_key_file_that_is_not_a_key_naming_the_file() {
    let pki = Pki::new();
    let flags = [
        "--tls-cert".into(),
        pki.arg("server.pem"),
        "--tls-key".into(),
        pki.arg("ca.pem"),
    ];
    let stderr = serve_refuses(&flags);
    assert!(stderr.contains(&pki.arg("ca.pem")), "{stderr}");
    assert!(stderr.contains("no PEM private key"), "{stderr}");
}

#[test]
fn serve_refuses_a_key_that_does_not_belong_to_the_certificate() {
    let pki = Pki::new();
    let flags = [
        "--tls-cert".into(),
        pki.arg("server.pem"),
        "--tls-key".into(),
        pki.arg("client.key"),
    ];
    let stderr = serve_refuses(&flags);
    assert!(
        stderr.contains("cannot serve TLS with the certificate"),
        "{stderr}"
    );
    assert!(stderr.contains(&pki.arg("client.key")), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_on_a_lazy_channel_is_explained_by_from_transport_status() {
    let pki = Pki::new();
    let server = start(&pki.tls_flags());
    let options = ConnectOptions::default();
    let explain = async |address: &str| {
        let channel = options.endpoint(address).unwrap().connect_lazy();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect_err("the call fails in transport");
        ClientError::from_transport_status(address, &options, &status)
            .expect("a transport failure is explained")
    };
    let plain = explain(&server.grpc).await;
    assert!(matches!(plain, ClientError::ServesTls { .. }), "{plain:?}");
    let closed = explain("http://127.0.0.1:1").await;
    assert!(matches!(closed, ClientError::Connect { .. }), "{closed:?}");
}
