#!/usr/bin/env bash
# A long run at a steady rate, sampling the node's resident memory, to show
# whether it stays flat. Prints the samples as CSV and a summary line.
#
#   scripts/bench-soak.sh [SECONDS] [RATE]   (default 600 s at 25000 envelopes/s)
#
# 2 KB envelopes over 4 Broadcast streams, solo, against a release node on a
# scratch ledger (SECONDS x RATE x 2 KB of disk while it runs).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
rate=${2:-25000}
cargo build --release --quiet
ordo=target/release/ordo
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ORDERER_GENERAL_LISTENPORT=$port ORDERER_ADMIN_LISTENADDRESS= ORDERER_OPERATIONS_LISTENADDRESS= \
    ORDERER_FILELEDGER_LOCATION="$work/ledger" FABRIC_LOGGING_SPEC=warn "$ordo" start >/dev/null 2>&1 &
node=$!
sleep 1
echo "seconds,rss_mb"
(
    start=$(date +%s)
    while kill -0 "$node" 2>/dev/null; do
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$node/status" 2>/dev/null || echo 0)
        echo "$(( $(date +%s) - start )),$(( rss / 1024 ))"
        sleep 5
    done
) >"$work/rss.csv" &
sampler=$!
"$ordo" bench load --address "127.0.0.1:$port" --count $((seconds * rate)) --rate "$rate" \
    --streams 4 --size 2048 >"$work/load.out"
kill "$sampler" 2>/dev/null || true
cat "$work/rss.csv"
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$node/status")
tail -1 "$work/load.out"
python3 - "$work/rss.csv" "$hwm" <<'PY'
import sys
rows = [tuple(map(int, l.split(","))) for l in open(sys.argv[1])]
n = max(1, len(rows) // 10)
first, last = rows[:n], rows[-n:]
avg = lambda r: sum(m for _, m in r) / len(r)
print(f"soak: {rows[-1][0]} s, RSS first tenth {avg(first):.1f} MB, last tenth {avg(last):.1f} MB, "
      f"min {min(m for _, m in rows)} MB, max {max(m for _, m in rows)} MB, peak (VmHWM) {int(sys.argv[2])//1024} MB")
PY
