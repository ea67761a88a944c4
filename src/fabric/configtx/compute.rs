//! Computes the config update that turns one config into another (what
//! Fabric's `configtxlator compute_update` does), and wraps it in a
//! CONFIG_UPDATE envelope ready for Broadcast, signed by the admins whose
//! signatures its modification policies need.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;

use crate::fabric::protos::common::{
    ChannelHeader, Config, ConfigGroup, ConfigSignature, ConfigUpdate, ConfigUpdateEnvelope,
    Envelope, Header, HeaderType, Payload, SignatureHeader,
};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ComputeError {
    #[error("a config has no Channel group")]
    NoRoot,
    #[error("the two configs are the same: there is nothing to update")]
    NoDifference,
}

/// The read and write sets that change `original` into `updated`.
pub fn compute_update(
    channel_id: &str,
    original: &Config,
    updated: &Config,
) -> Result<ConfigUpdate, ComputeError> {
    let (Some(original), Some(updated)) = (&original.channel_group, &updated.channel_group) else {
        return Err(ComputeError::NoRoot);
    };
    let (read_set, write_set, changed) = group_update(original, updated);
    if !changed {
        return Err(ComputeError::NoDifference);
    }
    Ok(ConfigUpdate {
        channel_id: channel_id.into(),
        read_set: Some(read_set),
        write_set: Some(write_set),
        isolated_data: HashMap::new(),
    })
}

/// Read set, write set, and whether anything under the group changed.
fn group_update(original: &ConfigGroup, updated: &ConfigGroup) -> (ConfigGroup, ConfigGroup, bool) {
    let mut membership_changed = original.mod_policy != updated.mod_policy;
    let mut read = ConfigGroup {
        version: original.version,
        ..ConfigGroup::default()
    };
    let mut write = ConfigGroup {
        version: original.version,
        mod_policy: updated.mod_policy.clone(),
        ..ConfigGroup::default()
    };
    // Children that stay as they are: needed in the write set only if the
    // group's membership changes, since the write set then lists every child.
    let mut same = ConfigGroup::default();
    let mut children_changed = false;

    for (name, value) in &updated.values {
        match original.values.get(name) {
            Some(old)
                if old.mod_policy == value.mod_policy
                    && super::semantic::same_value_bytes(name, &old.value, &value.value) =>
            {
                same.values.insert(name.clone(), old.clone());
            }
            Some(old) => {
                let mut v = value.clone();
                v.version = old.version + 1;
                write.values.insert(name.clone(), v);
                children_changed = true;
            }
            None => {
                let mut v = value.clone();
                v.version = 0;
                write.values.insert(name.clone(), v);
                membership_changed = true;
            }
        }
    }
    membership_changed |= original
        .values
        .keys()
        .any(|k| !updated.values.contains_key(k));

    for (name, policy) in &updated.policies {
        match original.policies.get(name) {
            Some(old)
                if old.mod_policy == policy.mod_policy
                    && super::semantic::same_policy_rule(old, policy) =>
            {
                same.policies.insert(name.clone(), old.clone());
            }
            Some(old) => {
                let mut p = policy.clone();
                p.version = old.version + 1;
                write.policies.insert(name.clone(), p);
                children_changed = true;
            }
            None => {
                let mut p = policy.clone();
                p.version = 0;
                write.policies.insert(name.clone(), p);
                membership_changed = true;
            }
        }
    }
    membership_changed |= original
        .policies
        .keys()
        .any(|k| !updated.policies.contains_key(k));

    for (name, group) in &updated.groups {
        match original.groups.get(name) {
            Some(old) => {
                let (r, w, changed) = group_update(old, group);
                if changed {
                    read.groups.insert(name.clone(), r);
                    write.groups.insert(name.clone(), w);
                    children_changed = true;
                } else {
                    same.groups.insert(name.clone(), read_only(old));
                }
            }
            None => {
                write.groups.insert(name.clone(), at_version_zero(group));
                membership_changed = true;
            }
        }
    }
    membership_changed |= original
        .groups
        .keys()
        .any(|k| !updated.groups.contains_key(k));

    if membership_changed {
        write.version = original.version + 1;
        read.values.extend(same.values.clone());
        read.policies.extend(same.policies.clone());
        write.values.extend(same.values);
        write.policies.extend(same.policies);
        write.groups.extend(same.groups.clone());
        read.groups.extend(same.groups);
    }
    (read, write, membership_changed || children_changed)
}

/// A group as it stands, named at its version without its content.
fn read_only(group: &ConfigGroup) -> ConfigGroup {
    ConfigGroup {
        version: group.version,
        mod_policy: group.mod_policy.clone(),
        ..ConfigGroup::default()
    }
}

fn at_version_zero(group: &ConfigGroup) -> ConfigGroup {
    let mut g = group.clone();
    g.version = 0;
    for v in g.values.values_mut() {
        v.version = 0;
    }
    for p in g.policies.values_mut() {
        p.version = 0;
    }
    g.groups = group
        .groups
        .iter()
        .map(|(k, child)| (k.clone(), at_version_zero(child)))
        .collect();
    g
}

/// A CONFIG_UPDATE envelope carrying `update`, without signatures.
pub fn config_update_envelope(update: &ConfigUpdate) -> Envelope {
    let channel_header = ChannelHeader {
        r#type: HeaderType::ConfigUpdate as i32,
        channel_id: update.channel_id.clone(),
        timestamp: Some(crate::fabric::envelopeutil::now()),
        ..ChannelHeader::default()
    };
    let payload = Payload {
        header: Some(Header {
            channel_header: channel_header.encode_to_vec().into(),
            signature_header: SignatureHeader::default().encode_to_vec().into(),
        }),
        data: ConfigUpdateEnvelope {
            config_update: update.encode_to_vec().into(),
            signatures: Vec::new(),
        }
        .encode_to_vec()
        .into(),
    };
    Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    }
}

/// Someone who signs config updates: a serialized identity and its signing
/// function (DER ECDSA over SHA-256 of the message, low S).
#[derive(Clone)]
pub struct UpdateSigner<'a> {
    pub creator: Bytes,
    pub sign: &'a dyn Fn(&[u8]) -> Bytes,
}

/// A CONFIG_UPDATE envelope carrying `update` with one `ConfigSignature` per
/// signer (over its signature header followed by the update), the envelope
/// itself created and signed by `submitter`.
pub fn signed_config_update_envelope(
    update: &ConfigUpdate,
    signers: &[UpdateSigner<'_>],
    submitter: &UpdateSigner<'_>,
) -> Envelope {
    let config_update: Bytes = update.encode_to_vec().into();
    let signatures = signers
        .iter()
        .map(|signer| {
            let header: Bytes = signature_header(&signer.creator).encode_to_vec().into();
            let mut signed = header.to_vec();
            signed.extend_from_slice(&config_update);
            ConfigSignature {
                signature: (signer.sign)(&signed),
                signature_header: header,
            }
        })
        .collect();
    let data = ConfigUpdateEnvelope {
        config_update,
        signatures,
    }
    .encode_to_vec()
    .into();
    let (mut envelope, _) = crate::fabric::envelopeutil::new_envelope(
        &update.channel_id,
        HeaderType::ConfigUpdate,
        data,
        submitter.creator.clone(),
    );
    envelope.signature = (submitter.sign)(&envelope.payload);
    envelope
}

fn signature_header(creator: &Bytes) -> SignatureHeader {
    let mut nonce = [0u8; crate::fabric::envelopeutil::NONCE_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
    SignatureHeader {
        creator: creator.clone(),
        nonce: Bytes::copy_from_slice(&nonce),
    }
}
