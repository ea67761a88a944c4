#!/usr/bin/env bash
# One run of docs/benchmarks.md's etcdraft table: a fresh channel of MODE on
# fresh nodes, TLS on, the load signed by Org1's User1 (the channel's Writers
# check every envelope), 4 streams of 2,048-byte envelopes to the leader.
# Prints one Markdown row: mode, MaxInflightBlocks, acked and delivered env/s,
# ack p50 / p99 ms, the leader's CPU µs per envelope, each follower's CPU µs
# per envelope, the leader's and the largest follower's peak RSS (MB).
#
#   scripts/bench-raft.sh ORDO_BINARY solo|raft1|raft3 COUNT [MAX_INFLIGHT_BLOCKS]
set -euo pipefail
ordo=$(realpath "$1") mode=$2 count=$3 mib=${4:-5}
here=${BENCH_RAFT_DIR:-$(mktemp -d)}
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
p1=$((20000 + RANDOM % 10000)); p2=$((p1+1)); p3=$((p1+2))
case $mode in solo) type=solo; n=1;; raft1) type=etcdraft; n=1;; raft3) type=etcdraft; n=3;; esac
consenters=""
for i in $(seq 1 $n); do
  port=$((p1 + i - 1))
  consenters+="
          - Host: 127.0.0.1
            Port: $port
            ClientTLSCert: $oo/orderers/orderer$i.example.com/tls/server.crt
            ServerTLSCert: $oo/orderers/orderer$i.example.com/tls/server.crt"
done
cat > $work/configtx.yaml <<YAML
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
      OrdererType: $type
      BatchTimeout: 2s
      BatchSize: {MaxMessageCount: 500, AbsoluteMaxBytes: 10 MB, PreferredMaxBytes: 2 MB}
      EtcdRaft:
        Consenters:$consenters
        Options: {TickInterval: 500ms, ElectionTick: 10, HeartbeatTick: 1, MaxInflightBlocks: $mib, SnapshotIntervalSize: 16 MB}
      Capabilities: {V2_0: true}
      Organizations: [*O]
    Application:
      Capabilities: {V2_5: true}
      Organizations: [*A]
YAML
"$ordo" genesis --config-path $work --profile Bench --channel-id mychannel --output-block $work/bench.block >/dev/null
pids=(); opss=()
for i in $(seq 1 $n); do
  port=$((p1 + i - 1)); ops=$((p1 + 100 + i)); tls=$oo/orderers/orderer$i.example.com/tls
  env ORDERER_GENERAL_LISTENADDRESS=127.0.0.1 ORDERER_GENERAL_LISTENPORT=$port ORDERER_ADMIN_LISTENADDRESS= \
    ORDERER_OPERATIONS_LISTENADDRESS=127.0.0.1:$ops ORDERER_FILELEDGER_LOCATION=$work/ledger$i \
    ORDERER_CONSENSUS_WALDIR=$work/wal$i ORDERER_CONSENSUS_SNAPDIR=$work/snap$i FABRIC_LOGGING_SPEC=warn \
    ORDERER_GENERAL_TLS_ENABLED=true ORDERER_GENERAL_TLS_CERTIFICATE=$tls/server.crt ORDERER_GENERAL_TLS_PRIVATEKEY=$tls/server.key \
    ORDERER_GENERAL_TLS_ROOTCAS=$tls/ca.crt ORDERER_GENERAL_CLUSTER_ROOTCAS=$tls/ca.crt \
    ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE=$tls/server.crt ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY=$tls/server.key \
    ORDERER_GENERAL_BOOTSTRAPMETHOD=file ORDERER_GENERAL_BOOTSTRAPFILE=$work/bench.block \
    ORDERER_GENERAL_LOCALMSPDIR=$oo/orderers/orderer$i.example.com/msp ORDERER_GENERAL_LOCALMSPID=OrdererMSP \
    "$ordo" start >/dev/null 2>$work/node$i.log &
  pids+=($!); opss+=($ops)
done
leader=""
for _ in $(seq 300); do
  for i in $(seq 1 $n); do
    if [ $type = solo ]; then curl -sf http://127.0.0.1:${opss[$((i-1))]}/healthz >/dev/null && leader=$i; 
    elif curl -sf http://127.0.0.1:${opss[$((i-1))]}/metrics 2>/dev/null | grep -q '^consensus_etcdraft_is_leader{channel="mychannel"} 1'; then leader=$i; fi
  done
  [ -n "$leader" ] && break; sleep 0.1
done
[ -n "$leader" ] || { echo "no leader"; tail $work/node*.log; exit 1; }
lpid=${pids[$((leader-1))]}; lport=$((p1 + leader - 1))
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
declare -A before
for p in "${pids[@]}"; do before[$p]=$(ticks $p); done
"$ordo" bench load --address 127.0.0.1:$lport --count $count --streams 4 --size 2048 \
   --tls-ca-file $oo/orderers/orderer$leader.example.com/tls/ca.crt \
   --msp-dir $crypto/peerOrganizations/org1.example.com/users/User1@org1.example.com/msp --msp-id Org1MSP > $work/load.out
hz=$(getconf CLK_TCK)
lcpu=$(( $(ticks $lpid) - ${before[$lpid]} )); fcpu=0; fhwm=0
for p in "${pids[@]}"; do [ $p = $lpid ] && continue; d=$(( $(ticks $p) - ${before[$p]} )); fcpu=$((fcpu + d)); h=$(awk '/VmHWM/ {print $2}' /proc/$p/status); [ $h -gt $fhwm ] && fhwm=$h; done
lhwm=$(awk '/VmHWM/ {print $2}' /proc/$lpid/status)
python3 - "$mode" "$mib" "$lcpu" "$fcpu" "$lhwm" "$fhwm" "$hz" "$work/load.out" "$n" <<'PY'
import json, sys
mode, mib, lcpu, fcpu, lhwm, fhwm, hz, out, n = sys.argv[1:]
r = json.loads([l for l in open(out).read().splitlines() if l.startswith("{")][-1])
acked = max(r["acknowledged"], 1)
us = lambda t: int(t) / int(hz) * 1e6 / acked
fol = int(n) - 1
a = r["ack_latency_ms"]
print(f"| {mode} | {mib if mode!='solo' else '-'} | {r['acked_per_second']:,.0f} | {r['delivered_per_second']:,.0f} | {a['p50']:.1f} / {a['p99']:.1f} | {us(lcpu):.1f} | {(us(fcpu)/fol if fol else 0):.1f} | {int(lhwm)/1024:.0f} | {int(fhwm)/1024:.0f} | {'yes' if r['passed'] else 'NO'} |")
PY
