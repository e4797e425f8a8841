//! Build script: compiles the .proto files with protox (pure Rust), so no system `protoc` is
//! needed. `proto/seed/kv.proto` is the seed's contract, unchanged: the tests generate a client
//! from it to prove that such a client works against kvd.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/kv.proto", "proto/admin.proto"];
    for p in protos.iter().chain(&["proto/seed/kv.proto"]) {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    // `bytes` fields decode as `bytes::Bytes`: a value is sliced out of the request buffer
    // instead of copied, and a read answers with the stored value's buffer. The wire format
    // is the same (the seed's generated client below keeps `Vec<u8>`).
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".")
        .compile_fds(fds)?;

    let seed_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("seed");
    std::fs::create_dir_all(&seed_dir)?;
    let seed = protox::compile(["kv.proto"], ["proto/seed"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .out_dir(seed_dir)
        .compile_fds(seed)?;
    Ok(())
}
