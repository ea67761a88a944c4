//! What travels on a channel's partition (`orderer.KafkaMessage`) and what
//! every block ordered through Kafka records of it (`orderer.KafkaMetadata`),
//! wire-compatible with Fabric 1.x/2.x.

use bytes::Bytes;
use prost::Message as _;

use crate::fabric::blockutil;
use crate::fabric::protos::common::Block;
use crate::fabric::protos::orderer::{
    kafka_message, kafka_message_regular::Class, KafkaMessage, KafkaMessageConnect,
    KafkaMessageRegular, KafkaMessageTimeToCut, KafkaMetadata,
};

/// One record of the partition, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A normal transaction: ordered into the pending batch.
    Normal(Regular),
    /// A config update (or, on the system channel, a channel creation): a
    /// block of its own.
    Config(Regular),
    /// Cut block `number` now.
    TimeToCut { block_number: u64 },
    /// Posted at start-up; ignored.
    Connect,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Regular {
    /// The marshalled envelope.
    pub payload: Bytes,
    /// The config sequence the envelope was validated at.
    pub config_seq: u64,
    /// Non-zero for a message validated again and posted anew: the offset
    /// of the message it replaces.
    pub original_offset: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("not a KafkaMessage: {0}")]
    Decode(String),
    #[error("a KafkaMessage with no type set")]
    Empty,
    #[error("a regular KafkaMessage of unknown class {0}")]
    UnknownClass(i32),
}

impl Record {
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        let message =
            KafkaMessage::decode(bytes).map_err(|e| RecordError::Decode(e.to_string()))?;
        match message.r#type.ok_or(RecordError::Empty)? {
            kafka_message::Type::Regular(regular) => {
                let class = regular.class;
                let inner = Regular {
                    payload: regular.payload,
                    config_seq: regular.config_seq,
                    original_offset: regular.original_offset,
                };
                match Class::try_from(class) {
                    Ok(Class::Normal) => Ok(Record::Normal(inner)),
                    Ok(Class::Config) => Ok(Record::Config(inner)),
                    _ => Err(RecordError::UnknownClass(class)),
                }
            }
            kafka_message::Type::TimeToCut(ttc) => Ok(Record::TimeToCut {
                block_number: ttc.block_number,
            }),
            kafka_message::Type::Connect(_) => Ok(Record::Connect),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let regular = |r: &Regular, class: Class| {
            kafka_message::Type::Regular(KafkaMessageRegular {
                payload: r.payload.clone(),
                config_seq: r.config_seq,
                class: class as i32,
                original_offset: r.original_offset,
            })
        };
        let kind = match self {
            Record::Normal(r) => regular(r, Class::Normal),
            Record::Config(r) => regular(r, Class::Config),
            Record::TimeToCut { block_number } => {
                kafka_message::Type::TimeToCut(KafkaMessageTimeToCut {
                    block_number: *block_number,
                })
            }
            Record::Connect => kafka_message::Type::Connect(KafkaMessageConnect {
                payload: Bytes::new(),
            }),
        };
        KafkaMessage { r#type: Some(kind) }.encode_to_vec()
    }
}

/// Where a chain stands in its partition: what each block's consenter
/// metadata records, and where a restarted chain goes on from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    /// The last record the chain's blocks account for; -1 before any.
    pub last_offset_persisted: i64,
    /// The highest `original_offset` of the resubmitted messages processed.
    pub last_original_offset_processed: i64,
    /// The original offset of the last config message resubmitted.
    pub last_resubmitted_config_offset: i64,
}

impl Offsets {
    /// A chain that has read nothing of its partition yet.
    pub const FRESH: Offsets = Offsets {
        last_offset_persisted: -1,
        last_original_offset_processed: 0,
        last_resubmitted_config_offset: 0,
    };

    /// The offsets recorded in `block`: the genesis block and blocks of
    /// another consenter record none, so the chain starts afresh.
    pub fn of_block(block: &Block) -> Result<Offsets, RecordError> {
        let Some(raw) = blockutil::consenter_metadata(block) else {
            return Ok(Offsets::FRESH);
        };
        let metadata =
            KafkaMetadata::decode(raw).map_err(|e| RecordError::Decode(e.to_string()))?;
        Ok(Offsets {
            last_offset_persisted: metadata.last_offset_persisted,
            last_original_offset_processed: metadata.last_original_offset_processed,
            last_resubmitted_config_offset: metadata.last_resubmitted_config_offset,
        })
    }

    /// The first offset a chain at these offsets reads.
    pub fn next_to_read(&self) -> i64 {
        (self.last_offset_persisted + 1).max(0)
    }

    /// The block's consenter metadata.
    pub fn encode(&self) -> Bytes {
        KafkaMetadata {
            last_offset_persisted: self.last_offset_persisted,
            last_original_offset_processed: self.last_original_offset_processed,
            last_resubmitted_config_offset: self.last_resubmitted_config_offset,
        }
        .encode_to_vec()
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let records = [
            Record::Normal(Regular {
                payload: Bytes::from_static(b"env"),
                config_seq: 3,
                original_offset: 0,
            }),
            Record::Config(Regular {
                payload: Bytes::from_static(b"cfg"),
                config_seq: 4,
                original_offset: 17,
            }),
            Record::TimeToCut { block_number: 9 },
            Record::Connect,
        ];
        for record in records {
            assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        }
    }

    /// The bytes Fabric's proto gives for the same messages (field numbers
    /// of orderer/kafka.proto).
    #[test]
    fn wire_layout_matches_fabric() {
        let ttc = Record::TimeToCut { block_number: 5 }.encode();
        // field 2 (time_to_cut), length 2, { field 1 varint 5 }
        assert_eq!(ttc, vec![0x12, 0x02, 0x08, 0x05]);
        let regular = Record::Normal(Regular {
            payload: Bytes::from_static(b"x"),
            config_seq: 1,
            original_offset: 2,
        })
        .encode();
        // field 1 (regular) { payload=1:"x", config_seq=2:1, class=3:NORMAL(1), original_offset=4:2 }
        assert_eq!(
            regular,
            vec![0x0a, 0x09, 0x0a, 0x01, b'x', 0x10, 0x01, 0x18, 0x01, 0x20, 0x02]
        );
        let connect = Record::Connect.encode();
        assert_eq!(connect, vec![0x1a, 0x00]);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            Record::decode(&[0xff, 0xff]),
            Err(RecordError::Decode(_))
        ));
        assert_eq!(Record::decode(&[]), Err(RecordError::Empty));
        let unknown = KafkaMessage {
            r#type: Some(kafka_message::Type::Regular(KafkaMessageRegular {
                class: 7,
                ..Default::default()
            })),
        }
        .encode_to_vec();
        assert_eq!(Record::decode(&unknown), Err(RecordError::UnknownClass(7)));
    }

    #[test]
    fn offsets_live_in_the_block_metadata() {
        let offsets = Offsets {
            last_offset_persisted: 41,
            last_original_offset_processed: 7,
            last_resubmitted_config_offset: 3,
        };
        let block = blockutil::new_block(1, Bytes::new(), vec![], 0, offsets.encode());
        assert_eq!(Offsets::of_block(&block).unwrap(), offsets);
        assert_eq!(offsets.next_to_read(), 42);
        let genesis = blockutil::new_block(0, Bytes::new(), vec![], 0, Bytes::new());
        assert_eq!(Offsets::of_block(&genesis).unwrap(), Offsets::FRESH);
        assert_eq!(Offsets::FRESH.next_to_read(), 0);
    }
}
