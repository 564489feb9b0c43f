//! Signed batches: the DSSE v1 pre-authentication encoding, credentials, signing and
//! verification. The exact rules, with test vectors, are in `docs/signing.md`.
//!
//! [`VerifiedBatch`] can only come out of [`verify`]: code that holds one knows the
//! bytes were signed by the key it names, for the stream it names.

#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use prost::Message;

use crate::ids::{InvalidId, KeyId, StreamId};
use crate::proto;

/// The prefix of the signed type; the stream id follows it.
pub const PAYLOAD_TYPE_PREFIX: &str = "kpistream.v1.Batch/";
/// The prefix of a credential string.
pub const CREDENTIAL_PREFIX: &str = "kpik1";

/// Why a signature, a public key or the signed bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// An Ed25519 signature is 64 bytes.
    #[error("the signature must be 64 bytes, got {0}")]
    SignatureLength(usize),
    /// An Ed25519 public key is 32 bytes.
    #[error("the public key must be 32 bytes, got {0}")]
    PublicKeyLength(usize),
    /// The bytes do not decode to a curve point.
    #[error("the public key is not a valid Ed25519 point")]
    InvalidPublicKey,
    /// A small-order key would verify forged signatures: refused.
    #[error("the public key has small order and can never verify a signature")]
    WeakPublicKey,
    /// Strict verification failed.
    #[error(
        "the signature does not verify for stream {stream_id} with key {key_id}: the batch bytes were changed, signed for another stream, or signed with another key"
    )]
    BadSignature {
        /// The stream the envelope names.
        stream_id: StreamId,
        /// The key the envelope names.
        key_id: KeyId,
    },
    /// The signed bytes verified but are not a `Batch` message.
    #[error("the batch bytes are not a kpistream.v1.Batch message: {0}")]
    Undecodable(String),
    /// `signed_at` is required.
    #[error("the batch has no signed_at timestamp")]
    MissingSignedAt,
    /// `signed_at` is out of range.
    #[error("signed_at is not a valid timestamp")]
    InvalidSignedAt,
}

/// `PAE(type, body)` of DSSE v1 with `type = "kpistream.v1.Batch/" + stream_id`.
pub fn pae(stream_id: &str, body: &[u8]) -> Vec<u8> {
    let payload_type = format!("{PAYLOAD_TYPE_PREFIX}{stream_id}");
    let mut out = Vec::with_capacity(32 + payload_type.len() + body.len());
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// Parses a 32-byte Ed25519 public key, refusing small-order (weak) keys.
pub fn parse_public_key(bytes: &[u8]) -> Result<VerifyingKey, SignatureError> {
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| SignatureError::PublicKeyLength(bytes.len()))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| SignatureError::InvalidPublicKey)?;
    if key.is_weak() {
        return Err(SignatureError::WeakPublicKey);
    }
    Ok(key)
}

/// A stream's private key with the ids it signs for: `kpik1.<stream_id>.<key_id>.<seed>`.
///
/// `Debug` never shows the seed, and there is no `Display`: the secret text comes out
/// only through [`Credential::expose_secret`].
#[derive(Clone)]
pub struct Credential {
    stream_id: StreamId,
    key_id: KeyId,
    signing_key: SigningKey,
}

/// Why a credential string does not parse. The message never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Not four dot-separated parts.
    #[error("a credential has four parts kpik1.<stream_id>.<key_id>.<seed>")]
    Shape,
    /// Not a `kpik1` credential.
    #[error("a credential starts with kpik1.")]
    Prefix,
    /// The stream or key id is malformed.
    #[error("the credential's {0}")]
    Id(#[from] InvalidId),
    /// The seed is not 32 bytes of base64url.
    #[error("the credential's seed is not 32 bytes of base64url without padding")]
    Seed,
}

impl Credential {
    /// A credential from its parts.
    pub fn new(stream_id: StreamId, key_id: KeyId, signing_key: SigningKey) -> Self {
        Self {
            stream_id,
            key_id,
            signing_key,
        }
    }

    /// A credential with a fresh random key.
    pub fn generate(stream_id: StreamId, key_id: KeyId) -> Self {
        let signing_key = SigningKey::generate(&mut rand::rngs::OsRng);
        Self::new(stream_id, key_id, signing_key)
    }

    /// The stream this credential signs for.
    pub fn stream_id(&self) -> &StreamId {
        &self.stream_id
    }

    /// The key's id within its stream.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The public half, as the server stores it.
    pub fn public_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// The credential string, secret included. Write it only where the user asked.
    pub fn expose_secret(&self) -> String {
        format!(
            "{CREDENTIAL_PREFIX}.{}.{}.{}",
            self.stream_id,
            self.key_id,
            URL_SAFE_NO_PAD.encode(self.signing_key.to_bytes())
        )
    }

    /// Signs serialized batch bytes for this credential's stream.
    pub fn sign(&self, batch: &[u8]) -> [u8; 64] {
        self.signing_key
            .sign(&pae(self.stream_id.as_str(), batch))
            .to_bytes()
    }

