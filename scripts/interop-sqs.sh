#!/usr/bin/env bash
# SQS interop: moto's own SQS tests in server mode (../shared/conformance/run/moto.sh) against a fresh FerryMQ
# and, with --peer, against moto_server from ../shared/peers/start.sh (127.0.0.1:5000), printing both counts.
#   scripts/interop-sqs.sh [--peer]
# FERRYMQ_INTEROP_PROFILE=debug uses the debug build (what CI has built already) instead of release.
# Exit status: 0 when FerryMQ passed every test, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
runners=../shared/conformance/run
port=${FERRYMQ_INTEROP_SQS_PORT:-19324}

# shellcheck source=scripts/interop-common.sh
. scripts/interop-common.sh

status=0
echo "== moto sqs against FerryMQ (127.0.0.1:$port)"
out=$(with_ferrymq "$port" --amqp-port 0 --http-port 0 --mqtt-port 0 --mqtt-ws-port 0 --aws-port "$port" \
  -- "$runners/moto.sh" "http://127.0.0.1:$port" sqs 2>&1) || status=1
echo "$out" | grep -E '^FAIL|passed' || true
summary=("moto sqs FerryMQ: $(echo "$out" | tail -n 1)")

if [ "${1:-}" = "--peer" ]; then
  ../shared/peers/start.sh moto >/dev/null
  echo "== moto sqs against moto_server (127.0.0.1:5000)"
  out=$("$runners/moto.sh" http://127.0.0.1:5000 sqs 2>&1) || true
  echo "$out" | grep -E '^FAIL|passed' || true
  summary+=("moto sqs moto_server: $(echo "$out" | tail -n 1)")
fi

printf 'interop: %s\n' "${summary[@]}"
exit $status
