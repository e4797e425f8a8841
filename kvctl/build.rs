//! Build script: compiles kvd's client and admin protos with protox (pure Rust, no system
//! `protoc`). kvctl reads the files by path and does not depend on the kvd crate.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["kv.proto", "admin.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed=../kvd/proto/{p}");
    }
    let fds = protox::compile(protos, ["../kvd/proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
