"""Genesis blocks laid out as Fabric's configtxgen lays them out, built with
Fabric's official Python protos, independently of Ordo's own code.

Usage:
  fabric_genesis.py make OUTDIR CRYPTODIR
      writes solo.block (channel pysolo) and etcdraft.block (channel pyraft)
  fabric_genesis.py check BLOCK
      reads a genesis block made by `ordo genesis` with the official classes
      and checks its layout
"""
import hashlib
import os
import sys
import time

from fabric_protos.common import common_pb2, configtx_pb2, configuration_pb2, policies_pb2
from fabric_protos.msp import msp_config_pb2, msp_principal_pb2
from fabric_protos.orderer import configuration_pb2 as orderer_pb2
from fabric_protos.orderer.etcdraft import configuration_pb2 as etcdraft_pb2


def read(path):
    with open(path, "rb") as f:
        return f.read()


def value(group, key, message):
    group.values[key].value = message.SerializeToString()
    group.values[key].mod_policy = "Admins"


def implicit_meta(group, name, sub_policy, rule):
    policy = group.policies[name]
    policy.mod_policy = "Admins"
    policy.policy.type = policies_pb2.Policy.IMPLICIT_META
    policy.policy.value = policies_pb2.ImplicitMetaPolicy(
        sub_policy=sub_policy, rule=rule
    ).SerializeToString()


def signed_by(group, name, msp_id, role):
    envelope = policies_pb2.SignaturePolicyEnvelope(version=0)
    principal = envelope.identities.add()
    principal.principal_classification = msp_principal_pb2.MSPPrincipal.ROLE
    principal.principal = msp_principal_pb2.MSPRole(
        msp_identifier=msp_id, role=role
    ).SerializeToString()
    envelope.rule.n_out_of.n = 1
    envelope.rule.n_out_of.rules.add().signed_by = 0
    policy = group.policies[name]
    policy.mod_policy = "Admins"
    policy.policy.type = policies_pb2.Policy.SIGNATURE
    policy.policy.value = envelope.SerializeToString()


def capabilities(group, name):
    caps = configuration_pb2.Capabilities()
    caps.capabilities[name].CopyFrom(configuration_pb2.Capability())
    value(group, "Capabilities", caps)


def organization(parent, name, msp_id, msp_dir, endpoints=None):
    org = parent.groups[name]
    org.mod_policy = "Admins"
    fabric = msp_config_pb2.FabricMSPConfig(name=msp_id)
    ca = read(os.path.join(msp_dir, "cacerts", "ca-cert.pem"))
    fabric.root_certs.append(ca)
    # NodeOUs as cryptogen's config.yaml sets them (an MSP needs admins, here
    # by the admin OU).
    fabric.fabric_node_ous.enable = True
    for role in ("client", "peer", "admin", "orderer"):
        ou = getattr(fabric.fabric_node_ous, role + "_ou_identifier")
        ou.certificate = ca
        ou.organizational_unit_identifier = role
    fabric.tls_root_certs.append(read(os.path.join(msp_dir, "tlscacerts", "tlsca-cert.pem")))
    fabric.crypto_config.signature_hash_family = "SHA2"
    fabric.crypto_config.identity_identifier_hash_function = "SHA256"
    value(org, "MSP", msp_config_pb2.MSPConfig(type=0, config=fabric.SerializeToString()))
    if endpoints:
        value(org, "Endpoints", configuration_pb2.OrdererAddresses(addresses=endpoints))
    member = msp_principal_pb2.MSPRole.MEMBER
    signed_by(org, "Readers", msp_id, member)
    signed_by(org, "Writers", msp_id, member)
    signed_by(org, "Admins", msp_id, msp_principal_pb2.MSPRole.ADMIN)


def channel_config(consensus_type, metadata, crypto):
    config = configtx_pb2.Config(sequence=0)
    channel = config.channel_group
    channel.mod_policy = "Admins"
    value(channel, "HashingAlgorithm", configuration_pb2.HashingAlgorithm(name="SHA256"))
    value(channel, "BlockDataHashingStructure", configuration_pb2.BlockDataHashingStructure(width=2**32 - 1))
    capabilities(channel, "V3_0")
    for name, rule in (("Readers", "ANY"), ("Writers", "ANY"), ("Admins", "MAJORITY")):
        implicit_meta(channel, name, name, getattr(policies_pb2.ImplicitMetaPolicy, rule))

    orderer = channel.groups["Orderer"]
    orderer.mod_policy = "Admins"
    value(orderer, "BatchSize", orderer_pb2.BatchSize(
        max_message_count=77, absolute_max_bytes=5 * 1024 * 1024, preferred_max_bytes=1024 * 1024))
    value(orderer, "BatchTimeout", orderer_pb2.BatchTimeout(timeout="750ms"))
    value(orderer, "ConsensusType", orderer_pb2.ConsensusType(type=consensus_type, metadata=metadata))
    value(orderer, "ChannelRestrictions", orderer_pb2.ChannelRestrictions(max_count=0))
    capabilities(orderer, "V2_0")
    for name, rule in (("Readers", "ANY"), ("Writers", "ANY"), ("Admins", "MAJORITY")):
        implicit_meta(orderer, name, name, getattr(policies_pb2.ImplicitMetaPolicy, rule))
    implicit_meta(orderer, "BlockValidation", "Writers", policies_pb2.ImplicitMetaPolicy.ANY)
    organization(orderer, "OrdererOrg", "OrdererMSP", os.path.join(crypto, "ordererorg", "msp"),
                 ["127.0.0.1:7050"])

    application = channel.groups["Application"]
    application.mod_policy = "Admins"
    capabilities(application, "V2_5")
    for name, rule in (("Readers", "ANY"), ("Writers", "ANY"), ("Admins", "MAJORITY")):
        implicit_meta(application, name, name, getattr(policies_pb2.ImplicitMetaPolicy, rule))
    organization(application, "Org1MSP", "Org1MSP", os.path.join(crypto, "org1", "msp"))
    return config


