//! The etcdraft consenter: a channel's consenters replicate its blocks with
//! Raft (raft-rs), as Fabric's etcdraft does.

pub mod storage;
pub mod transport;
