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
mod crypto;
mod deliver;
mod etcdraft_cluster;
mod hostile_load;
mod node_config;
mod operations;
mod participation;
mod readers;
mod restart;
mod signing;
mod tls;
mod writers;
