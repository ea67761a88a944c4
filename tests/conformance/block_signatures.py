"""Checks the orderer's signatures as a Fabric peer checks them, with Fabric's
official Python protos and the `cryptography` library, independently of
Ordo's own code.

Usage: block_signatures.py HOST:PORT CHANNEL CLIENT_MSP_DIR CLIENT_MSP_ID

Fetches every block of CHANNEL (the seek signed by the client identity in
CLIENT_MSP_DIR) and checks:
- block 0 (the genesis block) carries no signature, as Fabric's;
- every later block carries, in its SIGNATURES metadata, a signature over
  value || signature header || header DER that verifies against the
  certificate of its creator; that certificate chains to a root CA of its
  MSP in the channel config in force, and the signer satisfies that config's
  /Channel/Orderer/BlockValidation policy; LAST_CONFIG agrees;
- every CONFIG envelope the orderer made (in blocks after 0) is signed by
  the orderer's identity over its payload;
- a changed header or signature no longer verifies (the checks can fail).
"""
import datetime
import hashlib
import os
import sys

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from pyasn1.codec.der import encoder
from pyasn1.type import namedtype, univ

from fabric_protos.common import common_pb2, configtx_pb2, policies_pb2
from fabric_protos.msp import identities_pb2, msp_config_pb2, msp_principal_pb2
from fabric_protos.orderer import ab_pb2, ab_pb2_grpc

TIMEOUT = 30
# The order of P-256: a signature's S must be at most half of it (low S).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class BlockHeaderAsn1(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("number", univ.Integer()),
        namedtype.NamedType("previous_hash", univ.OctetString()),
        namedtype.NamedType("data_hash", univ.OctetString()),
    )


def header_bytes(header):
    asn = BlockHeaderAsn1()
    asn["number"] = header.number
    asn["previous_hash"] = header.previous_hash
    asn["data_hash"] = header.data_hash
    return encoder.encode(asn)


def check(condition, message):
    if not condition:
        print("FAILED:", message)
        sys.exit(1)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def only_file(folder):
    names = sorted(os.listdir(folder))
    return os.path.join(folder, names[0])


# --- the client side: a signed seek ------------------------------------------

def sign(key, message):
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return encode_dss_signature(r, min(s, P256_N - s))


def signed_seek(channel, msp_dir, msp_id):
    cert = read(only_file(os.path.join(msp_dir, "signcerts")))
    key = serialization.load_pem_private_key(
        read(only_file(os.path.join(msp_dir, "keystore"))), password=None)
    creator = identities_pb2.SerializedIdentity(mspid=msp_id, id_bytes=cert).SerializeToString()
    nonce = os.urandom(24)
    chdr = common_pb2.ChannelHeader(
        type=common_pb2.DELIVER_SEEK_INFO, channel_id=channel,
        tx_id=hashlib.sha256(nonce + creator).hexdigest())
    chdr.timestamp.GetCurrentTime()
    shdr = common_pb2.SignatureHeader(creator=creator, nonce=nonce)
    info = ab_pb2.SeekInfo(
        start=ab_pb2.SeekPosition(oldest=ab_pb2.SeekOldest()),
        stop=ab_pb2.SeekPosition(newest=ab_pb2.SeekNewest()),
        behavior=ab_pb2.SeekInfo.FAIL_IF_NOT_READY)
    payload = common_pb2.Payload(
        header=common_pb2.Header(
            channel_header=chdr.SerializeToString(),
            signature_header=shdr.SerializeToString()),
        data=info.SerializeToString()).SerializeToString()
    return common_pb2.Envelope(payload=payload, signature=sign(key, payload))


def fetch_all(address, channel, msp_dir, msp_id):
    stub = ab_pb2_grpc.AtomicBroadcastStub(grpc.insecure_channel(address))
    blocks, status = [], None
    request = signed_seek(channel, msp_dir, msp_id)
    for response in stub.Deliver(iter([request]), timeout=TIMEOUT):
        if response.HasField("block"):
            blocks.append(response.block)
        else:
            status = response.status
            break
    check(status == common_pb2.SUCCESS, f"Deliver answered {status}, not SUCCESS")
    return blocks


# --- identities and the MSPs of the channel config ---------------------------

def is_low_s(signature):
    _, s = decode_dss_signature(signature)
    return s <= P256_N // 2


def verifies(cert, message, signature):
    try:
        cert.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def issued_by(cert, ca):
    if cert.issuer != ca.subject:
        return False
    try:
        ca.public_key().verify(
            cert.signature, cert.tbs_certificate_bytes,
            ec.ECDSA(cert.signature_hash_algorithm))
        return True
    except InvalidSignature:
        return False


