//! Compiles `proto/` into Rust with a vendored `protoc` (no system protoc needed) and writes the file
//! descriptor set that the reflection service serves.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/semroute/v1/router.proto",
        "proto/semroute/v1/admin.proto",
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("semroute_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
