#!/usr/bin/env bash
# AMQP interop: run pika's and kombu/py-amqp's own integration suites (../shared/conformance/run) against a
# fresh FerryMQ and, with --peer, against RabbitMQ from ../shared/peers/start.sh (127.0.0.1:5673), printing
# both pass counts. Each suite gets a broker with a fresh data dir (kombu leaves durable entities behind).
#   scripts/interop-amqp.sh [--peer]
# FERRYMQ_INTEROP_PROFILE=debug uses the debug build (what CI has built already) instead of release.
# Exit status: 0 when FerryMQ passed every suite, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
runners=../shared/conformance/run
port=${FERRYMQ_INTEROP_PORT:-5682}

# shellcheck source=scripts/interop-common.sh
. scripts/interop-common.sh


summary=()
status=0
for suite in pika kombu; do
  echo "== $suite against FerryMQ (127.0.0.1:$port)"
  out=$(with_ferrymq "$port" --amqp-port "$port" --http-port 0 --mqtt-port 0 --mqtt-ws-port 0 --aws-port 0 \
    -- "$runners/$suite.sh" 127.0.0.1 "$port" 2>&1) || status=1
  echo "$out" | grep -E '^FAIL|passed' || true
  summary+=("$suite FerryMQ: $(echo "$out" | tail -n 1)")
done

if [ "${1:-}" = "--peer" ]; then
  ../shared/peers/start.sh rabbitmq >/dev/null
  for suite in pika kombu; do
    echo "== $suite against RabbitMQ (127.0.0.1:5673)"
    out=$("$runners/$suite.sh" 127.0.0.1 5673 2>&1) || true
    echo "$out" | grep -E '^FAIL|passed' || true
    summary+=("$suite RabbitMQ: $(echo "$out" | tail -n 1)")
  done
fi

printf 'interop: %s\n' "${summary[@]}"
exit $status