def msps(config):
    """Every organization's FabricMSPConfig in a config, by MSP ID."""
    found = {}

    def walk(group):
        if "MSP" in group.values:
            msp = msp_config_pb2.MSPConfig.FromString(group.values["MSP"].value)
            fabric = msp_config_pb2.FabricMSPConfig.FromString(msp.config)
            found[fabric.name] = fabric
        for child in group.groups.values():
            walk(child)

    walk(config.channel_group)
    return found


def member_of(identity, msp):
    """The certificate of a serialized identity, if it chains to the MSP's roots."""
    if identity.mspid != msp.name:
        return None
    cert = x509.load_pem_x509_certificate(identity.id_bytes)
    roots = [x509.load_pem_x509_certificate(r) for r in msp.root_certs]
    intermediates = [x509.load_pem_x509_certificate(c) for c in msp.intermediate_certs]
    issuer = next((c for c in intermediates + roots if issued_by(cert, c)), None)
    while issuer is not None and issuer not in roots:
        issuer = next((c for c in roots + intermediates if c != issuer and issued_by(issuer, c)), None)
    return cert if issuer is not None else None


ROLE_OU = {
    msp_principal_pb2.MSPRole.CLIENT: "client_ou_identifier",
    msp_principal_pb2.MSPRole.PEER: "peer_ou_identifier",
    msp_principal_pb2.MSPRole.ADMIN: "admin_ou_identifier",
    msp_principal_pb2.MSPRole.ORDERER: "orderer_ou_identifier",
}


def satisfies_principal(identity, principal, all_msps):
    check(principal.principal_classification == msp_principal_pb2.MSPPrincipal.ROLE,
          "BlockValidation names principals by role")
    role = msp_principal_pb2.MSPRole.FromString(principal.principal)
    msp = all_msps.get(role.msp_identifier)
    cert = member_of(identity, msp) if msp else None
    if cert is None:
        return False
    if role.role == msp_principal_pb2.MSPRole.MEMBER:
        return True
    ou = getattr(msp.fabric_node_ous, ROLE_OU[role.role]).organizational_unit_identifier
    ous = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)]
    return msp.fabric_node_ous.enable and ou in ous


def satisfies_rule(rule, identities, principals, all_msps):
    if rule.HasField("signed_by"):
        return any(satisfies_principal(i, principals[rule.signed_by], all_msps) for i in identities)
    met = sum(satisfies_rule(r, identities, principals, all_msps) for r in rule.n_out_of.rules)
    return met >= rule.n_out_of.n


def satisfies(group, name, identities, all_msps):
    """Evaluates the policy `name` of `group` (Signature or ImplicitMeta)."""
    policy = group.policies[name].policy
    if policy.type == policies_pb2.Policy.SIGNATURE:
        envelope = policies_pb2.SignaturePolicyEnvelope.FromString(policy.value)
        return satisfies_rule(envelope.rule, identities, list(envelope.identities), all_msps)
    check(policy.type == policies_pb2.Policy.IMPLICIT_META, f"policy {name}: known type")
    meta = policies_pb2.ImplicitMetaPolicy.FromString(policy.value)
    subs = [satisfies(g, meta.sub_policy, identities, all_msps) for g in group.groups.values()]
    if meta.rule == policies_pb2.ImplicitMetaPolicy.ANY:
        return any(subs)
    if meta.rule == policies_pb2.ImplicitMetaPolicy.ALL:
        return all(subs)
    return sum(subs) > len(subs) // 2


# --- blocks ------------------------------------------------------------------

def config_of(block):
    env = common_pb2.Envelope.FromString(block.data.data[0])
    payload = common_pb2.Payload.FromString(env.payload)
    return configtx_pb2.ConfigEnvelope.FromString(payload.data).config


def is_config(block):
    if len(block.data.data) != 1:
        return False
    env = common_pb2.Envelope.FromString(block.data.data[0])
    payload = common_pb2.Payload.FromString(env.payload)
    chdr = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    return chdr.type == common_pb2.CONFIG


def block_signers(block):
    """The identities whose signature of the block verifies."""
    md = common_pb2.Metadata.FromString(block.metadata.metadata[common_pb2.SIGNATURES])
    signers = []
    for sig in md.signatures:
        shdr = common_pb2.SignatureHeader.FromString(sig.signature_header)
        identity = identities_pb2.SerializedIdentity.FromString(shdr.creator)
        cert = x509.load_pem_x509_certificate(identity.id_bytes)
        message = md.value + sig.signature_header + header_bytes(block.header)
        if verifies(cert, message, sig.signature) and is_low_s(sig.signature) and len(shdr.nonce) == 24:
            signers.append(identity)
    return signers


