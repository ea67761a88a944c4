"""Genesis blocks laid out as Fabric's configtxgen lays them out, built with
Fabric's official Python protos, independently of Ordo's own code.

Usage:
  fabric_genesis.py make OUTDIR CRYPTODIR
      writes solo.block (channel pysolo) and etcdraft.block (channel pyraft)
  fabric_genesis.py check BLOCK
      reads a genesis block made by `ordo genesis` with the official classes
      and checks its layout
  fabric_genesis.py syschannel OUT CRYPTODIR MAXCOUNT [KAFKA_BROKER...]
      writes a system channel genesis block (channel syschannel, solo, or
      kafka on the brokers given) as
      configtxgen 2.5 lays out a TwoOrgsOrdererGenesis profile: Orderer
      group, and a Consortiums group with SampleConsortium (Org1MSP,
      Org2MSP); MAXCOUNT is ChannelRestrictions.MaxCount
  fabric_genesis.py createtx OUT CHANNEL CONSORTIUM SIGNER_MSP SIGNER_ID ORG...
      writes a channel creation transaction as `configtxgen
      -outputCreateChannelTx` lays it out for a profile with this Consortium
      and these Application organizations, signed as `peer channel create`
      signs it: by the identity in SIGNER_MSP (MSP ID SIGNER_ID), once in
      the update's signatures and once over the envelope
  fabric_genesis.py checksystem BLOCK TX
      reads a system channel genesis block and a channel creation transaction
      made by `ordo genesis` with the official classes and checks that they
      are laid out as configtxgen lays them out
"""
import hashlib
import os
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from fabric_protos.common import common_pb2, configtx_pb2, configuration_pb2, policies_pb2
from fabric_protos.msp import identities_pb2, msp_config_pb2, msp_principal_pb2
from fabric_protos.peer import configuration_pb2 as peer_pb2
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
    return org


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


def system_channel_config(crypto, max_count, kafka_brokers=None):
    """configtxgen 2.5's layout of a system channel genesis (profile
    TwoOrgsOrdererGenesis): no Application group, a Consortiums group.
    With kafka_brokers: OrdererType kafka and the KafkaBrokers value, as
    configtxgen writes them (profile SampleDevModeKafka)."""
    config = configtx_pb2.Config(sequence=0)
    channel = config.channel_group
    channel.mod_policy = "Admins"
    value(channel, "HashingAlgorithm", configuration_pb2.HashingAlgorithm(name="SHA256"))
    value(channel, "BlockDataHashingStructure", configuration_pb2.BlockDataHashingStructure(width=2**32 - 1))
    value(channel, "OrdererAddresses", configuration_pb2.OrdererAddresses(addresses=["127.0.0.1:7050"]))
    channel.values["OrdererAddresses"].mod_policy = "/Channel/Orderer/Admins"
    capabilities(channel, "V2_0")
    for name, rule in (("Readers", "ANY"), ("Writers", "ANY"), ("Admins", "MAJORITY")):
        implicit_meta(channel, name, name, getattr(policies_pb2.ImplicitMetaPolicy, rule))

    orderer = channel.groups["Orderer"]
    orderer.mod_policy = "Admins"
    value(orderer, "BatchSize", orderer_pb2.BatchSize(
        max_message_count=10, absolute_max_bytes=99 * 1024 * 1024, preferred_max_bytes=512 * 1024))
    value(orderer, "BatchTimeout", orderer_pb2.BatchTimeout(timeout="500ms"))
    value(orderer, "ConsensusType", orderer_pb2.ConsensusType(type="kafka" if kafka_brokers else "solo"))
    if kafka_brokers:
        value(orderer, "KafkaBrokers", orderer_pb2.KafkaBrokers(brokers=kafka_brokers))
    value(orderer, "ChannelRestrictions", orderer_pb2.ChannelRestrictions(max_count=max_count))
    capabilities(orderer, "V2_0")
    for name, rule in (("Readers", "ANY"), ("Writers", "ANY"), ("Admins", "MAJORITY")):
        implicit_meta(orderer, name, name, getattr(policies_pb2.ImplicitMetaPolicy, rule))
    implicit_meta(orderer, "BlockValidation", "Writers", policies_pb2.ImplicitMetaPolicy.ANY)
    organization(orderer, "OrdererOrg", "OrdererMSP", os.path.join(crypto, "ordererorg", "msp"),
                 ["127.0.0.1:7050"])

    # NewConsortiumsGroup: Admins accepts everyone (a signature policy of
    # none out of no principals), everything modified by the orderer admins.
    consortiums = channel.groups["Consortiums"]
    consortiums.mod_policy = "/Channel/Orderer/Admins"
    accept_all = policies_pb2.SignaturePolicyEnvelope(version=0)
    accept_all.rule.n_out_of.n = 0
    admins = consortiums.policies["Admins"]
    admins.mod_policy = "/Channel/Orderer/Admins"
    admins.policy.type = policies_pb2.Policy.SIGNATURE
    admins.policy.value = accept_all.SerializeToString()
    sample = consortiums.groups["SampleConsortium"]
    sample.mod_policy = "/Channel/Orderer/Admins"
    creation = policies_pb2.Policy(
        type=policies_pb2.Policy.IMPLICIT_META,
        value=policies_pb2.ImplicitMetaPolicy(
            sub_policy="Admins", rule=policies_pb2.ImplicitMetaPolicy.ANY
        ).SerializeToString(),
    )
    sample.values["ChannelCreationPolicy"].value = creation.SerializeToString()
    sample.values["ChannelCreationPolicy"].mod_policy = "/Channel/Orderer/Admins"
    for org in ("Org1MSP", "Org2MSP"):
        group = organization(sample, org, org, os.path.join(crypto, org.lower()[:4], "msp"))
        signed_by(group, "Endorsement", org, msp_principal_pb2.MSPRole.MEMBER)
    return config


