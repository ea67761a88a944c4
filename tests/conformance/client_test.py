"""Drives a running Ordo with Fabric's official Python protos over grpcio.

Usage: client_test.py HOST:PORT CHANNEL

Checks, as an unmodified Fabric client sees them: Broadcast answers, Deliver
streams, and the block hash chain, recomputed here independently of Ordo
(pyasn1 DER + hashlib).
"""
import hashlib
import os
import sys
import time

import grpc
from pyasn1.codec.der import encoder
from pyasn1.type import namedtype, univ

from fabric_protos.common import common_pb2, configtx_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.orderer import ab_pb2, ab_pb2_grpc, configuration_pb2

MAX_U64 = 2**64 - 1
TIMEOUT = 30


class BlockHeaderAsn1(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("number", univ.Integer()),
        namedtype.NamedType("previous_hash", univ.OctetString()),
        namedtype.NamedType("data_hash", univ.OctetString()),
    )


def header_hash(header):
    asn = BlockHeaderAsn1()
    asn["number"] = header.number
    asn["previous_hash"] = header.previous_hash
    asn["data_hash"] = header.data_hash
    return hashlib.sha256(encoder.encode(asn)).digest()


def envelope(channel, kind, data):
    nonce = os.urandom(24)
    creator = identities_pb2.SerializedIdentity(mspid="SampleOrg").SerializeToString()
    chdr = common_pb2.ChannelHeader(
        type=kind, channel_id=channel,
        tx_id=hashlib.sha256(nonce + creator).hexdigest())
    chdr.timestamp.GetCurrentTime()
    shdr = common_pb2.SignatureHeader(creator=creator, nonce=nonce)
    payload = common_pb2.Payload(
        header=common_pb2.Header(
            channel_header=chdr.SerializeToString(),
            signature_header=shdr.SerializeToString()),
        data=data)
    return common_pb2.Envelope(payload=payload.SerializeToString()), chdr.tx_id


def seek(channel, start, stop, behavior=ab_pb2.SeekInfo.BLOCK_UNTIL_READY,
         error_response=ab_pb2.SeekInfo.STRICT):
    def position(p):
        if p == "oldest":
            return ab_pb2.SeekPosition(oldest=ab_pb2.SeekOldest())
        if p == "newest":
            return ab_pb2.SeekPosition(newest=ab_pb2.SeekNewest())
        return ab_pb2.SeekPosition(specified=ab_pb2.SeekSpecified(number=p))
    info = ab_pb2.SeekInfo(start=position(start), stop=position(stop), behavior=behavior,
                           error_response=error_response)
    env, _ = envelope(channel, common_pb2.DELIVER_SEEK_INFO, info.SerializeToString())
    return env


def check(condition, message):
    if not condition:
        print("FAILED:", message)
        sys.exit(1)
    print("ok:", message)


def deliver_once(stub, request):
    blocks, status = [], None
    for response in stub.Deliver(iter([request]), timeout=TIMEOUT):
        if response.HasField("block"):
            blocks.append(response.block)
        else:
            status = response.status
            break
    return blocks, status