def check_block(block, config, last_config):
    n = block.header.number
    md = common_pb2.Metadata.FromString(block.metadata.metadata[common_pb2.SIGNATURES])
    check(len(md.signatures) == 1, f"block {n}: one orderer signature")
    obm = common_pb2.OrdererBlockMetadata.FromString(md.value)
    check(obm.last_config.index == last_config, f"block {n}: SIGNATURES names last config {last_config}")
    lc = common_pb2.Metadata.FromString(block.metadata.metadata[common_pb2.LAST_CONFIG])
    check(common_pb2.LastConfig.FromString(lc.value).index == last_config,
          f"block {n}: LAST_CONFIG names {last_config}")
    signers = block_signers(block)
    check(len(signers) == 1, f"block {n}: the signature verifies (low S) over value, header and block header")
    all_msps = msps(config)
    check(member_of(signers[0], all_msps.get(signers[0].mspid, msp_config_pb2.FabricMSPConfig())) is not None,
          f"block {n}: the signer's certificate chains to a root CA of {signers[0].mspid}")
    orderer = config.channel_group.groups["Orderer"]
    check(satisfies(orderer, "BlockValidation", signers, all_msps),
          f"block {n}: the signer satisfies /Channel/Orderer/BlockValidation")
    return signers[0]


def check_config_envelope(block, orderer_identity):
    n = block.header.number
    env = common_pb2.Envelope.FromString(block.data.data[0])
    payload = common_pb2.Payload.FromString(env.payload)
    shdr = common_pb2.SignatureHeader.FromString(payload.header.signature_header)
    check(shdr.creator == orderer_identity.SerializeToString(),
          f"block {n}: the CONFIG envelope names the orderer as creator")
    check(len(shdr.nonce) == 24, f"block {n}: the CONFIG envelope has a nonce")
    cert = x509.load_pem_x509_certificate(orderer_identity.id_bytes)
    check(verifies(cert, env.payload, env.signature) and is_low_s(env.signature),
          f"block {n}: the CONFIG envelope's signature verifies over its payload")
    check(configtx_pb2.ConfigEnvelope.FromString(payload.data).HasField("last_update"),
          f"block {n}: the CONFIG envelope carries its config update")


def main():
    address, channel, msp_dir, msp_id = sys.argv[1:5]
    blocks = fetch_all(address, channel, msp_dir, msp_id)
    check(len(blocks) > 1, "the channel has blocks after its genesis block")

    genesis = common_pb2.Metadata.FromString(blocks[0].metadata.metadata[common_pb2.SIGNATURES])
    check(not genesis.signatures, "block 0 is not signed, as Fabric's genesis blocks")
    config, last_config, config_envelopes = config_of(blocks[0]), 0, 0
    for block in blocks[1:]:
        if is_config(block):
            last_config = block.header.number
        # A block is judged by the config before it; a config block too.
        signer = check_block(block, config, last_config)
        if is_config(block):
            check_config_envelope(block, signer)
            config_envelopes += 1
            config = config_of(block)

    # The checks can fail: a changed header or signature does not verify.
    tampered = common_pb2.Block()
    tampered.CopyFrom(blocks[-1])
    tampered.header.number += 1
    check(not block_signers(tampered), "a block with a changed header does not verify")
    tampered.CopyFrom(blocks[-1])
    md = common_pb2.Metadata.FromString(tampered.metadata.metadata[common_pb2.SIGNATURES])
    md.value = md.value + b"\x00"
    tampered.metadata.metadata[common_pb2.SIGNATURES] = md.SerializeToString()
    check(not block_signers(tampered), "a block with a changed metadata value does not verify")
    stranger = common_pb2.Block()
    stranger.CopyFrom(blocks[-1])
    other = ec.generate_private_key(ec.SECP256R1())
    md = common_pb2.Metadata.FromString(stranger.metadata.metadata[common_pb2.SIGNATURES])
    md.signatures[0].signature = sign(other, md.value + md.signatures[0].signature_header
                                      + header_bytes(stranger.header))
    stranger.metadata.metadata[common_pb2.SIGNATURES] = md.SerializeToString()
    check(not block_signers(stranger), "a signature by another key does not verify")

    # A certificate the orderer org's CA did not issue satisfies nothing,
    # even under the orderer's MSP ID.
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "stranger")])
    now = datetime.datetime.now(datetime.timezone.utc)
    self_made = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                 .public_key(other.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(now - datetime.timedelta(days=1))
                 .not_valid_after(now + datetime.timedelta(days=1))
                 .sign(other, hashes.SHA256()))
    impostor = identities_pb2.SerializedIdentity(
        mspid=signer.mspid, id_bytes=self_made.public_bytes(serialization.Encoding.PEM))
    check(not satisfies(config.channel_group.groups["Orderer"], "BlockValidation", [impostor], msps(config)),
          "a self-made certificate does not satisfy BlockValidation")

    print(f"blocks verified: {len(blocks) - 1}, config envelopes verified: {config_envelopes}")
    print("block signatures: all checks passed")


if __name__ == "__main__":
    main()
