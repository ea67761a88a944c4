//! Who the consenters of a channel are to Raft: their ids, and which one is
//! this node.
//!
//! Fabric gives consenters the ids 1..n in the order of the genesis block's
//! consenter list, and records the ids (and the next id to give) in the
//! etcdraft `BlockMetadata` of every block it writes; later blocks are read
//! for them, so ids survive membership changes.

use prost::Message as _;

use super::transport::RaftPeer;
use crate::fabric::blockutil;
use crate::fabric::channelconfig::EtcdRaftConfig;
use crate::fabric::protos::common::Block;
use crate::fabric::protos::etcdraft::BlockMetadata;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error("block {block}: the etcdraft block metadata cannot be read: {reason}")]
    Metadata { block: u64, reason: String },
    #[error(
        "block {block} names {ids} consenter ids for {consenters} consenters in the channel config"
    )]
    Mismatch {
        block: u64,
        ids: usize,
        consenters: usize,
    },
}

/// The consenters of a channel with their Raft ids, and the Raft state
/// recorded in the last block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub peers: Vec<RaftPeer>,
    pub next_consenter_id: u64,
    /// The Raft index of the entry that carried the last block (0: none yet).
    pub applied_index: u64,
}

impl Membership {
    /// The membership as of `last_block`, the newest block of the ledger.
    pub fn read(
        config: &EtcdRaftConfig,
        last_block: &Block,
    ) -> Result<Membership, MembershipError> {
        let number = blockutil::number(last_block);
        let consenters = &config.consenters;
        let Some(raw) = blockutil::consenter_metadata(last_block) else {
            // The genesis block (or a block written before etcdraft ran).
            return Ok(Membership {
                peers: peers(config, 1..=consenters.len() as u64),
                next_consenter_id: consenters.len() as u64 + 1,
                applied_index: 0,
            });
        };
        let metadata = BlockMetadata::decode(raw).map_err(|e| MembershipError::Metadata {
            block: number,
            reason: e.to_string(),
        })?;
        if metadata.consenter_ids.len() != consenters.len() {
            return Err(MembershipError::Mismatch {
                block: number,
                ids: metadata.consenter_ids.len(),
                consenters: consenters.len(),
            });
        }
        Ok(Membership {
            peers: peers(config, metadata.consenter_ids.iter().copied()),
            next_consenter_id: metadata.next_consenter_id,
            applied_index: metadata.raft_index,
        })
    }

    pub fn ids(&self) -> Vec<u64> {
        self.peers.iter().map(|p| p.id).collect()
    }

    /// The etcdraft `BlockMetadata` of a block carried by the entry at `raft_index`.
    pub fn block_metadata(&self, raft_index: u64) -> BlockMetadata {
        BlockMetadata {
            consenter_ids: self.ids(),
            next_consenter_id: self.next_consenter_id,
            raft_index,
        }
    }

    /// This node's id: the consenter whose TLS certificate (client or
    /// server) is the node's own; without TLS, the one at the node's
    /// `host:port`.
    pub fn find_self(&self, tls_certificate: Option<&[u8]>, endpoint: &str) -> Option<u64> {
        match tls_certificate {
            Some(own) => {
                let own = der_of(own)?;
                self.peers
                    .iter()
                    .find(|p| {
                        der_of(&p.client_tls_cert).as_deref() == Some(own.as_slice())
                            || der_of(&p.server_tls_cert).as_deref() == Some(own.as_slice())
                    })
                    .map(|p| p.id)
            }
            None => self
                .peers
                .iter()
                .find(|p| same_endpoint(&p.endpoint(), endpoint))
                .map(|p| p.id),
        }
    }
}

fn peers(config: &EtcdRaftConfig, ids: impl IntoIterator<Item = u64>) -> Vec<RaftPeer> {
    config
        .consenters
        .iter()
        .zip(ids)
        .map(|(c, id)| RaftPeer {
            id,
            host: c.host.clone(),
            port: c.port,
            client_tls_cert: c.client_tls_cert.to_vec(),
            server_tls_cert: c.server_tls_cert.to_vec(),
        })
        .collect()
}

/// The DER of the first certificate in a PEM (or the bytes themselves if
/// they are not PEM).
pub fn der_of(certificate: &[u8]) -> Option<Vec<u8>> {
    if certificate.starts_with(b"-----") {
        pem::parse(certificate).ok().map(|p| p.contents().to_vec())
    } else if certificate.is_empty() {
        None
    } else {
        Some(certificate.to_vec())
    }
}

/// `localhost` and `127.0.0.1` name the same host here.
fn same_endpoint(a: &str, b: &str) -> bool {
    let normal = |e: &str| e.replace("localhost", "127.0.0.1");
    normal(a) == normal(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::protos::etcdraft::Consenter;
    use bytes::Bytes;

    fn config(n: usize) -> EtcdRaftConfig {
        EtcdRaftConfig {
            consenters: (1..=n)
                .map(|i| Consenter {
                    host: "127.0.0.1".into(),
                    port: 7050 + i as u32,
                    client_tls_cert: Bytes::from(format!("client{i}").into_bytes()),
                    server_tls_cert: Bytes::from(format!("server{i}").into_bytes()),
                })
                .collect(),
            options: None,
        }
    }

    #[test]
    fn genesis_gives_ids_in_consenter_order_and_later_blocks_keep_theirs() {
        let config = config(3);
        let genesis = blockutil::new_block(0, Bytes::new(), vec![], 0, Bytes::new());
        let m = Membership::read(&config, &genesis).expect("read");
        assert_eq!(m.ids(), vec![1, 2, 3]);
        assert_eq!((m.next_consenter_id, m.applied_index), (4, 0));
        assert_eq!(m.find_self(Some(b"client2"), ""), Some(2));
        assert_eq!(m.find_self(Some(b"server3"), ""), Some(3));
        assert_eq!(m.find_self(Some(b"stranger"), ""), None);
        assert_eq!(m.find_self(None, "localhost:7051"), Some(1));

        let recorded = BlockMetadata {
            consenter_ids: vec![4, 2, 7],
            next_consenter_id: 8,
            raft_index: 42,
        };
        let block =
            blockutil::new_block(5, Bytes::new(), vec![], 0, recorded.encode_to_vec().into());
        let m = Membership::read(&config, &block).expect("read");
        assert_eq!(m.ids(), vec![4, 2, 7]);
        assert_eq!((m.next_consenter_id, m.applied_index), (8, 42));
        assert_eq!(m.block_metadata(43).raft_index, 43);

        let wrong = BlockMetadata {
            consenter_ids: vec![1],
            ..recorded
        };
        let block = blockutil::new_block(6, Bytes::new(), vec![], 0, wrong.encode_to_vec().into());
        assert!(matches!(
            Membership::read(&config, &block),
            Err(MembershipError::Mismatch { .. })
        ));
    }
}
