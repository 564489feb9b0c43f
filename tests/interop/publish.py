#!/usr/bin/env python3
"""A kpistream publisher in Python, written only from docs/signing.md and the .proto files.

It proves that a publisher in another language can sign and publish batches that the
Rust server accepts. It:

1. compiles proto/kpistream/v1/*.proto with grpc_tools.protoc into a temporary folder;
2. checks both files of signing test vectors with PyNaCl (PAE, signatures, credentials,
   strict verification);
3. publishes to a running server, for a **daily** stream, with unary Publish and with
   PublishStream, and checks every answer: accepted counts, per-point rejection reasons,
   replays answering the original result with replayed=true, refused signatures, and
   all_or_nothing;
4. prints a JSON summary on stdout and exits non-zero on any mismatch.

Usage:
    KPISTREAM_CREDENTIAL=kpik1.… KPISTREAM_SERVER=http://127.0.0.1:50051 publish.py
    publish.py --credential-file stream.kpik --server 127.0.0.1:50051

The stream must be daily and receive nothing else while this runs. The test
tests/python_interop.rs makes one in Europe/Paris and then checks what was stored.
Needs grpcio, grpcio-tools and pynacl (scripts/python-venv.sh installs them in .venv).
"""

import argparse
import base64
import glob
import importlib.resources
import json
import os
import re
import sys
import tempfile
import time
import uuid

import grpc
import nacl.exceptions
import nacl.signing
from grpc_tools import protoc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO_DIR = os.path.join(ROOT, "proto")
VECTOR_FILES = [
    os.path.join(ROOT, "docs", "signing-vectors.json"),
    os.path.join(ROOT, "tests", "data", "libsodium-signing-vectors.json"),
]
TYPE_PREFIX = "kpistream.v1.Batch/"
ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The instant of the timestamp point: 2026-11-24 in Europe/Paris, 2026-11-23 in UTC.
AT = "2026-11-23T23:30:00Z"


class Mismatch(Exception):
    """The server (or a vector) did not behave as docs/signing.md says."""


def compile_protos(out_dir):
    """Generates the Python modules of every kpistream .proto into out_dir."""
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    files = sorted(
        os.path.relpath(path, PROTO_DIR)
        for path in glob.glob(os.path.join(PROTO_DIR, "kpistream", "v1", "*.proto"))
    )
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {files}")
    sys.path.insert(0, out_dir)


# --- the signing rules of docs/signing.md -------------------------------------------


def pae(stream_id, body):
    """PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    kind = (TYPE_PREFIX + stream_id).encode("ascii")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def parse_credential(text):
    """kpik1.<stream_id>.<key_id>.<seed, base64url without padding> -> (ids, seed)."""
    parts = text.strip().split(".")
    if len(parts) != 4:
        raise ValueError("a credential has four parts kpik1.<stream_id>.<key_id>.<seed>")
    prefix, stream_id, key_id, seed_text = parts
    if prefix != "kpik1":
        raise ValueError("a credential starts with kpik1.")
    for name, value in (("stream id", stream_id), ("key id", key_id)):
        if not ID.match(value):
            raise ValueError(f"the credential's {name} {value!r} is not valid")
    if len(seed_text) != 43 or "=" in seed_text:
        raise ValueError("the seed is 43 characters of base64url without padding")
    seed = base64.urlsafe_b64decode(seed_text + "=")
    if len(seed) != 32:
        raise ValueError("the seed is not 32 bytes")
    return stream_id, key_id, seed


def sign(seed, stream_id, body):
    return nacl.signing.SigningKey(seed).sign(pae(stream_id, body)).signature


def verifies(public_key, message, signature):
    """libsodium's crypto_sign_verify_detached: strict, like the server."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        return True
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False


def check_vectors():
    """Every vector of both files agrees with this implementation of the rules."""
    count = 0
    for path in VECTOR_FILES:
        with open(path, encoding="utf-8") as f:
            vectors = json.load(f)["vectors"]
        for v in vectors:
            where = f"{os.path.relpath(path, ROOT)}: {v['name']!r}"
            body = bytes.fromhex(v["batch_hex"])
            built = pae(v["stream_id"], body)
            if built.hex() != v["pae_hex"]:
                raise Mismatch(f"{where}: PAE differs")
            signature = bytes.fromhex(v["signature_hex"])
            public_key = bytes.fromhex(v["public_key_hex"])
            if v["credential"] is not None:
                stream_id, key_id, seed = parse_credential(v["credential"])
                if (stream_id, key_id, seed.hex()) != (v["stream_id"], v["key_id"], v["seed_hex"]):
                    raise Mismatch(f"{where}: the credential does not parse to the vector's ids and seed")
                derived = bytes(nacl.signing.SigningKey(seed).verify_key)
                if derived != public_key:
                    raise Mismatch(f"{where}: the seed does not give the public key")
            if v["valid"] and v["seed_hex"] is not None:
                mine = sign(bytes.fromhex(v["seed_hex"]), v["stream_id"], body)
                if mine != signature:
                    raise Mismatch(f"{where}: signing with the seed gives another signature")
            if verifies(public_key, built, signature) != v["valid"]:
                raise Mismatch(f"{where}: libsodium says valid={not v['valid']}")
            count += 1
    return count


