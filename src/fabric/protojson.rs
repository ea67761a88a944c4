//! Blocks as JSON, the way Fabric operators read configs (`configtxlator
//! proto_decode`): every `bytes` field that holds a known message is shown
//! decoded (envelopes, headers, config values, policies, MSPs, block
//! metadata), with proto field names and default values written out.
//!
//! The JSON encodes back into the same messages at every depth (`ordo config
//! encode`). As with configtxlator, the bytes may differ from the original:
//! map entries are written in another order, so a hash over re-encoded data
//! can differ even though nothing changed.

use base64::Engine;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

use crate::fabric::protos::FILE_DESCRIPTOR_SET;

#[derive(Debug, thiserror::Error)]
pub enum ProtoJsonError {
    #[error("the built-in message descriptors are unreadable: {0}")]
    Descriptors(String),
    #[error("message {0} is unknown")]
    UnknownMessage(String),
    #[error("cannot decode {message}: {reason}")]
    Decode { message: String, reason: String },
    #[error("cannot encode {message} from JSON: {reason}")]
    Encode { message: String, reason: String },
}

/// Decodes and encodes Fabric messages as JSON.
pub struct ProtoJson {
    pool: DescriptorPool,
}

const BLOCK: &str = "common.Block";

impl ProtoJson {
    pub fn new() -> Result<ProtoJson, ProtoJsonError> {
        let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .map_err(|e| ProtoJsonError::Descriptors(e.to_string()))?;
        Ok(ProtoJson { pool })
    }

    fn descriptor(&self, name: &str) -> Result<MessageDescriptor, ProtoJsonError> {
        self.pool
            .get_message_by_name(name)
            .ok_or_else(|| ProtoJsonError::UnknownMessage(name.to_string()))
    }

    /// A marshalled block as JSON.
    pub fn block_to_json(&self, bytes: &[u8]) -> Result<Value, ProtoJsonError> {
        self.decode(BLOCK, bytes)
    }

    /// JSON from [`ProtoJson::block_to_json`] back to a marshalled block.
    pub fn json_to_block(&self, json: &Value) -> Result<Vec<u8>, ProtoJsonError> {
        self.encode(BLOCK, json)
    }

