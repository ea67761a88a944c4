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
    "proto/orderer/kafka.proto",
    "proto/orderer/etcdraft/configuration.proto",
    "proto/orderer/etcdraft/metadata.proto",
    "proto/ordo/deliver_wire.proto",
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
    deliver_server();
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

/// The node's `orderer.AtomicBroadcast` server (`orderer.AtomicBroadcast.rs`):
/// same service and method paths as Fabric's, but Deliver answers with
/// `ordo.wire.DeliverResponse`, whose block is the stored record's bytes, so
/// full blocks are sent without a decode and encode per stream. The client
/// generated from `orderer/ab.proto` is unchanged.
fn deliver_server() {
    use tonic_prost_build::manual::{Builder, Method, Service};

    let method = |name: &str, route: &str, output: &str| {
        Method::builder()
            .name(name)
            .route_name(route)
            .input_type("crate::fabric::protos::common::Envelope")
            .output_type(output)
            .codec_path("tonic_prost::ProstCodec")
            .client_streaming()
            .server_streaming()
            .build()
    };
    let service = Service::builder()
        .name("AtomicBroadcast")
        .package("orderer")
        .method(method(
            "broadcast",
            "Broadcast",
            "crate::fabric::protos::orderer::BroadcastResponse",
        ))
        .method(method(
            "deliver",
            "Deliver",
            "crate::fabric::protos::ordo::wire::DeliverResponse",
        ))
        .build();
    Builder::new().build_client(false).compile(&[service]);
}
