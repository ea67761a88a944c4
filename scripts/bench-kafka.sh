#!/usr/bin/env bash
# One run of docs/benchmarks.md's Kafka table: a fresh single-partition
# channel of OrdererType kafka on a fresh tansu broker (SQLite storage) and
# fresh Ordo nodes, TLS on, the load signed by Org1's User1 (the channel's
# Writers check every envelope), 4 streams of 2,048-byte envelopes.
#
#   scripts/bench-kafka.sh ORDO_BINARY kafka1|kafka3 COUNT [one|spread]
#
# kafka1: one node. kafka3: three nodes sharing the partition; `one` (the
# default) sends the whole load to node 1 while nodes 2 and 3 read the
# partition and write the same blocks; `spread` runs three load tools at
# once, 2 streams to node 1 and 1 stream each to nodes 2 and 3, with the
# envelopes in the same proportion (COUNT/2, COUNT/4, COUNT/4).
#
# Needs `tansu` on PATH (or TANSU=/path/to/tansu), curl and python3.
# Prints one Markdown row: mode, where the load went, acked and delivered
# env/s, ack p50 / p99 ms, each node's CPU µs per envelope, the broker's CPU
# µs per envelope and its share of a core, the load tool's CPU µs per
# envelope, peak RSS (MB) of the nodes and of the broker, and whether every
# envelope was acknowledged and delivered. With `spread`, the rates are all
# envelopes over the longest load, and the latencies the worst of the three.
# BENCH_KAFKA_DIR keeps the crypto material between runs; TANSU_STORAGE
# replaces the broker's storage engine (default sqlite://tansu.db).
set -euo pipefail
ordo=$(realpath "$1") mode=$2 count=$3 target=${4:-one}
tansu=${TANSU:-$(command -v tansu || true)}
[ -x "$tansu" ] || { echo "tansu not found: put it on PATH or set TANSU" >&2; exit 2; }
case $mode in kafka1) n=1; target=one;; kafka3) n=3;; *) echo "mode: kafka1|kafka3" >&2; exit 2;; esac
case $target in one|spread) ;; *) echo "load target: one|spread" >&2; exit 2;; esac
here=${BENCH_KAFKA_DIR:-$(mktemp -d)}
mkdir -p "$here"
work=$(mktemp -d "$here/run.XXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
crypto=$here/crypto
if [ ! -d "$crypto" ]; then
  cat >"$here/crypto.yaml" <<'YAML'
OrdererOrgs:
  - Name: Orderer
    Domain: example.com
    EnableNodeOUs: true
    Specs:
      - {Hostname: orderer1, SANS: [localhost, 127.0.0.1]}
      - {Hostname: orderer2, SANS: [localhost, 127.0.0.1]}
      - {Hostname: orderer3, SANS: [localhost, 127.0.0.1]}
PeerOrgs:
  - Name: Org1
    Domain: org1.example.com
    EnableNodeOUs: true
    Users: {Count: 1}
YAML
  "$ordo" crypto generate --config "$here/crypto.yaml" --output "$crypto" >/dev/null
fi
oo=$crypto/ordererOrganizations/example.com

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Ports that nothing listens on yet: the broker, each node's main and
# operations listeners.
while :; do
  base=$((20000 + RANDOM % 10000)); busy=""
  for p in $base $((base + 1)) $((base + 2)) $((base + 3)) $((base + 101)) $((base + 102)) $((base + 103)); do
    listening $p && busy=1
  done
  [ -z "$busy" ] && break
done
bport=$base p1=$((base + 1))

mkdir "$work/broker"
(cd "$work/broker" && exec "$tansu" broker --listener-url tcp://127.0.0.1:$bport \
  --advertised-listener-url tcp://127.0.0.1:$bport --storage-engine "${TANSU_STORAGE:-sqlite://tansu.db}") \
  >"$work/broker.log" 2>&1 &
bpid=$!
for _ in $(seq 300); do listening $bport && break; sleep 0.1; done
listening $bport || { echo "the broker did not listen"; tail "$work/broker.log"; exit 1; }

cat > "$work/configtx.yaml" <<YAML
Organizations:
  - &O
    Name: OrdererOrg
    ID: OrdererMSP
    MSPDir: $oo/msp
  - &A
    Name: Org1MSP
    ID: Org1MSP
    MSPDir: $crypto/peerOrganizations/org1.example.com/msp
Profiles:
  Bench:
    Capabilities: {V3_0: true}
    Orderer:
      OrdererType: kafka
      BatchTimeout: 2s
      BatchSize: {MaxMessageCount: 500, AbsoluteMaxBytes: 10 MB, PreferredMaxBytes: 2 MB}
      Kafka:
        Brokers: [127.0.0.1:$bport]
      Capabilities: {V2_0: true}
      Organizations: [*O]
    Application:
      Capabilities: {V2_5: true}
      Organizations: [*A]
YAML
"$ordo" genesis --config-path "$work" --profile Bench --channel-id mychannel --output-block "$work/bench.block" >/dev/null

pids=(); opss=()
for i in $(seq 1 $n); do
  port=$((p1 + i - 1)); ops=$((base + 100 + i)); tls=$oo/orderers/orderer$i.example.com/tls
  env ORDERER_GENERAL_LISTENADDRESS=127.0.0.1 ORDERER_GENERAL_LISTENPORT=$port ORDERER_ADMIN_LISTENADDRESS= \
    ORDERER_OPERATIONS_LISTENADDRESS=127.0.0.1:$ops ORDERER_FILELEDGER_LOCATION="$work/ledger$i" \
    ORDERER_CONSENSUS_WALDIR="$work/wal$i" ORDERER_CONSENSUS_SNAPDIR="$work/snap$i" FABRIC_LOGGING_SPEC=warn \
    ORDERER_GENERAL_TLS_ENABLED=true ORDERER_GENERAL_TLS_CERTIFICATE=$tls/server.crt ORDERER_GENERAL_TLS_PRIVATEKEY=$tls/server.key \
    ORDERER_GENERAL_TLS_ROOTCAS=$tls/ca.crt \
    ORDERER_GENERAL_BOOTSTRAPMETHOD=file ORDERER_GENERAL_BOOTSTRAPFILE="$work/bench.block" \
    ORDERER_GENERAL_LOCALMSPDIR=$oo/orderers/orderer$i.example.com/msp ORDERER_GENERAL_LOCALMSPID=OrdererMSP \
    ORDERER_KAFKA_TOPIC_REPLICATIONFACTOR=1 \
    "$ordo" start >/dev/null 2>"$work/node$i.log" &
  pids+=($!); opss+=($ops)
done
# A node has reached the partition once the broker acknowledged its CONNECT
# record (the first produce latency observed).
connected() {
  curl -sf "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk '/^consensus_kafka_produce_latency_seconds_count\{channel="mychannel"\}/ && $2 >= 1 {ok=1} END {exit !ok}'
}
for i in $(seq 1 $n); do
  for _ in $(seq 600); do connected ${opss[$((i-1))]} && break; sleep 0.1; done
  connected ${opss[$((i-1))]} || { echo "node $i did not reach the partition"; tail "$work"/node*.log "$work/broker.log"; exit 1; }
done

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
declare -A before
for p in "${pids[@]}" $bpid; do before[$p]=$(ticks $p); done
load() { # node streams count out
  local i=$1 port=$((p1 + $1 - 1))
  TIMEFORMAT='%3U %3S'
  { time "$ordo" bench load --address 127.0.0.1:$port --count $3 --streams $2 --size 2048 \
      --tls-ca-file $oo/orderers/orderer$i.example.com/tls/ca.crt \
      --msp-dir $crypto/peerOrganizations/org1.example.com/users/User1@org1.example.com/msp --msp-id Org1MSP \
      >"$4" 2>"$4.err"; } 2>"$4.time"
}
start=$(date +%s.%N)
if [ $target = one ]; then
  load 1 4 $count "$work/load1.out"
else
  load 1 2 $((count / 2)) "$work/load1.out" & l1=$!
  load 2 1 $((count / 4)) "$work/load2.out" & l2=$!
  load 3 1 $((count - count / 2 - count / 4)) "$work/load3.out" & l3=$!
  wait $l1 $l2 $l3
fi
end=$(date +%s.%N)
cpus=(); hwms=()
for p in "${pids[@]}"; do cpus+=($(( $(ticks $p) - ${before[$p]} ))); hwms+=($(hwm $p)); done
bcpu=$(( $(ticks $bpid) - ${before[$bpid]} )); bhwm=$(hwm $bpid)
python3 - "$mode" "$target" "$(getconf CLK_TCK)" "$start" "$end" "$bcpu" "$bhwm" "${cpus[*]}" "${hwms[*]}" "$work"/load*.out <<'PY'
import json, sys
mode, target, hz, start, end, bcpu, bhwm, cpus, hwms, *outs = sys.argv[1:]
hz, wall = int(hz), float(end) - float(start)
reports = [json.loads([l for l in open(o).read().splitlines() if l.startswith("{")][-1]) for o in outs]
load_cpu = sum(sum(float(x) for x in open(o + ".time").read().split()) for o in outs)
acked = sum(r["acknowledged"] for r in reports)
delivered = sum(r["delivered"] for r in reports)
per = lambda seconds: seconds * 1e6 / max(acked, 1)
node_us = " / ".join(f"{per(int(c) / hz):.1f}" for c in cpus.split())
node_mb = " / ".join(f"{int(h) / 1024:.0f}" for h in hwms.split())
ack = max(r["ack_elapsed"] for r in reports)
dlv = max(r["delivery_elapsed"] for r in reports)
p50 = max(r["ack_latency_ms"]["p50"] for r in reports)
p99 = max(r["ack_latency_ms"]["p99"] for r in reports)
where = "node 1" if target == "one" else "2 + 1 + 1 streams"
ok = all(r["passed"] for r in reports)
print(f"| {mode} | {where} | {acked / ack:,.0f} | {delivered / dlv:,.0f} | {p50:.1f} / {p99:.1f} | {node_us} "
      f"| {per(int(bcpu) / hz):.1f} | {int(bcpu) / hz / wall * 100:.0f}% | {per(load_cpu):.1f} "
      f"| {node_mb} | {int(bhwm) / 1024:.0f} | {'yes' if ok else 'NO'} |")
PY
