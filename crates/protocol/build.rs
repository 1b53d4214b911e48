//! Compiles the protos with protox (pure Rust; no protoc needed) and tonic-prost-build:
//! proto/weft.proto (control <-> proxy) and proto/spiffe/workload.proto (the SPIFFE
//! Workload API each sidecar serves to its app).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/weft.proto", "proto/spiffe/workload.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