# --- publishing ----------------------------------------------------------------------


def uuid7():
    """A UUIDv7: 48 bits of Unix milliseconds, version 7, variant 10, random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80 | 7 << 76 | (rand >> 62 & 0xFFF) << 64 | 2 << 62 | rand & (2**62 - 1)
    return str(uuid.UUID(int=value))


class Publisher:
    def __init__(self, pb, pb_grpc, channel, credential):
        self.pb = pb
        self.stub = pb_grpc.IngestStub(channel)
        self.stream_id, self.key_id, self.seed = parse_credential(credential)

    def point(self, value, period=None, at=None, external_id=""):
        p = self.pb.Point(value=value, external_id=external_id)
        if period is not None:
            p.period = period
        else:
            p.at.FromJsonString(at)
        return p

    def batch_bytes(self, points):
        """A new batch, serialized once: these exact bytes are signed and sent."""
        batch = self.pb.Batch(batch_id=uuid7(), points=points)
        batch.signed_at.GetCurrentTime()
        return batch.batch_id, batch.SerializeToString()

    def request(self, body, all_or_nothing=False, signature=None):
        envelope = self.pb.SignedBatch(
            stream_id=self.stream_id,
            key_id=self.key_id,
            batch=body,
            signature=signature if signature is not None else sign(self.seed, self.stream_id, body),
        )
        return self.pb.PublishRequest(batch=envelope, all_or_nothing=all_or_nothing)


def expect(condition, message):
    if not condition:
        raise Mismatch(message)


def summary_of(response):
    return {
        "batch_id": response.batch_id,
        "accepted": response.accepted,
        "revised": response.revised,
        "rejected": [{"index": r.index, "reason": r.reason} for r in response.rejected],
        "replayed": response.replayed,
        "committed_at": response.committed_at.ToJsonString() if response.HasField("committed_at") else None,
        "error": {"code": response.error.code, "message": response.error.message}
        if response.HasField("error")
        else None,
    }


def expect_status(call, code, what):
    try:
        call()
    except grpc.RpcError as err:
        expect(err.code() == code, f"{what}: expected {code.name}, got {err.code().name}: {err.details()}")
        return err.details()
    raise Mismatch(f"{what}: expected {code.name}, the server accepted it")


def publish_all(pb, pb_grpc, channel, credential):
    pub = Publisher(pb, pb_grpc, channel, credential)
    report = {"stream_id": pub.stream_id, "batches": {}}

    # A: a period point, a timestamp point and one invalid point (exponent).
    a_id, a_bytes = pub.batch_bytes([
        pub.point("1234.50", period="2026-11-20", external_id="py-period"),
        pub.point("-0.125", at=AT, external_id="py-at"),
        pub.point("1e3", period="2026-11-22"),
    ])
    first = pub.stub.Publish(pub.request(a_bytes), timeout=30)
    expect(first.batch_id == a_id, f"A: batch_id {first.batch_id!r}, sent {a_id!r}")
    expect(first.accepted == 2, f"A: accepted {first.accepted}, expected 2")
    expect(not first.replayed, "A: the first publish says replayed")
    expect([r.index for r in first.rejected] == [2], f"A: rejected {summary_of(first)['rejected']}")
    expect("1e3" in first.rejected[0].reason, f"A: the reason does not name the value: {first.rejected[0].reason!r}")
    report["batches"]["A"] = summary_of(first)

    # The same bytes again: the original answer, replayed.
    again = pub.stub.Publish(pub.request(a_bytes), timeout=30)
    expect(again.replayed, "A again: replayed is false")
    expect(
        (again.batch_id, again.accepted, again.revised, list(again.rejected), again.committed_at)
        == (first.batch_id, first.accepted, first.revised, list(first.rejected), first.committed_at),
        f"A again: {summary_of(again)} is not the original {summary_of(first)}",
    )
    report["batches"]["A replayed"] = summary_of(again)

    # One changed byte ("1234.50" -> "1234.51") with the old signature.
    tampered = bytearray(a_bytes)
    at = bytes(tampered).index(b"1234.50") + 6
    tampered[at] ^= 0x01
    tampered = bytes(tampered)
    old_signature = sign(pub.seed, pub.stream_id, a_bytes)
    report["tampered"] = expect_status(
        lambda: pub.stub.Publish(pub.request(tampered, signature=old_signature), timeout=30),
        grpc.StatusCode.UNAUTHENTICATED,
        "a changed byte",
    )

    # C: all_or_nothing with one NaN: nothing is stored.
    _, c_bytes = pub.batch_bytes([
        pub.point("5", period="2026-11-25"),
        pub.point("NaN", period="2026-11-26"),
    ])
    report["all_or_nothing"] = expect_status(
        lambda: pub.stub.Publish(pub.request(c_bytes, all_or_nothing=True), timeout=30),
        grpc.StatusCode.INVALID_ARGUMENT,
        "all_or_nothing with a NaN",
    )

    # PublishStream: B (new, with a duplicate period), A again, the tampered A.
    b_id, b_bytes = pub.batch_bytes([
        pub.point("0.000001", period="2026-11-21", external_id="py-stream"),
        pub.point("2", period="2026-11-21"),
    ])
    requests = [
        pub.request(b_bytes),
        pub.request(a_bytes),
        pub.request(tampered, signature=old_signature),
    ]
    answers = list(pub.stub.PublishStream(iter(requests), timeout=30))
    expect(len(answers) == 3, f"PublishStream: {len(answers)} answers to 3 requests")
    b, a_replay, refused = answers
    expect(b.batch_id == b_id and b.accepted == 1 and not b.replayed, f"stream B: {summary_of(b)}")
    expect(
        [r.index for r in b.rejected] == [1] and "already has a value" in b.rejected[0].reason,
        f"stream B: rejected {summary_of(b)['rejected']}",
    )
    expect(not b.HasField("error"), f"stream B: error {summary_of(b)['error']}")
    expect(a_replay.replayed and a_replay.batch_id == a_id, f"stream A again: {summary_of(a_replay)}")
    expect(a_replay.accepted == first.accepted, f"stream A again: {summary_of(a_replay)}")
    expect(
        refused.HasField("error") and refused.error.code == grpc.StatusCode.UNAUTHENTICATED.value[0],
        f"stream tampered A: {summary_of(refused)}",
    )
    report["batches"]["B (stream)"] = summary_of(b)
    report["batches"]["A (stream, replayed)"] = summary_of(a_replay)
    report["batches"]["tampered A (stream)"] = summary_of(refused)

    # What the server must now hold (the caller checks it with a query).
    report["expected_points"] = [
        {"period": "2026-11-20", "value": "1234.50", "external_id": "py-period", "batch_id": a_id},
        {"period": "2026-11-21", "value": "0.000001", "external_id": "py-stream", "batch_id": b_id},
        {"at": AT, "value": "-0.125", "external_id": "py-at", "batch_id": a_id},
    ]
    return report


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--credential-file", help="file holding the credential (else $KPISTREAM_CREDENTIAL)")
    parser.add_argument("--server", default=os.environ.get("KPISTREAM_SERVER", "http://127.0.0.1:50051"))
    args = parser.parse_args()
    if args.credential_file:
        with open(args.credential_file, encoding="utf-8") as f:
            credential = f.read()
    else:
        credential = os.environ.get("KPISTREAM_CREDENTIAL", "")
    if not credential.strip():
        parser.error("give the credential in $KPISTREAM_CREDENTIAL or with --credential-file")
    target = re.sub(r"^https?://", "", args.server).rstrip("/")
    return credential, target


def main():
    credential, target = arguments()
    summary = {"ok": False, "server": target}
    try:
        with tempfile.TemporaryDirectory(prefix="kpistream-proto-") as out:
            compile_protos(out)
            from kpistream.v1 import ingest_pb2, ingest_pb2_grpc

            summary["vectors_checked"] = check_vectors()
            with grpc.insecure_channel(target) as channel:
                grpc.channel_ready_future(channel).result(timeout=10)
                summary.update(publish_all(ingest_pb2, ingest_pb2_grpc, channel, credential))
        summary["ok"] = True
    except (Mismatch, ValueError, grpc.RpcError, grpc.FutureTimeoutError) as err:
        detail = f"{err.code().name}: {err.details()}" if isinstance(err, grpc.RpcError) else str(err)
        summary["failure"] = f"{type(err).__name__}: {detail}"
    print(json.dumps(summary, indent=1))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