def syschannel(out, crypto, max_count, kafka_brokers=None):
    config = system_channel_config(crypto, int(max_count), kafka_brokers)
    block = genesis_block("syschannel", config)
    with open(out, "wb") as f:
        f.write(block.SerializeToString())
    print("fabric genesis: wrote the system channel genesis")


def sign(key, message):
    """ECDSA P-256 over SHA-256, DER, low S: how Fabric's signers sign."""
    der = key.sign(message, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    if s > n // 2:
        s = n - s
    return encode_dss_signature(r, s)


def createtx(out, channel_id, consortium, signer_msp, signer_id, orgs):
    # The update configtxgen computes between DefaultConfigTemplate (the
    # profile with the Application group's values and policies taken out)
    # and the profile: the Application group goes to version 1 with its
    # values and policies at version 0, the organizations are read and
    # written at version 0 without content; the Consortium value is added
    # to both sets by hand.
    update = configtx_pb2.ConfigUpdate(channel_id=channel_id)
    read_app = update.read_set.groups["Application"]
    write = update.write_set
    write_app = write.groups["Application"]
    write_app.version = 1
    write_app.mod_policy = "Admins"
    for org in orgs:
        read_app.groups[org].version = 0
        write_app.groups[org].version = 0
    update.read_set.values["Consortium"].version = 0
    write.values["Consortium"].value = configuration_pb2.Consortium(name=consortium).SerializeToString()
    capabilities(write_app, "V2_0")
    acls = peer_pb2.ACLs()
    acls.acls["event/Block"].policy_ref = "/Channel/Application/Readers"
    acls.acls["event/FilteredBlock"].policy_ref = "/Channel/Application/Readers"
    value(write_app, "ACLs", acls)
    for name, sub, rule in (("Readers", "Readers", "ANY"), ("Writers", "Writers", "ANY"),
                            ("Admins", "Admins", "MAJORITY"),
                            ("LifecycleEndorsement", "Endorsement", "MAJORITY"),
                            ("Endorsement", "Endorsement", "MAJORITY")):
        implicit_meta(write_app, name, sub, getattr(policies_pb2.ImplicitMetaPolicy, rule))

    cert = read(os.path.join(signer_msp, "signcerts", "cert.pem"))
    key = serialization.load_pem_private_key(read(os.path.join(signer_msp, "keystore", "priv_sk")), None)
    creator = identities_pb2.SerializedIdentity(mspid=signer_id, id_bytes=cert).SerializeToString()

    def signature_header():
        return common_pb2.SignatureHeader(creator=creator, nonce=os.urandom(24)).SerializeToString()

    update_bytes = update.SerializeToString()
    envelope_data = configtx_pb2.ConfigUpdateEnvelope(config_update=update_bytes)
    config_signature = envelope_data.signatures.add()
    config_signature.signature_header = signature_header()
    config_signature.signature = sign(key, config_signature.signature_header + update_bytes)

    channel_header = common_pb2.ChannelHeader(type=common_pb2.CONFIG_UPDATE, channel_id=channel_id)
    channel_header.timestamp.seconds = int(time.time())
    payload = common_pb2.Payload(data=envelope_data.SerializeToString())
    payload.header.channel_header = channel_header.SerializeToString()
    payload.header.signature_header = signature_header()
    payload_bytes = payload.SerializeToString()
    envelope = common_pb2.Envelope(payload=payload_bytes, signature=sign(key, payload_bytes))
    with open(out, "wb") as f:
        f.write(envelope.SerializeToString())
    print("fabric genesis: wrote the channel creation transaction")


def check_system(block_path, tx_path):
    block = common_pb2.Block.FromString(read(block_path))
    envelope = common_pb2.Envelope.FromString(block.data.data[0])
    payload = common_pb2.Payload.FromString(envelope.payload)
    channel = configtx_pb2.ConfigEnvelope.FromString(payload.data).config.channel_group
    assert set(channel.groups) == {"Orderer", "Consortiums"}, set(channel.groups)
    consortiums = channel.groups["Consortiums"]
    assert consortiums.mod_policy == "/Channel/Orderer/Admins", consortiums.mod_policy
    admins = consortiums.policies["Admins"]
    assert admins.mod_policy == "/Channel/Orderer/Admins"
    assert admins.policy.type == policies_pb2.Policy.SIGNATURE
    accept_all = policies_pb2.SignaturePolicyEnvelope.FromString(admins.policy.value)
    assert accept_all.rule.n_out_of.n == 0 and not accept_all.identities, accept_all
    consortium = consortiums.groups["SampleConsortium"]
    assert consortium.mod_policy == "/Channel/Orderer/Admins"
    creation = consortium.values["ChannelCreationPolicy"]
    assert creation.mod_policy == "/Channel/Orderer/Admins"
    policy = policies_pb2.Policy.FromString(creation.value)
    assert policy.type == policies_pb2.Policy.IMPLICIT_META
    meta = policies_pb2.ImplicitMetaPolicy.FromString(policy.value)
    assert (meta.rule, meta.sub_policy) == (policies_pb2.ImplicitMetaPolicy.ANY, "Admins"), meta
    assert set(consortium.groups) == {"Org1MSP", "Org2MSP"}, set(consortium.groups)
    assert "MSP" in consortium.groups["Org1MSP"].values

    envelope = common_pb2.Envelope.FromString(read(tx_path))
    payload = common_pb2.Payload.FromString(envelope.payload)
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    assert header.type == common_pb2.CONFIG_UPDATE, header.type
    update_envelope = configtx_pb2.ConfigUpdateEnvelope.FromString(payload.data)
    update = configtx_pb2.ConfigUpdate.FromString(update_envelope.config_update)
    assert update.channel_id == header.channel_id
    read_app = update.read_set.groups["Application"]
    write_app = update.write_set.groups["Application"]
    assert (read_app.version, write_app.version) == (0, 1)
    assert write_app.mod_policy == "Admins"
    assert set(read_app.groups) == set(write_app.groups) == {"Org1MSP", "Org2MSP"}
    for org in write_app.groups.values():
        assert org.version == 0 and not org.values and not org.policies
    assert set(write_app.policies) == {"Readers", "Writers", "Admins", "Endorsement", "LifecycleEndorsement"}
    assert all(p.version == 0 for p in write_app.policies.values())
    assert "Capabilities" in write_app.values
    assert update.read_set.values["Consortium"].version == 0
    consortium = configuration_pb2.Consortium.FromString(update.write_set.values["Consortium"].value)
    assert consortium.name == "SampleConsortium"
    print("fabric genesis: ordo's system channel genesis and creation transaction read as Fabric's layout")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "syschannel":
        syschannel(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:] or None)
    elif sys.argv[1] == "checksystem":
        check_system(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "createtx":
        createtx(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7:])
    elif sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        sys.exit(__doc__)