    /// Serializes `batch`, signs it and wraps it in the envelope.
    pub fn seal(&self, batch: &proto::Batch) -> proto::SignedBatch {
        let bytes = batch.encode_to_vec();
        proto::SignedBatch {
            stream_id: self.stream_id.to_string(),
            key_id: self.key_id.to_string(),
            signature: self.sign(&bytes).to_vec(),
            batch: bytes,
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("stream_id", &self.stream_id)
            .field("key_id", &self.key_id)
            .field("seed", &"[REDACTED]")
            .finish()
    }
}

impl FromStr for Credential {
    type Err = CredentialError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        let [prefix, stream_id, key_id, seed] = parts[..] else {
            return Err(CredentialError::Shape);
        };
        if prefix != CREDENTIAL_PREFIX {
            return Err(CredentialError::Prefix);
        }
        let seed: [u8; 32] = URL_SAFE_NO_PAD
            .decode(seed)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or(CredentialError::Seed)?;
        Ok(Self::new(
            StreamId::parse(stream_id)?,
            KeyId::parse(key_id)?,
            SigningKey::from_bytes(&seed),
        ))
    }
}

/// What a point says about when it happened, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Period text, checked against the stream's frequency later.
    Period(String),
    /// An instant, placed in the stream's time zone later.
    At(jiff::Timestamp),
    /// The point named neither; validation refuses it.
    Missing,
    /// The timestamp is out of range; validation refuses it.
    InvalidTimestamp,
}

/// One point as the publisher sent it, before validation against the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPoint {
    /// The period or instant.
    pub when: When,
    /// The value text, unchecked.
    pub value: String,
    /// The source record's id, possibly empty.
    pub external_id: String,
}

/// A batch whose signature verified over the bytes received, then decoded.
#[derive(Debug, Clone)]
pub struct VerifiedBatch {
    stream_id: StreamId,
    key_id: KeyId,
    batch_id: String,
    signed_at: jiff::Timestamp,
    points: Vec<RawPoint>,
}

impl VerifiedBatch {
    /// The stream the signature is bound to.
    pub fn stream_id(&self) -> &StreamId {
        &self.stream_id
    }

    /// The key that signed.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The publisher's idempotency key.
    pub fn batch_id(&self) -> &str {
        &self.batch_id
    }

    /// When the publisher signed the batch.
    pub fn signed_at(&self) -> jiff::Timestamp {
        self.signed_at
    }

    /// The points as sent.
    pub fn points(&self) -> &[RawPoint] {
        &self.points
    }
}

/// Verifies `signature` over `PAE(stream type, batch)` with `key`, strictly, and only
/// then decodes the batch bytes.
pub fn verify(
    stream_id: &StreamId,
    key_id: &KeyId,
    key: &VerifyingKey,
    batch: &[u8],
    signature: &[u8],
) -> Result<VerifiedBatch, SignatureError> {
    let signature: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError::SignatureLength(signature.len()))?;
    key.verify_strict(
        &pae(stream_id.as_str(), batch),
        &Signature::from_bytes(&signature),
    )
    .map_err(|_| SignatureError::BadSignature {
        stream_id: stream_id.clone(),
        key_id: key_id.clone(),
    })?;
    let decoded =
        proto::Batch::decode(batch).map_err(|e| SignatureError::Undecodable(e.to_string()))?;
    let signed_at = decoded.signed_at.ok_or(SignatureError::MissingSignedAt)?;
    Ok(VerifiedBatch {
        stream_id: stream_id.clone(),
        key_id: key_id.clone(),
        batch_id: decoded.batch_id,
        signed_at: timestamp(&signed_at).ok_or(SignatureError::InvalidSignedAt)?,
        points: decoded.points.into_iter().map(raw_point).collect(),
    })
}

fn raw_point(point: proto::Point) -> RawPoint {
    let when = match point.when {
        Some(proto::point::When::Period(p)) => When::Period(p),
        Some(proto::point::When::At(at)) => timestamp(&at).map_or(When::InvalidTimestamp, When::At),
        None => When::Missing,
    };
    RawPoint {
        when,
        value: point.value,
        external_id: point.external_id,
    }
}

/// Converts a protobuf timestamp, refusing out-of-range values.
pub fn timestamp(ts: &prost_types::Timestamp) -> Option<jiff::Timestamp> {
    jiff::Timestamp::new(ts.seconds, ts.nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_layout() {
        assert_eq!(
            pae("s1", b"hello"),
            b"DSSEv1 21 kpistream.v1.Batch/s1 5 hello".to_vec()
        );
    }

    #[test]
    fn a_credential_round_trips_and_hides_its_seed() {
        let c = Credential::generate(StreamId::generate(), KeyId::generate());
        let text = c.expose_secret();
        let back: Credential = text.parse().unwrap();
        assert_eq!(back.public_key(), c.public_key());
        let seed = text.rsplit('.').next().unwrap();
        assert!(!format!("{c:?}").contains(seed));
    }

    #[test]
    fn malformed_credentials_say_what_is_wrong() {
        assert_eq!(
            "kpik1.a.b".parse::<Credential>().unwrap_err(),
            CredentialError::Shape
        );
        assert_eq!(
            "kpik2.a.b.c".parse::<Credential>().unwrap_err(),
            CredentialError::Prefix
        );
        assert_eq!(
            "kpik1.a.b.short".parse::<Credential>().unwrap_err(),
            CredentialError::Seed
        );
    }
}
