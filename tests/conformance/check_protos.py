"""Compares Ordo's .proto definitions with Fabric's official ones.

Usage: check_protos.py ORDO_DESCRIPTOR_SET

The descriptor set is the one build.rs compiles from proto/. The official
definitions come from the PyPI package hyperledger-fabric-protos. Every message,
field (name, number, type, label, type name), enum value and service method of
our files must match the official file of the same name.
"""
import importlib
import sys

from google.protobuf import descriptor_pb2

OFFICIAL = {
    "common/common.proto": "fabric_protos.common.common_pb2",
    "common/configtx.proto": "fabric_protos.common.configtx_pb2",
    "common/configuration.proto": "fabric_protos.common.configuration_pb2",
    "common/policies.proto": "fabric_protos.common.policies_pb2",
    "msp/identities.proto": "fabric_protos.msp.identities_pb2",
    "msp/msp_config.proto": "fabric_protos.msp.msp_config_pb2",
    "msp/msp_principal.proto": "fabric_protos.msp.msp_principal_pb2",
    "orderer/ab.proto": "fabric_protos.orderer.ab_pb2",
    "orderer/cluster.proto": "fabric_protos.orderer.cluster_pb2",
    "orderer/configuration.proto": "fabric_protos.orderer.configuration_pb2",
    "orderer/etcdraft/configuration.proto": "fabric_protos.orderer.etcdraft.configuration_pb2",
    "orderer/etcdraft/metadata.proto": "fabric_protos.orderer.etcdraft.metadata_pb2",
}


def field_sig(f):
    return (f.name, f.number, f.type, f.label, f.type_name, f.HasField("oneof_index"))


def messages(prefix, msgs, out):
    for m in msgs:
        name = prefix + "." + m.name
        out[name] = {f.number: field_sig(f) for f in m.field}
        for e in m.enum_type:
            out[name + "." + e.name] = {v.number: v.name for v in e.value}
        messages(name, m.nested_type, out)


def shape(fdp):
    out = {}
    messages(fdp.package, fdp.message_type, out)
    for e in fdp.enum_type:
        out[fdp.package + "." + e.name] = {v.number: v.name for v in e.value}
    for s in fdp.service:
        for m in s.method:
            out["service " + s.name + "." + m.name] = (
                m.input_type, m.output_type, m.client_streaming, m.server_streaming)
    return out


def main():
    ours = descriptor_pb2.FileDescriptorSet()
    with open(sys.argv[1], "rb") as f:
        ours.ParseFromString(f.read())
    by_name = {fdp.name: fdp for fdp in ours.file}
    problems = []
    for name, module in OFFICIAL.items():
        if name not in by_name:
            problems.append(f"{name}: missing from proto/")
            continue
        official = descriptor_pb2.FileDescriptorProto()
        importlib.import_module(module).DESCRIPTOR.CopyToProto(official)
        mine = by_name[name]
        if mine.package != official.package:
            problems.append(f"{name}: package {mine.package} != {official.package}")
        a, b = shape(mine), shape(official)
        for key in sorted(set(a) | set(b)):
            if key not in a:
                problems.append(f"{name}: {key} missing")
            elif key not in b:
                problems.append(f"{name}: {key} is not in Fabric's definition")
            elif a[key] != b[key]:
                problems.append(f"{name}: {key} differs:\n  ours     {a[key]}\n  official {b[key]}")
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"protos: {len(OFFICIAL)} files match the official definitions")


if __name__ == "__main__":
    main()
