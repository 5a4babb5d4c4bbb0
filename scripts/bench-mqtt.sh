#!/usr/bin/env bash
# MQTT benchmark: the same scenarios against FerryMQ and Mosquitto in one run on one machine, one JSON line per
# run on stdout (progress on stderr), with `ferrymq-bench mqtt`'s pipelined raw client. Compare ratios, not
# absolute numbers (docs/ARCHITECTURE.md §9).
#
#   scripts/bench-mqtt.sh                          # every scenario, 10 s per run
#   DURATION=5 SCENARIOS="qos0 fanout" scripts/bench-mqtt.sh
#   OUT=bench.jsonl scripts/bench-mqtt.sh          # also append the JSON lines to a file
#
# Scenarios, each against FerryMQ then Mosquitto (targets from the MQTT issue):
#   qos0    1 publisher -> 1 subscriber, QoS 0, 64 B, as fast as possible   (>= 2x Mosquitto)
#   qos1    the same at QoS 1 (QOS1_WINDOW unacknowledged publishes, 64)    (>= 2x Mosquitto)
#   qos2    the same at QoS 2 (QOS2_WINDOW unacknowledged publishes, 32)     (reported)
#   fanout  1 publisher -> 10 subscribers, QoS 0, 64 B: deliveries/s, p99    (>= 2x Mosquitto, p99 < 50 ms)
#   idle    IDLE_CONNECTIONS idle connections from 127.0.0.x: connections/s, broker RSS per connection
#           (<= 10 KiB each; default: the hard open-file limit less 2,000, and at least 15,000 wanted)
#
# Environment: DURATION (s, default 10), REPEAT (runs of each flow scenario, default 1), FERRYMQ_PORT (default
# 1883), MOSQUITTO_PORT (1884, as shared/peers/start.sh sets it up), PEERS (path of shared/peers/start.sh),
# SCENARIOS (default "qos0 qos1 qos2 fanout idle"), IDLE_CONNECTIONS, KEEP_LOG (copy FerryMQ's log there), FERRYMQ_ARGS (extra broker flags),
# BENCH_ARGS (extra ferrymq-bench flags), QOS1_WINDOW and QOS2_WINDOW (publishes in flight per publisher: FerryMQ
# counts a 3.1.1 publisher's unanswered QoS 1/2 publishes against [mqtt] max_inflight, 64, and a QoS 2 one twice,
# and disconnects beyond it), FERRYMQ and BENCH (paths of already built binaries: both set skips the
# release build).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=bench-mqtt
# shellcheck source=scripts/bench-common.sh
. scripts/bench-common.sh

DURATION="${DURATION:-10}"
REPEAT="${REPEAT:-1}"
FERRYMQ_PORT="${FERRYMQ_PORT:-1883}"
MOSQUITTO_PORT="${MOSQUITTO_PORT:-1884}"
PEERS="${PEERS:-../shared/peers/start.sh}"
OUT="${OUT:-}"
SCENARIOS="${SCENARIOS:-qos0 qos1 qos2 fanout idle}"
QOS1_WINDOW="${QOS1_WINDOW:-64}"
QOS2_WINDOW="${QOS2_WINDOW:-32}"
read -r -a FERRYMQ_EXTRA <<<"${FERRYMQ_ARGS:-}"
read -r -a BENCH_EXTRA <<<"${BENCH_ARGS:-}"

HARD="$(ulimit -Hn)"
if [ "$HARD" = unlimited ]; then HARD=1048576; fi
ulimit -n "$HARD"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-$((HARD - 2000))}"
if [ "$IDLE_CONNECTIONS" -lt 15000 ]; then
  log "warning: $IDLE_CONNECTIONS idle connections (hard open-file limit $HARD) is below the 15,000 wanted"
fi

if [ -z "${FERRYMQ:-}" ] || [ -z "${BENCH:-}" ]; then build_release; fi

# The FerryMQ process this script starts, stopped on exit (and only that one).
FERRYMQ_PID=""
DATA_DIR="$(mktemp -d)"
cleanup() {
  if [ -n "$FERRYMQ_PID" ]; then kill "$FERRYMQ_PID" 2>/dev/null || true; wait "$FERRYMQ_PID" 2>/dev/null || true; fi
  if [ -n "${KEEP_LOG:-}" ] && [ -f "$DATA_DIR.log" ]; then cp "$DATA_DIR.log" "$KEEP_LOG"; fi
  rm -rf "$DATA_DIR" "$DATA_DIR.log" "$DATA_DIR.toml"
}
trap cleanup EXIT

