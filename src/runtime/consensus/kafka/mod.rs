//! The Kafka consenter (ConsensusType `kafka`), as Fabric 1.x/2.x ordered
//! through Kafka: every orderer of a channel posts to, and reads, the same
//! single-partition topic named after the channel; the partition's order is
//! the channel's order, and every orderer cuts the same blocks from it.
//! Cutting by time goes through the partition too (TTC-X), so it is the
//! same everywhere. Blocks record the offsets they account for, so a
//! restarted or late orderer reads on from where its ledger ends.
//!
//! The actors (see `actors.md`, "Kafka"): the ChainActor ([`chain`]) posts
//! what Broadcast submits and writes blocks; the ConsumerActor
//! ([`consumer`]) reads the partition; the CutterActor ([`cutter`]) turns
//! records into batches. The producer and consumer clients are librdkafka's
//! ([`client`]).

pub mod chain;
pub mod client;
pub mod consumer;
pub mod cutter;
pub mod record;

use std::sync::Arc;

use actix::prelude::*;
use prost::Message as _;

use super::{ChainHandle, ChainSupport, ConsensusError, Consenter, NodeResources, StartChain};
use crate::fabric::channelconfig::{keys, ChannelConfig};
use crate::fabric::protos::orderer::KafkaBrokers;
pub use crate::runtime::metrics::KafkaMetrics;

/// Consensus type name.
pub const KAFKA: &str = "kafka";

pub use crate::fabric::channelconfig::genesis::KAFKA_BROKERS;

pub struct KafkaConsenter;

impl Consenter for KafkaConsenter {
    fn consensus_type(&self) -> &'static str {
        KAFKA
    }

    fn start_chain(&self, support: ChainSupport, node: Arc<NodeResources>) -> StartChain {
        let settings = node.kafka.clone();
        let started = chain::KafkaChain::new(support, &node, settings).map(|chain| {
            // Errored until it has reached the partition: published before
            // the chain is handed back.
            chain.publish_status();
            let addr = chain.start();
            ChainHandle::of(&addr)
        });
        Box::pin(async move {
            started.map_err(|e| ConsensusError::Start {
                consensus_type: KAFKA.into(),
                reason: e.to_string(),
            })
        })
    }
}

/// The channel's brokers (`KafkaBrokers` in its Orderer group), as
/// host:port strings.
pub fn brokers_of(config: &ChannelConfig) -> Result<Vec<String>, String> {
    let value = config
        .config
        .channel_group
        .as_ref()
        .and_then(|channel| channel.groups.get(keys::ORDERER_GROUP))
        .and_then(|orderer| orderer.values.get(KAFKA_BROKERS))
        .ok_or_else(|| format!("the channel's Orderer group has no {KAFKA_BROKERS} value"))?;
    let brokers = KafkaBrokers::decode(value.value.clone())
        .map_err(|e| format!("{KAFKA_BROKERS} cannot be read: {e}"))?
        .brokers;
    if brokers.is_empty() {
        return Err(format!("{KAFKA_BROKERS} lists no broker"));
    }
    if let Some(bad) = brokers.iter().find(|b| !is_host_port(b)) {
        return Err(format!("{KAFKA_BROKERS}: {bad:?} is not host:port"));
    }
    Ok(brokers)
}

fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}
