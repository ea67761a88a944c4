//! End-to-end tests: a real node (sled on disk, gRPC on a loopback port) driven
//! through its public gRPC API.

mod backpressure;
mod bench;
mod bootstrap;
mod broadcast;
mod cli;
mod cluster;
mod common;
mod config_update;
mod conformance;
mod consenter;
#[cfg(feature = "failpoints")]
mod crash_matrix;
mod crypto;
mod deliver;
mod etcdraft_cluster;
mod hostile_load;
mod kafka;
mod kafka_broker;
mod kafka_client;
mod node_config;
mod operations;
mod participation;
mod readers;
mod restart;
mod restart_inputs;
mod signing;
#[cfg(feature = "failpoints")]
mod storage_faults;
mod system_channel;
mod tls;
mod writers;
