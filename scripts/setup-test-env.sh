#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: a Python virtual
# environment in .venv with Fabric's official protos and grpcio (the conformance
# client), and tansu, the Kafka-protocol broker of the Kafka consenter's tests.
# Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  echo "installing Debian packages: $*"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

command -v python3 >/dev/null || apt_install python3
python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv

requirements=tests/conformance/requirements.txt
stamp=.venv/.requirements
if [ ! -x .venv/bin/python ] || ! cmp -s "$requirements" "$stamp"; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
scripts/kafka-broker.sh install
echo "test environment ready: $(.venv/bin/python --version)"
