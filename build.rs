//! Generates the gRPC code from `proto/` with protox, so no system `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/kpistream/v1/ingest.proto",
        "proto/kpistream/v1/streams.proto",
        "proto/kpistream/v1/query.proto",
        "proto/kpistream/v1/runner.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("kpistream_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // Undecodable requests answer INVALID_ARGUMENT rather than INTERNAL: see
    // src/grpc/codec.rs.
    tonic_prost_build::configure()
        .codec_path("crate::grpc::codec::ProtoCodec")
        .compile_fds(fds)?;
    Ok(())
}
