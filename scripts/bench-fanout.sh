#!/usr/bin/env bash
# Deliver fan-out: 4 Broadcast streams while many Deliver streams follow the
# head, against a fresh release node; prints one Markdown table row.
#
#   scripts/bench-fanout.sh [COUNT] [DELIVER_STREAMS]   (default 50000 envelopes, 100 streams)
#
# ORDO_NODE=path runs that binary as the node (e.g. a build of an older
# commit) while the load still comes from this tree's `ordo bench load`.
# The node's CPU time and peak RSS (VmHWM) are read from /proc, as in
# scripts/bench-report.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-50000}
followers=${2:-100}
cargo build --release --quiet
ordo=${CARGO_TARGET_DIR:-target}/release/ordo
node=${ORDO_NODE:-$ordo}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

port=$(free_port); ops=$(free_port)
env ORDERER_GENERAL_LISTENPORT="$port" ORDERER_ADMIN_LISTENADDRESS= \
    ORDERER_OPERATIONS_LISTENADDRESS="127.0.0.1:$ops" ORDERER_FILELEDGER_LOCATION="$work/ledger" \
    FABRIC_LOGGING_SPEC=warn "$node" start >/dev/null 2>"$work/node.log" &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ops/healthz" >/dev/null && break; sleep 0.1; done
before=$(cpu_ticks "$pid")
status=0
"$ordo" bench load --address "127.0.0.1:$port" --count "$count" --streams 4 --size 2048 \
    --deliver-streams "$followers" >"$work/load.out" || status=$?
after=$(cpu_ticks "$pid")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill "$pid"; wait "$pid" || true
grep -v '^{' "$work/load.out" >&2 || true
python3 - "$followers" "$((after - before))" "$hwm" "$work/load.out" <<'PY'
import json, os, sys
followers, ticks, hwm, out = sys.argv[1:]
lines = open(out).read().splitlines()
report = json.loads([l for l in lines if l.startswith("{")][-1])
hz = os.sysconf("SC_CLK_TCK")
cpu_us = int(ticks) / hz * 1e6 / max(report["acknowledged"], 1)
d = report["delivery_latency_ms"]
f = report["fan_out"]
got = f"{f['complete']} of {f['streams']} ({f['expected_blocks']} blocks)" if f else "none opened"
print(f"| {followers} | {report['acked_per_second']:,.0f} | {report['delivered_per_second']:,.0f} | "
      f"{d['p50']:.1f} / {d['p99']:.1f} | {cpu_us:.1f} | {int(hwm)/1024:.0f} | {got} |")
PY
exit "$status"
