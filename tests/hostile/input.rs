//! Malformed requests answer INVALID_ARGUMENT with a sentence, and parsers never panic.
//!
//! Bytes that are not a protobuf message, a public key that is not a canonical point
//! encoding, timestamps with nanos out of range and a week 53 of a 52-week year each
//! get a refusal that says what is wrong (the parsers' property tests are unit tests
//! next to them: `cargo test --lib properties`).

use kpistream::proto;
use prost::bytes::{Buf, BufMut};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

use crate::common::{TestServer, batch, point, publish_envelope, stream_request};

/// Sends bytes as they are and reads the answer's bytes: a client that does not speak
/// protobuf.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Sends `body` to the gRPC method `path` and returns the status it answers.
async fn send_raw(server: &TestServer, path: &'static str, body: &[u8]) -> tonic::Status {
    let channel = Channel::from_shared(server.grpc.clone())
        .unwrap()
        .connect()
        .await
        .expect("the client connects");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    grpc.unary(
        tonic::Request::new(body.to_vec()),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .expect_err("garbage is refused")
}

/// Not a protobuf message: `t` (0x74) reads as field 14 with the end-group wire type.
const GARBAGE: &[u8] = b"this is not a protobuf message";

#[tokio::test(flavor = "multi_thread")]
async fn garbage_bytes_to_publish_answer_invalid_argument_with_a_sentence() {
    let server = TestServer::start();
    let status = send_raw(&server, "/kpistream.v1.Ingest/Publish", GARBAGE).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("the message is not a valid protobuf encoding of this call's request"),
        "{status:?}"
    );
    // The server is still there and publishing works.
    let (stream, credential) = server.daily_stream("After garbage").await;
    let client = server.anonymous_client().await;
    let answer = client
        .publish(&credential, vec![point("2026-11-23", "1")], false)
        .await
        .expect("a well-formed publish still works");
    assert_eq!(answer.accepted, 1, "{stream}: {answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_bytes_answer_invalid_argument_on_every_service_before_any_token_check() {
    let server = TestServer::start();
    for path in [
        "/kpistream.v1.StreamAdmin/ListStreams",
        "/kpistream.v1.Query/ListPoints",
        "/kpistream.v1.Runner/GetState",
    ] {
        let status = send_raw(&server, path, GARBAGE).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_key_that_is_not_a_canonical_point_encoding_is_refused() {
    let server = TestServer::start();
    let client = server.client().await;
    let (stream, _) = server.daily_stream("Own key").await;
    let add = |public_key: Vec<u8>| {
        let mut admin = client.admin();
        let request = proto::AddKeyRequest {
            stream_id: stream.clone(),
            public_key,
        };
        async move { admin.add_key(request).await }
    };
    let err = add(vec![0xff; 32]).await.expect_err("ff x 32 is refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .starts_with("the public key is not the canonical encoding of an Ed25519 point"),
        "{err:?}"
    );
    // The identity point, canonically encoded, has small order: refused as before.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let err = add(identity.to_vec()).await.expect_err("a small-order key");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("small order"), "{err:?}");
    let keys = crate::common::show(&client, &stream).await.keys;
    assert_eq!(keys.len(), 1, "no key was added: {keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_at_with_negative_nanos_refuses_the_batch() {
    let server = TestServer::start();
    let (_, credential) = server.daily_stream("Negative nanos").await;
    let client = server.anonymous_client().await;
    let mut signed = batch(
        "01a1ee56-5e00-7000-8000-00000000000a",
        jiff::Timestamp::now(),
        vec![point("2026-11-23", "1")],
    );
    signed.signed_at.as_mut().unwrap().nanos = -1;
    let err = publish_envelope(&client, credential.seal(&signed), false)
        .await
        .expect_err("negative nanos are refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        err.message(),
        "signed_at is not a valid timestamp: nanos -1 is outside 0 to 999999999"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_point_at_an_invalid_timestamp_is_rejected_with_a_reason_and_the_others_are_stored() {
    let server = TestServer::start();
    let (stream, credential) = server.daily_stream("Bad instants").await;
    let client = server.anonymous_client().await;
    let at = |seconds: i64, nanos: i32| proto::Point {
        when: Some(proto::point::When::At(prost_types::Timestamp {
            seconds,
            nanos,
        })),
        value: "1".into(),
        external_id: String::new(),
    };
    let answer = client
        .publish(
            &credential,
            vec![
                at(1_795_000_000, -5),
                at(i64::MAX, 0),
                at(1_795_000_000, 1_000_000_000),
                point("2026-11-23", "2"),
            ],
            false,
        )
        .await
        .expect("the batch is committed");
    assert_eq!(answer.accepted, 1, "{answer:?}");
    let reasons: Vec<&str> = answer.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "the point's timestamp is not valid: nanos -5 is outside 0 to 999999999",
            "the point's timestamp is not valid: seconds 9223372036854775807 is outside the supported range (0001-01-01 to 9999-12-30 UTC)",
            "the point's timestamp is not valid: nanos 1000000000 is outside 0 to 999999999",
        ]
    );
    let admin = server.client().await;
    assert_eq!(crate::common::values(&admin, &stream).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn week_53_of_a_year_without_one_is_refused_naming_the_week_count() {
    let server = TestServer::start();
    let (_, credential) = server
        .create_stream(stream_request("Weekly", proto::Frequency::Weekly, "UTC"))
        .await;
    let client = server.anonymous_client().await;
    let answer = client
        .publish(
            &credential,
            vec![point("2025-W53", "1"), point("2026-W53", "2")],
            false,
        )
        .await
        .expect("the batch is committed");
    assert_eq!(answer.accepted, 1, "2026 has a week 53: {answer:?}");
    assert_eq!(answer.rejected.len(), 1, "{answer:?}");
    assert_eq!(
        answer.rejected[0].reason,
        "period \"2025-W53\": 2025 has 52 ISO weeks (W01 to W52)"
    );
}
