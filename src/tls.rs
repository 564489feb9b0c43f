//! Reading the PEM files TLS needs (certificates, CA certificates, private keys), for
//! the server and the client alike. Each file is parsed here, when it is read, so a
//! wrong or unreadable file stops start-up with an error that names it, instead of a
//! vague failure at the first handshake.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::SecretSlice;

/// Makes ring the process's TLS crypto provider, once. rustls picks one by itself only
/// when exactly one is compiled in; another crate in the same build (a test's WebDriver
/// client, an application using the SDK) may bring a second, and then every handshake
/// would panic. Called before any TLS configuration is built, server or client.
pub fn use_ring_provider() {
    // An error only says a provider is installed already, which is what is wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS file that cannot be used. `what` says what the file was for ("server
/// certificate (--tls-cert)"), so the sentence tells the user which setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the {what} {path} holds no PEM certificate (expected a -----BEGIN CERTIFICATE----- block){detail}"
    )]
    NoCertificate {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error(
        "the {what} {path} holds no PEM private key (expected a -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY block){detail}"
    )]
    NoPrivateKey {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
}

/// Reads a PEM file of one or more certificates and returns its bytes, after checking
/// that each block parses and that there is at least one.
pub fn read_certificates(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsFileError> {
    let pem = read(path, what)?;
    let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match parsed {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => Err(TlsFileError::NoCertificate {
            what,
            path: path.to_owned(),
            detail: String::new(),
        }),
        Err(e) => Err(TlsFileError::NoCertificate {
            what,
            path: path.to_owned(),
            detail: format!(": {e}"),
        }),
    }
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1) and returns its bytes as a secret,
/// after checking that it parses.
pub fn read_private_key(path: &Path, what: &'static str) -> Result<SecretSlice<u8>, TlsFileError> {
    let pem = SecretSlice::from(read(path, what)?);
    let parsed = PrivateKeyDer::from_pem_slice(secrecy::ExposeSecret::expose_secret(&pem));
    match parsed {
        Ok(_) => Ok(pem),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => Err(TlsFileError::NoPrivateKey {
            what,
            path: path.to_owned(),
            detail: String::new(),
        }),
        Err(e) => Err(TlsFileError::NoPrivateKey {
            what,
            path: path.to_owned(),
            detail: format!(": {e}"),
        }),
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_as_the_certificate_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = read_certificates(&path, "server certificate (--tls-cert)").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("server.key"), "{text}");
        assert!(text.contains("no PEM certificate"), "{text}");
    }

    #[test]
    fn a_missing_key_file_is_an_error_naming_the_file_and_its_purpose() {
        let err = read_private_key(Path::new("/nonexistent/k.pem"), "client key (--client-key)")
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot read the client key (--client-key) /nonexistent/k.pem"),
            "{text}"
        );
    }
}
