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
    /// The 32 bytes decode to a point, but are not that point's one canonical encoding
    /// (a y coordinate of p or more, or a sign bit set on x = 0): refused, so that one
    /// key has one encoding.
    #[error(
        "the public key is not the canonical encoding of an Ed25519 point (it would read back as other bytes): send the key as your Ed25519 library encodes it"
    )]
    NonCanonicalPublicKey,
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
    #[error("signed_at is not a valid timestamp: {0}")]
    InvalidSignedAt(TimestampError),
}

/// Why a `google.protobuf.Timestamp` a client sent was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Protobuf's own rule: nanos count forward from the second, 0 to 999,999,999.
    #[error("nanos {0} is outside 0 to 999999999")]
    Nanos(i32),
    /// Outside protobuf's range (years 0001 to 9999) or the server's.
    #[error("seconds {0} is outside the supported range (0001-01-01 to 9999-12-30 UTC)")]
    Seconds(i64),
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

/// Parses a 32-byte Ed25519 public key, refusing non-canonical encodings and
/// small-order (weak) keys.
pub fn parse_public_key(bytes: &[u8]) -> Result<VerifyingKey, SignatureError> {
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| SignatureError::PublicKeyLength(bytes.len()))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| SignatureError::InvalidPublicKey)?;
    // Decompression reduces y modulo p, so `ff`×32 decodes; encoding the point again
    // shows whether these were its canonical bytes.
    if key.to_edwards().compress().to_bytes() != bytes {
        return Err(SignatureError::NonCanonicalPublicKey);
    }
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
    InvalidTimestamp(TimestampError),
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
        signed_at: timestamp_from_proto(&signed_at).map_err(SignatureError::InvalidSignedAt)?,
        points: decoded.points.into_iter().map(raw_point).collect(),
    })
}

fn raw_point(point: proto::Point) -> RawPoint {
    let when = match point.when {
        Some(proto::point::When::Period(p)) => When::Period(p),
        Some(proto::point::When::At(at)) => {
            timestamp_from_proto(&at).map_or_else(When::InvalidTimestamp, When::At)
        }
        None => When::Missing,
    };
    RawPoint {
        when,
        value: point.value,
        external_id: point.external_id,
    }
}

/// The first second protobuf's `Timestamp` allows: 0001-01-01T00:00:00Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;

/// Converts a timestamp a client sent: the one place that decides which are valid.
/// Nanos outside 0..=999,999,999 are refused (protobuf's rule; a lenient conversion
/// would move a negative value into the previous second), and so are seconds before
/// year 1 or after what the server can represent (9999-12-30).
pub fn timestamp_from_proto(
    ts: &prost_types::Timestamp,
) -> Result<jiff::Timestamp, TimestampError> {
    if !(0..=999_999_999).contains(&ts.nanos) {
        return Err(TimestampError::Nanos(ts.nanos));
    }
    if ts.seconds < MIN_TIMESTAMP_SECONDS {
        return Err(TimestampError::Seconds(ts.seconds));
    }
    jiff::Timestamp::new(ts.seconds, ts.nanos).map_err(|_| TimestampError::Seconds(ts.seconds))
}

