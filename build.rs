//! Generates the Fabric-compatible protobuf types and gRPC services from `proto/`.
//!
//! A vendored `protoc` is used so a fresh machine needs no system package.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/common/common.proto",
    "proto/common/configtx.proto",
    "proto/common/configuration.proto",
    "proto/common/policies.proto",
    "proto/msp/identities.proto",
    "proto/msp/msp_config.proto",
    "proto/msp/msp_principal.proto",
    "proto/orderer/ab.proto",
    "proto/orderer/cluster.proto",
    "proto/orderer/configuration.proto",
    "proto/orderer/etcdraft/configuration.proto",
    "proto/orderer/etcdraft/metadata.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos: Vec<PathBuf> = PROTOS.iter().map(PathBuf::from).collect();
    let includes = vec![PathBuf::from("proto"), protoc_bin_vendored::include_path()?];

    tonic_prost_build::configure()
        // Envelope and block bytes are shared slices of the received buffer, not copies.
        .bytes(".")
        .file_descriptor_set_path(out_dir.join("fabric_descriptor.bin"))
        .include_file("fabric_protos.rs")
        .compile_protos(&protos, &includes)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
