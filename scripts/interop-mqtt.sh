#!/usr/bin/env bash
# MQTT interop: the Eclipse Paho interoperability tests (../shared/conformance/paho-mqtt-interop/run.py: 10 MQTT
# 3.1.1 tests and 27 MQTT 5.0 tests, standard-library Python 3 only) against a fresh FerryMQ per version and, with
# --peer, against Mosquitto from ../shared/peers/start.sh (127.0.0.1:1884), printing the pass counts side by side.
#   scripts/interop-mqtt.sh [--peer]
# FERRYMQ_INTEROP_PROFILE=debug uses the debug build (what CI has built already) instead of release;
# FERRYMQ_INTEROP_MQTT_PORT (default 1885) is where FerryMQ listens for v3 (v5: the next port); PAHO_TIMEOUT (default 60) bounds each test.
# FerryMQ runs with config/mqtt-interop.toml: the Server Keep Alive and the topic permission refusing
# `test/nosubscribe` that test_server_keep_alive and test_subscribe_failure expect (Mosquitto is not set up so).
# Exit status: 0 when FerryMQ passed every test of both versions, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
paho=../shared/conformance/paho-mqtt-interop/run.py
port=${FERRYMQ_INTEROP_MQTT_PORT:-1885}
timeout=${PAHO_TIMEOUT:-60}

# shellcheck source=scripts/interop-common.sh
. scripts/interop-common.sh

paho() { # version port: run the suite, print its lines, return its status
  python3 -B "$paho" --version "$1" --host 127.0.0.1 --port "$2" --timeout "$timeout"
}


summary=()
status=0
# The two suites run at once, each against a broker of its own (v3 on $port, v5 on the next port): they spend
# most of their time in the tests' own sleeps.
outs=$(mktemp -d)
pids=()
for version in 3 5; do
  p=$((port + version / 5))
  # A failing suite must still leave its status and output for the summary below (set -e holds in here).
  (
    rc=0
    with_ferrymq "$p" --config config/mqtt-interop.toml --amqp-port 0 --http-port 0 --aws-port 0 \
      --mqtt-port "$p" --mqtts-port 0 --mqtt-ws-port 0 --mqtt-wss-port 0 -- paho "$version" "$p" \
      >"$outs/v$version" 2>&1 || rc=$?
    echo "$rc" >"$outs/v$version.rc"
  ) &
  pids+=($!)
done
wait "${pids[@]}" || true
for version in 3 5; do
  echo "== Paho MQTT v$version against FerryMQ (127.0.0.1:$((port + version / 5)))"
  cat "$outs/v$version"
  [ "$(cat "$outs/v$version.rc")" = 0 ] || status=1
  summary+=("v$version FerryMQ: $(tail -n 1 "$outs/v$version")")
done
rm -rf "$outs"

if [ "${1:-}" = "--peer" ]; then
  ../shared/peers/start.sh mosquitto >/dev/null 2>&1 || true
  for version in 3 5; do
    echo "== Paho MQTT v$version against Mosquitto (127.0.0.1:1884)"
    out=$(paho "$version" 1884 2>&1) || true
    echo "$out"
    summary+=("v$version Mosquitto: $(echo "$out" | tail -n 1)")
  done
fi

printf 'interop-mqtt: %s\n' "${summary[@]}"
exit $status
