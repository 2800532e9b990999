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
    mark_examples_as_text()
}

/// The `.proto` comments quote examples in protobuf's text format inside code fences,
/// which rustdoc would compile as Rust doctests: each opening fence is marked `text`.
fn mark_examples_as_text() -> Result<(), Box<dyn std::error::Error>> {
    for entry in std::fs::read_dir(std::env::var("OUT_DIR")?)? {
        let path = entry?.path();
        if path.extension().is_none_or(|extension| extension != "rs") {
            continue;
        }
        let mut inside = false;
        let marked: Vec<String> = std::fs::read_to_string(&path)?
            .lines()
            .map(|line| {
                if line.trim_start() != "/// ```" {
                    return line.to_owned();
                }
                inside = !inside;
                if inside {
                    format!("{line}text")
                } else {
                    line.to_owned()
                }
            })
            .collect();
        std::fs::write(&path, marked.join("\n") + "\n")?;
    }
    Ok(())
}
