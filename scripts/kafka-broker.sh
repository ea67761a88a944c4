#!/usr/bin/env bash
# A Kafka-protocol broker for the Kafka consenter: tansu, storing in SQLite.
#
#   kafka-broker.sh install              installs tansu 0.6.0 unless it is there
#   kafka-broker.sh start DIR PORT       starts a broker on 127.0.0.1:PORT with its
#                                        data in DIR; prints the address once it answers
#   kafka-broker.sh stop DIR             stops the broker started with DIR
#   kafka-broker.sh create-topic PORT NAME
#                                        creates topic NAME with one partition
#
# TANSU names the binary to use (default: tansu on PATH, else ~/.cargo/bin/tansu).
set -euo pipefail

TANSU_VERSION=0.6.0
# How long `start` waits for the port to answer, in tenths of a second.
START_PATIENCE_TENTHS=600

usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

cargo_bin() { echo "${CARGO_HOME:-$HOME/.cargo}/bin"; }

find_tansu() {
  if [ -n "${TANSU:-}" ]; then
    echo "$TANSU"
  elif command -v tansu >/dev/null 2>&1; then
    command -v tansu
  elif [ -x "$(cargo_bin)/tansu" ]; then
    echo "$(cargo_bin)/tansu"
  else
    return 1
  fi
}

installed_version() {
  local bin
  bin=$(find_tansu) || return 1
  # "tansu 0.6.0" (clap's --version output).
  "$bin" --version 2>/dev/null | awk '{print $2}'
}

install() {
  if [ "$(installed_version || true)" = "$TANSU_VERSION" ]; then
    echo "tansu $TANSU_VERSION already installed: $(find_tansu)"
    return
  fi
  echo "installing tansu $TANSU_VERSION (a release build: about 20 minutes on 2 cores)"
  # libsql is the SQLite storage engine: a broker with data on local disk.
  # Seen to build as is; tansu's own lock file is the fallback.
  if ! cargo install tansu --version "$TANSU_VERSION" --features libsql; then
    echo "retrying with tansu's own lock file (--locked)"
    cargo install tansu --version "$TANSU_VERSION" --features libsql --locked
  fi
}

port_answers() {
  # bash's /dev/tcp: no netcat needed.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  local dir=$1 port=$2 bin pid
  bin=$(find_tansu) || { echo "tansu not found: run $0 install" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
    echo "a broker already runs from $dir (pid $(cat "$dir/broker.pid"))" >&2
    exit 1
  fi
  if port_answers "$port"; then
    echo "port $port on 127.0.0.1 is already in use" >&2
    exit 1
  fi
  # The SQLite path is relative to the working folder: run from DIR.
  (
    cd "$dir"
    RUST_LOG=${RUST_LOG:-warn} nohup "$bin" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "sqlite://tansu.db" \
      --silent >>broker.log 2>&1 </dev/null &
    echo $! >broker.pid
  )
  pid=$(cat "$dir/broker.pid")
  for ((i = 0; i < START_PATIENCE_TENTHS; i++)); do
    if port_answers "$port"; then
      echo "127.0.0.1:$port"
      return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the broker exited; the end of $dir/broker.log:" >&2
      tail -n 20 "$dir/broker.log" >&2
      rm -f "$dir/broker.pid"
      exit 1
    fi
    sleep 0.1
  done
  echo "the broker did not listen on 127.0.0.1:$port in time (see $dir/broker.log)" >&2
  exit 1
}

stop() {
  local dir=$1 pid
  if [ ! -f "$dir/broker.pid" ]; then
    echo "no broker.pid in $dir" >&2
    exit 1
  fi
  pid=$(cat "$dir/broker.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    # Its data is committed to SQLite as it goes: a hard stop loses nothing acked.
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$dir/broker.pid"
}

create_topic() {
  local port=$1 name=$2 bin
  bin=$(find_tansu) || { echo "tansu not found: run $0 install" >&2; exit 1; }
  "$bin" topic create "$name" --partitions 1 --broker "tcp://127.0.0.1:$port"
}

case "${1:-}" in
  install) [ $# -eq 1 ] || usage; install ;;
  start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  create-topic) [ $# -eq 3 ] || usage; create_topic "$2" "$3" ;;
  *) usage ;;
esac