def genesis_block(channel_id, config):
    channel_header = common_pb2.ChannelHeader(
        type=common_pb2.CONFIG, version=1, channel_id=channel_id, epoch=0)
    channel_header.timestamp.seconds = int(time.time())
    signature_header = common_pb2.SignatureHeader(nonce=os.urandom(24))
    payload = common_pb2.Payload(
        data=configtx_pb2.ConfigEnvelope(config=config).SerializeToString())
    payload.header.channel_header = channel_header.SerializeToString()
    payload.header.signature_header = signature_header.SerializeToString()
    envelope = common_pb2.Envelope(payload=payload.SerializeToString())
    data = envelope.SerializeToString()

    block = common_pb2.Block()
    block.header.number = 0
    block.header.data_hash = hashlib.sha256(data).digest()
    block.data.data.append(data)
    # As Fabric 3.x writes a genesis block: five metadata slots, SIGNATURES
    # holding an empty OrdererBlockMetadata, no signature.
    signatures = common_pb2.Metadata(value=common_pb2.OrdererBlockMetadata().SerializeToString())
    block.metadata.metadata.append(signatures.SerializeToString())
    for _ in range(4):
        block.metadata.metadata.append(b"")
    return block


def make(out, crypto):
    with open(os.path.join(out, "solo.block"), "wb") as f:
        f.write(genesis_block("pysolo", channel_config("solo", b"", crypto)).SerializeToString())
    raft = etcdraft_pb2.ConfigMetadata()
    for n in (1, 2, 3):
        cert = read(os.path.join(crypto, "ordererorg", "tls", "orderer%d.crt" % n))
        raft.consenters.add(host="127.0.0.1", port=7050 + n, client_tls_cert=cert, server_tls_cert=cert)
    raft.options.tick_interval = "500ms"
    raft.options.election_tick = 10
    raft.options.heartbeat_tick = 1
    raft.options.max_inflight_blocks = 5
    raft.options.snapshot_interval_size = 16 * 1024 * 1024
    config = channel_config("etcdraft", raft.SerializeToString(), crypto)
    with open(os.path.join(out, "etcdraft.block"), "wb") as f:
        f.write(genesis_block("pyraft", config).SerializeToString())
    print("fabric genesis: wrote solo.block and etcdraft.block")


def check(path):
    block = common_pb2.Block.FromString(read(path))
    assert block.header.number == 0
    assert block.header.previous_hash == b""
    assert block.header.data_hash == hashlib.sha256(b"".join(block.data.data)).digest()
    assert len(block.data.data) == 1
    envelope = common_pb2.Envelope.FromString(block.data.data[0])
    payload = common_pb2.Payload.FromString(envelope.payload)
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    assert header.type == common_pb2.CONFIG, header.type
    config = configtx_pb2.ConfigEnvelope.FromString(payload.data).config
    channel = config.channel_group
    assert set(channel.groups) == {"Orderer", "Application"}, set(channel.groups)
    assert configuration_pb2.HashingAlgorithm.FromString(channel.values["HashingAlgorithm"].value).name == "SHA256"
    orderer = channel.groups["Orderer"]
    size = orderer_pb2.BatchSize.FromString(orderer.values["BatchSize"].value)
    assert (size.max_message_count, size.absolute_max_bytes, size.preferred_max_bytes) == (500, 10485760, 2097152), size
    consensus = orderer_pb2.ConsensusType.FromString(orderer.values["ConsensusType"].value)
    assert consensus.type == "solo", consensus.type
    assert set(orderer.policies) == {"Readers", "Writers", "Admins", "BlockValidation"}, set(orderer.policies)
    org = orderer.groups["OrdererOrg"]
    msp = msp_config_pb2.MSPConfig.FromString(org.values["MSP"].value)
    fabric = msp_config_pb2.FabricMSPConfig.FromString(msp.config)
    assert fabric.name == "OrdererMSP", fabric.name
    assert fabric.root_certs[0].startswith(b"-----BEGIN CERTIFICATE-----")
    assert fabric.fabric_node_ous.enable
    assert fabric.fabric_node_ous.admin_ou_identifier.organizational_unit_identifier == "admin"
    readers = org.policies["Readers"].policy
    assert readers.type == policies_pb2.Policy.SIGNATURE
    envelope = policies_pb2.SignaturePolicyEnvelope.FromString(readers.value)
    role = msp_principal_pb2.MSPRole.FromString(envelope.identities[0].principal)
    assert (role.msp_identifier, role.role) == ("OrdererMSP", msp_principal_pb2.MSPRole.MEMBER)
    endpoints = configuration_pb2.OrdererAddresses.FromString(org.values["Endpoints"].value)
    assert list(endpoints.addresses) == ["127.0.0.1:7050"]
    app_org = channel.groups["Application"].groups["Org1MSP"]
    assert "Endorsement" in app_org.policies
    print("fabric genesis: ordo's block reads as Fabric's layout")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        sys.exit(__doc__)
