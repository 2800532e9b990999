//! Compiles the vendored `.proto` files with protox (a protobuf compiler in Rust), so
//! building needs no `protoc` binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/neptune_pb/ingest/v1/pub/client.proto",
        "proto/neptune_pb/ingest/v1/pub/ingest.proto",
        "proto/neptune_pb/ingest/v1/pub/request_status.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    // Maps in order: a batch built from one reads the same on every attempt.
    prost_build::Config::new()
        .btree_map(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