def main():
    address, channel = sys.argv[1], sys.argv[2]
    rpc = grpc.insecure_channel(address)
    stub = ab_pb2_grpc.AtomicBroadcastStub(rpc)

    # Broadcast: 300 transactions on one stream, all SUCCESS, in order.
    sent = []
    envelopes = []
    for i in range(300):
        env, tx_id = envelope(channel, common_pb2.ENDORSER_TRANSACTION, b"tx %d" % i + b"\0" * 2000)
        envelopes.append(env)
        sent.append(tx_id)
    answers = list(stub.Broadcast(iter(envelopes), timeout=TIMEOUT))
    check(len(answers) == 300, "one Broadcast answer per envelope")
    check(all(a.status == common_pb2.SUCCESS for a in answers), "every envelope answered SUCCESS")

    # Bad input, answered as Fabric's orderer answers it.
    bad, _ = envelope("no-such-channel", common_pb2.ENDORSER_TRANSACTION, b"x")
    answers = list(stub.Broadcast(iter([bad, envelopes[0]]), timeout=TIMEOUT))
    check(len(answers) == 1 and answers[0].status == common_pb2.BAD_REQUEST,
          "unknown channel: BAD_REQUEST, then the stream ends")
    check(answers[0].info == "channel does not exist", "unknown channel: Fabric's info")
    config_env, _ = envelope(channel, common_pb2.CONFIG, b"config")
    answers = list(stub.Broadcast(iter([config_env, envelopes[0]]), timeout=TIMEOUT))
    check(len(answers) == 1 and answers[0].status == common_pb2.BAD_REQUEST
          and answers[0].info == "message is of type that cannot be processed directly",
          "CONFIG envelope: BAD_REQUEST as Fabric words it, then the stream ends")
    answers = list(stub.Broadcast(iter([common_pb2.Envelope()]), timeout=TIMEOUT))
    check(answers[0].status == common_pb2.BAD_REQUEST, "empty envelope: BAD_REQUEST")

    # Deliver every block until our transactions are all in, and verify the chain.
    seen, blocks = set(), []
    deadline = time.time() + TIMEOUT
    responses = stub.Deliver(iter([seek(channel, "oldest", MAX_U64)]), timeout=TIMEOUT)
    for response in responses:
        check_block = response.block
        blocks.append(check_block)
        if check_block.header.number > 0:
            for raw in check_block.data.data:
                env = common_pb2.Envelope.FromString(raw)
                payload = common_pb2.Payload.FromString(env.payload)
                seen.add(common_pb2.ChannelHeader.FromString(payload.header.channel_header).tx_id)
        if set(sent) <= seen or time.time() > deadline:
            responses.cancel()
            break
    check(set(sent) <= seen, "every broadcast transaction was delivered in a block")
    for i, block in enumerate(blocks):
        assert block.header.number == i
        data_hash = hashlib.sha256(b"".join(block.data.data)).digest()
        check(block.header.data_hash == data_hash, f"block {i}: data hash")
        if i > 0:
            check(block.header.previous_hash == header_hash(blocks[i - 1].header),
                  f"block {i}: previous hash is the DER header hash of block {i - 1}")
        check(len(block.metadata.metadata) == 5, f"block {i}: five metadata slots")
        md = common_pb2.Metadata.FromString(block.metadata.metadata[common_pb2.SIGNATURES])
        obm = common_pb2.OrdererBlockMetadata.FromString(md.value)
        check(obm.last_config.index == 0, f"block {i}: last config is block 0")

    # The genesis block is a config block Fabric's types read.
    genesis_env = common_pb2.Envelope.FromString(blocks[0].data.data[0])
    payload = common_pb2.Payload.FromString(genesis_env.payload)
    chdr = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    check(chdr.type == common_pb2.CONFIG and chdr.channel_id == channel, "block 0 holds a CONFIG envelope")
    config = configtx_pb2.ConfigEnvelope.FromString(payload.data).config
    orderer = config.channel_group.groups["Orderer"]
    batch = configuration_pb2.BatchSize.FromString(orderer.values["BatchSize"].value)
    consensus = configuration_pb2.ConsensusType.FromString(orderer.values["ConsensusType"].value)
    check(batch.max_message_count == 500 and consensus.type == "solo", "genesis config: BatchSize and ConsensusType")

    # Deliver error answers.
    height = len(blocks)
    _, status = deliver_once(stub, seek(channel, height + 10, height + 10, ab_pb2.SeekInfo.FAIL_IF_NOT_READY))
    check(status == common_pb2.NOT_FOUND, "FAIL_IF_NOT_READY beyond the height: NOT_FOUND")
    _, status = deliver_once(stub, seek(channel, height + 1, height + 1))
    check(status == common_pb2.NOT_FOUND, "BLOCK_UNTIL_READY above the height: NOT_FOUND at once")
    _, status = deliver_once(stub, seek(channel, 1, 0))
    check(status == common_pb2.BAD_REQUEST, "stop before start: BAD_REQUEST")
    _, status = deliver_once(stub, seek("", "oldest", "newest"))
    check(status == common_pb2.NOT_FOUND, "empty channel ID: NOT_FOUND")
    got, status = deliver_once(stub, seek(channel, 1, "oldest"))
    check(status == common_pb2.SUCCESS and [b.header.number for b in got] == [1],
          "stop oldest: the start block only")
    best = seek(channel, 0, 0, error_response=ab_pb2.SeekInfo.BEST_EFFORT)
    got, status = deliver_once(stub, best)
    check(status == common_pb2.SUCCESS and len(got) == 1, "BEST_EFFORT on a running channel")
    _, status = deliver_once(stub, seek("no-such-channel", "oldest", "newest"))
    check(status == common_pb2.NOT_FOUND, "unknown channel: NOT_FOUND")
    got, status = deliver_once(stub, seek(channel, 0, 0))
    check(status == common_pb2.SUCCESS and len(got) == 1, "a single block, then SUCCESS")

    print("conformance: all checks passed")


if __name__ == "__main__":
    main()
