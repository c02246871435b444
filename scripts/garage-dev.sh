#!/usr/bin/env bash
# garage-dev.sh — a single-node Garage (distributed S3-compatible store) on loopback,
# for tests and benchmarks that need a real S3 server.
# (Copied from the project's shared helper scripts so a fresh clone has it.)
#
#   garage-dev.sh start DIR   install garage if missing (cargo install, ~8 min the first
#                             time), start it with its data under DIR, create a bucket and
#                             a key, and write DIR/env with lines like
#                               S3_ENDPOINT=http://127.0.0.1:3900
#                               S3_REGION=garage
#                               S3_BUCKET=casegate-test
#                               S3_ACCESS_KEY=GK...
#                               S3_SECRET_KEY=...
#                             (source it: `set -a; . DIR/env; set +a`)
#   garage-dev.sh stop DIR    stop the server started for DIR (by its recorded pid)
#
# Environment: GARAGE_VERSION (default 2.5.0), GARAGE_S3_PORT (3900), GARAGE_RPC_PORT (3901),
# GARAGE_ADMIN_PORT (3903), GARAGE_BUCKET (casegate-test), GARAGE_BIN (a garage binary to use).
# Path-style addressing: use the endpoint with path-style requests, region "garage".
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

version=${GARAGE_VERSION:-2.5.0}
s3_port=${GARAGE_S3_PORT:-3900}
rpc_port=${GARAGE_RPC_PORT:-3901}
admin_port=${GARAGE_ADMIN_PORT:-3903}
bucket=${GARAGE_BUCKET:-casegate-test}

find_garage() {
  if [ -n "${GARAGE_BIN:-}" ]; then echo "$GARAGE_BIN"; return; fi
  if command -v garage >/dev/null 2>&1 && garage --version 2>/dev/null | grep -q "$version"; then
    command -v garage; return
  fi
  local root=${CARGO_HOME:-$HOME/.cargo}
  if [ ! -x "$root/bin/garage" ] || ! "$root/bin/garage" --version 2>/dev/null | grep -q "$version"; then
    echo "garage-dev: installing garage $version with cargo (first time only, several minutes)" >&2
    cargo install "garage@$version" --locked >&2
  fi
  echo "$root/bin/garage"
}

case "$cmd" in
start)
  bin=$(find_garage)
  conf="$dir/garage.toml"
  secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  admin_token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cat > "$conf" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$admin_token"
EOF
  chmod 600 "$conf"
  setsid "$bin" -c "$conf" server > "$dir/garage.log" 2>&1 < /dev/null &
  echo $! > "$dir/garage.pid"
  pid=$!
  g() { "$bin" -c "$conf" "$@"; }
  fail() {
    echo "garage-dev: $1; the server's log follows" >&2
    tail -n 40 "$dir/garage.log" >&2 || true
    exit 1
  }
  # `node id` reads the key file the server writes at start, so it can succeed
  # before the RPC listener is up; `status` goes through RPC. Wait for both.
  ready=""
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || fail "garage exited during start"
    if g status >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.2
  done
  [ -n "$ready" ] || fail "garage did not answer on its RPC port within 60 s"
  node=$(g node id -q | cut -d@ -f1)
  g layout assign -z dc1 -c 1G "$node" >/dev/null || fail "layout assign failed"
  g layout apply --version 1 >/dev/null || fail "layout apply failed"
  for _ in $(seq 1 50); do
    if g bucket create "$bucket" >/dev/null 2>&1 || g bucket info "$bucket" >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  keyinfo=$(g key create casegate-key 2>/dev/null || g key info casegate-key --show-secret)
  g bucket allow --read --write --owner "$bucket" --key casegate-key >/dev/null
  keyinfo=$(g key info casegate-key --show-secret)
  access=$(printf '%s\n' "$keyinfo" | awk -F': *' '/Key ID/ {print $2; exit}')
  secret_key=$(printf '%s\n' "$keyinfo" | awk -F': *' '/Secret key/ {print $2; exit}')
  [ -n "$access" ] && [ -n "$secret_key" ] || { echo "garage-dev: could not read the key" >&2; printf '%s\n' "$keyinfo" >&2; exit 1; }
  cat > "$dir/env" <<EOF
S3_ENDPOINT=http://127.0.0.1:$s3_port
S3_REGION=garage
S3_BUCKET=$bucket
S3_ACCESS_KEY=$access
S3_SECRET_KEY=$secret_key
EOF
  chmod 600 "$dir/env"
  echo "garage-dev: S3 on http://127.0.0.1:$s3_port, bucket $bucket; credentials in $dir/env" >&2
  ;;
stop)
  if [ -f "$dir/garage.pid" ]; then
    pid=$(cat "$dir/garage.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$dir/garage.pid"
  fi
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