log "starting Mosquitto ($PEERS mosquitto)"
"$PEERS" mosquitto >&2 || log "peer start script failed"
MOSQUITTO_PID=""
if wait_up "$MOSQUITTO_PORT" 5; then
  MOSQUITTO_PID="$(pgrep -x mosquitto | head -n1 || true)"
else
  log "Mosquitto is not listening on 127.0.0.1:$MOSQUITTO_PORT: skipping its runs"
fi

# Room for the idle connections in MQTT's connection budget (the broker fits it and the handshake budget under
# its open-file limit and logs it when it has to lower them).
cat >"$DATA_DIR.toml" <<TOML
[mqtt]
max_connections = $((IDLE_CONNECTIONS + 100))
TOML
if up "$FERRYMQ_PORT"; then
  log "something already listens on 127.0.0.1:$FERRYMQ_PORT: not starting FerryMQ there"
else
  log "starting $FERRYMQ on 127.0.0.1:$FERRYMQ_PORT (data in $DATA_DIR, log in $DATA_DIR.log)"
  "$FERRYMQ" --config "$DATA_DIR.toml" --data-dir "$DATA_DIR" --bind 127.0.0.1 --amqp-port 0 --http-port 0 \
    --mqtt-port "$FERRYMQ_PORT" --mqtts-port 0 --mqtt-ws-port 0 --mqtt-wss-port 0 --aws-port 0 \
    "${FERRYMQ_EXTRA[@]}" >"$DATA_DIR.log" 2>&1 &
  FERRYMQ_PID=$!
  if ! wait_up "$FERRYMQ_PORT" 30; then
    log "FerryMQ did not come up; its log:"
    tail -n 20 "$DATA_DIR.log" >&2 || true
    kill "$FERRYMQ_PID" 2>/dev/null || true
    FERRYMQ_PID=""
  fi
fi

emit() { # one JSON line
  echo "$1"
  if [ -n "$OUT" ]; then echo "$1" >>"$OUT"; fi
}

bench() { # label port pid args...
  local label="$1" port="$2" pid="$3"
  shift 3
  local pid_args=()
  [ -n "$pid" ] && pid_args=(--pid "$pid")
  log "run $label"
  local line
  if line="$("$BENCH" mqtt --port "$port" --label "$label" "${pid_args[@]}" "$@" "${BENCH_EXTRA[@]}")"; then
    emit "$line"
  else
    log "run $label failed"
  fi
  sleep 2 # let the broker settle before the next run
}

targets=()
[ -n "$FERRYMQ_PID" ] && targets+=("ferrymq:$FERRYMQ_PORT:$FERRYMQ_PID")
[ -n "$MOSQUITTO_PID" ] && targets+=("mosquitto:$MOSQUITTO_PORT:$MOSQUITTO_PID")
[ ${#targets[@]} -gt 0 ] || { log "no broker to benchmark"; exit 1; }

flow=(--duration "$DURATION" --size 64)
for scenario in $SCENARIOS; do
  runs="$REPEAT"
  [ "$scenario" = idle ] && runs=1
  for _ in $(seq "$runs"); do
    for t in "${targets[@]}"; do
      IFS=: read -r name port pid <<<"$t"
      case "$scenario" in
        qos0) bench "$name-qos0-64B" "$port" "$pid" "${flow[@]}" --qos 0 ;;
        qos1) bench "$name-qos1-64B" "$port" "$pid" "${flow[@]}" --qos 1 --window "$QOS1_WINDOW" ;;
        qos2) bench "$name-qos2-64B" "$port" "$pid" "${flow[@]}" --qos 2 --window "$QOS2_WINDOW" ;;
        fanout) bench "$name-fanout-1to10-64B" "$port" "$pid" "${flow[@]}" --qos 0 --subscribers 10 ;;
        idle) bench "$name-idle-$IDLE_CONNECTIONS" "$port" "$pid" --scenario idle \
          --connections "$IDLE_CONNECTIONS" ;;
        *) log "unknown scenario $scenario" ;;
      esac
    done
  done
done
