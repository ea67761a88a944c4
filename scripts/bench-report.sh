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
    [ "$signed" = yes ] && load+=(--sign-as BenchMSP)
    [ "$checks" = yes ] && env+=(ORDERER_GENERAL_AUTHENTICATION_VERIFYENVELOPESIGNATURES=true)
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
