#!/usr/bin/env bash
# Runs the load matrix of docs/benchmarks.md against fresh release nodes and
# prints one Markdown table row per run: envelopes/s, latency percentiles,
# node CPU per envelope and peak node memory.
#
#   scripts/bench-report.sh [COUNT]        (default 200000 envelopes per run)
#
# Each run starts `ordo start` on a scratch ledger (solo, 500 messages / 2 MB
# per block, 2 s timeout), drives it with `ordo bench load` from the same
# machine, and reads the node's CPU time and peak RSS (VmHWM) from /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-200000}
cargo build --release --quiet
ordo=target/release/ordo
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# A CA and a server certificate for the TLS rows.
openssl ecparam -name prime256v1 -genkey -noout -out "$work/ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/ca.key" -subj "/CN=bench-ca" -days 2 -out "$work/ca.crt" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$work/server.key" 2>/dev/null
openssl req -new -key "$work/server.key" -subj "/CN=127.0.0.1" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
    -days 2 -extfile "$work/san.ext" -out "$work/server.crt" 2>/dev/null

# The load's identity for the rows where the node checks signatures: an MSP
# folder (CA, a client certificate with OU client, NodeOUs) that the benched
# channel names as its organization, so /Channel/Writers admits it. (A
# channel without organizations, like the embedded one, admits anyone.)
msp="$work/benchmsp"
mkdir -p "$msp/cacerts" "$msp/signcerts" "$msp/keystore"
openssl ecparam -name prime256v1 -genkey -noout -out "$work/msp-ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/msp-ca.key" -subj "/CN=ca.BenchMSP/O=BenchMSP" -days 2 \
    -out "$msp/cacerts/ca-cert.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$work/client.key" 2>/dev/null
openssl req -new -key "$work/client.key" -subj "/CN=bench@BenchMSP/O=BenchMSP/OU=client" \
    -out "$work/client.csr" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' >"$work/client.ext"
openssl x509 -req -in "$work/client.csr" -CA "$msp/cacerts/ca-cert.pem" -CAkey "$work/msp-ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days 2 -extfile "$work/client.ext" \
    -out "$msp/signcerts/cert.pem" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$work/client.key" -out "$msp/keystore/priv_sk"
cat >"$msp/config.yaml" <<'YAML'
NodeOUs:
  Enable: true
  ClientOUIdentifier: {Certificate: cacerts/ca-cert.pem, OrganizationalUnitIdentifier: client}
  PeerOUIdentifier: {Certificate: cacerts/ca-cert.pem, OrganizationalUnitIdentifier: peer}
  AdminOUIdentifier: {Certificate: cacerts/ca-cert.pem, OrganizationalUnitIdentifier: admin}
  OrdererOUIdentifier: {Certificate: cacerts/ca-cert.pem, OrganizationalUnitIdentifier: orderer}
YAML
cat >"$work/configtx.yaml" <<'YAML'
Organizations:
  - &Bench
    Name: BenchOrg
    ID: BenchMSP
    MSPDir: benchmsp
Profiles:
  Bench:
    Capabilities:
      V3_0: true
    Orderer:
      OrdererType: solo
      BatchTimeout: 2s
      BatchSize:
        MaxMessageCount: 500
        AbsoluteMaxBytes: 10 MB
        PreferredMaxBytes: 2 MB
      Capabilities:
        V2_0: true
      Organizations:
        - *Bench
    Application:
      Capabilities:
        V2_5: true
      Organizations:
        - *Bench
YAML
"$ordo" genesis --config-path "$work" --profile Bench --channel-id mychannel \
    --output-block "$work/bench.block" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

run() { # label streams signed(yes|no) checks(yes|no) tls(yes|no)
    local label=$1 streams=$2 signed=$3 checks=$4 tls=$5
    local port ops ledger pid
    port=$(free_port); ops=$(free_port); ledger="$work/ledger-$RANDOM"
    local env=(ORDERER_GENERAL_LISTENPORT="$port" ORDERER_ADMIN_LISTENADDRESS=
        ORDERER_OPERATIONS_LISTENADDRESS="127.0.0.1:$ops" ORDERER_FILELEDGER_LOCATION="$ledger"
        FABRIC_LOGGING_SPEC=warn)
    local load=(bench load --address "127.0.0.1:$port" --count "$count" --streams "$streams" --size 2048)
    if [ "$tls" = yes ]; then
        env+=(ORDERER_GENERAL_TLS_ENABLED=true ORDERER_GENERAL_TLS_CERTIFICATE="$work/server.crt"
            ORDERER_GENERAL_TLS_PRIVATEKEY="$work/server.key")
        load+=(--tls-ca-file "$work/ca.crt")
    fi
    if [ "$checks" = yes ]; then
        # The channel of the load's organization: Writers admit its client only.
        env+=(ORDERER_GENERAL_BOOTSTRAPMETHOD=file ORDERER_GENERAL_BOOTSTRAPFILE="$work/bench.block")
        load+=(--msp-dir "$msp" --msp-id BenchMSP)
    elif [ "$signed" = yes ]; then
        load+=(--sign-as BenchMSP)
    fi
    env "${env[@]}" "$ordo" start >/dev/null 2>"$work/node.log" &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ops/healthz" >/dev/null && break; sleep 0.1; done
    local before after
    before=$(cpu_ticks "$pid")
    "$ordo" "${load[@]}" >"$work/load.out"
    after=$(cpu_ticks "$pid")
    local hwm
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" || true
    rm -rf "$ledger"
    python3 - "$label" "$streams" "$signed" "$checks" "$tls" "$((after - before))" "$hwm" "$work/load.out" <<'PY'
import json, os, sys
label, streams, signed, checks, tls, ticks, hwm, out = sys.argv[1:]
lines = open(out).read().splitlines()
report = json.loads([l for l in lines if l.startswith("{")][-1])
hz = os.sysconf("SC_CLK_TCK")
cpu_us = int(ticks) / hz * 1e6 / max(report["acknowledged"], 1)
a, d = report["ack_latency_ms"], report["delivery_latency_ms"]
print(f"| {label} | {streams} | {signed} | {checks} | {tls} | {report['acked_per_second']:,.0f} | "
      f"{report['delivered_per_second']:,.0f} | {a['p50']:.1f} / {a['p99']:.1f} | "
      f"{d['p50']:.1f} / {d['p99']:.1f} | {cpu_us:.1f} | {int(hwm)/1024:.0f} | "
      f"{'yes' if report['passed'] else 'NO'} |")
PY
}

echo "| run | streams | client signs | node checks signatures | TLS | acked env/s | delivered env/s | ack p50 / p99 ms | delivery p50 / p99 ms | node CPU µs/env | node peak MB | all delivered |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for streams in 1 4 16; do run solo "$streams" no no no; done
run solo 4 yes no no
for streams in 1 4 16; do run solo "$streams" yes yes no; done
run solo 4 yes yes yes