    /// Any message of the descriptors, by full name (`common.Envelope`).
    pub fn decode(&self, message: &str, bytes: &[u8]) -> Result<Value, ProtoJsonError> {
        let descriptor = self.descriptor(message)?;
        let dynamic = DynamicMessage::decode(descriptor.clone(), bytes).map_err(|e| {
            ProtoJsonError::Decode {
                message: message.to_string(),
                reason: e.to_string(),
            }
        })?;
        let options = SerializeOptions::new()
            .use_proto_field_name(true)
            .skip_default_fields(false);
        let mut json = dynamic
            .serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| ProtoJsonError::Decode {
                message: message.to_string(),
                reason: e.to_string(),
            })?;
        self.expand(&mut json, &descriptor, None)?;
        Ok(json)
    }

    pub fn encode(&self, message: &str, json: &Value) -> Result<Vec<u8>, ProtoJsonError> {
        let descriptor = self.descriptor(message)?;
        let mut json = json.clone();
        self.collapse(&mut json, &descriptor, None)?;
        let dynamic =
            DynamicMessage::deserialize(descriptor, json).map_err(|e| ProtoJsonError::Encode {
                message: message.to_string(),
                reason: e.to_string(),
            })?;
        Ok(dynamic.encode_to_vec())
    }

    /// Replaces known bytes fields of `json` (a `descriptor` message) with
    /// their decoded messages, depth first. `context`: the map key or list
    /// index the message sits at.
    fn expand(
        &self,
        json: &mut Value,
        descriptor: &MessageDescriptor,
        context: Option<&str>,
    ) -> Result<(), ProtoJsonError> {
        let Value::Object(_) = json else {
            return Ok(());
        };
        for field in descriptor.fields() {
            let name = field.name().to_string();
            if let Some(inner) = field.kind().as_message() {
                let Some(child) = json.get_mut(&name) else {
                    continue;
                };
                each_entry(child, field.is_map(), |key, entry| {
                    if field.is_map() {
                        // A map's JSON value is the entry's value message.
                        let value_kind = inner.map_entry_value_field().kind();
                        match value_kind.as_message() {
                            Some(value_descriptor) => self.expand(entry, value_descriptor, key),
                            None => Ok(()),
                        }
                    } else {
                        self.expand(entry, inner, key)
                    }
                })?;
                continue;
            }
            if !matches!(field.kind(), prost_reflect::Kind::Bytes) {
                continue;
            }
            let rules: Vec<(usize, &'static str)> = {
                let parent = &*json;
                match parent.get(&name) {
                    Some(Value::Array(items)) => (0..items.len())
                        .filter_map(|i| {
                            inner_type(descriptor.full_name(), &name, parent, Some(&i.to_string()))
                                .map(|t| (i, t))
                        })
                        .collect(),
                    Some(Value::String(_)) => {
                        inner_type(descriptor.full_name(), &name, parent, context)
                            .map(|t| vec![(0, t)])
                            .unwrap_or_default()
                    }
                    _ => Vec::new(),
                }
            };
            for (index, message) in rules {
                let slot = match json.get_mut(&name) {
                    Some(Value::Array(items)) => items.get_mut(index),
                    other => other,
                };
                let Some(slot) = slot else { continue };
                let Value::String(encoded) = &*slot else {
                    continue;
                };
                let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
                    continue;
                };
                // Bytes that do not decode as the expected message stay as they are.
                if let Ok(decoded) = self.decode(message, &raw) {
                    *slot = decoded;
                }
            }
        }
        Ok(())
    }

    /// The inverse of [`ProtoJson::expand`]: decoded messages back to base64.
    fn collapse(
        &self,
        json: &mut Value,
        descriptor: &MessageDescriptor,
        context: Option<&str>,
    ) -> Result<(), ProtoJsonError> {
        let Value::Object(_) = json else {
            return Ok(());
        };
        // The rules read sibling fields, so find them all before changing any.
        let mut bytes_rules: Vec<(String, Option<usize>, &'static str)> = Vec::new();
        for field in descriptor.fields() {
            if !matches!(field.kind(), prost_reflect::Kind::Bytes) {
                continue;
            }
            let name = field.name().to_string();
            match json.get(&name) {
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        if item.is_object() {
                            if let Some(t) = inner_type(
                                descriptor.full_name(),
                                &name,
                                json,
                                Some(&i.to_string()),
                            ) {
                                bytes_rules.push((name.clone(), Some(i), t));
                            }
                        }
                    }
                }
                Some(Value::Object(_)) => {
                    if let Some(t) = inner_type(descriptor.full_name(), &name, json, context) {
                        bytes_rules.push((name.clone(), None, t));
                    }
                }
                _ => {}
            }
        }
        for (name, index, message) in bytes_rules {
            let slot = match (json.get_mut(&name), index) {
                (Some(Value::Array(items)), Some(i)) => items.get_mut(i),
                (other, None) => other,
                _ => None,
            };
            if let Some(slot) = slot {
                let encoded = self.encode(message, slot)?;
                *slot = Value::String(base64::engine::general_purpose::STANDARD.encode(encoded));
            }
        }
        for field in descriptor.fields() {
            let Some(inner) = field.kind().as_message().cloned() else {
                continue;
            };
            let Some(child) = json.get_mut(field.name()) else {
                continue;
            };
            each_entry(child, field.is_map(), |key, entry| {
                if field.is_map() {
                    match inner.map_entry_value_field().kind().as_message() {
                        Some(value_descriptor) => self.collapse(entry, value_descriptor, key),
                        None => Ok(()),
                    }
                } else {
                    self.collapse(entry, &inner, key)
                }
            })?;
        }
        Ok(())
    }
}

/// Runs `f` on a message field's JSON: each map value with its key, each list
/// item with its index, or the single value.
fn each_entry(
    child: &mut Value,
    is_map: bool,
    mut f: impl FnMut(Option<&str>, &mut Value) -> Result<(), ProtoJsonError>,
) -> Result<(), ProtoJsonError> {
    match child {
        Value::Object(map) if is_map => map
            .iter_mut()
            .try_for_each(|(key, value)| f(Some(key.as_str()), value)),
        Value::Array(items) => items
            .iter_mut()
            .enumerate()
            .try_for_each(|(i, item)| f(Some(&i.to_string()), item)),
        other => f(None, other),
    }
}

