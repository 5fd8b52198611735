//! Generates the gRPC code for `api.proto` without `protoc`.
//!
//! `protox` parses the file into a `FileDescriptorSet`; `tonic-prost-build`
//! turns that into prost messages plus tonic client and server stubs. The
//! encoded descriptor set is also written to `OUT_DIR` so the library can
//! expose it (`FILE_DESCRIPTOR_SET`) for gRPC reflection.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let proto = manifest_dir.join("api.proto");

    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-changed=build.rs");

    let fds = protox::compile(["api.proto"], [&manifest_dir])?;
    fs::write(
        out_dir.join("liftbridge_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
