#!/usr/bin/env bash
# The long crash matrix (docs/crash-matrix.md): ORDO_CRASH_RUNS planned runs
# (1000 unless set) of tests/it/crash_matrix.rs, each crashing the node binary
# at one failpoint and checking it after a restart. The seed is printed
# first; ORDO_CRASH_SEED=<seed> repeats a plan, and ORDO_CRASH_SEED=<seed>
# ORDO_CRASH_ONLY=<run> replays one run of it. The log, with one line per run
# and a table per failpoint at the end, goes to target/crash-matrix.log too.
set -euo pipefail
cd "$(dirname "$0")/.."
export ORDO_CRASH_RUNS="${ORDO_CRASH_RUNS:-1000}"
log=target/crash-matrix.log
mkdir -p target
cargo test --locked --features failpoints --test it crash_matrix -- --nocapture 2>&1 | tee "$log"
