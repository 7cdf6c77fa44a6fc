//! Compiles `proto/` into Rust with a vendored `protoc` (no system protoc needed) and writes the file
//! descriptor set that the reflection service serves.
use std::path::PathBuf;

const PROTO_DIR: &str = "proto/semroute/v1";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Every .proto of the package, so that adding a service needs no change here (and a build script
    // shared through a common target directory works for any checkout).
    let mut protos: Vec<PathBuf> = std::fs::read_dir(PROTO_DIR)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("semroute_descriptor.bin"))
        .compile_protos(&protos, &[PathBuf::from("proto")])?;
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    Ok(())
}