/// The message a bytes field holds, from the field, its siblings and where the
/// message sits (`context`: map key or list index).
fn inner_type(
    message: &str,
    field: &str,
    parent: &Value,
    context: Option<&str>,
) -> Option<&'static str> {
    let sibling_str = |name: &str| parent.get(name).and_then(Value::as_str);
    let sibling_int = |name: &str| parent.get(name).and_then(Value::as_i64);
    Some(match (message, field) {
        ("common.BlockData", "data") => "common.Envelope",
        ("common.BlockMetadata", "metadata") => match context {
            Some("0") | Some("1") => "common.Metadata",
            _ => return None,
        },
        // SIGNATURES holds an OrdererBlockMetadata; the LastConfig of the
        // LAST_CONFIG slot does not decode as one and stays base64.
        ("common.Metadata", "value") => "common.OrdererBlockMetadata",
        ("common.Envelope", "payload") => "common.Payload",
        ("common.Header", "channel_header") => "common.ChannelHeader",
        ("common.Header", "signature_header") | ("common.ConfigSignature", "signature_header") => {
            "common.SignatureHeader"
        }
        ("common.SignatureHeader", "creator") => "msp.SerializedIdentity",
        ("common.Payload", "data") => {
            let kind = parent
                .get("header")
                .and_then(|h| h.get("channel_header"))
                .and_then(|c| c.get("type"))
                .and_then(Value::as_i64)?;
            match kind {
                1 => "common.ConfigEnvelope",
                2 => "common.ConfigUpdateEnvelope",
                _ => return None,
            }
        }
        ("common.ConfigUpdateEnvelope", "config_update") => "common.ConfigUpdate",
        ("common.ConfigValue", "value") => match context? {
            "BatchSize" => "orderer.BatchSize",
            "BatchTimeout" => "orderer.BatchTimeout",
            "ConsensusType" => "orderer.ConsensusType",
            "ChannelRestrictions" => "orderer.ChannelRestrictions",
            "KafkaBrokers" => "orderer.KafkaBrokers",
            "Capabilities" => "common.Capabilities",
            "HashingAlgorithm" => "common.HashingAlgorithm",
            "BlockDataHashingStructure" => "common.BlockDataHashingStructure",
            "OrdererAddresses" | "Endpoints" => "common.OrdererAddresses",
            "Consortium" => "common.Consortium",
            "MSP" => "msp.MSPConfig",
            _ => return None,
        },
        ("orderer.ConsensusType", "metadata") => match sibling_str("type")? {
            "etcdraft" => "etcdraft.ConfigMetadata",
            _ => return None,
        },
        ("msp.MSPConfig", "config") => match sibling_int("type")? {
            0 => "msp.FabricMSPConfig",
            _ => return None,
        },
        ("common.Policy", "value") => match sibling_int("type")? {
            1 => "common.SignaturePolicyEnvelope",
            3 => "common.ImplicitMetaPolicy",
            _ => return None,
        },
        ("common.MSPPrincipal", "principal") => match sibling_str("principal_classification")? {
            "ROLE" => "common.MSPRole",
            "ORGANIZATION_UNIT" => "common.OrganizationUnit",
            _ => return None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::fabric::protos::common::{Block, Config};

    #[test]
    fn a_genesis_block_reads_as_nested_json_and_encodes_back() {
        let block =
            GenesisProfile::embedded("mychannel", vec!["127.0.0.1:7050".into()]).genesis_block();
        let codec = ProtoJson::new().expect("descriptors");
        let json = codec
            .block_to_json(&block.encode_to_vec())
            .expect("decodes");
        let envelope = &json["data"]["data"][0];
        assert_eq!(
            envelope["payload"]["header"]["channel_header"]["channel_id"],
            "mychannel"
        );
        let orderer = &envelope["payload"]["data"]["config"]["channel_group"]["groups"]["Orderer"];
        assert_eq!(
            orderer["values"]["BatchSize"]["value"]["max_message_count"],
            500
        );
        assert_eq!(orderer["values"]["ConsensusType"]["value"]["type"], "solo");
        assert_eq!(
            orderer["policies"]["Admins"]["policy"]["value"]["rule"],
            "MAJORITY"
        );

        let bytes = codec.json_to_block(&json).expect("encodes");
        let back = Block::decode(bytes.as_slice()).expect("a block");
        assert_eq!(back.header, block.header);
        assert_eq!(back.metadata, block.metadata);
        assert_eq!(codec.block_to_json(&bytes).expect("decodes again"), json);
        let config = |b: &Block| {
            crate::fabric::channelconfig::ChannelConfig::from_config_block(b)
                .expect("config")
                .config
        };
        let root = |c: Config| c.channel_group.expect("root");
        assert!(crate::fabric::configtx::semantic::same_group(
            &root(config(&back)),
            &root(config(&block))
        ));
    }
}
