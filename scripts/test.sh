#!/usr/bin/env bash
# Runs every test: unit tests, end-to-end tests over gRPC, and the conformance
# tests against Fabric's official Python protos. Installs what they need first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-test-env.sh
export ORDO_PYTHON="$PWD/.venv/bin/python"
cargo test --locked --features failpoints "$@"
