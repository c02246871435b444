#!/usr/bin/env bash
# Runs the README's first command (`cargo run --release -- serve`) in a
# scratch copy of the working directory layout, waits for the start-up lines,
# checks /healthz and /readyz with curl against the generated dev CA, and
# stops the gateway with SIGTERM. Exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill -TERM "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
cargo build --release --locked --manifest-path "$root/Cargo.toml"
# Same command as the README, run from a directory of its own so the
# repository stays clean. Ports 0: CI may have 8443 in use.
CASEGATE_SERVER__LISTEN=127.0.0.1:0 CASEGATE_SERVER__CENTRE_LISTEN=127.0.0.1:0 \
  cargo run --release --locked --manifest-path "$root/Cargo.toml" -- serve 2> serve.log &
pid=$!
# cargo run may still be compiling; wait up to 10 minutes, or until it dies.
for _ in $(seq 1 1200); do
  grep -q '^centre listener on ' serve.log 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat serve.log; echo "smoke: gateway exited"; exit 1; }
  sleep 0.5
done
addr=$(sed -n 's/^listening on https:\/\///p' serve.log)
[ -n "$addr" ] || { cat serve.log; echo "smoke: no 'listening on' line"; exit 1; }
grep -q '^coordinator token: cgo_' serve.log || { cat serve.log; echo "smoke: no coordinator token"; exit 1; }
port=${addr##*:}
curl -fsS --cacert certs/dev-ca.pem "https://localhost:$port/healthz"; echo
curl -fsS --cacert certs/dev-ca.pem "https://127.0.0.1:$port/readyz"; echo
token=$(sed -n 's/^coordinator token: //p' serve.log)
curl -fsS --cacert certs/dev-ca.pem -H "Authorization: Bearer $token" -X POST "https://127.0.0.1:$port/api/v1/cases" >/dev/null
kill -TERM "$pid"
wait "$pid"
echo "smoke: ok"