/// [`timestamp_from_proto`], for callers that only need to know whether it is valid.
pub fn timestamp(ts: &prost_types::Timestamp) -> Option<jiff::Timestamp> {
    timestamp_from_proto(ts).ok()
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

/// Property tests: PAE reads back into its type and body; credentials round-trip and
/// any other text is refused without panicking or echoing the secret; arbitrary
/// envelopes never panic the verifier, and a signed batch decodes to what was signed.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Splits a PAE back into (type, body), checking every length it states.
    fn read_pae(pae: &[u8]) -> Option<(String, Vec<u8>)> {
        let rest = pae.strip_prefix(b"DSSEv1 ")?;
        let (type_len, rest) = read_len(rest)?;
        let (payload_type, rest) = (rest.get(..type_len)?, rest.get(type_len..)?);
        let rest = rest.strip_prefix(b" ")?;
        let (body_len, body) = read_len(rest)?;
        (body.len() == body_len)
            .then(|| (String::from_utf8(payload_type.to_vec()).ok(), body.to_vec()))
            .and_then(|(t, b)| Some((t?, b)))
    }

    /// An ASCII decimal without leading zeros, then one space.
    fn read_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
        let space = bytes.iter().position(|b| *b == b' ')?;
        let digits = std::str::from_utf8(&bytes[..space]).ok()?;
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        Some((digits.parse().ok()?, &bytes[space + 1..]))
    }

    fn id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,64}"
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    proptest! {
        #[test]
        fn a_pae_reads_back_as_its_type_and_body(stream in any::<String>(), body in any::<Vec<u8>>()) {
            let (payload_type, read_body) = read_pae(&pae(&stream, &body)).unwrap();
            prop_assert_eq!(payload_type, format!("{PAYLOAD_TYPE_PREFIX}{stream}"));
            prop_assert_eq!(read_body, body);
        }

        #[test]
        fn a_credential_reads_back_from_its_text(stream in id(), key_id in id(), seed in any::<[u8; 32]>()) {
            let credential = Credential::new(
                StreamId::parse(&stream).unwrap(),
                KeyId::parse(&key_id).unwrap(),
                SigningKey::from_bytes(&seed),
            );
            let text = credential.expose_secret();
            let back: Credential = text.parse().unwrap();
            prop_assert_eq!(back.stream_id(), credential.stream_id());
            prop_assert_eq!(back.key_id(), credential.key_id());
            prop_assert_eq!(back.public_key(), credential.public_key());
            prop_assert_eq!(back.expose_secret(), text);
        }

        #[test]
        fn any_other_text_is_refused_with_a_short_reason(text in any::<String>()) {
            if let Err(e) = text.parse::<Credential>() {
                prop_assert!(e.to_string().len() <= 300, "{e}");
            }
        }

        #[test]
        fn credential_like_text_never_panics_the_parser(text in "kpik1\\.[A-Za-z0-9_.-]{0,70}\\.[A-Za-z0-9_-]{0,70}\\.[A-Za-z0-9_=-]{0,50}") {
            let _ = text.parse::<Credential>();
        }

        #[test]
        fn arbitrary_envelopes_are_refused_without_panicking(batch in any::<Vec<u8>>(), sig in any::<Vec<u8>>()) {
            let stream = StreamId::parse("str_x").unwrap();
            let key_id = KeyId::parse("key_x").unwrap();
            let result = verify(&stream, &key_id, &key().verifying_key(), &batch, &sig);
            prop_assert!(result.is_err());
        }

        #[test]
        fn signed_arbitrary_bytes_verify_then_decode_or_are_refused_with_a_short_reason(batch in any::<Vec<u8>>()) {
            let stream = StreamId::parse("str_x").unwrap();
            let key_id = KeyId::parse("key_x").unwrap();
            let credential = Credential::new(stream.clone(), key_id.clone(), key());
            let signature = credential.sign(&batch);
            match verify(&stream, &key_id, &credential.public_key(), &batch, &signature) {
                Ok(_) => {}
                Err(e) => {
                    let bad_signature = matches!(e, SignatureError::BadSignature { .. });
                    prop_assert!(!bad_signature, "{e}");
                    prop_assert!(e.to_string().len() <= 300, "{e}");
                }
            }
        }

        #[test]
        fn a_sealed_batch_verifies_and_decodes_to_what_was_signed(
            batch_id in any::<String>(),
            seconds in 0i64..=253_402_207_199,
            nanos in 0i32..=999_999_999,
            points in proptest::collection::vec((any::<String>(), any::<String>(), any::<String>()), 0..20),
        ) {
            let batch = proto::Batch {
                batch_id: batch_id.clone(),
                signed_at: Some(prost_types::Timestamp { seconds, nanos }),
                points: points
                    .iter()
                    .map(|(period, value, external_id)| proto::Point {
                        when: Some(proto::point::When::Period(period.clone())),
                        value: value.clone(),
                        external_id: external_id.clone(),
                    })
                    .collect(),
            };
            let stream = StreamId::parse("str_x").unwrap();
            let key_id = KeyId::parse("key_x").unwrap();
            let envelope = Credential::new(stream.clone(), key_id.clone(), key()).seal(&batch);
            let verified = verify(&stream, &key_id, &key().verifying_key(), &envelope.batch, &envelope.signature).unwrap();
            prop_assert_eq!(verified.batch_id(), batch_id.as_str());
            prop_assert_eq!(verified.signed_at(), jiff::Timestamp::new(seconds, nanos).unwrap());
            let read: Vec<(When, String, String)> = verified
                .points()
                .iter()
                .map(|p| (p.when.clone(), p.value.clone(), p.external_id.clone()))
                .collect();
            let sent: Vec<(When, String, String)> = points
                .into_iter()
                .map(|(period, value, external_id)| (When::Period(period), value, external_id))
                .collect();
            prop_assert_eq!(read, sent);
        }

        #[test]
        fn a_timestamp_with_nanos_out_of_range_is_refused(seconds in any::<i64>(), nanos in any::<i32>()) {
            let result = timestamp_from_proto(&prost_types::Timestamp { seconds, nanos });
            if !(0..=999_999_999).contains(&nanos) {
                prop_assert_eq!(result, Err(TimestampError::Nanos(nanos)));
            } else if let Ok(at) = result {
                prop_assert_eq!((at.as_second(), at.subsec_nanosecond()), (seconds, nanos));
            }
        }
    }
}
